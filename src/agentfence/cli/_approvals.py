"""The approver's commands: ``agentfence approvals list|show|approve|reject|edit|respond``.

:func:`register` adds them to the main ``agentfence`` app. Each is a thin layer over
:class:`~agentfence.approvals.ApprovalStore` (in the decision log's SQLite file) and
:func:`~agentfence.approvals.sign_answer`: an answer is signed with the approver's own key
and stored for the paused thread, which checks it again when it resumes. With ``--policies``
and ``--tools`` an answer is also checked at once with
:func:`~agentfence.approvals.check_answer`, so an approver the policy does not allow learns
it now rather than from the log. Errors leave through ``agentfence.cli.main`` (exit 2).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentfence._signing import Signer, read_private_key
from agentfence._storage.database import Location, parse_url
from agentfence._storage.tables import LogBackend
from agentfence.approvals import (
    ApprovalRefused,
    ApprovalRequest,
    ApprovalStore,
    StoredApproval,
    submit_answer,
)
from agentfence.cli._answering import (
    Checker,
    Kind,
    Outcome,
    Selection,
    check_edit,
    checker_for,
    confirm,
    edited_args,
    langchain_decision,
    report,
    select_pending,
    selection,
)
from agentfence.cli._common import JsonOption, err, out
from agentfence.config import Settings
from agentfence.errors import AgentfenceError, AgentfenceWarning, ConfigurationError
from agentfence.log import LogView
from agentfence.policy import EntityRef

__all__ = ["register"]

APPROVER_ENV = "AGENTFENCE_APPROVER"
APPROVER_KEY_ENV = "AGENTFENCE_APPROVER_KEY"
SHORT_ID = 12
# ApprovalStore.get accepts a prefix of 8 or more hex digits; so do these commands.
MIN_PREFIX = 8

approvals_app = typer.Typer(
    help="List, inspect and answer approval requests (as an approver, with your own key).",
    no_args_is_help=True,
)


IdArg = Annotated[
    str,
    typer.Argument(
        help="The request id, or a unique prefix of 8 or more characters (from the list)."
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="The decision log holding the requests: sqlite:///PATH, a path, or "
        "postgresql://... (default: $AGENTFENCE_LOG).",
    ),
]
AsOption = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="Who you answer as: a principal declared in approvers.toml, e.g. fran or "
        'User::"fran" (default: $AGENTFENCE_APPROVER).',
    ),
]
KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="Your private key file, from `agentfence keys generate` "
        "(default: $AGENTFENCE_APPROVER_KEY).",
    ),
]
PoliciesOption = Annotated[
    Path | None,
    typer.Option(
        "--policies",
        help="Check the answer now against this policy directory (needs --tools).",
    ),
]
ToolsOption = Annotated[
    str | None,
    typer.Option(
        "--tools",
        help="The governed tools, as module:attribute, for the check with --policies, "
        "e.g. agentfence.demo.tools:TOOLS.",
    ),
]
IdsArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="The request ids (or unique prefixes), one or more: each gets its own signed "
        "answer, and a refused one does not stop the others.",
        show_default=False,
    ),
]
AllPendingOption = Annotated[
    bool,
    typer.Option(
        "--all-pending",
        help="Answer every pending request (but your own), narrowed by --tool and --thread; "
        "lists them and asks first unless --yes.",
    ),
]
ToolFilter = Annotated[
    str | None, typer.Option("--tool", help="With --all-pending: only this tool's requests.")
]
ThreadFilter = Annotated[
    str | None, typer.Option("--thread", help="With --all-pending: only this thread's requests.")
]
YesOption = Annotated[
    bool, typer.Option("--yes", help="With --all-pending: answer without asking.")
]
MessageOption = Annotated[
    str | None, typer.Option("--message", help="A note kept with the signed answer.")
]


def register(app: typer.Typer) -> None:
    """Add the ``approvals`` group to ``app``."""
    app.add_typer(approvals_app, name="approvals")


# --- settings and the store ----------------------------------------------------------------


@dataclass(frozen=True)
class _ApproverEnv:
    principal: str | None
    key: str | None


def _approver_env() -> _ApproverEnv:
    """``AGENTFENCE_APPROVER`` and ``AGENTFENCE_APPROVER_KEY``, read in ``config.py``."""
    settings = Settings.from_env()
    return _ApproverEnv(
        principal=settings.approver,
        key=settings.approver_key,
    )


def _db_path(db: str | None) -> Location:
    url = db or Settings.from_env().log
    if not url:
        raise ConfigurationError(
            "no decision log given: pass --db sqlite:///PATH or postgresql://... (where the "
            "fence logs to) or set AGENTFENCE_LOG"
        )
    location = parse_url(url)
    LogBackend(location, create=False, readonly=True).close()  # says so if there is none
    return location


def _now_us() -> int:
    return time.time_ns() // 1000


def _find(store: ApprovalStore, request_id: str) -> StoredApproval:
    """The one request with this id or id prefix; raise ApprovalRefused naming the problem."""
    wanted = request_id.strip().lower()
    everything = store.list()
    exact = [s for s in everything if s.request.request_id == wanted]
    if exact:
        return exact[0]
    if len(wanted) < MIN_PREFIX:
        raise ApprovalRefused(
            "unknown",
            f"no approval request {request_id!r}: give the full id or at least {MIN_PREFIX} "
            "of its first characters, as `agentfence approvals list` shows them",
        )
    matches = [s for s in everything if s.request.request_id.startswith(wanted)]
    if not matches:
        raise ApprovalRefused(
            "unknown",
            f"no approval request {request_id!r} in this log; list the requests with "
            "`agentfence approvals list --all`",
        )
    if len(matches) > 1:
        ids = ", ".join(s.request.request_id for s in matches[:5])
        raise ApprovalRefused(
            "ambiguous",
            f"{request_id!r} names {len(matches)} requests ({ids}); give more of the id",
        )
    return matches[0]


# --- formatting ----------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _iso(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us / 1_000_000))


def _time_left(item: StoredApproval, now: int) -> str:
    status = item.status(now)
    if status in ("pending", "answered"):
        # An answered request must still be resumed before it expires (expiry = deny).
        return _duration((item.request.expires_us - now) / 1_000_000)
    return "expired" if status == "expired" else "-"


def _short_reason(reasons: Sequence[str], width: int = 48) -> str:
    if not reasons:
        return "-"
    text = reasons[0] if len(reasons[0]) <= width else reasons[0][: width - 1] + "…"
    return text + (f" (+{len(reasons) - 1})" if len(reasons) > 1 else "")


_RANK = {"pending": 0, "answered": 1, "used": 2, "expired": 2}


def _ordered(items: Sequence[StoredApproval], now: int) -> list[StoredApproval]:
    """Open requests first, the one expiring soonest on top; then closed ones, newest first."""

    def key(item: StoredApproval) -> tuple[int, int, int]:
        rank = _RANK[item.status(now)]
        if rank < 2:
            return rank, item.request.expires_us, -item.request.created_us
        return rank, -item.request.created_us, 0

    return sorted(items, key=key)


def _summary(item: StoredApproval, now: int) -> dict[str, Any]:
    request = item.request
    status = item.status(now)
    return {
        "request_id": request.request_id,
        "tool": request.tool,
        "principal": request.principal,
        "reasons": request.reasons,
        "risk": request.risk,
        "approvers": request.approvers,
        "status": status,
        "created_us": request.created_us,
        "expires_us": request.expires_us,
        "age_seconds": round((now - request.created_us) / 1_000_000, 3),
        "seconds_left": (
            round((request.expires_us - now) / 1_000_000, 3)
            if status in ("pending", "answered")
            else None
        ),
    }


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, ensure_ascii=False))


# --- list and show ---------------------------------------------------------------------------


@approvals_app.command("list")
def list_command(
    db: DbOption = None,
    show_all: Annotated[
        bool,
        typer.Option("--all", help="Also list answered, used and expired requests."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List pending approval requests, the most urgent first, with their age and time left."""
    store = ApprovalStore(_db_path(db), readonly=True)
    now = _now_us()
    items = [s for s in store.list() if show_all or s.status(now) == "pending"]
    items = _ordered(items, now)
    if as_json:
        _print_json({"requests": [_summary(s, now) for s in items]})
        return
    if not items:
        which = "approval requests" if show_all else "pending approval requests"
        out.print(f"no {which}", markup=False)
        return
    table = Table(title="approval requests" if show_all else "pending approval requests")
    columns = ["id", "tool", "principal", "reason", "risk", "age", "time left"]
    if show_all:
        columns.append("status")
    for column in columns:
        table.add_column(column, overflow="fold")
    for item in items:
        request = item.request
        row = [
            request.request_id[:SHORT_ID],
            request.tool,
            request.principal,
            _short_reason(request.reasons),
            request.risk,
            _duration((now - request.created_us) / 1_000_000),
            _time_left(item, now),
        ]
        if show_all:
            row.append(item.status(now))
        table.add_row(*row)
    out.print(table)


