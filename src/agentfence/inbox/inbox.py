"""The approver's inbox, without the web: what waits, the evidence, and the answer path.

:class:`Inbox` reads the approvals store and the decision log, and answers requests through
the same steps as ``agentfence approvals approve|reject|edit``: build an
:class:`~agentfence.approvals.ApprovalAnswer`, sign it with the approver's key
(:func:`~agentfence.approvals.sign_answer`), check it at once with
:func:`~agentfence.approvals.check_answer` against the policies, and store it with
:meth:`~agentfence.approvals.ApprovalStore.submit`. The fence checks it again, logs it and
runs the call when the thread resumes. The form and the answer API both call
:meth:`Inbox.answer`; an approver who signs in the browser gets the same checks from
:meth:`Inbox.prepare` and hands the signed answer to :meth:`Inbox.submit_signed`. Every refusal
is an :class:`InboxRefused` carrying the HTTP status the web layer answers with.

Who sees what: an approver sees the details of a request (arguments, evidence, answer) only
if policy lets them answer it (``Action::"approve"``, :func:`approve_decision`), and never
their own request. Others see that it exists and why they may not answer it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from agentfence._hitl import single_request
from agentfence._signing import Signer, read_private_key
from agentfence._storage.database import Location, parse_url
from agentfence.approvals import (
    ApprovalAnswer,
    ApprovalRefused,
    ApprovalRequest,
    ApprovalStore,
    ApproverRegistry,
    StoredApproval,
    approve_decision,
    check_answer,
    decide_edit,
    diff_args,
    parse_envelope,
    submit_answer,
)
from agentfence.config import Settings
from agentfence.errors import AgentfenceError, AgentfenceWarning, ConfigurationError
from agentfence.inbox.accounts import Account, ApproverAccounts
from agentfence.inbox.evidence import Evidence
from agentfence.inbox.sensitive import MASK, SensitiveArgs
from agentfence.inbox.views import (
    AnswerView,
    ArgView,
    Earlier,
    HistoryItem,
    LogEntryView,
    Pending,
    PendingItem,
    RequestView,
    iso,
    now_us,
)
from agentfence.policy import Effect, EntityRef, PolicyEngine
from agentfence.records import ApprovalAnswerRecord, DecisionRecord
from agentfence.tools import ArgumentError, ToolCatalog

__all__ = ["Inbox", "InboxRefused"]

Kind = Literal["approve", "edit", "reject", "respond"]
KINDS: tuple[Kind, ...] = ("approve", "edit", "reject", "respond")
MAX_MESSAGE = 2000
HISTORY_LIMIT = 200


class InboxRefused(AgentfenceError):
    """The inbox will not do this; ``status`` is the HTTP status, ``code`` names why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


# --- the inbox -----------------------------------------------------------------------------


