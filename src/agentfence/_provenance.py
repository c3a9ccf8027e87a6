"""Where argument values appeared before a call: an incremental index of a thread's messages.

Each message of a thread is indexed once into normalised keys (RFC 5322-ish email
addresses, hosts and domains, account numbers and IBANs without spaces or dashes, numbers as
decimals, long tokens, words); a value is looked up by the keys of its shape, so the cost of a
lookup does not grow with the number or size of earlier messages. What the keys cannot see
(paraphrase, encodings, a value split across messages) is listed in ``docs/policy-guide.md``,
"What provenance cannot see".
"""

from __future__ import annotations

import hashlib
import re
import threading
from array import array
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

from agentfence._keys import (
    MIN_CARRIED_DIGITS,
    ValueQuery,
    exact_keys,
    identifier_keys,
    link_keys,
    text_keys,
    value_query,
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
)

_T = TypeVar("_T")

_ROLE_WINDOW = 1  # words allowed between a short value and a word of its role

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
            identifier_keys(unquote(text), min_digits=MIN_CARRIED_DIGITS),
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