@dataclass(frozen=True)
class _Earlier:
    """A decision the thread's run made, from the log, with whether the tool ran."""

    seq: int
    tool: str
    effect: str
    resource: str | None
    outcome: str | None


def _thread_decisions(log: Location, request: ApprovalRequest) -> tuple[list[_Earlier], str | None]:
    """The other decisions of the request's thread so far (what the run did and saw).

    Observing, so it fails open: a log that cannot be read leaves a note, not an error.
    """
    try:
        backend = LogBackend(log, create=False, readonly=True)
        try:
            earlier = [
                _Earlier(seq, record.tool, record.effect, record.resource, outcome)
                for seq, record, outcome in LogView(backend).thread_decisions(
                    request.thread, exclude=request.decision_id
                )
            ]
            return earlier, None
        finally:
            backend.close()
    except (AgentfenceError, OSError, ValueError) as exc:
        return [], f"the thread's decisions could not be read from the log: {exc}"


def _answer_view(item: StoredApproval) -> dict[str, Any] | None:
    if item.answer is None:
        return None
    answer = item.answer.get("answer")
    if not isinstance(answer, Mapping):
        return {"raw": item.answer}
    return {
        "approver": answer.get("approver"),
        "decision": answer.get("decision"),
        "edited_args": answer.get("edited_args"),
        "message": answer.get("message"),
        "answered_us": item.answered_us,
        "key": item.answer.get("key"),
    }


