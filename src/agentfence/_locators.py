"""URLs and paths as provenance compares them: normalised whole, or marked ambiguous.

A URL is compared whole (scheme, host, port, path, query and fragment), after the
normalisation of RFC 3986 section 6.2.2: scheme and host lower-cased, the default port
dropped, dot segments removed (section 5.2.4), percent-encoding of unreserved characters
decoded and the rest upper-cased. ``http`` and ``https`` compare alike, as does a leading
``www.``, and a scheme-less ``www.site.test/path`` reads as a web URL.

A URL on which common parsers may disagree about where it goes is **ambiguous** and never
gets a normalised form: a backslash (WHATWG parsers read it as ``/``, RFC 3986 parsers as
data, so ``https://evil.example\\@docs.example.com/x`` goes to ``evil.example`` in a browser
or ``requests`` and to ``docs.example.com`` by ``urllib``), userinfo (``user@host``), control
characters or spaces, a percent-encoded or non-ASCII host (IDN forms that render alike),
numeric host forms other than dotted-decimal IPv4 (``0x7f.1``, ``2130706433``), a port that
is not a number up to 65535, and a scheme other than ``http``, ``https``, ``ws``, ``wss`` or
``ftp``. The host is read by :func:`agentfence._values.url_host`, the reading
``context.values`` uses too, so the two never disagree about where a URL goes.

A path is a POSIX path normalised with ``posixpath.normpath`` (``//``, ``.`` and ``..``
collapsed), so ``/home/alice/tmp/cache/../../..`` is ``/home``: a parent of a path the user
named is another path.
"""

from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from agentfence._values import url_host

_SCHEMELESS = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?::\d+)?/\S*$"
)
# POSIX paths in prose: /a/b, ~/a, ./a, ../a (not the path of a URL, not a fraction 1/2).
PATH_IN_TEXT = re.compile(r"(?<![\w:/.~\\-])(?:~|\.\.?)?/+(?:[\w.\-~@+%]+/*)*")
_DOT_SEGMENT_END = re.compile(r"(?:^|/)\.{1,2}$")
_PATH_SHAPE = re.compile(r"^(?:~|\.\.?)?/[^\s\x00]*$")
_UNRESERVED = re.compile(r"%([0-9A-Fa-f]{2})")
_TRAILING = ".,;:!?"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}
_WEB = {"http", "https"}


@dataclass(frozen=True)
class Url:
    """A URL as provenance compares it: its normalised form and host, or ambiguous."""

    key: str | None
    """The normalised URL (``None`` when ambiguous)."""
    host: str | None
    """The lower-case host without a leading ``www.`` (``None`` when ambiguous)."""
    raw: str

    @property
    def ambiguous(self) -> bool:
        """Whether parsers may disagree about where this URL goes."""
        return self.key is None


def looks_like_url(text: str) -> bool:
    """Whether a value is a URL: it has a scheme, or is a host followed by a path."""
    return "://" in text or bool(_SCHEMELESS.match(text))


def looks_like_path(text: str) -> bool:
    """Whether a value is a POSIX path (``/a/b``, ``~/a``, ``./a``, ``../a``)."""
    return bool(_PATH_SHAPE.match(text)) and "://" not in text


def normal_path(text: str, *, prose: bool = False) -> str:
    """A path with ``//``, ``.`` and ``..`` collapsed and no trailing slash (``prose``: a
    path found in text, whose trailing punctuation ends the sentence, not the path)."""
    text = text.strip()
    if prose and not _DOT_SEGMENT_END.search(text):
        text = text.rstrip(".,;:!?") or text
    home = text.startswith("~/")
    body = text[1:] if home else text
    normal = posixpath.normpath(body)
    if normal.startswith("//"):  # POSIX keeps a leading "//"; it names the same root here
        normal = "/" + normal.lstrip("/")
    return ("~" + normal) if home else normal


@functools.lru_cache(maxsize=8192)
def parse_url(text: str) -> Url:
    """Normalise a URL for comparison, or mark it ambiguous (see the module docstring)."""
    raw = text.strip().rstrip(_TRAILING)
    ambiguous = Url(None, None, raw)
    # Which host a URL goes to is decided once, by the same reading typed values use
    # (agentfence._values.url_host): a URL it cannot name one host for is ambiguous. A
    # non-ASCII URL is too, however IDNA would spell it: it may render as another.
    host = url_host(raw) if raw.isascii() else None
    if host is None:
        return ambiguous
    try:
        parts = urlsplit(raw if "://" in raw else "http://" + raw)
        port = parts.port
    except ValueError:
        return ambiguous
    scheme = parts.scheme.lower()
    if port is not None and port == _DEFAULT_PORTS.get(scheme):
        port = None
    if host.startswith("www."):
        host = host[4:]
    path = _remove_dot_segments(_percent(parts.path)) or "/"
    shown_scheme = "web" if scheme in _WEB else scheme
    key = f"{shown_scheme}://{host}{f':{port}' if port is not None else ''}{path}"
    if parts.query:
        key += "?" + _percent(parts.query)
    if parts.fragment:
        key += "#" + _percent(parts.fragment)
    return Url(key, host, raw)


def _percent(text: str) -> str:
    """Decode percent-encoded unreserved characters and upper-case the other escapes."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        if char.isascii() and (char.isalnum() or char in "-._~"):
            return char
        return match.group(0).upper()

    return _UNRESERVED.sub(one, text) if "%" in text else text


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: resolve ``.`` and ``..`` segments of a URL path."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
            continue
        if segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(segment)
    result = "/".join(out)
    return result if result.startswith("/") or not path.startswith("/") else "/" + result
