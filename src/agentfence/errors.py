"""The agentfence error tree.

Every error agentfence raises derives from :class:`AgentfenceError`. Each message says
what happened and what to do next (which file, which line, which command).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AgentfenceError",
    "AgentfenceWarning",
    "ArgumentError",
    "BlobError",
    "CheckpointError",
    "ConfigurationError",
    "EntityError",
    "EntryError",
    "EvidenceError",
    "ForkError",
    "LogError",
    "LogVerificationError",
    "OrderError",
    "PolicyLoadError",
    "PrincipalRejected",
    "RollbackError",
    "ToolSpecError",
    "VerificationError",
]


class AgentfenceError(Exception):
    """Root of every error agentfence raises."""


class AgentfenceWarning(UserWarning):
    """Warnings about settings that weaken a guarantee (an empty policy set, an unsafe flag)."""


class ConfigurationError(AgentfenceError):
    """A setting, environment variable or argument is missing or malformed."""


class PolicyLoadError(AgentfenceError):
    """Policies, schema or entities could not be loaded; the message names the file and line.

    ``problems`` holds one line per problem found, each starting with ``file:line``.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class ToolSpecError(AgentfenceError):
    """A tool's governance metadata (action groups, resource mapping) is malformed."""


class LogError(AgentfenceError):
    """The decision log could not be written or read."""


class VerificationError(AgentfenceError):
    """A signature, checkpoint, proof or log failed verification."""


class ArgumentError(AgentfenceError, ValueError):
    """An argument does not fit the tool's schema; ``path`` names it (``invoice.amount``).

    The fence turns it into a DENY that names the argument; it reaches callers of
    ``ToolEntry.bind`` (the approver CLI and the inbox check edits with it).
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"argument {path!r}: {message}" if path else message)
        self.path = path


class EntityError(AgentfenceError, ValueError):
    """A Cedar entity reference is malformed (``User::"alice"``, or ``{"type", "id"}``)."""


class PrincipalRejected(AgentfenceError):
    """Who a run acts for could not be established: a bearer token was missing, malformed,
    unsigned, expired, for another audience, from another issuer or signed by an unknown key.

    A principal resolver raises it; the fence then denies the call, fail closed, and the tool
    never runs. ``reason`` is a fixed sentence that says why (the model sees it, so it quotes
    no token or claim value); the message adds ``details`` (such as the token's ``iss``,
    ``sub``, ``kid`` and ``jti``, never the token) for the decision log and the trace.
    """

    def __init__(self, reason: str, details: str = "") -> None:
        super().__init__(f"{reason} ({details})" if details else reason)
        self.reason = reason
        self.details = details


class LogVerificationError(VerificationError):
    """The log, a receipt or an evidence pack failed one numbered verification step.

    ``step`` is the number of the step that failed and ``title`` its title, ``attack`` a
    short name for what the evidence shows (``entry_modified``, ``truncated_or_rolled_back``,
    ``fork_same_size``, ...; the table is in ``docs/log-format.md``), and ``steps`` the
    steps that passed before it.
    """

    def __init__(self, message: str, *, step: int, attack: str, steps: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.step = step
        self.title = ""
        self.attack = attack
        self.steps = tuple(steps)


class EntryError(LogVerificationError):
    """An entry was modified, deleted, inserted or reordered, or its index columns lie."""


class CheckpointError(LogVerificationError):
    """A checkpoint was altered, is signed by an untrusted key, or does not match the log."""


class RollbackError(LogVerificationError):
    """The log is shorter than a checkpoint the auditor saved: truncated or rolled back."""


class ForkError(LogVerificationError):
    """Two validly signed checkpoints disagree about the same history."""


class BlobError(LogVerificationError):
    """A blob is missing, altered, or erased without an erasure entry."""


class OrderError(LogVerificationError):
    """Entries are out of order: an outcome without its decision, an unactivated policy set."""


class EvidenceError(LogVerificationError):
    """A receipt or evidence pack is malformed or incomplete."""
