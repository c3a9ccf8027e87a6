"""Typed views of string arguments for policies: ``context.values.<arg>``.

A policy that checks an argument with ``like`` is beaten by the value's shape:
``context.args.to like "*@acme.test"`` passes ``attacker@evil.com,bob@acme.test`` and
``attacker@evil.com\\nbob@acme.test``, and ``body like "*password*"`` misses ``PASSWORD``, a
zero-width space inside the word and a Cyrillic a (U+0430). This module reads each string argument
once and reports what it is:

- ``kind``: ``email``, ``url``, ``domain``, ``path`` or ``text``;
- ``email``, ``email_domain``, ``host``, ``domain``: filled only when the *whole* value is
  exactly one well-formed address, URL or domain name, else the empty string, so a policy
  comparing them fails closed on lists, display names, line breaks and trailing dots;
- ``normalized`` and ``compact``: the text folded for keyword checks (Unicode compatibility
  forms, letter case, accents, zero-width and other invisible characters, Cyrillic and Greek
  letters that look Latin).

A set of strings gets the same facts per item (``email_domains`` and so on, with ``""`` for an
item that is not one well-formed value, so ``containsAll`` against allowed values fails closed)
and ``all_emails`` / ``all_urls``. docs/policy-guide.md ("Typed values") documents each rule,
the attack it stops and its limits.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

VALUE_TYPE: Final = "AgentfenceValue"
VALUES_TYPE: Final = "AgentfenceValues"
KINDS: Final = ("email", "url", "domain", "path", "text")

# Schemes whose URLs name a host a tool connects to (RFC 3986 section 3.2, "authority").
_HOST_SCHEMES: Final = frozenset({"http", "https", "ws", "wss", "ftp"})

# RFC 5322 section 3.2.3 "dot-atom" with the atext characters, less "%" and "!": old mail
# routing reads "user%evil.example@relay" and "evil.example!user@relay" as another address,
# so a local part holding them is not taken as one address at the relay's domain.
_LOCAL: Final = re.compile(r"[A-Za-z0-9#$&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9#$&'*+\-/=?^_`{|}~]+)*")
# RFC 1123 section 2.1 host name labels (letters, digits, hyphens; no hyphen at either end).
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A top-level label is letters, or an IDNA A-label (RFC 5890): never all digits, so dotted
# numbers ("10.0.0.1", "1.5") are not domains.
_TOP_LABEL: Final = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
_IPV4: Final = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_PORT: Final = re.compile(r"\d{1,5}")
_URL: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([/?#].*)?", re.DOTALL)
# A scheme-less URL as people write them: a host name, an optional port, then a path.
_BARE_URL: Final = re.compile(r"([^/?#:@]+)(?::(\d{1,5}))?(/.*)", re.DOTALL)
_PATH: Final = re.compile(r"(?:/|~/|~\Z|\.{1,2}/|[A-Za-z]:[\\/])")

# Letters of other scripts that look like Latin ones, folded to the Latin letter before case
# folding (so Greek capital eta reads "H" while small eta reads "n"). A small table of
# the lookalikes used in practice, taken from the Cyrillic and Greek entries of Unicode's
# confusables data (UTS #39 section 4); it is not the full skeleton algorithm, which also
# folds digits and letter pairs ("rn" -> "m") and would surprise policy authors.
_HOMOGLYPHS: Final = {
    "\u0410": "A",  # CYRILLIC CAPITAL LETTER A
    "\u0430": "a",  # CYRILLIC SMALL LETTER A
    "\u0412": "B",  # CYRILLIC CAPITAL LETTER VE
    "\u0432": "b",  # CYRILLIC SMALL LETTER VE
    "\u0421": "C",  # CYRILLIC CAPITAL LETTER ES
    "\u0441": "c",  # CYRILLIC SMALL LETTER ES
    "\u0500": "D",  # CYRILLIC CAPITAL LETTER KOMI DE
    "\u0501": "d",  # CYRILLIC SMALL LETTER KOMI DE
    "\u0415": "E",  # CYRILLIC CAPITAL LETTER IE
    "\u0435": "e",  # CYRILLIC SMALL LETTER IE
    "\u04ba": "H",  # CYRILLIC CAPITAL LETTER SHHA
    "\u04bb": "h",  # CYRILLIC SMALL LETTER SHHA
    "\u041d": "H",  # CYRILLIC CAPITAL LETTER EN
    "\u043d": "h",  # CYRILLIC SMALL LETTER EN
    "\u0406": "I",  # CYRILLIC CAPITAL LETTER BYELORUSSIAN-UKRAINIAN I
    "\u0456": "i",  # CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I
    "\u04c0": "I",  # CYRILLIC LETTER PALOCHKA
    "\u04cf": "l",  # CYRILLIC SMALL LETTER PALOCHKA
    "\u0408": "J",  # CYRILLIC CAPITAL LETTER JE
    "\u0458": "j",  # CYRILLIC SMALL LETTER JE
    "\u041a": "K",  # CYRILLIC CAPITAL LETTER KA
    "\u043a": "k",  # CYRILLIC SMALL LETTER KA
    "\u041c": "M",  # CYRILLIC CAPITAL LETTER EM
    "\u043c": "m",  # CYRILLIC SMALL LETTER EM
    "\u041e": "O",  # CYRILLIC CAPITAL LETTER O
    "\u043e": "o",  # CYRILLIC SMALL LETTER O
    "\u0420": "P",  # CYRILLIC CAPITAL LETTER ER
    "\u0440": "p",  # CYRILLIC SMALL LETTER ER
    "\u051a": "Q",  # CYRILLIC CAPITAL LETTER QA
    "\u051b": "q",  # CYRILLIC SMALL LETTER QA
    "\u0405": "S",  # CYRILLIC CAPITAL LETTER DZE
    "\u0455": "s",  # CYRILLIC SMALL LETTER DZE
    "\u0422": "T",  # CYRILLIC CAPITAL LETTER TE
    "\u0442": "t",  # CYRILLIC SMALL LETTER TE
    "\u0423": "Y",  # CYRILLIC CAPITAL LETTER U
    "\u0443": "y",  # CYRILLIC SMALL LETTER U
    "\u051c": "W",  # CYRILLIC CAPITAL LETTER WE
    "\u051d": "w",  # CYRILLIC SMALL LETTER WE
    "\u0425": "X",  # CYRILLIC CAPITAL LETTER HA
    "\u0445": "x",  # CYRILLIC SMALL LETTER HA
    "\u04ae": "Y",  # CYRILLIC CAPITAL LETTER STRAIGHT U
    "\u04af": "y",  # CYRILLIC SMALL LETTER STRAIGHT U
    "\u0261": "g",  # LATIN SMALL LETTER SCRIPT G
    "\u0391": "A",  # GREEK CAPITAL LETTER ALPHA
    "\u03b1": "a",  # GREEK SMALL LETTER ALPHA
    "\u0392": "B",  # GREEK CAPITAL LETTER BETA
    "\u0395": "E",  # GREEK CAPITAL LETTER EPSILON
    "\u03b5": "e",  # GREEK SMALL LETTER EPSILON
    "\u0396": "Z",  # GREEK CAPITAL LETTER ZETA
    "\u0397": "H",  # GREEK CAPITAL LETTER ETA
    "\u03b7": "n",  # GREEK SMALL LETTER ETA
    "\u0399": "I",  # GREEK CAPITAL LETTER IOTA
    "\u03b9": "i",  # GREEK SMALL LETTER IOTA
    "\u039a": "K",  # GREEK CAPITAL LETTER KAPPA
    "\u03ba": "k",  # GREEK SMALL LETTER KAPPA
    "\u039c": "M",  # GREEK CAPITAL LETTER MU
    "\u039d": "N",  # GREEK CAPITAL LETTER NU
    "\u03bd": "v",  # GREEK SMALL LETTER NU
    "\u039f": "O",  # GREEK CAPITAL LETTER OMICRON
    "\u03bf": "o",  # GREEK SMALL LETTER OMICRON
    "\u03a1": "P",  # GREEK CAPITAL LETTER RHO
    "\u03c1": "p",  # GREEK SMALL LETTER RHO
    "\u03a4": "T",  # GREEK CAPITAL LETTER TAU
    "\u03c4": "t",  # GREEK SMALL LETTER TAU
    "\u03a5": "Y",  # GREEK CAPITAL LETTER UPSILON
    "\u03c5": "u",  # GREEK SMALL LETTER UPSILON
    "\u03a7": "X",  # GREEK CAPITAL LETTER CHI
    "\u03c7": "x",  # GREEK SMALL LETTER CHI
    "\u03f9": "C",  # GREEK CAPITAL LUNATE SIGMA SYMBOL
    "\u03f2": "c",  # GREEK LUNATE SIGMA SYMBOL
    "\u03f3": "j",  # GREEK LETTER YOT
    "\u0131": "i",  # LATIN SMALL LETTER DOTLESS I
    "\u0237": "j",  # LATIN SMALL LETTER DOTLESS J
    "\u0251": "a",  # LATIN SMALL LETTER ALPHA
    "\u0269": "i",  # LATIN SMALL LETTER IOTA
    "\u028f": "y",  # LATIN LETTER SMALL CAPITAL Y
}
_FOLD: Final[dict[int, str]] = {ord(k): v for k, v in _HOMOGLYPHS.items()}
# Default-ignorable code points (Unicode section 5.21) that are letters, not format or
# combining characters, and so survive the category filter below: the Hangul fillers.
_INVISIBLE_LETTERS: Final = frozenset("\u115f\u1160\u3164\uffa0")
# Whitespace and C0/C1 control characters: one is enough to make a value text.
_CONTROL: Final = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_NOT_ALNUM: Final = re.compile(r"[\W_]+")
_ASCII_NOT_ALNUM: Final = bytes(c for c in range(128) if not chr(c).isalnum())


VALUE_ATTRIBUTES: Final = (
    "kind",
    "email",
    "email_domain",
    "host",
    "domain",
    "normalized",
    "compact",
)
SET_ATTRIBUTES: Final = (
    "kinds",
    "emails",
    "email_domains",
    "hosts",
    "domains",
    "normalized",
    "compact",
    "all_emails",
    "all_urls",
)
_SET_TYPES: Final = {"all_emails": "Bool", "all_urls": "Bool"}
# A policy can only reach an argument or attribute through its name written out (Cedar has no
# computed attribute access), as an identifier or a quoted string.
_NAME: Final = re.compile(r'[A-Za-z_][A-Za-z0-9_]*|"((?:[^"\\]|\\.)*)"')
_ANNOTATION: Final = re.compile(r'@[A-Za-z_][A-Za-z0-9_]*(?:\s*\(\s*"(?:[^"\\]|\\.)*"\s*\))?')


@dataclass(frozen=True)
class Selection:
    """The arguments and attributes of ``context.values`` a policy set can name.

    Each attribute costs time on every call (Cedar reads and validates the request), so only
    those whose names appear in the policies are declared and computed: a superset of what
    they use, because every use writes the name out. ``names=None`` selects everything.
    """

    names: frozenset[str] | None = None

    def wants(self, name: str) -> bool:
        """Whether the argument or attribute ``name`` is declared."""
        return self.names is None or name in self.names

    @classmethod
    def of(cls, codes: Iterable[str]) -> Selection:
        """The names written in policy code (comments already removed)."""
        names: set[str] = set()
        for code in codes:
            # Annotations (@reason("…")) are not expressions: their names select nothing.
            for match in _NAME.finditer(_ANNOTATION.sub(" ", code)):
                names.add(match.group(1) if match.group(1) is not None else match.group(0))
        return cls(frozenset(names))


ALL: Final = Selection()


@dataclass(frozen=True)
class ValueFacts:
    """What one string argument is, as ``context.values.<arg>`` reports it."""

    kind: str
    email: str = ""
    email_domain: str = ""
    host: str = ""
    domain: str = ""
    normalized: str = ""
    compact: str = ""

    def as_cedar(self) -> dict[str, str]:
        """The Cedar record of type ``AgentfenceValue``."""
        return {
            "kind": self.kind,
            "email": self.email,
            "email_domain": self.email_domain,
            "host": self.host,
            "domain": self.domain,
            "normalized": self.normalized,
            "compact": self.compact,
        }


@dataclass(frozen=True)
class ValueField:
    """A top-level argument that gets ``context.values``: its name, whether it is required,
    and whether it is a set of strings."""

    name: str
    required: bool
    is_set: bool


def set_attribute_type(name: str) -> str:
    """The Cedar type of an attribute of ``AgentfenceValues`` (``Set<String>`` or ``Bool``)."""
    return _SET_TYPES.get(name, "Set<String>")


def schema_types(selection: Selection = ALL) -> list[str]:
    """The common types (Cedar schema, "Common type declarations") of ``context.values``."""
    one = [f'  "{a}": String' for a in VALUE_ATTRIBUTES if selection.wants(a)]
    many = [f'  "{a}": {set_attribute_type(a)}' for a in SET_ATTRIBUTES if selection.wants(a)]
    return [
        f"type {VALUE_TYPE} = {{" + ("\n" + ",\n".join(one) + "\n" if one else "") + "};",
        f"type {VALUES_TYPE} = {{" + ("\n" + ",\n".join(many) + "\n" if many else "") + "};",
    ]


def context_type(fields: Sequence[ValueField]) -> str:
    """The record type of ``context.values`` for a tool with these fields."""
    if not fields:
        return "{}"
    inner = ",\n".join(
        f'      "{f.name}"{"" if f.required else "?"}: {VALUES_TYPE if f.is_set else VALUE_TYPE}'
        for f in fields
    )
    return "{\n" + inner + "\n    }"


def context_of(
    fields: Sequence[ValueField], args: Mapping[str, Any], selection: Selection = ALL
) -> dict[str, Any]:
    """``context.values`` for a call, from its Cedar arguments (``context.args``).

    Computed from the same converted values the policies see as ``context.args``, so the
    two never disagree; an optional argument that is absent there is absent here too.
    Only the attributes of ``selection`` are included, as :func:`schema_types` declares.
    """
    fold = selection.wants("normalized") or selection.wants("compact")
    out: dict[str, Any] = {}
    for f in fields:
        value = args.get(f.name)
        record: dict[str, Any]
        if f.is_set and isinstance(value, list):
            record = set_facts([v for v in value if isinstance(v, str)], fold=fold)
        elif not f.is_set and isinstance(value, str):
            record = facts_of(value, fold=fold).as_cedar()
        else:
            continue
        out[f.name] = {k: v for k, v in record.items() if selection.wants(k)}
    return out


def set_facts(items: Iterable[str], *, fold: bool = True) -> dict[str, Any]:
    """The Cedar record of type ``AgentfenceValues`` for a set of strings."""
    facts = [facts_of(item, fold=fold) for item in items]
    return {
        "kinds": sorted({f.kind for f in facts}),
        "emails": sorted({f.email for f in facts}),
        "email_domains": sorted({f.email_domain for f in facts}),
        "hosts": sorted({f.host for f in facts}),
        "domains": sorted({f.domain for f in facts}),
        "normalized": sorted({f.normalized for f in facts}),
        "compact": sorted({f.compact for f in facts}),
        # Vacuously true for an empty set, as Cedar's containsAll is.
        "all_emails": all(f.kind == "email" for f in facts),
        "all_urls": all(f.kind == "url" for f in facts),
    }


def facts_of(value: str, *, fold: bool = True) -> ValueFacts:
    """Read one string: its kind, the address, host or domain it is, and its folded text
    (left empty with ``fold=False``, when no policy reads it)."""
    normalized = normalize_text(value) if fold else ""
    compact = compact_text(normalized)
    text = ValueFacts("text", normalized=normalized, compact=compact)
    # Whitespace, control, format and other invisible characters never belong to an
    # address, URL or domain: a value holding one is text (the newline trick, "bob@acme.test
    # \nattacker@evil.example", and zero-width characters inside a name).
    if not value or _unsafe(value):
        return text
    address = email_address(value)
    if address is not None:
        domain = address.rsplit("@", 1)[1]
        return ValueFacts(
            "email",
            email=address,
            email_domain=domain,
            domain=domain,
            normalized=normalized,
            compact=compact,
        )
    host = url_host(value)
    if host is not None:
        named = "" if _is_ip(host) else host
        return ValueFacts("url", host=host, domain=named, normalized=normalized, compact=compact)
    name = domain_name(value)
    if name is not None:
        return ValueFacts("domain", domain=name, normalized=normalized, compact=compact)
    if _PATH.match(value):
        return ValueFacts("path", normalized=normalized, compact=compact)
    return text


def email_address(value: str) -> str | None:
    """The address when the whole value is exactly one RFC 5322 addr-spec, else ``None``.

    Lower case, the domain in its ASCII (IDNA) form. Refused: display names and angle
    brackets, lists, quoted local parts, domain literals, comments, whitespace, trailing dots,
    and ``%`` or ``!`` in the local part (source routing). Local parts are compared ignoring
    case, as mail systems in practice treat them.
    """
    if value.count("@") != 1 or _unsafe(value):
        return None
    local, _, domain_part = value.partition("@")
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        return None
    domain = domain_name(domain_part)
    if domain is None:
        return None
    return f"{local.lower()}@{domain}"


def url_host(value: str) -> str | None:
    """The host when the whole value is one URL whose host every parser reads alike.

    ``scheme://host[:port][/path…]`` with an ``http``, ``https``, ``ws``, ``wss`` or ``ftp``
    scheme, or a scheme-less ``host/path``. Refused (``None``): userinfo (``user@host``,
    which parsers split differently), backslashes, percent-encoded hosts, empty or malformed
    ports, trailing dots, hosts that are neither a domain name nor a dotted-quad IPv4 or
    bracketed IPv6 address (``0x7f.1``, ``2130706433``). Lower case, IDNA form.
    """
    if "\\" in value or _unsafe(value):
        return None
    match = _URL.fullmatch(value)
    if match is not None:
        if match.group(1).lower() not in _HOST_SCHEMES:
            return None
        return _authority_host(match.group(2))
    bare = _BARE_URL.fullmatch(value)
    if bare is not None:
        return domain_name(bare.group(1)) if _port_ok(bare.group(2)) else None
    return None


def domain_name(value: str) -> str | None:
    """The domain when the whole value is one host name (RFC 1123), else ``None``.

    At least two labels, a top-level label of letters (or an IDNA A-label), no trailing dot.
    Returned in lower case and ASCII: a name with other characters is converted with IDNA
    (``bücher.example`` is ``xn--bcher-kva.example``, and ``acme.test`` spelled with a
    Cyrillic a (U+0430) gives ``xn--cme-5cd.test``, not ``acme.test``); a name IDNA would
    first have to map (fullwidth letters, an ideographic full stop) is refused.
    """
    if not value or value.endswith(".") or len(value) > 253:
        return None
    name = value.lower()
    if not name.isascii():
        # Only a name already in its IDNA Unicode form (RFC 5891) is converted; one that
        # IDNA's mapping would change (fullwidth letters, an ideographic full stop) is not
        # one well-formed name but a spelling of another, and is refused.
        try:
            ascii_name = name.encode("idna").decode("ascii")
            back = ascii_name.encode("ascii").decode("idna")
        except UnicodeError:
            return None
        if back != name:
            return None
        name = ascii_name
    labels = name.split(".")
    if len(labels) < 2 or len(name) > 253:
        return None
    if not all(_LABEL.fullmatch(label) for label in labels[:-1]):
        return None
    return name if _TOP_LABEL.fullmatch(labels[-1]) else None


def normalize_text(text: str) -> str:
    """Text folded for keyword checks (``context.values.<arg>.normalized``).

    1. NFKC (Unicode Standard Annex #15): compatibility forms become plain ones (fullwidth
       and mathematical bold letters become ASCII letters);
    2. canonical decomposition, then combining marks (category Mn, so accents and
       overlays), format characters (Cf: zero-width space and joiners, soft hyphen, bidi
       controls) and the Hangul fillers are removed;
    3. the Cyrillic and Greek lookalike letters of ``_HOMOGLYPHS`` become Latin ones;
    4. case folding (``str.casefold``), then NFKC again;
    5. every run of whitespace (``str.split``) becomes one space, and the ends are trimmed.
    """
    if text.isascii():
        # Every step but case folding and spaces leaves ASCII as it is: the common case.
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text))
    # One table per text: its distinct characters to drop (steps 2), and the lookalikes.
    table: dict[int, str | None] = dict(_FOLD)
    for ch in set(decomposed):
        if unicodedata.category(ch) in ("Mn", "Cf") or ch in _INVISIBLE_LETTERS:
            table[ord(ch)] = None
    folded = unicodedata.normalize("NFKC", decomposed.translate(table).casefold())
    return " ".join(folded.split())


def compact_text(normalized: str) -> str:
    """Normalised text with everything but letters and digits removed
    (``context.values.<arg>.compact``): ``p.a.s.s w-o-r-d`` is ``password``."""
    if normalized.isascii():
        return normalized.encode("ascii").translate(None, _ASCII_NOT_ALNUM).decode("ascii")
    return _NOT_ALNUM.sub("", normalized)


def _unsafe(value: str) -> bool:
    """Whether a value holds whitespace, a control or format character, or a filler."""
    if _CONTROL.search(value):
        return True
    return not value.isascii() and any(
        unicodedata.category(ch) == "Cf" or ch in _INVISIBLE_LETTERS for ch in set(value)
    )


def _authority_host(authority: str) -> str | None:
    if not authority or "@" in authority or "%" in authority:
        return None
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None
        literal, rest = authority[1:end], authority[end + 1 :]
        if rest and not (rest.startswith(":") and _port_ok(rest[1:])):
            return None
        try:
            return f"[{ipaddress.IPv6Address(literal).compressed}]"
        except ValueError:
            return None
    host, colon, port = authority.partition(":")
    if colon and not _port_ok(port):
        return None
    if _IPV4.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:  # an octet over 255, or a leading zero (read as octal by some)
            return None
    return domain_name(host)


def _port_ok(port: str | None) -> bool:
    return port is None or (_PORT.fullmatch(port) is not None and 0 < int(port) <= 65535)


def _is_ip(host: str) -> bool:
    return host.startswith("[") or _IPV4.fullmatch(host) is not None
