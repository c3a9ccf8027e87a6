"""The inbox's web application (Starlette, Jinja templates, a few lines of plain JavaScript).

The one module that imports the ``inbox`` extra's web stack. Pages are rendered on the
server with autoescaping on for every template, so text from agents, tools and approvers
renders as text. Every state-changing request is a POST that must carry the session's CSRF
token (or, for sign-in, the sign-in form's token, kept in a SameSite=Strict cookie), and
one whose ``Origin`` or ``Sec-Fetch-Site`` says it came from another site is refused.
The answer API under ``/api/v1/`` (:mod:`agentfence.inbox.api`) takes bearer tokens only.
An approver may sign in the browser instead (``static/sign.js``, WebCrypto Ed25519): the page
asks ``prepare`` for the checked answer and hands the signed one to ``answer-signed``.
Responses carry a strict Content-Security-Policy: only the inbox's own script and styles run.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import rfc8785
from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentfence.approvals import SIGNED_ANSWER_FORMAT
from agentfence.inbox.accounts import Session
from agentfence.inbox.api import api_routes, cross_site, error_response
from agentfence.inbox.inbox import Inbox, InboxRefused
from agentfence.inbox.views import BatchOutcome, duration, iso

__all__ = ["SESSION_COOKIE", "SIGN_IN_COOKIE", "create_app"]

SESSION_COOKIE = "agentfence_session"
SIGN_IN_COOKIE = "agentfence_signin"
MAX_BODY = 64 * 1024
POLL_SECONDS = 2.0
MAX_SELECTED = 100  # requests one "Approve selected" or "Reject selected" may answer
_HERE = Path(__file__).parent

# Only the inbox's own files load; nothing inline, no frames, forms post only to the inbox.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_DONE = {
    "approve": "Approved.",
    "edit": "Approved with your edited arguments.",
    "reject": "Rejected.",
}

_SELECTED_DONE = {"approve": "approved", "reject": "rejected"}


class _SecurityHeaders:
    """Adds the security headers to every HTTP response (pages, fragments, static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                ]
                if not scope["path"].startswith("/static/"):
                    # Pages show arguments and evidence: never keep them in a cache.
                    extra.append((b"cache-control", b"no-store"))
                if https:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    inbox: Inbox,
    *,
    secure_cookies: bool | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> Starlette:
    """The inbox as an ASGI application over ``inbox``.

    ``secure_cookies``: ``True`` always marks cookies Secure, ``None`` (the default) marks
    them Secure when the request came over TLS (directly or, from a trusted proxy, with
    ``X-Forwarded-Proto: https``). Serve it with ``agentfence inbox serve`` (uvicorn).
    """
    web = _Web(inbox, secure_cookies=secure_cookies, poll_seconds=poll_seconds)
    routes = [
        Route("/", web.pending_page, methods=["GET"]),
        Route("/pending/rows", web.pending_rows, methods=["GET"]),
        Route("/sign-in", web.sign_in_page, methods=["GET"]),
        Route("/sign-in", web.sign_in, methods=["POST"]),
        Route("/sign-out", web.sign_out, methods=["POST"]),
        Route("/history", web.history_page, methods=["GET"]),
        Route("/answer-selected/{decision:str}", web.answer_selected, methods=["POST"]),
        Route("/requests/{request_id:str}", web.request_page, methods=["GET"]),
        Route("/requests/{request_id:str}/answer", web.answer, methods=["POST"]),
        Route("/requests/{request_id:str}/prepare", web.prepare, methods=["POST"]),
        Route("/requests/{request_id:str}/answer-signed", web.answer_signed, methods=["POST"]),
        Route("/requests/{request_id:str}/log/{seq:int}", web.log_page, methods=["GET"]),
        *api_routes(inbox),
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, max_body_size=MAX_BODY)
    app.add_middleware(_SecurityHeaders)
    return app


def _safe_next(target: str | None) -> str:
    """A local path to go to after sign-in; anything else (another site) becomes ``/``."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


_BREAK_AFTER = str.maketrans({c: c + "\u200b" for c in "_:/.@"})


def _breakable(value: Any) -> str:
    """Text that may wrap after ``_ : / . @`` (a zero-width space), for narrow screens."""
    return str(value).translate(_BREAK_AFTER)


def _pretty(value: Any) -> str:
    """Indented JSON; autoescaping makes it safe in HTML."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


