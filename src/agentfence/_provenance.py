"""Where argument values appeared before a call: an incremental index of a thread's messages.

Each message of a thread is indexed once into normalised keys (RFC 5322-ish email
addresses, hosts and domains, account numbers and IBANs without spaces or dashes, numbers as
decimals, long tokens, words); a value is looked up by the keys of its shape, so the cost of a
lookup does not grow with the number or size of earlier messages. What the keys cannot see
(paraphrase, encodings, a value split across messages) is listed in ``docs/policy-guide.md``,
"What provenance cannot see".
"""

from __future__ import annotations

import decimal
import hashlib
import re
import threading
from array import array
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

from agentfence._locators import (
    PATH_IN_TEXT,
    looks_like_path,
    looks_like_url,
    normal_path,
    parse_url,
)
from agentfence.labels import (
    EMPTY_PROVENANCE,
    SOURCE_DIRECTORY,
    SOURCE_INPUT,
    SOURCE_SYSTEM,
    SOURCE_TOOL,
    SOURCE_USER,
    UNTRUSTED,
    Directory,
    Provenance,
    message_facts,
    to_decimal,
)

_T = TypeVar("_T")

# --- keys ------------------------------------------------------------------------------------
#
# A key is a short string with a one-letter kind: "e:" an email address (lower case), "d:" a
# host or domain (lower case, no leading "www."), "a:" an account-like number (IBAN or a run
# of at least 6 digits, upper case, spaces and dashes removed), "n:" a number (normalised
# decimal), "t:" a long token (16+ characters mixing letters and digits, as keys and secrets
# are), "w:" a word (lower-case letters and digits), "u:" a whole URL normalised
# (agentfence._locators), "r:" an ambiguous URL as written (lower case), "p:" a POSIX path
# normalised.

_EMAIL_ALL = re.compile(
    r"[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_EMAIL = re.compile(
    r"[A-Za-z0-9._%+\-]+@((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s<>\"'`)\]]+")
_URL_TAIL = re.compile(r"/[^\s<>\"'`)\]]*")
# Dotted names: domains ("acme.test") and IPv4 addresses, told apart by their last label.
_DOTTED = re.compile(r"(?<![\w@.-])[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)+")
_IPV4_SHAPE = re.compile(r"^(?:\d{1,3}\.){3}\d{1,3}$")
_NUMBER = re.compile(r"(?<![\d.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)")
_DIGIT_CHAIN = re.compile(r"\d+(?:[ \-]\d+)*")
# One pass for numbers and account-like digit groups: digits with the separators they use.
_DIGIT_RUN = re.compile(r"(?<![\d.,])\d[\d,.]*(?:[ \-]\d[\d,.]*)*")
_NUMBER_SHAPE = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_IBAN_HEAD = re.compile(r"\b([A-Za-z]{2}\d{2}[A-Za-z0-9]*)((?:[ \-][A-Za-z0-9]{1,4}\b)*)")
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=]{16,}")
_TOKEN_SEPARATORS = re.compile(r"[=/]+")
_WORD = re.compile(r"[^\W_]+")
_IBAN_SHAPE = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$")
_EMAIL_SHAPE = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,63}$")
_DOMAIN_SHAPE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_SEPARATORS = re.compile(r"[\s\-]+")

_MIN_ACCOUNT_DIGITS = 6
_MIN_CARRIED_DIGITS = 9  # dates (8 digits) are not identifiers worth tracking into a body
_MAX_CHAIN_GROUPS = 10
_IBAN_MIN, _IBAN_MAX = 15, 34
_MAX_INDEXED_CHARS = 1_000_000  # a larger message is indexed by its first megabyte
_SHORT_CHARS = 4  # a string value of at most this many letters and digits is "short"
_ROLE_WINDOW = 1  # words allowed between a short value and a word of its role


def _host(name: str) -> str:
    host = name.strip().strip(".").lower()
    return host[4:] if host.startswith("www.") else host