class Inbox:
    """Approval requests as approvers see and answer them, over one store and its log.

    Build one with :meth:`open`. ``engine`` is the policy set answers are checked against
    (load it from the fence's policy directory and tools), ``clock`` returns microseconds.
    """

    def __init__(
        self,
        *,
        store: ApprovalStore,
        engine: PolicyEngine,
        accounts: ApproverAccounts,
        log: Location,
        clock: Callable[[], int] = now_us,
        trace_url: str | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.accounts = accounts
        self.log = log
        self.registry = ApproverRegistry.from_engine(engine)
        self.sensitive = SensitiveArgs.from_engine(engine)
        self.trace_url = trace_url
        self._clock = clock
        self.evidence = Evidence(log)

    @classmethod
    def open(
        cls,
        db: str | Path | Location,
        *,
        policies: str | Path,
        tools: Iterable[Any],
        settings: Settings | None = None,
        principal_types: Sequence[str] = ("User",),
        clock: Callable[[], int] = now_us,
    ) -> Inbox:
        """The inbox over the decision log ``db`` (``sqlite:///PATH`` or ``postgresql://...``).

        Answers are checked against the policies in ``policies`` for ``tools``, loaded as
        ``Fence.from_directory`` loads them (pass the fence's ``principal_types`` if it has
        others). Session lifetimes and the trace link come from ``settings`` (default: the
        ``AGENTFENCE_INBOX_*`` variables).
        """
        settings = settings or Settings.from_env()
        location = parse_url(db)
        engine = PolicyEngine.load(
            policies, ToolCatalog.from_tools(tools), principal_types=principal_types
        )
        accounts = ApproverAccounts(
            location,
            idle_seconds=settings.inbox_session_idle,
            max_seconds=settings.inbox_session_max,
            clock=clock,
        )
        return cls(
            store=ApprovalStore(location),
            engine=engine,
            accounts=accounts,
            log=location,
            clock=clock,
            trace_url=settings.inbox_trace_url,
        )

    def now(self) -> int:
        """The inbox's clock, in microseconds."""
        return self._clock()

    # --- who may answer ------------------------------------------------------------------

    def may_answer(self, request: ApprovalRequest, principal: str) -> str | None:
        """``None`` if ``principal`` may answer (and so see) the request; otherwise why not.

        The requester never may (as :func:`check_answer` refuses); anyone else as Cedar's
        ``Action::"approve"`` decides.
        """
        try:
            approver = EntityRef.parse(principal, self.engine.principal_types[0])
        except ValueError as exc:
            return f"{principal!r} is not a principal: {exc}"
        if str(approver) == request.principal:
            return f"{approver} requested this call and cannot approve it"
        return approve_decision(self.engine, request, approver)

    def _principal(self, account: Account) -> EntityRef:
        try:
            return EntityRef.parse(account.principal, self.engine.principal_types[0])
        except ValueError as exc:
            raise InboxRefused(
                500, "account", f"account {account.name} has a malformed principal: {exc}"
            ) from None

    def account_problem(self, account: Account) -> str | None:
        """Why answers cannot be signed for this account (``None``: they can)."""
        try:
            self._signer(account)
        except InboxRefused as exc:
            return str(exc)
        return None

    # --- reading -------------------------------------------------------------------------

    def pending(self, account: Account) -> Pending:
        """The requests waiting for this approver, most urgent first, newest first on ties."""
        now = self.now()
        mine: list[PendingItem] = []
        others = 0
        for item in self.store.list():
            if item.status(now) != "pending":
                continue
            request = item.request
            if self.may_answer(request, account.principal) is not None:
                others += 1
                continue
            mine.append(
                PendingItem(
                    request_id=request.request_id,
                    tool=request.tool,
                    principal=request.principal,
                    agent=request.agent,
                    reason=request.reasons[0] if request.reasons else "",
                    more_reasons=max(0, len(request.reasons) - 1),
                    risk=request.risk,
                    created_us=request.created_us,
                    expires_us=request.expires_us,
                    age_seconds=(now - request.created_us) / 1_000_000,
                    seconds_left=(request.expires_us - now) / 1_000_000,
                )
            )
        mine.sort(key=lambda i: (i.expires_us, -i.created_us))
        return Pending(mine, others)

    def get(self, request_id: str) -> StoredApproval:
        """The stored request with exactly this id; 404 if there is none."""
        stored = self.store.get(request_id)
        if stored is None or stored.request.request_id != request_id:
            raise InboxRefused(
                404,
                "unknown",
                f"there is no approval request {request_id!r}; go back to the list of "
                "pending requests",
            )
        return stored

    def request(self, request_id: str, account: Account, *, reveal: bool = False) -> RequestView:
        """The request page's content for this approver (details only if they may answer)."""
        stored = self.get(request_id)
        request = stored.request
        now = self.now()
        status = stored.status(now)
        why_not = self.may_answer(request, account.principal)
        age = (now - request.created_us) / 1_000_000
        left = (request.expires_us - now) / 1_000_000
        if why_not is not None:
            return RequestView(
                stored=stored,
                status=status,
                allowed=False,
                why_not=why_not,
                age_seconds=age,
                seconds_left=left,
            )
        found, notes = self.evidence.thread_decisions(request)
        earlier = [
            Earlier(seq, r.tool, r.effect, self._resource(r), outcome, r.time_us)
            for seq, r, outcome in found
        ]
        decision = self.evidence.decision(request.decision_id)
        trace_id = decision[1].trace_id if decision is not None else None
        trace_link = None
        if self.trace_url and trace_id:
            trace_link = self.trace_url.replace("{trace_id}", trace_id)
        verdicts = self.evidence.verdicts([request])
        return RequestView(
            stored=stored,
            status=status,
            allowed=True,
            why_not=None,
            args=self._args(request, reveal=reveal),
            any_sensitive=bool(self.sensitive.names(request.tool) & set(request.args)),
            revealed=reveal,
            earlier=earlier,
            notes=notes,
            decision_seq=decision[0] if decision is not None else None,
            request_seq=self.evidence.request_entry(request.request_id),
            trace_id=trace_id,
            trace_link=trace_link,
            answer=self._answer_view(stored, verdicts.get(request.request_id)),
            age_seconds=age,
            seconds_left=left,
            key_problem=self.account_problem(account) if status == "pending" else None,
        )

    def history(self, account: Account) -> list[HistoryItem]:
        """Answered and expired requests this approver may see, newest first."""
        now = self.now()
        closed = [s for s in self.store.list() if s.status(now) != "pending"]
        visible = [s for s in closed if self.may_answer(s.request, account.principal) is None]
        visible = visible[:HISTORY_LIMIT]
        verdicts = self.evidence.verdicts([s.request for s in visible])
        items = [
            HistoryItem(
                request=s.request,
                status=s.status(now),
                answer=self._answer_view(s, verdicts.get(s.request.request_id)),
            )
            for s in visible
        ]
        items.sort(
            key=lambda h: (
                (h.answer.answered_us if h.answer and h.answer.answered_us else 0)
                or h.request.expires_us
            ),
            reverse=True,
        )
        return items

    def log_entry(self, request_id: str, seq: int, account: Account) -> LogEntryView:
        """One log entry that belongs to this request's thread; 404 for any other."""
        stored = self.get(request_id)
        request = stored.request
        why_not = self.may_answer(request, account.principal)
        if why_not is not None:
            raise InboxRefused(403, "not_allowed", f"you may not see this request: {why_not}")
        found = self.evidence.entry(seq, request)
        if found is None:
            raise InboxRefused(
                404,
                "unknown",
                f"log entry {seq} is not part of request {request_id}'s thread; open it with "
                "`agentfence log show` if you audit the whole log",
            )
        row, record = found
        return LogEntryView(
            request=request,
            seq=row.seq,
            kind=row.kind,
            time_us=row.time_us,
            leaf_hash=row.leaf_hash.hex(),
            record=record.model_dump(mode="json"),
        )

    # --- answering -----------------------------------------------------------------------

    def answer(
        self,
        account: Account,
        request_id: str,
        *,
        decision: str,
        message: str | None = None,
        fields: Mapping[str, str] | None = None,
        edited_args: Mapping[str, Any] | None = None,
    ) -> ApprovalAnswer:
        """Answer a request as ``account``: check, sign with the account's key, store. The
        one answering path of the inbox's form and its API.

        An edit's arguments come either as ``fields``, the edit form's values (text) by
        argument name, or as ``edited_args``, the complete arguments as JSON values (the
        API). Raises :class:`InboxRefused` with the HTTP status for every refusal.
        """
        prepared = self.prepare(
            account,
            request_id,
            decision=decision,
            message=message,
            fields=fields,
            edited_args=edited_args,
        )
        request = self.get(request_id).request
        signer = self._signer(account)
        # The same check the fence makes on resume, made now so the approver learns at once.
        try:
            answer, _ = submit_answer(
                self.store,
                request,
                approver=self._principal(account),
                decision=prepared.decision,
                signer=signer,
                now_us=prepared.answered_us,
                edited_args=prepared.edited_args,
                message=prepared.message,
                engine=self.engine,
                registry=self.registry,
            )
        except ApprovalRefused as refused:
            raise _refusal(refused, account) from None
        return answer

    def prepare(
        self,
        account: Account,
        request_id: str,
        *,
        decision: str,
        message: str | None = None,
        fields: Mapping[str, str] | None = None,
        edited_args: Mapping[str, Any] | None = None,
    ) -> ApprovalAnswer:
        """The answer ``account`` would give, checked as :meth:`answer` checks it, unsigned.

        A browser that holds the approver's key signs it (:meth:`submit_signed`); nothing
        is stored here.
        """
        stored = self.get(request_id)
        request = stored.request
        now = self.now()
        status = stored.status(now)
        if status in ("answered", "used"):
            raise InboxRefused(
                409,
                "answered",
                f"request {request_id} is already answered; a request takes one answer",
            )
        if status == "expired":
            raise InboxRefused(
                410,
                "expired",
                f"request {request_id} expired at {iso(request.expires_us)} and can no longer "
                "be answered; the call will not run",
            )
        approver = self._principal(account)
        if str(approver) == request.principal:
            raise InboxRefused(
                403, "self_approval", f"{approver} requested this call and cannot approve it"
            )
        why_not = approve_decision(self.engine, request, approver)
        if why_not is not None:
            raise InboxRefused(
                403, "not_allowed", f"{approver} may not answer this request: {why_not}"
            )
        if decision not in KINDS:
            raise InboxRefused(400, "malformed", f"unknown answer {decision!r}")
        allowed = self.allowed_decisions(request)
        if decision not in allowed:
            raise InboxRefused(
                422,
                "decision_not_allowed",
                f"the request's review config allows {', '.join(allowed)}, not {decision!r}",
            )
        kind: Kind = decision  # narrowed to one of KINDS by the check above
        note = (message or "").strip() or None
        if note is not None and len(note) > MAX_MESSAGE:
            raise InboxRefused(
                422,
                "invalid",
                f"the message is {len(note)} characters; keep it under {MAX_MESSAGE}",
            )
        if kind == "reject" and note is None:
            raise InboxRefused(
                422,
                "invalid",
                "say why you reject the call: the agent's model reads your message",
            )
        if kind == "respond" and note is None:
            raise InboxRefused(
                422,
                "invalid",
                "write the reply: the agent's model reads it as the call's result",
            )
        edited = None
        if kind == "edit":
            if edited_args is not None:
                masked = sorted(
                    n for n in self.sensitive.names(request.tool) if edited_args.get(n) == MASK
                )
                if masked:
                    # The mask is what was shown, not a value: sending it back would edit the
                    # argument to the mask itself.
                    raise InboxRefused(
                        422,
                        "invalid",
                        f"edited argument {masked[0]!r} is the mask shown for a sensitive value; "
                        "send its real value (read it with ?reveal=1)",
                    )
                edited = self._checked_edit(request, account, dict(edited_args))
            else:
                edited = self._checked_edit(
                    request, account, self._form_args(request, fields or {})
                )
        return ApprovalAnswer(
            request_id=request.request_id,
            action_digest=request.action_digest,
            approver=str(approver),
            decision=kind,
            edited_args=edited,
            message=note,
            answered_us=now,
        )

    def submit_signed(
        self, account: Account, request_id: str, envelope: Mapping[str, Any]
    ) -> ApprovalAnswer:
        """Store an answer the approver signed with their own key (in the browser).

        The answer must be exactly what :meth:`prepare` makes of its own decision, message
        and arguments for this account (so every check of :meth:`answer` holds), given
        between the request's creation and now, and signed by a key ``approvers.toml``
        declares for the account's principal (:func:`check_answer`).
        """
        try:
            signed, _, _ = parse_envelope(envelope)
        except ApprovalRefused as refused:
            raise _refusal(refused, account) from None
        approver = self._principal(account)
        if signed.request_id != request_id:
            raise InboxRefused(
                422, "unbound", f"the signed answer is for request {signed.request_id}"
            )
        if signed.approver != str(approver):
            raise InboxRefused(
                403,
                "forged",
                f"the signed answer names {signed.approver}, but you are signed in as {approver}",
            )
        expected = self.prepare(
            account,
            request_id,
            decision=signed.decision,
            message=signed.message,
            edited_args=signed.edited_args if signed.decision == "edit" else None,
        )
        if expected.model_copy(update={"answered_us": signed.answered_us}) != signed:
            raise InboxRefused(
                422,
                "invalid",
                "the signed answer is not the one the inbox prepared; reload the page and "
                "answer again",
            )
        request = self.get(request_id).request
        now = self.now()
        if not request.created_us <= signed.answered_us <= now:
            raise InboxRefused(
                422, "invalid", "the signed answer's time is not between the request and now"
            )
        try:
            check_answer(
                dict(envelope), request, engine=self.engine, registry=self.registry, now_us=now
            )
            self.store.submit(request_id, dict(envelope), now_us=now)
        except ApprovalRefused as refused:
            raise _refusal(refused, account) from None
        return signed

    def allowed_decisions(self, request: ApprovalRequest) -> tuple[str, ...]:
        """The decisions the request's review config (in its ``interrupt()`` value) allows."""
        payload = single_request(request)
        for config in payload.get("review_configs", []):
            if config.get("action_name") == request.tool:
                return tuple(d for d in config.get("allowed_decisions", []) if d in KINDS)
        return ()

    def _form_args(self, request: ApprovalRequest, fields: Mapping[str, str]) -> dict[str, Any]:
        """The edit form's text fields as arguments (an empty sensitive field: unchanged)."""
        args: dict[str, Any] = {}
        for view in self._args(request, reveal=False):
            raw = fields.get(view.name, "")
            if raw == "":
                if view.sensitive and view.present:
                    args[view.name] = request.args[view.name]  # empty: unchanged
                continue
            if view.field_kind == "string":
                args[view.name] = raw
                continue
            try:
                args[view.name] = json.loads(raw, parse_constant=_no_constant)
            except ValueError:
                raise InboxRefused(
                    422,
                    "invalid",
                    f"argument {view.name!r}: {raw!r} is not a value; write a number, true or "
                    'false, or JSON such as ["a", "b"]',
                ) from None
        return args

    def _checked_edit(
        self, request: ApprovalRequest, account: Account, args: dict[str, Any]
    ) -> dict[str, Any]:
        """Edited arguments checked against the tool's schema and decided again by policy."""
        entry = self.engine.catalog.get(request.tool)
        if entry is None:
            raise InboxRefused(
                422,
                "invalid",
                f"the inbox does not know the tool {request.tool!r}, so it cannot check "
                "edited arguments; approve or reject instead",
            )
        try:
            entry.cedar_args(args)
        except ArgumentError as exc:
            raise InboxRefused(
                422, "invalid", f"the edited arguments do not fit {request.tool!r}: {exc}"
            ) from None
        if args == request.args:
            raise InboxRefused(
                422,
                "invalid",
                "nothing was changed; press Approve to run the call as requested",
            )
        # Decide the edited call now, as the fence will on resume: an edit cannot launder a
        # call that policy denies, nor one that needs another approver.
        again = decide_edit(self.engine, request, args)
        if again.effect is Effect.DENY:
            raise InboxRefused(
                422,
                "denied",
                "the call as edited is denied by policy: "
                f"{'; '.join(again.reasons)}; the fence would refuse it, so it was not sent",
            )
        if again.effect is Effect.REQUIRE_APPROVAL:
            regrouped = request.model_copy(update={"approvers": list(again.approvers)})
            why = self.may_answer(regrouped, account.principal)
            if why is not None:
                raise InboxRefused(
                    403, "not_allowed", f"you may not approve the call as edited: {why}"
                )
        return args

    def _signer(self, account: Account) -> Signer:
        """The account's key, checked to be the one registered and declared for it."""
        try:
            with warnings.catch_warnings():
                # A key file other users can read is the operator's to fix; `inbox serve`
                # reports it at start, so it is not repeated on every answer.
                warnings.simplefilter("ignore", AgentfenceWarning)
                signer = read_private_key(account.key_path)
        except ConfigurationError as exc:
            raise InboxRefused(
                500,
                "key",
                f"the inbox cannot sign for {account.name}: {exc}. Ask the inbox operator to "
                f"run `agentfence inbox add-approver {account.name} --replace ...`",
            ) from None
        key = f"{signer.name}+{signer.key_id:08x}"
        if key != account.key_name:
            raise InboxRefused(
                500,
                "key",
                f"the key file {account.key_path} now holds key {key}, not {account.key_name} "
                f"registered for {account.name}; re-register it with `agentfence inbox "
                "add-approver --replace`",
            )
        declared = self.registry.lookup(signer.name, signer.key_id)
        principal = self._principal(account)
        if declared is None or declared.principal != principal:
            raise InboxRefused(
                500,
                "key",
                f"key {key} is not declared for {principal} in approvers.toml, so the fence "
                "would refuse answers signed with it; add it there (or fix the account)",
            )
        return signer

    def _resource(self, record: DecisionRecord) -> str | None:
        """The resource a decision touched, masked when it comes from a sensitive argument."""
        entry = self.engine.catalog.get(record.tool)
        resource = entry.spec.resource if entry is not None else None
        if resource is not None and resource.arg in self.sensitive.names(record.tool):
            return f"{resource.type}::{MASK}"
        return record.resource

    # --- formatting ------------------------------------------------------------------------

    def _args(self, request: ApprovalRequest, *, reveal: bool) -> list[ArgView]:
        hidden = self.sensitive.names(request.tool)
        entry = self.engine.catalog.get(request.tool)
        properties: dict[str, Any] = {}
        if entry is not None and entry.model is not None:
            schema = entry.model.model_json_schema()
            properties = dict(schema.get("properties", {}))
        names = list(request.args) + [n for n in properties if n not in request.args]
        views = []
        for name in names:
            present = name in request.args
            value = request.args.get(name)
            kind = _field_kind(properties.get(name), value)
            sensitive = name in hidden
            masked = sensitive and present and not reveal
            if not present:
                shown = "(not given)"
            elif masked:
                shown = MASK
            else:
                shown = value if isinstance(value, str) else _json(value)
            if not present or sensitive:
                edit_value = ""
            else:
                edit_value = value if kind == "string" and isinstance(value, str) else _json(value)
            views.append(
                ArgView(
                    name=name,
                    shown=shown,
                    masked=masked,
                    sensitive=sensitive,
                    field_kind=kind,
                    edit_value=edit_value,
                    present=present,
                )
            )
        return views

    def _answer_view(
        self, stored: StoredApproval, verdict: tuple[int, ApprovalAnswerRecord] | None
    ) -> AnswerView | None:
        if stored.answer is None:
            return None
        answer = stored.answer.get("answer")
        if not isinstance(answer, Mapping):
            return None
        edited = answer.get("edited_args")
        changes: list[tuple[str, str, str]] = []
        if isinstance(edited, Mapping):
            tool = stored.request.tool
            hidden = self.sensitive.names(tool)
            for name, change in diff_args(stored.request.args, edited).items():
                old, new = (MASK, MASK) if name in hidden else (change["old"], change["new"])
                changes.append((name, _shown(old), _shown(new)))
            edited = self.sensitive.mask(tool, edited)
        key = stored.answer.get("key")
        return AnswerView(
            approver=str(answer.get("approver")),
            decision=str(answer.get("decision")),
            message=answer.get("message") if isinstance(answer.get("message"), str) else None,
            edited_args=dict(edited) if isinstance(edited, Mapping) else None,
            changes=changes,
            answered_us=stored.answered_us,
            key=key if isinstance(key, str) else None,
            used_us=stored.used_us,
            verdict=verdict[1].verdict if verdict else None,
            verdict_reason=verdict[1].reason if verdict else None,
            verdict_seq=verdict[0] if verdict else None,
        )


def _refusal(refused: ApprovalRefused, account: Account) -> InboxRefused:
    """The HTTP status of a refusal by the store or by :func:`check_answer`."""
    status = {
        "answered": 409,
        "expired": 410,
        "unknown": 404,
        "self_approval": 403,
        "not_allowed": 403,
        "forged": 500,
    }.get(refused.code, 422)
    message = str(refused)
    if refused.code == "answered":
        message += "; a request takes one answer"
    if refused.code == "forged":
        message = (
            f"the answer signed with {account.name}'s key would be refused as forged ({refused}); "
            "check the account's key and approvers.toml"
        )
    return InboxRefused(status, refused.code, message)


def _field_kind(schema: Any, value: Any) -> Literal["string", "json"]:
    """Whether an argument is edited as plain text (strings) or as a JSON value."""
    if isinstance(schema, Mapping):
        types = {schema.get("type")}
        for option in schema.get("anyOf", []) or []:
            if isinstance(option, Mapping):
                types.add(option.get("type"))
        types -= {None, "null"}
        if types == {"string"} or (
            "enum" in schema and all(isinstance(v, str) for v in schema["enum"])
        ):
            return "string"
        if types:
            return "json"
    return "string" if isinstance(value, str) or value is None else "json"


def _shown(value: Any) -> str:
    return "(not given)" if value is None else value if isinstance(value, str) else _json(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a value a policy can compare")
