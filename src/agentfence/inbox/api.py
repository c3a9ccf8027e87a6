"""The inbox's answer API: JSON over HTTP for programs that answer as an approver.

``GET /api/v1/requests`` lists what the token's approver may answer, ``GET
/api/v1/requests/{id}`` shows one request, and ``POST /api/v1/requests/{id}/answer`` answers
it with LangChain's human-in-the-loop decision format (``{"decisions": [{"type":
"approve"}]}``, or one decision on its own). ``POST /api/v1/answers`` answers several
requests, each ``{"request_id": ..., "decision": {...}}`` handled as that endpoint handles
one. An answer goes through
:meth:`~agentfence.inbox.inbox.Inbox.answer`, the function the inbox's form calls: the
server signs with the approver's registered key, checks the answer as the fence will, and
stores it.

Authentication is ``Authorization: Bearer <token>`` only (``agentfence inbox token issue``):
cookies are never read here, so a browser page on another site cannot ride an approver's
session. A request whose ``Origin`` or ``Sec-Fetch-Site`` names another site is refused
whatever it carries, CORS preflights are refused (no ``Access-Control-Allow-*`` header is
ever sent), and a POST must be ``application/json`` (which a cross-site form cannot send).
Every error is ``{"error": {"code": ..., "message": ...}}``; tokens are never logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentfence.errors import AgentfenceError
from agentfence.inbox.accounts import Account, TokenRefused
from agentfence.inbox.inbox import Inbox, InboxRefused
from agentfence.inbox.views import AnswerView, PendingItem, RequestView

__all__ = [
    "API_MAX_BODY",
    "ApiError",
    "api_routes",
    "cross_site",
    "error_response",
    "parse_decision",
]

API_MAX_BODY = 32 * 1024
"""The largest answer body the API reads, in bytes (larger: 413)."""

# The decisions LangChain's format names.
_KNOWN = ("approve", "edit", "reject", "respond")
_KEYS = {
    "approve": {"type"},
    "edit": {"type", "edited_action"},
    "reject": {"type", "message"},
    "respond": {"type", "message"},
}


class ApiError(AgentfenceError):
    """An API refusal: the HTTP status, a stable ``code`` and a message saying what to do."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """``{"error": {"code": ..., "message": ...}}`` with ``status``."""
    headers = {"www-authenticate": 'Bearer realm="agentfence"'} if status == 401 else None
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def cross_site(request: Request) -> str | None:
    """Why a request looks cross-site (``None``: it does not).

    Browsers send ``Sec-Fetch-Site``, which pages cannot forge; it decides when present.
    Otherwise an ``Origin`` header, when sent, must be the inbox's own.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site in ("same-origin", "none"):
            return None
        return f"Sec-Fetch-Site is {site!r}"
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.url.netloc}"
        if origin != own:
            return f"Origin {origin!r} is not {own!r}"
    return None


def parse_decision(body: Any, *, tool: str) -> tuple[str, str | None, dict[str, Any] | None]:
    """``(type, message, edited args)`` of one decision in LangChain's format.

    Accepts ``{"decisions": [decision]}`` (exactly one: a request holds one call) or the
    decision itself. Raises :class:`ApiError` (422) naming the field that is wrong.
    """
    if not isinstance(body, Mapping):
        raise ApiError(422, "invalid", f"the body must be a JSON object, not {_kind(body)}")
    where = ""
    decision: Any = body
    if "decisions" in body:
        extra = sorted(set(body) - {"decisions"})
        if extra:
            raise ApiError(422, "invalid", f"unexpected field {extra[0]!r} beside 'decisions'")
        decisions = body["decisions"]
        if not isinstance(decisions, list) or len(decisions) != 1:
            got = len(decisions) if isinstance(decisions, list) else _kind(decisions)
            raise ApiError(
                422,
                "invalid",
                f"decisions must be a list of exactly 1 decision (this request holds one "
                f"call), got {got}",
            )
        decision, where = decisions[0], "decisions[0]."
        if not isinstance(decision, Mapping):
            raise ApiError(422, "invalid", f"decisions[0] must be an object, not {_kind(decision)}")
    kind = decision.get("type")
    if not isinstance(kind, str):
        raise ApiError(
            422,
            "invalid",
            f"{where}type must be one of approve, edit, reject (a string), got {_kind(kind)}",
        )
    if kind not in _KNOWN:
        raise ApiError(
            422,
            "decision_not_allowed",
            f"{where}type {kind!r} is not a decision; use approve, edit, reject or respond",
        )
    extra = sorted(set(decision) - _KEYS[kind])
    if extra:
        raise ApiError(422, "invalid", f"unexpected field {where}{extra[0]} in a {kind} decision")
    message = decision.get("message")
    if message is not None and not isinstance(message, str):
        raise ApiError(422, "invalid", f"{where}message must be a string, got {_kind(message)}")
    edited: dict[str, Any] | None = None
    if kind == "edit":
        action = decision.get("edited_action")
        if not isinstance(action, Mapping):
            raise ApiError(
                422,
                "invalid",
                f'{where}edited_action must be an object {{"name": ..., "args": {{...}}}}, '
                f"got {_kind(action)}",
            )
        extra = sorted(set(action) - {"name", "args"})
        if extra:
            raise ApiError(422, "invalid", f"unexpected field {where}edited_action.{extra[0]}")
        if action.get("name") != tool:
            raise ApiError(
                422,
                "invalid",
                f"{where}edited_action.name must be {tool!r} (an edit changes the arguments, "
                f"never the tool), got {action.get('name')!r}",
            )
        args = action.get("args")
        if not isinstance(args, Mapping):
            raise ApiError(
                422,
                "invalid",
                f"{where}edited_action.args must be an object of all the call's arguments, "
                f"got {_kind(args)}",
            )
        edited = dict(args)
    return kind, message, edited