def _number_text(text: str) -> str:
    """A number's canonical text: no grouping commas, no leading or trailing zeros."""
    text = text.replace(",", "")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    text = text.lstrip("0")
    if not text or text[0] == ".":
        text = "0" + text
    return text


def _number_key(value: decimal.Decimal) -> str:
    return "n:" + _number_text(f"{value.copy_abs():f}")


def _chain_keys(chain: str, minimum: int) -> set[str]:
    """Keys for every contiguous run of digit groups with at least ``minimum`` digits."""
    if " " not in chain and "-" not in chain:  # one group, the common case
        return {"a:" + chain} if len(chain) >= minimum else set()
    groups = [g for g in re.split(r"[ \-]", chain) if g]
    keys: set[str] = set()
    for start in range(len(groups)):
        digits = ""
        for end in range(start, min(len(groups), start + _MAX_CHAIN_GROUPS)):
            digits += groups[end]
            if len(digits) >= minimum:
                keys.add("a:" + digits)
    return keys


def _iban_keys(text: str) -> set[str]:
    keys: set[str] = set()
    for match in _IBAN_HEAD.finditer(text):
        compact = match.group(1).upper()
        parts = [p for p in re.split(r"[ \-]", match.group(2)) if p]
        for part in [None, *parts]:
            if part is not None:
                compact += part.upper()
            if len(compact) > _IBAN_MAX:
                break
            if len(compact) >= _IBAN_MIN and _IBAN_SHAPE.match(compact):
                keys.add("a:" + compact)
    return keys


def identifier_keys(text: str, *, min_digits: int = _MIN_ACCOUNT_DIGITS) -> set[str]:
    """Keys of the identifiers in text: emails, account numbers, IBANs and long tokens."""
    keys = {"e:" + m.lower() for m in _EMAIL_ALL.findall(text)}
    for chain in set(_DIGIT_CHAIN.findall(text)):
        keys |= _chain_keys(chain, min_digits)
    keys |= _iban_keys(text)
    return keys | _token_keys(text)


def _token_keys(text: str) -> set[str]:
    keys: set[str] = set()
    for word in set(_TOKEN.findall(text)):
        # A token glued into a URL or a form (``/k?key=<token>``, ``a/<token>``) is the
        # same token: its parts between ``=`` and ``/`` count too.
        parts = [word, *_TOKEN_SEPARATORS.split(word)] if ("=" in word or "/" in word) else [word]
        for part in parts:
            if (
                len(part) >= 16
                and any(c.isdigit() for c in part)
                and any(c.isalpha() for c in part)
            ):
                keys.add("t:" + part)
    return keys


def text_keys(text: str) -> tuple[set[str], str]:
    """Every key of a message's text, and its normalised word text for phrase checks."""
    text = text[:_MAX_INDEXED_CHARS]
    keys = {"e:" + m.lower() for m in _EMAIL_ALL.findall(text)}
    keys |= _iban_keys(text)
    keys |= _token_keys(text)
    for run in set(_DIGIT_RUN.findall(text)):
        _run_keys(run, keys)
    keys.update("d:" + _host(domain) for domain in _EMAIL.findall(text))
    dotted = list(_DOTTED.finditer(text))  # one pass serves domains and scheme-less URLs
    for match in dotted:
        name = match.group()
        if _is_domain(name):
            keys.add("d:" + _host(name))
        elif _IPV4_SHAPE.match(name):
            keys.add("d:" + name)
    if "/" in text:
        keys |= _link_keys_of(urls_in(text, dotted), hosts=True)
        for path in PATH_IN_TEXT.findall(text):
            keys.add("p:" + normal_path(path, prose=True))
    words = _WORD.findall(text.lower())
    keys.update("w:" + w for w in set(words))
    return keys, " " + " ".join(words) + " "