@approvals_app.command("show")
def show_command(request_id: IdArg, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show everything about one request: the call, why it is held, and what the run did."""
    path = _db_path(db)
    item = _find(ApprovalStore(path, readonly=True), request_id)
    now = _now_us()
    request = item.request
    earlier, note = _thread_decisions(path, request)
    status = item.status(now)
    answer = _answer_view(item)
    if as_json:
        _print_json(
            {
                **request.model_dump(mode="json"),
                "status": status,
                "seconds_left": _summary(item, now)["seconds_left"],
                "answer": answer,
                "used_us": item.used_us,
                "thread_decisions": [
                    {
                        "seq": e.seq,
                        "tool": e.tool,
                        "effect": e.effect,
                        "resource": e.resource,
                        "outcome": e.outcome,
                    }
                    for e in earlier
                ],
                "notes": [note] if note else [],
            }
        )
        return
    left = _time_left(item, now)
    lines = [
        ("request", request.request_id),
        ("status", status),
        ("tool", request.tool),
        ("arguments", json.dumps(request.args, indent=2, ensure_ascii=False)),
        ("principal", request.principal),
        ("agent", request.agent),
        ("thread", request.thread),
        ("tool call", request.tool_call_id),
        ("reasons", "\n".join(request.reasons) or "-"),
        ("policies", ", ".join(request.policy_ids) or "-"),
        ("risk", request.risk),
        ("approvers", ", ".join(request.approvers) or "(any approver the policy allows)"),
        (
            "requested",
            f"{_iso(request.created_us)} ({_duration((now - request.created_us) / 1e6)} ago)",
        ),
        (
            "expires",
            f"{_iso(request.expires_us)} ({left} left)"
            if status in ("pending", "answered")
            else _iso(request.expires_us),
        ),
        ("action digest", request.action_digest),
        ("policy set", request.policy_hash),
    ]
    if answer is not None:
        summary = f"{answer.get('decision')} by {answer.get('approver')}"
        if item.answered_us is not None:
            summary += f" at {_iso(item.answered_us)}"
        if answer.get("edited_args") is not None:
            summary += f"\nedited arguments: {json.dumps(answer['edited_args'])}"
        if answer.get("message"):
            summary += f"\nmessage: {answer['message']}"
        if item.used_us is not None:
            summary += f"\nused by the fence at {_iso(item.used_us)}"
        lines.append(("answer", summary))
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, value in lines:
        table.add_row(label, value)
    out.print(table, markup=False)
    out.print()
    if note:
        out.print(f"note: {note}", markup=False)
        return
    if not earlier:
        out.print(f"the run made no other decisions in thread {request.thread}", markup=False)
        return
    runs = Table(title=f"what the run did so far in thread {request.thread} (from the log)")
    for column in ("seq", "tool", "decision", "resource", "ran"):
        runs.add_column(column, overflow="fold")
    for e in earlier:
        runs.add_row(str(e.seq), e.tool, e.effect, e.resource or "-", e.outcome or "no")
    out.print(runs)


# --- answering -----------------------------------------------------------------------------


def _signer(key: Path | None) -> Signer:
    path = key or (Path(k) if (k := _approver_env().key) else None)
    if path is None:
        raise ConfigurationError(
            "no approver key: pass --key FILE (your NAME.key from `agentfence keys generate "
            f"--name NAME --out DIR`) or set {APPROVER_KEY_ENV}"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AgentfenceWarning)
        try:
            signer = read_private_key(path)
        except ConfigurationError as exc:
            raise ConfigurationError(f"approver key: {exc}") from exc
    for warning in caught:
        err.print(f"warning: {warning.message}", markup=False)
    return signer


def _approver(as_: str | None, default_type: str) -> EntityRef:
    value = as_ or _approver_env().principal
    if not value:
        raise ConfigurationError(
            f"who is answering? pass --as PRINCIPAL (e.g. --as fran) or set {APPROVER_ENV}"
        )
    try:
        return EntityRef.parse(value, default_type)
    except ValueError as exc:
        raise ConfigurationError(f"--as {value!r}: {exc}") from exc


def _open_for_answer(item: StoredApproval, now: int) -> None:
    status = item.status(now)
    request = item.request
    if status in ("answered", "used"):
        raise ApprovalRefused(
            "answered",
            f"request {request.request_id} is already answered"
            + (" and its answer was used" if status == "used" else "")
            + "; a request takes one answer (see `agentfence approvals show "
            f"{request.request_id[:SHORT_ID]}`)",
        )
    if status == "expired":
        raise ApprovalRefused(
            "expired",
            f"request {request.request_id} expired at {_iso(request.expires_us)} and can no "
            "longer be answered; the call will not run (the agent is told it expired)",
        )


_DONE = {
    "approve": "approved",
    "edit": "edited and approved",
    "reject": "rejected",
    "respond": "responded to",
}


def _answer(
    kind: Kind,
    request_ids: Sequence[str],
    *,
    db: str | None,
    as_: str | None,
    key: Path | None,
    policies: Path | None,
    tools: str | None,
    message: str | None,
    edited: dict[str, Any] | None,
    as_json: bool,
    pending: Selection | None = None,
) -> None:
    """Answer each request in turn, each with its own signed answer (see ``_answering``)."""
    path = _db_path(db)
    store = ApprovalStore(path)
    if pending is None and not request_ids:
        raise ConfigurationError(
            f"which requests? name one or more ids (`agentfence approvals {kind} ID [ID ...]`)"
            + (" or pass --all-pending" if kind in ("approve", "reject") else "")
        )
    if pending is not None and request_ids:
        raise ConfigurationError("name request ids or pass --all-pending, not both")
    if len(request_ids) == 1:  # one request: refused answers leave by the error path (exit 2)
        item = _find(store, request_ids[0])
        _open_for_answer(item, _now_us())
    checker = checker_for(policies, tools)
    approver = _approver(as_, checker.engine.principal_types[0] if checker else "User")
    if pending is not None:
        found = select_pending(
            store,
            now_us=_now_us(),
            approver=str(approver),
            tool=pending.tool,
            thread=pending.thread,
        )
        confirm(kind, found, yes=pending.yes)
        request_ids = [s.request.request_id for s in found]
    signer = _signer(key)
    notes: list[str] = []
    if checker is None:
        notes.append(
            "not checked against policy here (pass --policies DIR --tools module:attribute to "
            "check now); the fence checks the answer when the thread resumes"
        )
    else:
        held = [s.request for i in request_ids if (s := store.get(i.strip().lower())) is not None]
        for other in sorted({r.policy_hash for r in held} - {checker.engine.policy_hash}):
            notes.append(
                f"the policies in {policies} (set {checker.engine.policy_hash[:16]}) are not "
                f"those that held the call (set {other[:16]}); the fence checks "
                "again with its own"
            )
    answer = partial(
        _answer_one, kind, store=store, approver=approver, signer=signer, checker=checker,
        message=message, edited=edited,
    )  # fmt: skip
    if len(request_ids) == 1 and pending is None:
        data = answer(request_ids[0])
        line = data.pop("line")
        if as_json:
            _print_json({**data, "notes": notes})
            return
        for note in notes:
            err.print(f"note: {note}", markup=False)
        out.print(line, markup=False, soft_wrap=True)
        return
    for note in notes:
        err.print(f"note: {note}", markup=False)
    outcomes: list[Outcome] = []
    for request_id in request_ids:
        # Each refusal is this request's alone: the others are answered all the same.
        try:
            data = answer(request_id)
        except ApprovalRefused as refused:
            line = f"refused {request_id[:SHORT_ID]}: {refused}"
            outcomes.append(Outcome(request_id, False, line, code=refused.code))
            continue
        outcomes.append(Outcome(data["request_id"], True, data.pop("line"), data=data))
    report(outcomes, as_json=as_json)


def _answer_one(
    kind: Kind,
    request_id: str,
    *,
    store: ApprovalStore,
    approver: EntityRef,
    signer: Signer,
    checker: Checker | None,
    message: str | None,
    edited: dict[str, Any] | None,
) -> dict[str, Any]:
    """Sign and store one answer, bound to this request's id and action digest; raise
    :class:`ApprovalRefused` when the request or the fence would refuse it."""
    item = _find(store, request_id)
    request = item.request
    _open_for_answer(item, _now_us())
    if checker is None and str(approver) == request.principal:
        # The same rule check_answer applies (below, when the policies are at hand).
        raise ApprovalRefused(
            "self_approval", f"{approver} requested this call and cannot approve it"
        )
    if checker is not None and edited is not None:
        check_edit(checker, request, edited)
    now = _now_us()
    _, envelope = submit_answer(
        store,
        request,
        approver=approver,
        decision=kind,
        signer=signer,
        now_us=now,
        edited_args=edited,
        message=message,
        engine=checker.engine if checker else None,
        registry=checker.registry if checker else None,
    )
    return {
        "request_id": request.request_id,
        "decision": kind,
        "approver": str(approver),
        "key": envelope["key"],
        "answered_us": now,
        "checked": checker is not None,
        "status": "answered",
        "envelope": envelope,
        "langchain_decision": langchain_decision(kind, request, edited, message, envelope),
        "line": f"{_DONE[kind]} request {request.request_id[:SHORT_ID]} ({request.tool} for "
        f"{request.principal}) as {approver}, signed with key {envelope['key']}. The answer "
        "is stored; the fence checks it again when the thread resumes.",
    }


@approvals_app.command("approve")
def approve_command(
    request_ids: IdsArg = None,
    as_: AsOption = None,
    key: KeyOption = None,
    db: DbOption = None,
    policies: PoliciesOption = None,
    tools: ToolsOption = None,
    message: MessageOption = None,
    all_pending: AllPendingOption = False,
    tool: ToolFilter = None,
    thread: ThreadFilter = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Approve one or more requests: each call runs as requested when its thread resumes."""
    _answer(
        "approve",
        request_ids or [],
        db=db,
        as_=as_,
        key=key,
        policies=policies,
        tools=tools,
        message=message,
        edited=None,
        as_json=as_json,
        pending=selection(all_pending, tool, thread, yes=yes),
    )


@approvals_app.command("reject")
def reject_command(
    message: Annotated[
        str, typer.Option("--message", help="Why, in words the agent's model will see.")
    ],
    request_ids: IdsArg = None,
    as_: AsOption = None,
    key: KeyOption = None,
    db: DbOption = None,
    policies: PoliciesOption = None,
    tools: ToolsOption = None,
    all_pending: AllPendingOption = False,
    tool: ToolFilter = None,
    thread: ThreadFilter = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Reject one or more requests: the calls do not run and each model sees your message."""
    _answer(
        "reject",
        request_ids or [],
        db=db,
        as_=as_,
        key=key,
        policies=policies,
        tools=tools,
        message=message,
        edited=None,
        as_json=as_json,
        pending=selection(all_pending, tool, thread, yes=yes),
    )


@approvals_app.command("edit")
def edit_command(
    request_id: IdArg,
    args: Annotated[
        str,
        typer.Option("--args", help="""The arguments to run with instead, as one JSON object."""),
    ],
    as_: AsOption = None,
    key: KeyOption = None,
    db: DbOption = None,
    policies: PoliciesOption = None,
    tools: ToolsOption = None,
    message: MessageOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a request with new arguments: the edited call is decided again, then runs."""
    _answer(
        "edit",
        [request_id],
        db=db,
        as_=as_,
        key=key,
        policies=policies,
        tools=tools,
        message=message,
        edited=edited_args(args),
        as_json=as_json,
    )


@approvals_app.command("respond")
def respond_command(
    message: Annotated[
        str,
        typer.Option("--message", help="The answer the agent's model gets as the tool's result."),
    ],
    request_ids: IdsArg = None,
    as_: AsOption = None,
    key: KeyOption = None,
    db: DbOption = None,
    policies: PoliciesOption = None,
    tools: ToolsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer in the tool's place: the tool does not run; the model gets your message as its
    result (for a call that asks a person something)."""
    _answer(
        "respond",
        request_ids or [],
        db=db,
        as_=as_,
        key=key,
        policies=policies,
        tools=tools,
        message=message,
        edited=None,
        as_json=as_json,
    )