def _kind(value: Any) -> str:
    """A JSON value's type as JSON names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# --- what the API shows --------------------------------------------------------------------


def _pending_json(item: PendingItem, inbox: Inbox) -> dict[str, Any]:
    stored = inbox.get(item.request_id)
    return {
        "request_id": item.request_id,
        "tool": item.tool,
        "principal": item.principal,
        "agent": item.agent,
        "reasons": list(stored.request.reasons),
        "risk": item.risk,
        "created_us": item.created_us,
        "expires_us": item.expires_us,
        "allowed_decisions": list(inbox.allowed_decisions(stored.request)),
    }


def _answer_json(answer: AnswerView | None) -> dict[str, Any] | None:
    if answer is None:
        return None
    return {
        "approver": answer.approver,
        "decision": answer.decision,
        "message": answer.message,
        "edited_args": answer.edited_args,
        "answered_us": answer.answered_us,
        "key": answer.key,
        "used_us": answer.used_us,
        "verdict": answer.verdict,
        "verdict_reason": answer.verdict_reason,
    }


def _request_json(view: RequestView, inbox: Inbox) -> dict[str, Any]:
    request = view.request
    # Masked (sensitive) arguments show the mask unless the caller asked ``?reveal=1``.
    args = {a.name: a.shown if a.masked else request.args[a.name] for a in view.args if a.present}
    allowed = list(inbox.allowed_decisions(request))
    description = f"{request.tool} for {request.principal} needs approval: " + "; ".join(
        request.reasons
    )
    return {
        "request_id": request.request_id,
        "status": view.status,
        "tool": request.tool,
        "args": args,
        "masked_args": sorted(a.name for a in view.args if a.masked),
        "principal": request.principal,
        "agent": request.agent,
        "thread": request.thread,
        "reasons": list(request.reasons),
        "policy_ids": list(request.policy_ids),
        "policy_hash": request.policy_hash,
        "action_digest": request.action_digest,
        "risk": request.risk,
        "approvers": list(request.approvers),
        "created_us": request.created_us,
        "expires_us": request.expires_us,
        "allowed_decisions": allowed if view.answerable else [],
        # The same request in LangChain's human-in-the-loop format, for clients that speak it.
        "action_request": {"name": request.tool, "args": args, "description": description},
        "review_config": {"action_name": request.tool, "allowed_decisions": allowed},
        "answer": _answer_json(view.answer),
    }


# --- the handlers --------------------------------------------------------------------------


class _Api:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def _account(self, request: Request) -> Account:
        """The approver the bearer token answers as; refuses anything else (never a cookie)."""
        crossing = cross_site(request)
        if crossing is not None:
            raise ApiError(
                403,
                "cross_site",
                f"cross-site request refused ({crossing}); the API is for programs holding a "
                "token, not for pages on other sites",
            )
        header = request.headers.get("authorization")
        if header is None:
            raise ApiError(
                401,
                "no_token",
                "no API token: send `Authorization: Bearer <token>` (the inbox's session "
                "cookie does not work here); the inbox operator issues tokens with `agentfence "
                "inbox token issue NAME`",
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "bad_token",
                "the Authorization header must be `Bearer <token>`",
            )
        try:
            account, _ = await run_in_threadpool(self.inbox.accounts.authenticate, token.strip())
        except TokenRefused as refused:
            code = "bad_token" if refused.code == "unknown" else f"{refused.code}_token"
            raise ApiError(401, code, str(refused)) from None
        return account

    async def list_requests(self, request: Request) -> Response:
        account = await self._account(request)
        pending = await run_in_threadpool(self.inbox.pending, account)
        items = await run_in_threadpool(
            lambda: [_pending_json(item, self.inbox) for item in pending.items]
        )
        return JSONResponse({"requests": items, "others": pending.others})

    async def get_request(self, request: Request) -> Response:
        account = await self._account(request)
        request_id = request.path_params["request_id"]
        reveal = request.query_params.get("reveal") == "1"
        view = await run_in_threadpool(
            lambda: self.inbox.request(request_id, account, reveal=reveal)
        )
        if not view.allowed:
            raise ApiError(
                403, "not_allowed", f"{account.principal} may not see this request: {view.why_not}"
            )
        return JSONResponse(await run_in_threadpool(_request_json, view, self.inbox))

    async def answer(self, request: Request) -> Response:
        account = await self._account(request)
        request_id = request.path_params["request_id"]
        parsed = await _json_body(request)
        stored = await run_in_threadpool(self.inbox.get, request_id)
        kind, message, edited = parse_decision(parsed, tool=stored.request.tool)
        answer = await run_in_threadpool(
            lambda: self.inbox.answer(
                account, request_id, decision=kind, message=message, edited_args=edited
            )
        )
        return JSONResponse(
            {
                "request_id": request_id,
                "status": "answered",
                "decision": answer.decision,
                "approver": answer.approver,
                "answered_us": answer.answered_us,
            }
        )

    async def answer_many(self, request: Request) -> Response:
        """Several answers in one body, each given exactly as :meth:`answer` gives one (its
        own decision, check, signature and store); a refusal is that request's alone."""
        account = await self._account(request)
        items = _answer_items(await _json_body(request))

        def answer_each() -> list[dict[str, Any]]:
            results: list[dict[str, Any]] = []
            for request_id, decision in items:
                try:
                    stored = self.inbox.get(request_id)
                    kind, message, edited = parse_decision(decision, tool=stored.request.tool)
                    answer = self.inbox.answer(
                        account, request_id, decision=kind, message=message, edited_args=edited
                    )
                except (ApiError, InboxRefused) as exc:
                    error = {"code": exc.code, "message": str(exc)}
                    results.append({"request_id": request_id, "status": "refused", "error": error})
                    continue
                results.append(
                    {
                        "request_id": request_id,
                        "status": "answered",
                        "decision": answer.decision,
                        "approver": answer.approver,
                        "answered_us": answer.answered_us,
                    }
                )
            return results

        results = await run_in_threadpool(answer_each)
        answered = sum(r["status"] == "answered" for r in results)
        return JSONResponse(
            {"answered": answered, "refused": len(results) - answered, "results": results}
        )

    async def preflight(self, request: Request) -> Response:
        # No Access-Control-Allow-* header, ever: browsers then refuse the cross-site call.
        return error_response(
            405,
            "cors_refused",
            "the API does not answer CORS preflights: call it from a program with a token, "
            "not from a page on another site",
        )