def _run_keys(run: str, keys: set[str]) -> None:
    """Number keys and account-like keys (as :func:`_chain_keys`) of one run of digits."""
    if run.isdigit():  # one plain number, the common case
        keys.add("n:" + _number_text(run))
        if len(run) >= _MIN_ACCOUNT_DIGITS:
            keys.add("a:" + run)
        return
    if " " not in run and "-" not in run:  # one amount such as 2,500.00, the next commonest
        group = run.rstrip(".,")
        _group_number_keys(group, keys)
        if group.isdigit() and len(group) >= _MIN_ACCOUNT_DIGITS:
            keys.add("a:" + group)
        return
    chain: list[str] = []
    for group in re.split(r"[ \-]", run):
        group = group.rstrip(".,")
        if not group:
            continue
        _group_number_keys(group, keys)
        if group.isdigit():
            chain.append(group)
        else:
            if chain:
                keys |= _chain_keys(" ".join(chain), _MIN_ACCOUNT_DIGITS)
            chain = []
    if chain:
        keys |= _chain_keys(" ".join(chain), _MIN_ACCOUNT_DIGITS)


def _is_domain(name: str) -> bool:
    """A dotted name whose last label is letters: a domain, not a number or an address."""
    last = name.rsplit(".", 1)[1]
    return last.isalpha() and len(last) >= 2


def urls_in(text: str, dotted: Iterable[re.Match[str]] | None = None) -> list[str]:
    """The URLs in prose: those with a scheme, and scheme-less ones (a domain followed by a
    path, ``site.test/path``). ``dotted`` are the text's dotted names, when already found."""
    links: list[str] = _URL.findall(text) if "://" in text else []
    if "/" not in text:
        return links
    for match in dotted if dotted is not None else _DOTTED.finditer(text):
        end = match.end()
        if text[end : end + 1] == "/" and _is_domain(match.group()):
            tail = _URL_TAIL.match(text, end)
            links.append(text[match.start() : tail.end() if tail else end])
    return links


def _group_number_keys(group: str, keys: set[str]) -> None:
    """The number keys of one group of a digit run (``2,500.00``, or numbers inside it)."""
    if _NUMBER_SHAPE.fullmatch(group):
        keys.add("n:" + _number_text(group))
    else:
        keys.update("n:" + _number_text(n) for n in _NUMBER.findall(group))


def link_keys(text: str, *, hosts: bool) -> set[str]:
    """Keys of the URLs in text: each whole (``u:``) or, when ambiguous, as written (``r:``);
    with ``hosts``, also the host of each unambiguous one (``d:``)."""
    return _link_keys_of(urls_in(text), hosts=hosts)


def _link_keys_of(found: Iterable[str], *, hosts: bool) -> set[str]:
    keys: set[str] = set()
    for candidate in found:
        url = parse_url(candidate)
        if url.key is None:
            keys.add("r:" + url.raw.lower())
            continue
        keys.add("u:" + url.key)
        if hosts and url.host:
            keys.add("d:" + url.host)
    return keys


@dataclass(frozen=True)
class ValueQuery:
    """How to look a value up: keys any of which is a match, or a phrase of words."""

    keys: tuple[str, ...] = ()
    phrase: tuple[str, ...] = ()
    numeric: bool = False
    host: str | None = None
    """A URL's host key (``d:``), looked up for ``host_sources``."""
    ambiguous: bool = False
    """A URL parsers may read differently: it never has a trusted source."""
    short: bool = False
    """A short identifier: it matches only where a word of its role stands beside it."""

    def __bool__(self) -> bool:
        return bool(self.keys or self.phrase)


