"""Redacting tool results before the model sees them: built-in detectors and the plumbing.

The built-in kinds are patterns with a check where one exists (IBAN mod-97, ISO 13616; card
numbers by the Luhn checksum, ISO/IEC 7812), so that a random run of digits is not masked as
a card. Detectors that need language models (names, places) come from a
:class:`~agentfence.labels.Redactor` such as :class:`PresidioRedactor`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentfence.errors import ConfigurationError, PolicyLoadError
from agentfence.labels import BUILTIN_REDACTIONS, Finding, Redactor
from agentfence.tools import ToolEntry, ToolSpec

FIELD = "field"
"""The kind recorded for values dropped by ``redact_fields``."""


def _replacement(kind: str, tail: str | None = None) -> str:
    return f"[REDACTED:{kind} …{tail}]" if tail else f"[REDACTED:{kind}]"


# --- built-in detectors ------------------------------------------------------------------------

_EMAIL = re.compile(
    r"[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_IBAN = re.compile(r"\b[A-Za-z]{2}\d{2}[A-Za-z0-9]*(?:[ \-][A-Za-z0-9]{1,4}\b)*")
_DIGITS = re.compile(r"(?<![\w])\d+(?:[ \-]\d+)*(?![\w])")
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]?\d{2,4}){2,4}"
    r"|\(\d{3}\)[ .\-]?\d{3}[ .\-]\d{4}|\d{3}[.\-]\d{3}[.\-]\d{4})(?![\w])"
)
_SECRETS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}\b"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}\b"),
    re.compile(r"\b(?:sk|rk|pk)[-_](?:live[-_]|test[-_]|proj[-_])?[A-Za-z0-9_\-]{16,}\b"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\b"),
    # RFC 6750 section 2.1: "Bearer" then a b64token. A digit and twelve characters keep
    # prose ("bearer instruments") out.
    re.compile(r"(?i)\bbearer\s+(?=[A-Za-z0-9\-._~+/]*\d)[A-Za-z0-9\-._~+/]{12,}=*"),
]
# "password: hunter2", "api_key=...", '"token": "..."': the value after the name is masked.
_ASSIGNED = re.compile(
    r"(?i)\b(?:password|passwd|pwd|passphrase|secret|client[_-]?secret|token|access[_-]?token|"
    r"api[_-]?key|access[_-]?key|private[_-]?key)\b\"?\s*[:=]\s*\"?([^\s\"',;}]{4,})"
)


def _iban_valid(compact: str) -> bool:
    # ISO 13616: move the first four characters to the end, letters to numbers (A=10 …
    # Z=35), and the result mod 97 is 1.
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    moved = compact[4:] + compact[:4]
    digits = "".join(str(int(c, 36)) for c in moved)
    return int(digits) % 97 == 1


def _luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _find_iban(text: str) -> Iterator[Finding]:
    for match in _IBAN.finditer(text):
        raw = match.group(0)
        # The longest prefix ending at a group boundary that passes the checksum.
        ends = [m.start() for m in re.finditer(r"[ \-]", raw)] + [len(raw)]
        for end in reversed(ends):
            compact = re.sub(r"[ \-]", "", raw[:end]).upper()
            if _iban_valid(compact):
                start = match.start()
                yield Finding("iban", start, start + end, _replacement("iban", compact[-4:]))
                break


def _find_card(text: str) -> Iterator[Finding]:
    for match in _DIGITS.finditer(text):
        raw = match.group(0)
        digits = re.sub(r"[ \-]", "", raw)
        if 13 <= len(digits) <= 19 and _luhn_valid(digits):
            yield Finding("card", match.start(), match.end(), _replacement("card", digits[-4:]))


def _find_regex(kind: str, pattern: re.Pattern[str]) -> Callable[[str], Iterator[Finding]]:
    def find(text: str) -> Iterator[Finding]:
        for match in pattern.finditer(text):
            yield Finding(kind, match.start(), match.end(), _replacement(kind))

    return find


def _find_secret(text: str) -> Iterator[Finding]:
    for pattern in _SECRETS:
        for match in pattern.finditer(text):
            yield Finding("secret", match.start(), match.end(), _replacement("secret"))
    for match in _ASSIGNED.finditer(text):
        yield Finding("secret", match.start(1), match.end(1), _replacement("secret"))


_BUILTIN: Mapping[str, Callable[[str], Iterable[Finding]]] = {
    "email": _find_regex("email", _EMAIL),
    "iban": _find_iban,
    "card": _find_card,
    "phone": _find_regex("phone", _PHONE),
    "ssn": _find_regex("ssn", _SSN),
    "secret": _find_secret,
}
if set(_BUILTIN) != BUILTIN_REDACTIONS:  # pragma: no cover - a guard for whoever adds a kind
    raise RuntimeError("labels.BUILTIN_REDACTIONS and _redaction._BUILTIN disagree")


# --- applying a redaction ----------------------------------------------------------------------


@dataclass(frozen=True)
class RedactionPlan:
    """What to redact in one result: detector kinds and field names, and the detectors."""

    kinds: frozenset[str]
    fields: frozenset[str]
    redactors: Sequence[Redactor] = ()

    def __bool__(self) -> bool:
        return bool(self.kinds or self.fields)


def find_all(text: str, kinds: frozenset[str], redactors: Sequence[Redactor]) -> list[Finding]:
    """Every finding of the requested kinds, overlaps resolved (earliest, then longest wins)."""
    findings: list[Finding] = []
    for kind in sorted(kinds & BUILTIN_REDACTIONS):
        findings.extend(_BUILTIN[kind](text))
    for redactor in redactors:
        wanted = kinds & redactor.kinds
        if wanted:
            findings.extend(f for f in redactor.find(text, frozenset(wanted)) if f.kind in wanted)
    findings.sort(key=lambda f: (f.start, -(f.end - f.start)))
    kept: list[Finding] = []
    end = -1
    for finding in findings:
        if finding.start >= end and finding.end > finding.start:
            kept.append(finding)
            end = finding.end
    return kept


def redact_text(
    text: str, kinds: frozenset[str], redactors: Sequence[Redactor], counts: Counter[str]
) -> str:
    """``text`` with every finding replaced; ``counts`` is increased per kind."""
    if not kinds:
        return text
    findings = find_all(text, kinds, redactors)
    if not findings:
        return text
    out: list[str] = []
    position = 0
    for finding in findings:
        out.append(text[position : finding.start])
        out.append(finding.replacement or _replacement(finding.kind))
        counts[finding.kind] += 1
        position = finding.end
    out.append(text[position:])
    return "".join(out)


def _drop_fields(value: Any, fields: frozenset[str], counts: Counter[str]) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in fields:
                out[key] = _replacement(FIELD)
                counts[FIELD] += 1
            else:
                out[key] = _drop_fields(item, fields, counts)
        return out
    if isinstance(value, list):
        return [_drop_fields(item, fields, counts) for item in value]
    return value


def redact_string(text: str, plan: RedactionPlan, counts: Counter[str]) -> str:
    """Redact one string: drop fields if it is a JSON object or array, then the detectors."""
    if plan.fields:
        stripped = text.lstrip()
        if stripped[:1] in ("{", "["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict | list):
                before = counts[FIELD]
                dropped = _drop_fields(parsed, plan.fields, counts)
                if counts[FIELD] != before:
                    text = json.dumps(dropped, ensure_ascii=False)
    return redact_text(text, plan.kinds, plan.redactors, counts)


SPAN_FIELDS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "password",
        "passwd",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "api_key",
        "apikey",
        "x-api-key",
        "private_key",
    }
)
"""Field names whose values never go on a span, at any depth (a bearer token in headers)."""


def redact_value(value: Any, plan: RedactionPlan, counts: Counter[str], depth: int = 0) -> Any:
    """A JSON-like value with every string in it redacted, at any depth, and the values of
    the plan's fields (by name, any letter case) masked whole. What spans are given."""
    if depth > 64:
        return _replacement(FIELD)  # nesting this deep is not shown at all
    if isinstance(value, str):
        return redact_string(value, plan, counts)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in plan.fields:
                out[key] = _replacement(FIELD)
                counts[FIELD] += 1
            else:
                out[str(key)] = redact_value(item, plan, counts, depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, plan, counts, depth + 1) for item in value]
    return value