class _Web:
    """The request handlers, over one :class:`Inbox`."""

    def __init__(self, inbox: Inbox, *, secure_cookies: bool | None, poll_seconds: float) -> None:
        self.inbox = inbox
        self.secure_cookies = secure_cookies
        self.poll_seconds = poll_seconds
        # Autoescaping is on for every template, whatever its name: all of them are HTML.
        env = Environment(
            loader=FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["duration"] = duration
        env.filters["iso"] = iso
        env.filters["pretty"] = _pretty
        env.filters["breakable"] = _breakable
        self.templates = Jinja2Templates(env=env)

    # --- plumbing --------------------------------------------------------------------------

    def _secure(self, request: Request) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return request.url.scheme == "https"

    async def _session(self, request: Request) -> Session | None:
        return await run_in_threadpool(
            self.inbox.accounts.session, request.cookies.get(SESSION_COOKIE)
        )

    def _render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        session: Session | None = None,
        status: int = 200,
    ) -> Response:
        values = {
            "account": session.account if session else None,
            "csrf": session.csrf if session else "",
            "poll_seconds": self.poll_seconds,
            **context,
        }
        return self.templates.TemplateResponse(request, template, values, status_code=status)

    def _to_sign_in(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?next={quote(target, safe='')}", status_code=303)

    def _error(
        self, request: Request, session: Session | None, status: int, message: str
    ) -> Response:
        return self._render(
            request,
            "error.html",
            {"status": status, "message": message},
            session=session,
            status=status,
        )

    def _cross_site(self, request: Request) -> str | None:
        """Why a POST looks cross-site (``None``: it does not); the CSRF token is checked too."""
        return cross_site(request)

    async def _checked_post(
        self, request: Request
    ) -> tuple[Session | None, FormData | None, Response | None]:
        """The session and form of a POST, or the response refusing it (CSRF, no session)."""
        session = await self._session(request)
        form = await request.form()
        crossing = self._cross_site(request)
        if crossing is not None:
            return (
                session,
                None,
                self._error(request, session, 403, f"cross-site request refused ({crossing})"),
            )
        if session is None:
            return (
                None,
                None,
                self._error(
                    request,
                    None,
                    401,
                    "you are not signed in (your session may have expired); sign in and try again",
                ),
            )
        token = form.get("csrf")
        if not isinstance(token, str) or not session.csrf_matches(token):
            return (
                session,
                None,
                self._error(
                    request,
                    session,
                    403,
                    "the form's CSRF token is missing or wrong, so nothing was done; reload the "
                    "page and try again",
                ),
            )
        return session, form, None

    # --- sign-in and out -------------------------------------------------------------------

    async def sign_in_page(self, request: Request) -> Response:
        if await self._session(request) is not None:
            return RedirectResponse(_safe_next(request.query_params.get("next")), 303)
        return self._sign_in_form(request)

    def _sign_in_form(
        self, request: Request, *, error: str | None = None, status: int = 200, name: str = ""
    ) -> Response:
        token = request.cookies.get(SIGN_IN_COOKIE) or ""
        if len(token) != 43:
            token = secrets.token_urlsafe(32)
        response = self._render(
            request,
            "sign_in.html",
            {
                "form_token": token,
                "next": _safe_next(request.query_params.get("next")),
                "error": error,
                "name": name,
                "signed_out": request.query_params.get("signed_out") == "1",
            },
            status=status,
        )
        response.set_cookie(
            SIGN_IN_COOKIE,
            token,
            max_age=3600,
            path="/sign-in",
            secure=self._secure(request),
            httponly=True,
            samesite="strict",
        )
        return response

    async def sign_in(self, request: Request) -> Response:
        form = await request.form()
        crossing = self._cross_site(request)
        if crossing is not None:
            return self._error(request, None, 403, f"cross-site request refused ({crossing})")
        cookie = request.cookies.get(SIGN_IN_COOKIE) or ""
        token = form.get("form_token")
        if not cookie or not isinstance(token, str) or not hmac.compare_digest(cookie, token):
            return self._sign_in_form(
                request,
                error="The sign-in form expired or was not sent by this page; try again.",
                status=403,
            )
        name = str(form.get("name") or "").strip()
        password = str(form.get("password") or "")
        signed = await run_in_threadpool(
            self.inbox.accounts.sign_in,
            name,
            password,
            replacing=request.cookies.get(SESSION_COOKIE),
        )
        if signed is None:
            return self._sign_in_form(
                request,
                error="Wrong name or password (after 5 wrong tries, wait 5 minutes).",
                status=401,
                name=name,
            )
        response = RedirectResponse(_safe_next(str(form.get("next") or "/")), status_code=303)
        # A fresh id minted by sign_in (never the one the browser brought): no fixation.
        response.set_cookie(
            SESSION_COOKIE,
            signed.session_id,
            path="/",
            secure=self._secure(request),
            httponly=True,
            samesite="lax",
        )
        response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
        return response

    async def sign_out(self, request: Request) -> Response:
        _, _, refused = await self._checked_post(request)
        if refused is not None:
            return refused
        await run_in_threadpool(self.inbox.accounts.sign_out, request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/sign-in?signed_out=1", status_code=303)
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=self._secure(request), httponly=True, samesite="lax"
        )
        return response

    # --- pages -------------------------------------------------------------------------------

    async def pending_page(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return self._to_sign_in(request)
        pending = await run_in_threadpool(self.inbox.pending, session.account)
        return self._render(
            request, "pending.html", {"pending": pending, "nav": "pending"}, session=session
        )

    async def pending_rows(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return HTMLResponse("sign in again", status_code=401)
        pending = await run_in_threadpool(self.inbox.pending, session.account)
        return self._render(request, "_rows.html", {"pending": pending}, session=session)

    async def request_page(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return self._to_sign_in(request)
        request_id = request.path_params["request_id"]
        reveal = request.query_params.get("reveal") == "1"
        try:
            view = await run_in_threadpool(
                lambda: self.inbox.request(request_id, session.account, reveal=reveal)
            )
        except InboxRefused as exc:
            return self._error(request, session, exc.status, str(exc))
        done = request.query_params.get("done")
        notice = _DONE.get(done or "") if view.status in ("answered", "used") else None
        return self._render(
            request,
            "request.html",
            {"view": view, "notice": notice, "nav": "pending", "fields": {}, "message": ""},
            session=session,
        )

    async def answer(self, request: Request) -> Response:
        session, form, refused = await self._checked_post(request)
        if refused is not None or session is None or form is None:
            return refused or self._error(request, session, 400, "bad request")
        request_id = request.path_params["request_id"]
        decision = str(form.get("decision") or "")
        message = str(form.get("message") or "")
        fields = _edit_fields(form)
        account = session.account
        try:
            await run_in_threadpool(
                lambda: self.inbox.answer(
                    account, request_id, decision=decision, message=message, fields=fields
                )
            )
        except InboxRefused as exc:
            try:
                view = await run_in_threadpool(lambda: self.inbox.request(request_id, account))
            except InboxRefused:
                return self._error(request, session, exc.status, str(exc))
            return self._render(
                request,
                "request.html",
                {
                    "view": view,
                    "error": str(exc),
                    "nav": "pending",
                    "fields": fields,
                    "message": message,
                    "open_form": decision,
                },
                session=session,
                status=exc.status,
            )
        return RedirectResponse(
            f"/requests/{quote(request_id)}?done={quote(decision)}", status_code=303
        )

    async def answer_selected(self, request: Request) -> Response:
        """Approve selected / Reject selected: each selected request answered on its own
        through :meth:`Inbox.answer` (signed by the inbox with the account's key, bound to
        that request), a refusal of one never stopping the others; a page lists each outcome.
        """
        session, form, refused = await self._checked_post(request)
        if refused is not None or session is None or form is None:
            return refused or self._error(request, session, 400, "bad request")
        decision = request.path_params["decision"]
        if decision not in _SELECTED_DONE:
            return self._error(
                request, session, 404, f"there is no batch answer {decision!r}; "
                "use Approve selected or Reject selected on the pending list",
            )  # fmt: skip
        message = str(form.get("message") or "")
        ids = list(dict.fromkeys(str(v) for v in form.getlist("request") if isinstance(v, str)))
        problem = None
        if not ids:
            problem = "no request was selected; tick the requests to answer, then press again"
        elif len(ids) > MAX_SELECTED:
            problem = f"{len(ids)} requests were selected; answer at most {MAX_SELECTED} at once"
        elif decision == "reject" and not message.strip():
            problem = (
                "say why you reject the selected calls (the agents' models read your message); "
                "nothing was answered"
            )
        if problem is not None:
            return self._error(request, session, 422, problem)
        account = session.account

        def answer_each() -> list[BatchOutcome]:
            outcomes = []
            for request_id in ids:
                # Each its own answer: a refusal is this request's alone.
                try:
                    self.inbox.answer(account, request_id, decision=decision, message=message)
                except InboxRefused as exc:
                    outcomes.append(BatchOutcome(request_id, False, str(exc)))
                    continue
                held = self.inbox.get(request_id).request
                done = _SELECTED_DONE[decision]
                outcomes.append(BatchOutcome(request_id, True, done, held.tool, held.principal))
            return outcomes

        outcomes = await run_in_threadpool(answer_each)
        return self._render(
            request,
            "answered.html",
            {
                "outcomes": outcomes,
                "answered": sum(o.answered for o in outcomes),
                "decision": decision,
                "verb": "Approved" if decision == "approve" else "Rejected",
                "nav": "pending",
            },
            session=session,
        )

    # --- signing in the browser ------------------------------------------------------------
    # The page's script asks for the checked answer (prepare), signs its canonical bytes with
    # the key the approver imported into this browser (WebCrypto Ed25519), and hands the
    # signed answer back (answer-signed). The server never sees that key.

    async def prepare(self, request: Request) -> Response:
        session, form, refused = await self._checked_post(request)
        if refused is not None or session is None or form is None:
            status = refused.status_code if refused is not None else 400
            return error_response(status, "refused", "sign in again and reload the page")
        request_id = request.path_params["request_id"]
        fields = _edit_fields(form)
        account = session.account
        try:
            answer = await run_in_threadpool(
                lambda: self.inbox.prepare(
                    account,
                    request_id,
                    decision=str(form.get("decision") or ""),
                    message=str(form.get("message") or ""),
                    fields=fields,
                )
            )
        except InboxRefused as exc:
            return error_response(exc.status, exc.code, str(exc))
        data = answer.model_dump(mode="json")
        # The bytes an answer's signature covers: its RFC 8785 canonical JSON, as sign_answer
        # and check_answer compute them.
        return JSONResponse(
            {
                "answer": json.dumps(data, ensure_ascii=False),
                "bytes": base64.b64encode(rfc8785.dumps(data)).decode("ascii"),
            }
        )

    async def answer_signed(self, request: Request) -> Response:
        session = await self._session(request)
        crossing = self._cross_site(request)
        if crossing is not None:
            return error_response(403, "cross_site", f"cross-site request refused ({crossing})")
        if session is None:
            return error_response(401, "signed_out", "you are not signed in; sign in again")
        if not session.csrf_matches(request.headers.get("x-csrf-token")):
            return error_response(403, "csrf", "the CSRF token is missing or wrong; reload")
        try:
            body = json.loads(await request.body())
            envelope = {
                "format": SIGNED_ANSWER_FORMAT,
                "answer": json.loads(body["answer"]),
                "key": body["key"],
                "signature": body["signature"],
            }
        except (ValueError, KeyError, TypeError) as exc:
            return error_response(400, "malformed", f"malformed signed answer ({exc})")
        request_id = request.path_params["request_id"]
        account = session.account
        try:
            answer = await run_in_threadpool(
                lambda: self.inbox.submit_signed(account, request_id, envelope)
            )
        except InboxRefused as exc:
            return error_response(exc.status, exc.code, str(exc))
        target = f"/requests/{quote(request_id)}?done={quote(answer.decision)}"
        return JSONResponse({"location": target})

    async def history_page(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return self._to_sign_in(request)
        items = await run_in_threadpool(self.inbox.history, session.account)
        return self._render(
            request, "history.html", {"items": items, "nav": "history"}, session=session
        )

    async def log_page(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return self._to_sign_in(request)
        request_id = request.path_params["request_id"]
        seq = int(request.path_params["seq"])
        try:
            entry = await run_in_threadpool(
                lambda: self.inbox.log_entry(request_id, seq, session.account)
            )
        except InboxRefused as exc:
            return self._error(request, session, exc.status, str(exc))
        return self._render(
            request,
            "log_entry.html",
            {"entry": entry, "db": self.inbox.log.display, "nav": "pending"},
            session=session,
        )


def _edit_fields(form: Any) -> dict[str, str]:
    """The edit form's ``arg.NAME`` text fields, by argument name."""
    return {
        key[len("arg.") :]: str(value)
        for key, value in form.multi_items()
        if key.startswith("arg.") and isinstance(value, str)
    }