def value_query(value: Any, *, numeric: bool = False) -> ValueQuery:
    """The keys a value is matched by, chosen by its shape (see the module docstring)."""
    is_number = isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool)
    if numeric or is_number:
        number = to_decimal(value)
        if number is not None:
            return ValueQuery(keys=(_number_key(number),), numeric=True)
        if not isinstance(value, str):
            return ValueQuery()
    if not isinstance(value, str):
        return ValueQuery()
    text = value.strip()
    if not text:
        return ValueQuery()
    if _EMAIL_SHAPE.match(text):
        return ValueQuery(keys=("e:" + text.lower(),))
    if looks_like_url(text):
        # A URL is compared whole; its host only for host_sources (agentfence._locators).
        url = parse_url(text)
        if url.key is None:
            return ValueQuery(keys=("r:" + url.raw.lower(),), ambiguous=True)
        return ValueQuery(keys=("u:" + url.key,), host="d:" + url.host if url.host else None)
    if looks_like_path(text):
        return ValueQuery(keys=("p:" + normal_path(text),))
    if _DOMAIN_SHAPE.match(text) and not text.replace(".", "").isdigit():
        return ValueQuery(keys=("d:" + _host(text),))
    keys: list[str] = []
    compact = _SEPARATORS.sub("", text).upper()
    if _IBAN_SHAPE.match(compact) or (compact.isdigit() and len(compact) >= _MIN_ACCOUNT_DIGITS):
        keys.append("a:" + compact)
    number = to_decimal(text)
    if number is not None:
        keys.append(_number_key(number))
    words = tuple(_WORD.findall(text.lower()))
    # A value of a few characters ("13", "a1") is found in most texts by coincidence; it
    # counts only where a word of its role stands beside it (docs/policy-guide.md).
    short = len("".join(words)) <= _SHORT_CHARS
    if short:
        return ValueQuery(phrase=words, short=True)
    return ValueQuery(keys=tuple(keys), phrase=words)


def exact_keys(value: Any) -> tuple[str, ...]:
    """The keys under which a trusted directory entry is found (exact, normalised)."""
    query = value_query(value)
    keys = list(query.keys)
    if query.phrase:
        keys.append("s:" + " ".join(query.phrase))
    return tuple(keys)


# --- the per-thread index ----------------------------------------------------------------------


def _positions() -> array[int]:
    return array("i")


@dataclass(frozen=True)
class Doc:
    """One indexed message: where it came from, its labels, and its normalised words."""

    source: str
    tool: str | None
    labels: frozenset[str]
    words: str


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "\n".join(parts)
    return str(content) if content is not None else ""


def classify(message: Any) -> tuple[str, str | None, frozenset[str]] | None:
    """The source, tool name and labels of a message; None for messages that are no source.

    The model's own messages are not a source (a value the model made up has no
    provenance), nor are the fence's refusals (text agentfence wrote).
    """
    kind = getattr(message, "type", None)
    facts = message_facts(message)
    if kind == "human":
        source = SOURCE_INPUT if UNTRUSTED in facts.labels else SOURCE_USER
        return source, None, facts.labels
    if kind == "system":
        return SOURCE_SYSTEM, None, facts.labels
    if kind == "tool":
        if facts.refused:
            return None
        # A tool result the fence did not label came from outside the fence: treat it as
        # untrusted, the conservative reading (docs/policy-guide.md, "Data labels").
        labels = facts.labels if facts.fenced else frozenset({UNTRUSTED})
        name = getattr(message, "name", None)
        return SOURCE_TOOL, name if isinstance(name, str) else None, labels
    return None


def _message_key(message: Any) -> str:
    ident = getattr(message, "id", None)
    if isinstance(ident, str) and ident:
        return ident
    digest = hashlib.sha256(
        repr((getattr(message, "type", None), getattr(message, "content", None))).encode()
    )
    return "h:" + digest.hexdigest()