def redact_content(content: Any, plan: RedactionPlan, counts: Counter[str]) -> Any:
    """A message content (a string or a list of blocks) with its text redacted."""
    if isinstance(content, str):
        return redact_string(content, plan, counts)
    if isinstance(content, list):
        out: list[Any] = []
        for block in content:
            if isinstance(block, str):
                out.append(redact_string(block, plan, counts))
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                out.append({**block, "text": redact_string(block["text"], plan, counts)})
            else:
                out.append(block)
        return out
    return content


def salted_digest(salt: bytes, content: bytes) -> str:
    """``sha256:`` and the hex SHA-256 of salt then content (as blob refs are made)."""
    return "sha256:" + hashlib.sha256(salt + content).hexdigest()


def new_salt() -> bytes:
    """A fresh 16-byte salt for the digest of an original (pre-redaction) result."""
    return os.urandom(16)


# --- an adapter for Microsoft Presidio ---------------------------------------------------------

PRESIDIO_KINDS: Mapping[str, str] = {
    "person": "PERSON",
    "location": "LOCATION",
    "nrp": "NRP",
    "date_time": "DATE_TIME",
    "ip_address": "IP_ADDRESS",
    "url": "URL",
    "us_passport": "US_PASSPORT",
    "us_driver_license": "US_DRIVER_LICENSE",
    "us_bank_number": "US_BANK_NUMBER",
    "crypto": "CRYPTO",
    "medical_license": "MEDICAL_LICENSE",
    "uk_nhs": "UK_NHS",
}
"""Presidio entity types offered as redaction kinds by :class:`PresidioRedactor` by default.

Kinds agentfence detects itself (email, phone, card, iban, ssn) are left to the built-ins,
which work offline and validate checksums."""


