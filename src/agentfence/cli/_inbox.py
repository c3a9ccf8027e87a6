"""The inbox's commands: ``agentfence inbox serve|add-approver|remove-approver|token``.

:func:`register` adds them to the main ``agentfence`` app. The web stack (Starlette,
Jinja2, uvicorn: the ``inbox`` extra) is imported only by ``serve``, so the rest of the CLI
works without it. Errors leave through ``agentfence.cli.main`` (exit 2).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from agentfence._signing import read_private_key
from agentfence._storage.database import Location, parse_url
from agentfence.approvals import parse_duration
from agentfence.cli._common import JsonOption, err, load_tools, out
from agentfence.config import Settings
from agentfence.errors import AgentfenceWarning, ConfigurationError
from agentfence.inbox.accounts import MIN_PASSWORD, ApproverAccounts
from agentfence.inbox.inbox import Inbox
from agentfence.inbox.views import iso, now_us
from agentfence.policy import EntityRef

__all__ = ["register"]

inbox_app = typer.Typer(
    help="The approvers' web inbox: serve it, and manage who may sign in.",
    no_args_is_help=True,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="The decision log holding the approval requests: sqlite:///PATH, a path, or "
        "postgresql://... (default: $AGENTFENCE_LOG).",
    ),
]


token_app = typer.Typer(
    help="API tokens: let a program answer as an approver through the inbox's answer API.",
    no_args_is_help=True,
)
inbox_app.add_typer(token_app, name="token")


def register(app: typer.Typer) -> None:
    """Add the ``inbox`` group to ``app``."""
    app.add_typer(inbox_app, name="inbox")


def _db(db: str | None) -> Location:
    url = db or Settings.from_env().log
    if not url:
        raise ConfigurationError(
            "no decision log given: pass --db sqlite:///PATH or postgresql://... (where the "
            "fence logs to) or "
            "set AGENTFENCE_LOG"
        )
    return parse_url(url)


@inbox_app.command("add-approver")
def add_approver(
    name: Annotated[str, typer.Argument(help="The name the approver signs in with, e.g. fran.")],
    principal: Annotated[
        str,
        typer.Option(
            "--principal",
            help="Who they answer as, as declared in approvers.toml, e.g. 'User::\"fran\"'.",
        ),
    ],
    key: Annotated[
        Path,
        typer.Option(
            "--key",
            help="Their private key file (from `agentfence keys generate`); the inbox signs "
            "their answers with it, so it must stay readable by the inbox's user only.",
        ),
    ],
    db: DbOption = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Change an existing account (its sessions and API tokens end)."
        ),
    ] = False,
) -> None:
    """Let an approver sign in to the inbox: store a password hash and their key's path."""
    path = _db(db)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AgentfenceWarning)
        signer = read_private_key(key)
    for warning in caught:
        err.print(f"warning: {warning.message}", markup=False)
    try:
        entity = EntityRef.parse(principal, "User")
    except ValueError as exc:
        raise ConfigurationError(f"--principal {principal!r}: {exc}") from exc
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(
            f"Password for {name} (at least {MIN_PASSWORD} characters)",
            hide_input=True,
            confirmation_prompt=True,
        )
    accounts = ApproverAccounts(path, clock=now_us)
    account = accounts.add(
        name,
        principal=str(entity),
        key_path=key.resolve(),
        key_name=f"{signer.name}+{signer.key_id:08x}",
        password=password,
        replace=replace,
    )
    out.print(
        f"{'updated' if replace else 'added'} inbox approver {account.name}: answers as "
        f"{account.principal}, signed with key {account.key_name} ({account.key_path}). "
        f"approvers.toml must declare that key for {account.principal}; `agentfence inbox "
        "serve` checks it at start.",
        markup=False,
    )


@inbox_app.command("remove-approver")
def remove_approver(
    name: Annotated[str, typer.Argument(help="The approver's sign-in name.")],
    db: DbOption = None,
) -> None:
    """Delete an approver's inbox account and end their sessions and API tokens at once."""
    accounts = ApproverAccounts(_db(db), clock=now_us)
    if not accounts.remove(name):
        raise ConfigurationError(f"there is no inbox approver {name!r}")
    out.print(f"removed inbox approver {name}; their sessions and API tokens ended", markup=False)