class ThreadIndex:
    """The incremental index of one thread's messages (append-only between rebuilds).

    ``sync(messages)`` indexes the messages it has not seen; a view taken afterwards sees
    exactly those messages. When messages were removed or replaced (not an extension of what
    was indexed), a fresh index is built, reusing no postings, so older views stay valid.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: list[str] = []
        self.docs: list[Doc] = []
        # Postings are int arrays, not lists: they hold no references, so the garbage
        # collector does not walk a long thread's hundreds of thousands of them.
        self.postings: defaultdict[str, array[int]] = defaultdict(_positions)
        self.labels: set[str] = set()
        self.tools: set[str] = set()

    def add(self, message: Any, key: str) -> None:
        """Index one message."""
        self.ids.append(key)
        kind = classify(message)
        if kind is None:
            self.docs.append(Doc("", None, frozenset(), " "))
            return
        source, tool, labels = kind
        keys, words = text_keys(_content_text(getattr(message, "content", "")))
        position = len(self.docs)
        self.docs.append(Doc(source, tool, labels, words))
        postings = self.postings
        for item in keys:
            postings[item].append(position)
        self.labels |= labels
        if source == SOURCE_TOOL and tool:
            self.tools.add(tool)


@dataclass(frozen=True)
class History:
    """A fixed view of a thread's messages as a call saw them (what policies are told about)."""

    index: ThreadIndex
    size: int
    labels: frozenset[str]
    tools: frozenset[str]
    memo: dict[tuple[Any, ...], Any] = field(default_factory=dict, compare=False, repr=False)
    """What one call's view has already answered (provenance of a value, labels a text
    carries), so a call that asks twice (one request per resource, the labels its result
    inherits) computes once."""

    def remembered(self, key: tuple[Any, ...], compute: Callable[[], _T]) -> _T:
        """``compute()``, once per ``key`` for this view."""
        if key not in self.memo:
            self.memo[key] = compute()
        found: _T = self.memo[key]
        return found

    @classmethod
    def empty(cls) -> History:
        """The history of a call with no earlier messages."""
        return cls(ThreadIndex(), 0, frozenset(), frozenset())

    def docs_with(self, key: str) -> Sequence[int]:
        """Positions of the messages holding a key (within this view)."""
        found = self.index.postings.get(key)
        if not found:
            return ()
        if found[-1] < self.size:
            return found
        return [p for p in found if p < self.size]

    def docs_with_phrase(self, words: Sequence[str]) -> list[int]:
        """Positions of the messages whose words contain ``words`` in order, adjacent."""
        if not words:
            return []
        lists = [self.docs_with("w:" + w) for w in set(words)]
        if any(not found for found in lists):
            return []
        lists.sort(key=len)
        if len(words) == 1:
            return sorted(set(lists[0]))
        # The two rarest words narrow the candidates; the phrase check below is exact, so the
        # common words' long posting lists need not be read (a long free-text argument is
        # mostly common words).
        candidates = set(lists[0]).intersection(lists[1])
        needle = " " + " ".join(words) + " "
        docs = self.index.docs
        return sorted(p for p in candidates if needle in docs[p].words)


class HistoryCache:
    """Thread indexes of one fence, kept for the most recently used threads."""

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._threads: OrderedDict[str, ThreadIndex] = OrderedDict()

    def history(self, thread: str, messages: Sequence[Any]) -> History:
        """Index what is new in ``messages`` and return the view a call now sees."""
        with self._lock:
            index = self._threads.get(thread) if thread else None
            if index is not None:
                self._threads.move_to_end(thread)
        if index is None or not _extends(index, messages):
            index = ThreadIndex()
            if thread:
                with self._lock:
                    self._threads[thread] = index
                    while len(self._threads) > self._capacity:
                        self._threads.popitem(last=False)
        with index.lock:
            if not _extends(index, messages):  # another call rebuilt it meanwhile
                index = ThreadIndex()
            for message in messages[len(index.ids) :]:
                index.add(message, _message_key(message))
            # The view covers exactly the messages of this call's state (a parallel call in a
            # longer state may have indexed more; postings past ``size`` are not seen).
            size = len(messages)
            if size == len(index.docs):
                labels, tools = frozenset(index.labels), frozenset(index.tools)
            else:
                docs = index.docs[:size]
                labels = frozenset().union(*(d.labels for d in docs))
                tools = frozenset(d.tool for d in docs if d.tool and d.source == SOURCE_TOOL)
        return History(index, size, labels, tools)


_SAMPLE_STRIDE = 64


