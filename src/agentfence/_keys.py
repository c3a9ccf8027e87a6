"""The keys a value, or a text, is found under: the normal forms provenance compares.

A value of an argument and the text of a message are both reduced to keys of a few kinds
(listed below), so that an argument is found in earlier messages by key lookups, and a
trusted directory entry matches exactly what provenance would find. Below :mod:`labels` and
:mod:`_provenance`; it reads locators (URLs, paths) from :mod:`_locators`.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentfence._locators import (
    PATH_IN_TEXT,
    looks_like_path,
    looks_like_url,
    normal_path,
    parse_url,
)


def to_decimal(value: Any) -> decimal.Decimal | None:
    """A number (or a numeric string such as ``"2,500.00"``) as a Decimal; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return decimal.Decimal(value)
    if isinstance(value, float):
        return (
            decimal.Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
        )
    if isinstance(value, decimal.Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "")
        if not re.fullmatch(r"[-+]?\d+(?:\.\d+)?", text):
            return None
        return decimal.Decimal(text)
    return None


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
MIN_CARRIED_DIGITS = 9  # dates (8 digits) are not identifiers worth tracking into a body
_MAX_CHAIN_GROUPS = 10
_IBAN_MIN, _IBAN_MAX = 15, 34
_MAX_INDEXED_CHARS = 1_000_000  # a larger message is indexed by its first megabyte
_SHORT_CHARS = 4  # a string value of at most this many letters and digits is "short"


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
