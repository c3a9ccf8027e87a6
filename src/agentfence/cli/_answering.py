"""Answering from the CLI: the early policy check, edited arguments, and batch answers for
``agentfence approvals approve|reject|respond ID [ID ...]``.

A batch is a loop over single answers, never one answer for many calls: each request gets
its own signed answer, bound to its own request id and action digest, through
:func:`~agentfence.approvals.submit_answer` (the one answering path). A request refused
(expired, already answered, not this approver's to answer) is reported and skipped; the
others are stored all the same. :func:`report` prints one line (or JSON object) per request
and exits 1 when any was refused.

``--all-pending`` selects every pending request (optionally of one tool or one thread) but
the approver's own; because a wildcard approve is the dangerous case, it answers only with
``--yes`` or, at a terminal, after showing the selection and asking.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import typer

from agentfence.approvals import (
    ApprovalRefused,
    ApprovalRequest,
    ApprovalStore,
    ApproverRegistry,
    StoredApproval,
    decide_edit,
)
from agentfence.cli._common import Exit, err, load_tools, out
from agentfence.errors import ConfigurationError
from agentfence.policy import Effect, PolicyEngine
from agentfence.tools import ArgumentError, ToolCatalog

__all__ = [
    "Checker",
    "Kind",
    "Outcome",
    "Selection",
    "check_edit",
    "checker_for",
    "confirm",
    "edited_args",
    "langchain_decision",
    "report",
    "select_pending",
    "selection",
]

Kind = Literal["approve", "edit", "reject", "respond"]


@dataclass(frozen=True)
class Outcome:
    """What became of one request of a batch: ``answered`` (``data`` says how) or refused."""

    request_id: str
    answered: bool
    line: str
    code: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The outcome for ``--json``: the answer's fields, or the refusal's code and message."""
        if self.answered:
            return {**self.data, "status": "answered"}
        return {
            "request_id": self.request_id,
            "status": "refused",
            "code": self.code,
            "message": self.line,
        }


@dataclass(frozen=True)
class Selection:
    """``--all-pending``, with its filters and whether ``--yes`` was given."""

    tool: str | None
    thread: str | None
    yes: bool


def selection(
    all_pending: bool, tool: str | None, thread: str | None, *, yes: bool
) -> Selection | None:
    """The ``--all-pending`` selection, or ``None``; its filters alone are a mistake."""
    if all_pending:
        return Selection(tool, thread, yes)
    if tool is not None or thread is not None or yes:
        raise ConfigurationError(
            "--tool, --thread and --yes go with --all-pending; pass it, or name the requests by id"
        )
    return None


def select_pending(
    store: ApprovalStore,
    *,
    now_us: int,
    approver: str,
    tool: str | None,
    thread: str | None,
) -> list[StoredApproval]:
    """Pending requests of ``tool`` and ``thread`` (when given), oldest first, leaving out
    the approver's own (an approver never answers their own request)."""
    items = [
        item
        for item in store.list(thread=thread)
        if item.status(now_us) == "pending"
        and (tool is None or item.request.tool == tool)
        and item.request.principal != approver
    ]
    return sorted(items, key=lambda item: item.request.created_us)


def confirm(kind: str, items: Sequence[StoredApproval], *, yes: bool) -> None:
    """Show what ``--all-pending`` would answer; go on only with ``--yes`` or a yes typed at a
    terminal. Fails closed: without a terminal and without ``--yes`` nothing is answered."""
    if not items:
        raise ConfigurationError(
            "--all-pending selects no pending request (check --tool and --thread, and "
            "`agentfence approvals list`); nothing was answered"
        )
    if yes:
        return
    err.print(f"--all-pending would {kind} {len(items)} request(s):", markup=False)
    for item in items:
        request = item.request
        err.print(
            f"  {request.request_id[:12]}  {request.tool} for {request.principal} "
            f"(thread {request.thread}): {json.dumps(request.args, ensure_ascii=False)}",
            markup=False,
            soft_wrap=True,
        )
    if not sys.stdin.isatty():
        raise ConfigurationError(
            f"--all-pending answers several calls at once, so it asks first; pass --yes to "
            f"{kind} the {len(items)} request(s) listed above, or name them by id"
        )
    if not typer.confirm(f"{kind} these {len(items)} request(s)?", default=False, err=True):
        raise ConfigurationError("nothing was answered (not confirmed)")


def report(outcomes: Sequence[Outcome], *, as_json: bool) -> None:
    """Print one line (``--json``: one object in a list) per request; exit 1 if any was
    refused (the others are stored all the same)."""
    if as_json:
        out.print_json(json.dumps([o.as_json() for o in outcomes], ensure_ascii=False))
    else:
        for outcome in outcomes:
            out.print(outcome.line, markup=False, soft_wrap=True)
        refused = sum(not o.answered for o in outcomes)
        if refused:
            err.print(
                f"{len(outcomes) - refused} of {len(outcomes)} answered; {refused} refused "
                "(see above)",
                markup=False,
            )
    if any(not o.answered for o in outcomes):
        raise Exit(1)


# --- what an answer needs besides the store ---------------------------------------------


def edited_args(text: str) -> dict[str, Any]:
    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number agentfence can sign")

    try:
        value = json.loads(text, parse_constant=no_constants)
    except ValueError as exc:
        raise ConfigurationError(
            f"--args is not valid JSON ({exc}); pass the new arguments as one JSON object, "
            """e.g. --args '{"amount": 90}'"""
        ) from exc
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"--args must be a JSON object of the tool's arguments, got {type(value).__name__}"
        )
    return value


@dataclass(frozen=True)
class Checker:
    engine: PolicyEngine
    registry: ApproverRegistry


def checker_for(policies: Path | None, tools: str | None) -> Checker | None:
    if policies is None and tools is None:
        return None
    if policies is None or tools is None:
        raise ConfigurationError(
            "the early check needs both --policies DIR and --tools module:attribute (the "
            "policies are validated against the tools' schema); pass both, or neither"
        )

    engine = PolicyEngine.load(policies, ToolCatalog.from_tools(load_tools(tools)))
    return Checker(engine, ApproverRegistry.from_engine(engine))


def check_edit(checker: Checker, request: ApprovalRequest, args: Mapping[str, Any]) -> None:
    """Refuse early an edit the tool's schema or the policy would refuse on resume."""
    entry = checker.engine.catalog.get(request.tool)
    if entry is None:
        raise ConfigurationError(
            f"--tools does not include {request.tool!r}; pass the tools the agent runs with"
        )
    try:
        entry.cedar_args(args)
    except ArgumentError as exc:
        raise ConfigurationError(
            f"--args do not fit {request.tool!r}'s arguments: {exc}; fix them and answer again"
        ) from exc
    again = decide_edit(checker.engine, request, args)
    if again.effect is Effect.DENY:
        raise ApprovalRefused(
            "denied",
            f"the call as edited is denied by policy: {'; '.join(again.reasons)}; the fence "
            "would refuse it, so the answer was not stored",
        )


def langchain_decision(
    kind: Kind,
    request: ApprovalRequest,
    edited: dict[str, Any] | None,
    message: str | None,
    envelope: dict[str, Any],
) -> dict[str, Any]:
    """The answer as a LangChain human-in-the-loop decision carrying the signed envelope: what
    a client resumes a paused thread with (``{"decisions": [...]}`` or per interrupt id)."""
    decision: dict[str, Any] = {"type": kind}
    if kind == "edit":
        decision["edited_action"] = {"name": request.tool, "args": edited}
    if message is not None:
        decision["message"] = message
    return {**decision, "agentfence": envelope}