def _extends(index: ThreadIndex, messages: Sequence[Any]) -> bool:
    """Whether ``messages`` start with what the index holds (or are a prefix of it).

    LangGraph's message reducer appends, and removes or replaces by id; so the ids at the
    first and last indexed positions, and at every 64th between, tell an extension from an
    edit without reading every message on every call.
    """
    held = index.ids
    common = min(len(held), len(messages))
    if common == 0:
        return True
    positions = {0, common - 1, *range(0, common, _SAMPLE_STRIDE)}
    return all(_message_key(messages[p]) == held[p] for p in positions)


def messages_of(state: Any) -> Sequence[Any]:
    """The messages of a graph state: ``state["messages"]``, ``state.messages`` or a list."""
    if isinstance(state, Mapping):
        found = state.get("messages")
    elif isinstance(state, list | tuple):
        found = state
    else:
        found = getattr(state, "messages", None)
    return found if isinstance(found, list | tuple) else ()


# --- provenance of a value ---------------------------------------------------------------------

_TRUSTED = frozenset({SOURCE_USER, SOURCE_SYSTEM})


def provenance(
    value: Any,
    history: History,
    directory: Directory | None,
    *,
    numeric: bool = False,
    role: frozenset[str] = frozenset(),
) -> Provenance:
    """Where ``value`` appeared: in the history's messages, or in the trusted directory.

    A list's provenance holds the sources every item has (so "from the user" means every
    item is) and, in ``any_sources``, the sources some item has; the other fields are the
    union over the items. ``role`` are the words that name the value's role (from the
    argument's and the tool's names): a short value counts only where one stands beside it.
    """
    key = ("provenance", repr(value), numeric, role, id(directory))
    return history.remembered(key, lambda: _provenance(value, history, directory, numeric, role))


def _provenance(
    value: Any,
    history: History,
    directory: Directory | None,
    numeric: bool,
    role: frozenset[str],
) -> Provenance:
    if isinstance(value, list | tuple | set | frozenset):
        items = [provenance(v, history, directory, numeric=numeric, role=role) for v in value]
        if not items:
            return EMPTY_PROVENANCE
        every = [p.all_labels for p in items if p.tools or p.all_labels]
        return Provenance(
            sources=frozenset.intersection(*(p.sources for p in items)),
            labels=frozenset().union(*(p.labels for p in items)),
            tools=frozenset().union(*(p.tools for p in items)),
            lists=frozenset().union(*(p.lists for p in items)),
            carries=frozenset().union(*(p.carries for p in items)),
            any_sources=frozenset().union(*(p.any_sources for p in items)),
            host_sources=frozenset.intersection(*(p.host_sources for p in items)),
            all_labels=frozenset().union(*every) if every else frozenset(),
            link_carries=frozenset().union(*(p.link_carries for p in items)),
            ambiguous=any(p.ambiguous for p in items),
        )
    query = value_query(value, numeric=numeric)
    if not query:
        return EMPTY_PROVENANCE
    found = _found(query, history, role)
    docs = history.index.docs
    sources = {docs[p].source for p in found}
    tool_docs = [docs[p] for p in found if docs[p].source in (SOURCE_TOOL, SOURCE_INPUT)]
    lists: frozenset[str] = frozenset()
    if directory:
        lists = directory.lists_holding(exact_keys(value))
        if lists:
            sources.add(SOURCE_DIRECTORY)
    host_sources: set[str] = set()
    if query.host is not None:
        host_sources = {docs[p].source for p in history.docs_with(query.host)}
        if directory and directory.lists_holding((query.host,)):
            host_sources.add(SOURCE_DIRECTORY)
    if query.ambiguous:
        # Parsers disagree about where it goes: no place can vouch for it.
        sources -= _VOUCHING
    text = value if isinstance(value, str) else ""
    return Provenance(
        sources=frozenset(sources),
        labels=frozenset().union(*(d.labels for d in tool_docs)),
        tools=frozenset(d.tool for d in tool_docs if d.tool),
        lists=lists,
        carries=carried(text, history, directory) if text else frozenset(),
        any_sources=frozenset(sources),
        host_sources=frozenset(host_sources),
        all_labels=frozenset.intersection(*(d.labels for d in tool_docs))
        if tool_docs
        else frozenset(),
        link_carries=links_carried(text, history, directory) if "/" in text else frozenset(),
        ambiguous=query.ambiguous,
    )