MAX_ANSWERS = 100
"""The most answers one ``POST /api/v1/answers`` may carry."""


async def _json_body(request: Request) -> Any:
    """The JSON body of a POST; 415 unless it is sent as ``application/json``, 400 if not JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the answer as JSON with `Content-Type: application/json`",
        )
    body = await _read_body(request)
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(
            400,
            "malformed_json",
            f'the body is not JSON ({exc}); send e.g. {{"decisions": [{{"type": "approve"}}]}}',
        ) from None


def _answer_items(body: Any) -> list[tuple[str, Any]]:
    """``(request_id, decision)`` of each answer of ``{"answers": [...]}``; 422 (and nothing
    answered) when the list or any item is not of that shape."""
    example = '{"answers": [{"request_id": "...", "decision": {"type": "approve"}}]}'
    if not isinstance(body, Mapping) or set(body) != {"answers"}:
        raise ApiError(422, "invalid", f"the body must be {example}")
    answers = body["answers"]
    if not isinstance(answers, list) or not 1 <= len(answers) <= MAX_ANSWERS:
        got = len(answers) if isinstance(answers, list) else _kind(answers)
        raise ApiError(
            422, "invalid", f"answers must be a list of 1 to {MAX_ANSWERS} answers, got {got}"
        )
    items = []
    for index, item in enumerate(answers):
        if (
            not isinstance(item, Mapping)
            or set(item) != {"request_id", "decision"}
            or not isinstance(item["request_id"], str)
        ):
            raise ApiError(
                422,
                "invalid",
                f"answers[{index}] must be an object of request_id (a string) and decision "
                "(one decision in LangChain's format); nothing was answered",
            )
        items.append((item["request_id"], item["decision"]))
    return items


async def _read_body(request: Request) -> bytes:
    """The body, at most :data:`API_MAX_BODY` bytes (413 past it, read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > API_MAX_BODY:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > API_MAX_BODY:
            raise _too_large()
    return bytes(body)


def _too_large() -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"the body is over {API_MAX_BODY // 1024} KiB; an answer is a small JSON object",
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _handled(handler: Any) -> Any:
    """``handler`` with every refusal turned into the API's JSON error."""

    async def run(request: Request) -> Response:
        try:
            response: Response = await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, str(exc))
        except InboxRefused as exc:
            return error_response(exc.status, exc.code, str(exc))
        return response

    return run


def api_routes(inbox: Inbox) -> list[Route]:
    """The API's routes over ``inbox``, to mount beside the inbox's pages."""
    api = _Api(inbox)
    paths = (
        ("/api/v1/answers", api.answer_many, "POST"),
        ("/api/v1/requests", api.list_requests, "GET"),
        ("/api/v1/requests/{request_id:str}", api.get_request, "GET"),
        ("/api/v1/requests/{request_id:str}/answer", api.answer, "POST"),
    )
    routes = []
    for path, handler, method in paths:
        routes.append(Route(path, _handled(handler), methods=[method]))
        routes.append(Route(path, _handled(api.preflight), methods=["OPTIONS"]))
    return routes
