"""Data labels, argument provenance, redaction and metering: the facts about data flow.

A per-call allow-list cannot tell "send the report to the address the user typed" from "send
the customer list to the address an email we just read told us to use". This module gives
policies the facts that tell them apart (``docs/policy-guide.md``, "Data labels" onward):

- **Labels** say what a tool returns (``pii``, ``secret``, ``financial``, ``untrusted`` or
  your own): declared with ``govern(tool, labels=[...])`` and per resource in
  ``entities.json``. The fence puts the labels of each result on its ``ToolMessage``
  (``response_metadata["agentfence"]["labels"]``), so they live in the LangGraph state,
  survive pauses, restarts and resumes with the checkpointer, and are keyed by thread.
- **Provenance** says where an argument value appeared before the call: in the user's own
  messages, the system prompt, the trusted :class:`Directory`, or earlier tool outputs (with
  their labels). Matching is in ``agentfence._provenance``.
- **Redaction** masks what the model must not see in a result (``redact=["iban"]``,
  ``redact_fields=["password"]`` or a policy's ``@redact``); a :class:`Redactor` adds
  detectors beyond the built-in patterns.
- **Meters** name the argument whose amounts add up (``meter=Meter("payments",
  arg="amount")``), so that ``context.usage`` can hold running totals.
"""

from __future__ import annotations

import decimal
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from agentfence._keys import exact_keys, to_decimal
from agentfence.errors import ConfigurationError, PolicyLoadError, ToolSpecError

__all__ = [
    "BUILTIN_REDACTIONS",
    "FINANCIAL",
    "PII",
    "SECRET",
    "SOURCES",
    "UNTRUSTED",
    "Directory",
    "Finding",
    "Meter",
    "Provenance",
    "Redactor",
    "labelled",
    "labels_of",
]

PII: Final = "pii"
"""Personal data: names, addresses, contact details of people."""
SECRET: Final = "secret"  # noqa: S105  # a label name, not a password
"""Credentials and keys, or anything whose disclosure is a breach in itself."""
FINANCIAL: Final = "financial"
"""Account numbers, balances, transactions."""
UNTRUSTED: Final = "untrusted"
"""Content an outsider can write: web pages, inbound email, files from others."""

SOURCE_USER: Final = "user"
SOURCE_SYSTEM: Final = "system"
SOURCE_DIRECTORY: Final = "directory"
SOURCE_TOOL: Final = "tool"
SOURCE_INPUT: Final = "input"
SOURCE_DEFAULT: Final = "default"
SOURCES: Final = frozenset(
    {SOURCE_USER, SOURCE_SYSTEM, SOURCE_DIRECTORY, SOURCE_TOOL, SOURCE_INPUT, SOURCE_DEFAULT}
)
"""Where a value can have appeared: ``user`` (a human message), ``system`` (a system
message), ``directory`` (the trusted directory), ``tool`` (an earlier tool result),
``input`` (a human message the application marked as carrying outside content, see
:func:`labelled`) and ``default`` (the model left the argument out and the tool's own default
filled it in)."""

METADATA_KEY: Final = "agentfence"
"""The key under a message's ``response_metadata`` where the fence keeps its facts."""

BUILTIN_REDACTIONS: Final = frozenset({"card", "email", "iban", "phone", "secret", "ssn"})
"""The redaction kinds agentfence detects with its own patterns (``docs/policy-guide.md``)."""

_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def check_label(label: object, where: str) -> str:
    """Return ``label`` if it is a valid label name, else raise ToolSpecError naming ``where``."""
    if not isinstance(label, str) or not _LABEL.match(label):
        raise ToolSpecError(
            f"{where}: label {label!r} is not a valid label name; use a letter followed by "
            "letters, digits, '_', '.', ':' or '-' (at most 64), e.g. 'pii' or 'secret'"
        )
    return label