@token_app.command("issue")
def token_issue(
    name: Annotated[str, typer.Argument(help="The inbox approver the token answers as.")],
    expires: Annotated[
        str,
        typer.Option("--expires", help="How long the token works: 90s, 15m, 12h, 30d."),
    ] = "30d",
    note: Annotated[
        str, typer.Option("--note", help="What the token is for, shown by `token list`.")
    ] = "",
    db: DbOption = None,
) -> None:
    """Issue an API token for an approver; it is printed once, only its hash is kept."""
    try:
        seconds = parse_duration(expires)
    except ValueError as exc:
        raise ConfigurationError(f"--expires: {exc}") from None
    accounts = ApproverAccounts(_db(db), clock=now_us)
    issued = accounts.issue_token(name, expires_seconds=seconds, note=note)
    info = issued.info
    # The token alone on stdout (TOKEN=$(agentfence inbox token issue fran)); the rest on stderr.
    out.print(issued.token, markup=False, soft_wrap=True)
    err.print(
        f"issued API token {info.id} for {info.name} ({info.principal}), expires "
        f"{iso(info.expires_us)}. It is shown only now: keep it secret, send it as "
        "`Authorization: Bearer <token>`; `agentfence inbox token revoke "
        f"{info.id}` ends it.",
        markup=False,
    )


@token_app.command("list")
def token_list(
    name: Annotated[
        str | None, typer.Argument(help="Only this approver's tokens (default: everyone's).")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List API tokens (never the tokens themselves): whose, state, expiry, last use."""
    accounts = ApproverAccounts(_db(db), clock=now_us)
    now = now_us()
    tokens = accounts.tokens(name)
    if as_json:
        rows = [{**t.__dict__, "state": t.state(now)} for t in tokens]
        out.print_json(json.dumps({"tokens": rows}, ensure_ascii=False))
        return
    if not tokens:
        out.print("no API tokens", markup=False)
        return
    for t in tokens:
        used = iso(t.last_used_us) if t.last_used_us else "never"
        out.print(
            f"{t.id}  {t.name} ({t.principal})  {t.state(now)}  expires {iso(t.expires_us)}  "
            f"last used {used}" + (f"  {t.note}" if t.note else ""),
            markup=False,
            soft_wrap=True,
        )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id, from `token list`.")],
    db: DbOption = None,
) -> None:
    """Revoke an API token: it stops working at once."""
    accounts = ApproverAccounts(_db(db), clock=now_us)
    info = accounts.revoke_token(token_id)
    out.print(f"revoked API token {info.id} of {info.name}", markup=False)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@inbox_app.command("serve")
def serve(
    tools: Annotated[
        str,
        typer.Option(
            "--tools",
            help="The governed tools, as module:attribute, e.g. agentfence.demo.tools:TOOLS "
            "(edited arguments are checked against their schema).",
        ),
    ],
    db: DbOption = None,
    policies: Annotated[
        Path | None,
        typer.Option(
            "--policies",
            help="The fence's policy directory, to check answers against "
            "(default: $AGENTFENCE_POLICY_DIR or ./policies).",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="The address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to listen on.")] = 8765,
    ssl_certfile: Annotated[
        Path | None, typer.Option("--ssl-certfile", help="Serve HTTPS with this certificate.")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option("--ssl-keyfile", help="The certificate's private key.")
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn's log level: info, warning, error.")
    ] = "info",
) -> None:
    """Serve the web inbox: approvers sign in, see what waits, and answer in a browser."""
    try:
        import uvicorn

        from agentfence.inbox import create_app
    except ImportError as exc:
        raise ConfigurationError(
            f"the web inbox needs the inbox extra ({exc}); run `pip install 'agentfence[inbox]'`"
        ) from exc

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigurationError("pass both --ssl-certfile and --ssl-keyfile, or neither")
    settings = Settings.from_env()
    directory = policies or Path(settings.policy_dir)
    inbox = Inbox.open(_db(db), policies=directory, tools=load_tools(tools), settings=settings)
    accounts = inbox.accounts.all()
    if not accounts:
        err.print(
            "warning: no approver can sign in yet; add one with `agentfence inbox add-approver "
            "NAME --principal ... --key ...`",
            markup=False,
        )
    for account in accounts:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AgentfenceWarning)
            with contextlib.suppress(ConfigurationError):  # account_problem says what is wrong
                read_private_key(account.key_path)
        for warning in caught:
            err.print(f"warning: {account.name}: {warning.message}", markup=False)
        problem = inbox.account_problem(account)
        state = f"cannot answer: {problem}" if problem else "ready"
        err.print(f"approver {account.name} ({account.principal}): {state}", markup=False)
    tls = ssl_certfile is not None
    if not tls and not _loopback(host):
        err.print(
            f"warning: serving on {host} over plain HTTP: passwords and session cookies cross "
            "the network unencrypted; pass --ssl-certfile/--ssl-keyfile or put a TLS proxy in "
            "front (and set AGENTFENCE_INBOX_SECURE_COOKIES=true)",
            markup=False,
        )
    app = create_app(inbox, secure_cookies=settings.inbox_secure_cookies)
    scheme = "https" if tls else "http"
    out.print(f"agentfence inbox on {scheme}://{host}:{port}/ (Ctrl-C stops it)", markup=False)
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        log_level=log_level,
        server_header=False,
    )