def _found(query: ValueQuery, history: History, role: frozenset[str]) -> set[int]:
    """Positions of the messages where a value appeared (by its keys, or as a phrase)."""
    found: set[int] = set()
    for key in query.keys:
        found.update(history.docs_with(key))
    if query.phrase:
        positions = history.docs_with_phrase(query.phrase)
        if query.short:
            positions = _in_role(positions, query.phrase, history, role)
        found.update(positions)
    return found


def _in_role(
    positions: Sequence[int], phrase: Sequence[str], history: History, role: frozenset[str]
) -> list[int]:
    """The messages where a short value stands next to, or one word from, a word of its role."""
    if not role or not positions:
        return []
    words = "|".join(re.escape(w) for w in sorted(role))
    needle = re.escape(" ".join(phrase))
    gap = rf"(?: \S+){{0,{_ROLE_WINDOW}}}"
    beside = re.compile(rf" (?:{words}){gap} {needle} | {needle}{gap} (?:{words}) ")
    docs = history.index.docs
    return [p for p in positions if beside.search(docs[p].words)]


def role_words(*names: str) -> frozenset[str]:
    """The words naming a value's role: the parts of the names given, the argument's (and
    the resource type's): ``file_id`` gives file, files, id, ids. Not the tool's name: a
    verb such as "transfer" stands beside amounts as often as beside ids."""
    words: set[str] = set()
    for name in names:
        for part in re.split(r"[^A-Za-z0-9]+|_", name.lower()):
            if len(part) >= 2:
                words.update((part, part + "s"))
    return frozenset(words)


_VOUCHING = frozenset({SOURCE_USER, SOURCE_SYSTEM, SOURCE_DIRECTORY})


def links_carried(text: str, history: History, directory: Directory | None) -> frozenset[str]:
    """Labels of tool results from which a URL inside ``text`` was copied, unless the user,
    the system prompt or the directory gave that same URL (an ambiguous URL: always)."""
    # Only a whole URL can be vouched for; an ambiguous one ("r:") never is.
    return history.remembered(
        ("links", text, id(directory)),
        lambda: _copied_labels(
            link_keys(text, hosts=False), history, directory, lambda k: k[:2] == "u:"
        ),
    )


def carried(text: str, history: History, directory: Directory | None) -> frozenset[str]:
    """Labels of tool results from which an identifier inside ``text`` was copied.

    An identifier the user, the system prompt or the directory also supplied carries nothing:
    the user may name a customer whose record the agent also read.
    """
    if len(text) < 6:
        return frozenset()
    return history.remembered(
        ("carried", text, id(directory)),
        lambda: _copied_labels(
            identifier_keys(unquote(text), min_digits=_MIN_CARRIED_DIGITS),
            history,
            directory,
            lambda _key: True,
        ),
    )


def _copied_labels(
    keys: Iterable[str],
    history: History,
    directory: Directory | None,
    vouchable: Callable[[str], bool],
) -> frozenset[str]:
    """Labels of the tool results holding any of ``keys``, leaving out the keys a trusted
    place (the user, the system prompt, the directory) also gave, when ``vouchable``."""
    docs = history.index.docs
    labels: set[str] = set()
    for key in keys:
        positions = history.docs_with(key)
        if not positions:
            continue
        if vouchable(key) and (
            any(docs[p].source in _TRUSTED for p in positions)
            or (directory and directory.lists_holding((key,)))
        ):
            continue
        for p in positions:
            if docs[p].source in (SOURCE_TOOL, SOURCE_INPUT):
                labels |= docs[p].labels
    return frozenset(labels)