@dataclass(frozen=True)
class Provenance:
    """Where one argument value appeared before the call, as policies see it.

    ``sources``: the kinds of place it appeared (:data:`SOURCES`). ``labels``: the labels of
    the tool results it appeared in. ``tools``: those tools' names. ``lists``: the names of
    the :class:`Directory` lists holding it. ``carries``: labels of tool results from which
    an identifier *inside* the value (an email address, an account or card number, a long
    token) was copied, unless the user or the directory supplied that identifier too.
    """

    sources: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    tools: frozenset[str] = frozenset()
    lists: frozenset[str] = frozenset()
    carries: frozenset[str] = frozenset()
    any_sources: frozenset[str] = frozenset()
    """For a list: the sources some item has (``sources``: those every item has)."""
    host_sources: frozenset[str] = frozenset()
    """For a URL: where its host appeared (``sources`` compare the whole URL)."""
    all_labels: frozenset[str] = frozenset()
    """The labels every tool result holding the value carries (``labels``: any of them), so
    ``all_labels.contains("untrusted")`` means it was seen only in untrusted results."""
    link_carries: frozenset[str] = frozenset()
    """Labels of tool results from which a URL inside the value was copied, unless a
    trusted place gave that same URL."""
    ambiguous: bool = False
    """A URL parsers may read differently (it never has a trusted source)."""

    def as_cedar(self) -> dict[str, Any]:
        """The Cedar record of these facts (sets sorted)."""
        return {
            "sources": sorted(self.sources),
            "labels": sorted(self.labels),
            "tools": sorted(self.tools),
            "lists": sorted(self.lists),
            "carries": sorted(self.carries),
            "any_sources": sorted(self.any_sources),
            "host_sources": sorted(self.host_sources),
            "all_labels": sorted(self.all_labels),
            "link_carries": sorted(self.link_carries),
            "ambiguous": self.ambiguous,
        }


EMPTY_PROVENANCE: Final = Provenance()


@dataclass(frozen=True)
class Meter:
    """Which argument's amounts add up into a running total.

    ``Meter("payments", arg="amount")`` on every payment tool makes ``context.usage`` hold the
    total of ``amount`` over the principal's successful and in-flight calls of any tool with
    the same meter name. ``arg`` may be a dotted path (``"invoice.amount"``).
    """

    name: str
    arg: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ToolSpecError(
                f"meter name {self.name!r} is not valid; use letters, digits, '_', '.' or '-', "
                "for example Meter('payments', arg='amount')"
            )
        if not self.arg or any(not part for part in self.arg.split(".")):
            raise ToolSpecError(
                f"meter argument path {self.arg!r} is empty or malformed; name a numeric "
                "argument, for example arg='amount'"
            )

    def amount(self, args: Mapping[str, Any]) -> decimal.Decimal:
        """The call's amount: the argument's value as a decimal (0 when absent or not a number).

        The value is refused by the tool's own schema check before it gets here when it is
        not a number, so 0 only stands for an argument a call may omit.
        """
        value: Any = args
        for part in self.arg.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return decimal.Decimal(0)
            value = value[part]
        number = to_decimal(value)
        return number if number is not None else decimal.Decimal(0)