class PresidioRedactor:
    """A :class:`~agentfence.labels.Redactor` backed by a Presidio ``AnalyzerEngine``.

    Pass an engine you have configured (with the spaCy model your deployment installs);
    without one, a default ``AnalyzerEngine()`` is made, which loads ``en_core_web_lg``.
    spaCy models are not published on PyPI, so on a machine that reaches only PyPI the
    default engine cannot start; with a blank spaCy pipeline only Presidio's pattern
    recognizers run, and names and places (the reason to use Presidio) are not found.
    """

    def __init__(
        self,
        analyzer: Any | None = None,
        *,
        kinds: Mapping[str, str] | None = None,
        language: str = "en",
        score_threshold: float = 0.5,
    ) -> None:
        if analyzer is None:
            try:
                from presidio_analyzer import AnalyzerEngine  # type: ignore[import-not-found]  # optional
            except ImportError as exc:
                raise ConfigurationError(
                    "PresidioRedactor needs Microsoft Presidio: pip install presidio-analyzer, "
                    "and a spaCy model (see docs/policy-guide.md, 'Redaction')"
                ) from exc
            try:
                analyzer = AnalyzerEngine()
            except Exception as exc:
                raise ConfigurationError(
                    f"Presidio's default AnalyzerEngine could not start ({type(exc).__name__}: "
                    f"{exc}); install a spaCy model and pass AnalyzerEngine(nlp_engine=...)"
                ) from exc
        self._analyzer = analyzer
        self._entities = dict(kinds if kinds is not None else PRESIDIO_KINDS)
        self._language = language
        self._threshold = score_threshold

    @property
    def kinds(self) -> frozenset[str]:
        """The redaction kinds this redactor offers (lower-case Presidio entity types)."""
        return frozenset(self._entities)

    def find(self, text: str, kinds: frozenset[str]) -> list[Finding]:
        """Presidio's results for the requested kinds, at or above the score threshold."""
        wanted = {self._entities[k]: k for k in kinds if k in self._entities}
        if not wanted:
            return []
        results = self._analyzer.analyze(
            text=text, language=self._language, entities=sorted(wanted)
        )
        return [
            Finding(wanted[r.entity_type], int(r.start), int(r.end))
            for r in results
            if r.entity_type in wanted and float(r.score) >= self._threshold
        ]


def known_kinds(redactors: Sequence[Redactor]) -> frozenset[str]:
    """Every redaction kind a detector knows: the built-in ones and the redactors' own."""
    kinds = set(BUILTIN_REDACTIONS)
    for redactor in redactors:
        if not isinstance(redactor, Redactor):
            raise ConfigurationError(
                f"{redactor!r} is not a Redactor: it needs a 'kinds' property and a "
                "find(text, kinds) method (see agentfence.labels.Redactor)"
            )
        kinds |= set(redactor.kinds)
    return frozenset(kinds)


def check_redactions(catalog: Iterable[ToolEntry], known: frozenset[str]) -> None:
    """Every redaction kind the tools declare is one some detector knows."""
    problems = []
    for entry in catalog:
        for kind in entry.spec.redact:
            if kind not in known:
                problems.append(
                    f"tool {entry.name!r}: redaction kind {kind!r} is unknown; known kinds are "
                    f"{', '.join(sorted(known))} (pass a Redactor for others)"
                )
    if problems:
        raise PolicyLoadError(
            "the tools declare redactions no detector knows:\n"
            + "\n".join(f"  {p}" for p in problems),
            tuple(problems),
        )


def result_plan(
    spec: ToolSpec | None, marks: Iterable[Iterable[str]], redactors: Sequence[Redactor]
) -> RedactionPlan:
    """What to redact in a call's result: what its tool declares and what the determining
    policies' ``@redact`` annotations name (``marks``)."""
    kinds = set(spec.redact) if spec is not None else set()
    fields = set(spec.redact_fields) if spec is not None else set()
    for named in marks:
        kinds.update(named)
    return RedactionPlan(frozenset(kinds), frozenset(fields), tuple(redactors))


def span_values(
    plan: RedactionPlan, known: frozenset[str], args: Any, texts: Sequence[Any]
) -> tuple[dict[str, Any], str]:
    """A call's argument and result values as a span may show them.

    Spans are redacted more than results: every kind a detector knows, at any depth (a card
    number inside a list, a token inside headers), and the values of fields named like
    secrets, whatever the tool declared.
    """
    counts: Counter[str] = Counter()
    shown = RedactionPlan(plan.kinds | known, plan.fields | SPAN_FIELDS, plan.redactors)
    shown_args = redact_value(dict(args) if isinstance(args, Mapping) else {}, shown, counts)
    text = "\n".join(t if isinstance(t, str) else json.dumps(t, default=str) for t in texts)
    return shown_args, redact_string(text, shown, counts)