class Directory:
    """Trusted values the developer supplies: contacts, known accounts, company domains.

    A value found here has the provenance source ``directory`` and the names of the lists
    holding it. Entries are matched exactly after normalisation (emails and domains ignore
    case, URLs compare by host, account numbers and IBANs ignore spaces and dashes, numbers
    compare as numbers); a value merely *inside* an entry does not match.

    Give it in code, ``Fence.from_directory(..., trusted_directory={"contacts": [...]})``, or as
    ``directory.json`` (an object of lists of strings) in the policy directory, where it is
    part of the policy set and its hash.
    """

    def __init__(self, lists: Mapping[str, Iterable[Any]] | None = None) -> None:
        self._lists: dict[str, tuple[str, ...]] = {}
        self._index: dict[str, set[str]] = {}
        for name, values in (lists or {}).items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise ConfigurationError(
                    f"directory list name {name!r} is not valid; use letters, digits, '_', '.' "
                    "or '-' (for example 'contacts')"
                )
            if isinstance(values, str | bytes) or not isinstance(values, Iterable):
                raise ConfigurationError(
                    f"directory list {name!r} must be a list of values, got {type(values).__name__}"
                )
            kept: list[str] = []
            for value in values:
                keys = exact_keys(value)
                if not keys:
                    raise ConfigurationError(
                        f"directory list {name!r}: {value!r} is not a value agentfence can match "
                        "(use non-empty strings or numbers)"
                    )
                kept.append(str(value))
                for key in keys:
                    self._index.setdefault(key, set()).add(name)
            self._lists[name] = tuple(kept)

    @classmethod
    def from_json(cls, text: str, source: str = "directory.json") -> Directory:
        """Parse ``directory.json``; raise PolicyLoadError naming the file (and line)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyLoadError(
                f"{source}:{exc.lineno}: not valid JSON: {exc.msg}",
                (f"{source}:{exc.lineno}: not valid JSON: {exc.msg}",),
            ) from exc
        if not isinstance(data, Mapping) or not all(isinstance(v, list) for v in data.values()):
            message = (
                f'{source}: must be a JSON object of lists, e.g. {{"contacts": '
                '["bob@acme.test"], "accounts": ["DE89 3704 0044 0532 0130 00"]}'
            )
            raise PolicyLoadError(message, (message,))
        try:
            return cls(data)
        except ConfigurationError as exc:
            raise PolicyLoadError(f"{source}: {exc}", (f"{source}: {exc}",)) from exc

    def merged(self, other: Directory | None) -> Directory:
        """A directory with the lists of both (lists of the same name are joined)."""
        if other is None or not other._lists:
            return self
        lists: dict[str, list[str]] = {k: list(v) for k, v in self._lists.items()}
        for name, values in other._lists.items():
            lists.setdefault(name, []).extend(values)
        return Directory(lists)

    def lists_holding(self, keys: Iterable[str]) -> frozenset[str]:
        """The names of the lists holding an entry with any of these normalised keys."""
        found: set[str] = set()
        for key in keys:
            found.update(self._index.get(key, ()))
        return frozenset(found)

    @property
    def lists(self) -> Mapping[str, tuple[str, ...]]:
        """The lists, by name, as given."""
        return dict(self._lists)

    def __len__(self) -> int:
        return sum(len(v) for v in self._lists.values())

    def __bool__(self) -> bool:
        return bool(self._lists)


@dataclass(frozen=True)
class Finding:
    """One span of text a :class:`Redactor` found: ``text[start:end]`` is of ``kind``.

    ``replacement`` is what the model sees instead; by default ``[REDACTED:<kind>]``.
    """

    kind: str
    start: int
    end: int
    replacement: str | None = None


@runtime_checkable
class Redactor(Protocol):
    """A detector of sensitive text beyond agentfence's built-in patterns.

    Pass instances in ``Fence.from_directory(..., redactors=[...])``. ``kinds`` are the
    redaction kinds it knows (they may then be named in ``redact=`` and ``@redact``); ``find``
    returns the spans of those of ``kinds`` it finds in ``text``. See
    ``agentfence._redaction.PresidioRedactor`` for an adapter to Microsoft Presidio.
    """

    @property
    def kinds(self) -> frozenset[str]:
        """The redaction kinds this redactor can find."""
        ...

    def find(self, text: str, kinds: frozenset[str]) -> Iterable[Finding]:
        """The spans of ``text`` that are of one of ``kinds``."""
        ...


@dataclass(frozen=True)
class MessageFacts:
    """What the fence put on a message: its labels (and, for tool results, the decision)."""

    labels: frozenset[str] = frozenset()
    decision_id: str | None = None
    fenced: bool = False
    refused: bool = False
    redactions: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


def labels_of(message: Any) -> frozenset[str]:
    """The data labels the fence (or :func:`labelled`) put on a message; empty if none."""
    return message_facts(message).labels


def message_facts(message: Any) -> MessageFacts:
    """Read the fence's facts from a message's ``response_metadata`` (and refusal artifact)."""
    artifact = getattr(message, "artifact", None)
    refused = False
    if isinstance(artifact, Mapping):
        mark = artifact.get(METADATA_KEY)
        refused = isinstance(mark, Mapping) and bool(mark.get("refused"))
    metadata = getattr(message, "response_metadata", None)
    raw = metadata.get(METADATA_KEY) if isinstance(metadata, Mapping) else None
    if not isinstance(raw, Mapping):
        return MessageFacts(refused=refused)
    labels = raw.get("labels", ())
    clean = (
        frozenset(x for x in labels if isinstance(x, str))
        if isinstance(labels, list | tuple)
        else frozenset()
    )
    decision = raw.get("decision_id")
    redactions = raw.get("redactions", ())
    return MessageFacts(
        labels=clean,
        decision_id=decision if isinstance(decision, str) else None,
        fenced=True,
        refused=refused,
        redactions=tuple(redactions) if isinstance(redactions, list | tuple) else (),
    )


def labelled(message: Any, labels: Iterable[str]) -> Any:
    """Mark a message as carrying data with these labels, and return it.

    Use it for human messages that hold outside content (an email the user pasted, an
    uploaded file): ``labelled(HumanMessage(text), ["untrusted"])``. A human message with the
    ``untrusted`` label counts as source ``input``, not ``user``, so a value that appears only
    there is not "from the user"; its labels join the labels the run has seen.
    """
    clean = sorted({check_label(label, "labelled()") for label in labels})
    metadata = dict(getattr(message, "response_metadata", None) or {})
    mark = dict(metadata.get(METADATA_KEY) or {})
    mark["labels"] = sorted(set(mark.get("labels", ())) | set(clean))
    metadata[METADATA_KEY] = mark
    message.response_metadata = metadata
    return message
