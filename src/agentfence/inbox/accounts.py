"""Inbox sign-in: approvers' credentials and sessions, beside the approvals store.

An approver account is created by ``agentfence inbox add-approver`` and holds the
principal the approver answers as, the path of their private key file (the inbox signs their
answers with it) and a password hash. Passwords are hashed with scrypt (RFC 7914), a
memory-hard KDF in the standard library, with a random 16-byte salt per password.

Sessions are server-side rows: the browser holds a random 256-bit id, the table holds only
its SHA-256, so reading the database does not let anyone take over a session. A session
ends when it is idle for too long, when it reaches its maximum age, or at sign-out; a fresh
id is minted at every sign-in, so an id planted before sign-in is never promoted
(session fixation). Each session carries its own CSRF token.

API tokens let a program answer as an approver (``agentfence inbox token issue``): a token
is ``aft_<id>_<secret>``, the id 8 random bytes (hex) and the secret 32 random bytes; the
table holds the id and the SHA-256 of the whole token, found by its id and compared in
constant time. A token is bound to one account (and the principal it answers as), expires,
and records when it was last used; revoking it, removing the account or changing it with
``--replace`` ends it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agentfence._storage.database import Database, Location, parse_url
from agentfence.errors import AgentfenceError, ConfigurationError

__all__ = [
    "Account",
    "ApiToken",
    "ApproverAccounts",
    "IssuedToken",
    "Session",
    "TokenRefused",
]

# scrypt cost: N=2**15, r=8, p=1 takes 32 MiB and about 0.1 s per hash (RFC 7914 section 2
# leaves the choice to the application; these are the values OWASP recommends as a minimum).
_SCRYPT_N = 2**15
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_HASH_PREFIX = "scrypt"
MIN_PASSWORD = 12
# After this many wrong passwords in a row an account is locked for LOCK_SECONDS.
MAX_FAILURES = 5
LOCK_SECONDS = 300

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox_approvers (
    name TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    key_path TEXT NOT NULL,
    key_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until_us BIGINT
);
CREATE TABLE IF NOT EXISTS inbox_sessions (
    id_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    seen_us BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_sessions_name ON inbox_sessions (name);
CREATE TABLE IF NOT EXISTS inbox_api_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    principal TEXT NOT NULL,
    note TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    expires_us BIGINT NOT NULL,
    last_used_us BIGINT,
    revoked_us BIGINT
);
CREATE INDEX IF NOT EXISTS inbox_api_tokens_name ON inbox_api_tokens (name);
"""
TOKEN_PREFIX = "aft_"  # noqa: S105 - the public marker of a token, not a secret
MAX_NOTE = 200


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` of a password, with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(
        (_HASH_PREFIX, str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest))
    )


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash from :func:`hash_password` (constant-time compare)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _HASH_PREFIX:
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)


# A hash checked when the name is unknown, so that a wrong name takes as long as a wrong
# password and sign-in timing does not tell which names exist.
_DUMMY_HASH = "$".join(
    (_HASH_PREFIX, str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), "AAAA", "AAAA")
)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def _token_id(token: str) -> str | None:
    """The id part of an ``aft_<16 hex>_<43 base64url>`` token; ``None`` if it is not one."""
    if len(token) != len(TOKEN_PREFIX) + 16 + 1 + 43 or not token.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    hexdigits = set("0123456789abcdef")
    if sep != "_" or len(token_id) != 16 or not set(token_id) <= hexdigits:
        return None
    if len(secret) != 43:
        return None
    return token_id


@dataclass(frozen=True)
class Account:
    """An approver who may sign in: the principal they answer as and their key file."""

    name: str
    principal: str
    key_path: Path
    key_name: str
    """``<name>+<key id>`` of the key registered with the account (checked before signing)."""


@dataclass(frozen=True)
class Session:
    """A signed-in approver's session: who, its CSRF token, and its times."""

    account: Account
    csrf: str = field(repr=False)
    created_us: int
    seen_us: int

    def csrf_matches(self, token: str | None) -> bool:
        """Whether a submitted CSRF token is this session's (constant-time compare)."""
        return bool(token) and hmac.compare_digest(self.csrf.encode(), str(token).encode())


@dataclass(frozen=True)
class SignIn:
    """A new session: the id to put in the cookie (shown once, never stored) and the row."""

    session_id: str = field(repr=False)
    session: Session


@dataclass(frozen=True)
class ApiToken:
    """An API token as stored (never the token itself): whose, why, and its times."""

    id: str
    name: str
    """The inbox account it answers as."""
    principal: str
    note: str
    created_us: int
    expires_us: int
    last_used_us: int | None
    revoked_us: int | None

    def state(self, now_us: int) -> Literal["active", "expired", "revoked"]:
        """``active``, ``expired`` or ``revoked`` at ``now_us``."""
        if self.revoked_us is not None:
            return "revoked"
        return "expired" if now_us >= self.expires_us else "active"


@dataclass(frozen=True)
class IssuedToken:
    """A new API token: the secret to hand over (shown once, never stored) and its row."""

    token: str = field(repr=False)
    info: ApiToken


class TokenRefused(AgentfenceError):  # an outcome the web layer answers with 401, not a bug
    """An API token that does not authenticate; ``code`` names why (``unknown``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ApproverAccounts:
    """Approver accounts and their sessions, in one SQLite file (the approvals store's).

    ``clock`` returns microseconds since the epoch (tests pass a settable one).
    """

    def __init__(
        self,
        path: str | Path | Location,
        *,
        idle_seconds: int = 30 * 60,
        max_seconds: int = 12 * 3600,
        clock: Callable[[], int],
    ) -> None:
        self.location = parse_url(path)
        self.path = self.location.path
        self.idle_us = idle_seconds * 1_000_000
        self.max_us = max_seconds * 1_000_000
        self._clock = clock
        self._db = Database(self.location)
        self._db.create_schema(_SCHEMA)

    def _conn(self) -> Database:
        return self._db

    def _tx(self) -> AbstractContextManager[Database]:
        return self._db.transaction()

    # --- accounts ------------------------------------------------------------------------

    def add(
        self,
        name: str,
        *,
        principal: str,
        key_path: Path,
        key_name: str,
        password: str,
        replace: bool = False,
    ) -> Account:
        """Create (or with ``replace``, change) an account; its sessions and API tokens end
        on change."""
        if not name or not name.isprintable() or len(name) > 64:
            raise ConfigurationError(
                f"approver name {name!r} must be 1 to 64 printable characters, e.g. fran"
            )
        if len(password) < MIN_PASSWORD:
            raise ConfigurationError(
                f"the password is {len(password)} characters; use at least {MIN_PASSWORD} "
                "(a passphrase of a few words is fine)"
            )
        digest = hash_password(password)
        with self._tx() as conn:
            exists = conn.execute(
                "SELECT 1 FROM inbox_approvers WHERE name = ?", (name,)
            ).fetchone()
            if exists and not replace:
                raise ConfigurationError(
                    f"approver {name!r} already has an inbox account; pass --replace to change "
                    "their principal, key or password (their sessions and API tokens end)"
                )
            conn.execute("DELETE FROM inbox_approvers WHERE name = ?", (name,))
            conn.execute("DELETE FROM inbox_sessions WHERE name = ?", (name,))
            conn.execute("DELETE FROM inbox_api_tokens WHERE name = ?", (name,))
            conn.execute(
                "INSERT INTO inbox_approvers (name, principal, key_path, key_name, "
                "password_hash, created_us) VALUES (?, ?, ?, ?, ?, ?)",
                (name, principal, str(key_path), key_name, digest, self._clock()),
            )
        return Account(name, principal, key_path, key_name)

    def remove(self, name: str) -> bool:
        """Delete an account and end its sessions and API tokens; False if there was none."""
        with self._tx() as conn:
            conn.execute("DELETE FROM inbox_sessions WHERE name = ?", (name,))
            conn.execute("DELETE FROM inbox_api_tokens WHERE name = ?", (name,))
            cur = conn.execute("DELETE FROM inbox_approvers WHERE name = ?", (name,))
            return cur.rowcount == 1

    def get(self, name: str) -> Account | None:
        """The account with this name, if any."""
        row = (
            self._conn()
            .execute(
                "SELECT name, principal, key_path, key_name FROM inbox_approvers WHERE name = ?",
                (name,),
            )
            .fetchone()
        )
        return Account(row[0], row[1], Path(row[2]), row[3]) if row else None

    def all(self) -> list[Account]:
        """Every account, by name."""
        rows = (
            self._conn()
            .execute(
                "SELECT name, principal, key_path, key_name FROM inbox_approvers ORDER BY name"
            )
            .fetchall()
        )
        return [Account(r[0], r[1], Path(r[2]), r[3]) for r in rows]

    # --- sessions ------------------------------------------------------------------------

    def sign_in(self, name: str, password: str, *, replacing: str | None = None) -> SignIn | None:
        """Check a password and open a new session; ``None`` if the name or password is wrong.

        ``replacing`` is the session id the browser held before (if any): it is ended, and
        the new session always gets a fresh id (no session fixation).
        """
        row = (
            self._conn()
            .execute(
                "SELECT password_hash, locked_until_us FROM inbox_approvers WHERE name = ?",
                (name,),
            )
            .fetchone()
        )
        if row is None:
            check_password(password, _DUMMY_HASH)
            return None
        now = self._clock()
        if row[1] is not None and now < row[1]:
            check_password(password, _DUMMY_HASH)  # the same time as any other refusal
            return None
        if not check_password(password, row[0]):
            with self._tx() as conn:
                conn.execute(
                    "UPDATE inbox_approvers SET failures = failures + 1, locked_until_us = "
                    "CASE WHEN failures + 1 >= ? THEN ? ELSE NULL END WHERE name = ?",
                    (MAX_FAILURES, now + LOCK_SECONDS * 1_000_000, name),
                )
            return None
        account = self.get(name)
        if account is None:  # removed while we checked
            return None
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        with self._tx() as conn:
            if replacing:
                conn.execute("DELETE FROM inbox_sessions WHERE id_hash = ?", (_id_hash(replacing),))
            conn.execute(
                "UPDATE inbox_approvers SET failures = 0, locked_until_us = NULL WHERE name = ?",
                (name,),
            )
            conn.execute(
                "INSERT INTO inbox_sessions (id_hash, name, csrf, created_us, seen_us) "
                "VALUES (?, ?, ?, ?, ?)",
                (_id_hash(session_id), name, csrf, now, now),
            )
        return SignIn(session_id, Session(account, csrf, now, now))

    def session(self, session_id: str | None) -> Session | None:
        """The live session with this id (and mark it seen now); ``None`` if none or ended."""
        if not session_id:
            return None
        key = _id_hash(session_id)
        now = self._clock()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT s.csrf, s.created_us, s.seen_us, a.name, a.principal, a.key_path, "
                "a.key_name FROM inbox_sessions s JOIN inbox_approvers a ON a.name = s.name "
                "WHERE s.id_hash = ?",
                (key,),
            ).fetchone()
            if row is None:
                return None
            if now - row[2] > self.idle_us or now - row[1] > self.max_us:
                conn.execute("DELETE FROM inbox_sessions WHERE id_hash = ?", (key,))
                return None
            conn.execute("UPDATE inbox_sessions SET seen_us = ? WHERE id_hash = ?", (now, key))
        account = Account(row[3], row[4], Path(row[5]), row[6])
        return Session(account, row[0], row[1], now)

    def sign_out(self, session_id: str | None) -> None:
        """End a session (nothing happens if it has ended already)."""
        if not session_id:
            return
        with self._tx() as conn:
            conn.execute("DELETE FROM inbox_sessions WHERE id_hash = ?", (_id_hash(session_id),))

    def purge(self) -> int:
        """Delete every ended session; return how many."""
        now = self._clock()
        with self._tx() as conn:
            cur = conn.execute(
                "DELETE FROM inbox_sessions WHERE seen_us < ? OR created_us < ?",
                (now - self.idle_us, now - self.max_us),
            )
            return cur.rowcount

    # --- API tokens ----------------------------------------------------------------------

    def issue_token(self, name: str, *, expires_seconds: int, note: str = "") -> IssuedToken:
        """A new API token answering as account ``name``, valid for ``expires_seconds``."""
        account = self.get(name)
        if account is None:
            raise ConfigurationError(
                f"there is no inbox approver {name!r}; add them first with `agentfence inbox "
                "add-approver NAME --principal ... --key ...`"
            )
        if expires_seconds <= 0:
            raise ConfigurationError("a token must expire later than now, e.g. --expires 30d")
        note = note.strip()
        if len(note) > MAX_NOTE or not note.isprintable():
            raise ConfigurationError(f"the note must be at most {MAX_NOTE} printable characters")
        token_id = secrets.token_hex(8)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        now = self._clock()
        info = ApiToken(
            id=token_id,
            name=name,
            principal=account.principal,
            note=note,
            created_us=now,
            expires_us=now + expires_seconds * 1_000_000,
            last_used_us=None,
            revoked_us=None,
        )
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO inbox_api_tokens (id, token_hash, name, principal, note, "
                "created_us, expires_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_id, _id_hash(token), name, account.principal, note, now, info.expires_us),
            )
        return IssuedToken(token, info)

    def tokens(self, name: str | None = None) -> list[ApiToken]:
        """Every API token (or ``name``'s), newest first."""
        sql = (
            "SELECT id, name, principal, note, created_us, expires_us, last_used_us, "
            "revoked_us FROM inbox_api_tokens"
        )
        params: tuple[str, ...] = ()
        if name is not None:
            sql += " WHERE name = ?"
            params = (name,)
        rows = self._conn().execute(sql + " ORDER BY created_us DESC, id", params).fetchall()
        return [ApiToken(*row) for row in rows]

    def revoke_token(self, token_id: str) -> ApiToken:
        """Revoke a token by its id; it stops working at once."""
        now = self._clock()
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE inbox_api_tokens SET revoked_us = ? WHERE id = ? AND revoked_us IS NULL",
                (now, token_id),
            )
            changed = cur.rowcount == 1
        found = [t for t in self.tokens() if t.id == token_id]
        if not found:
            raise ConfigurationError(
                f"there is no API token {token_id!r}; `agentfence inbox token list` shows them"
            )
        if not changed:
            raise ConfigurationError(f"API token {token_id} was already revoked")
        return found[0]

    def authenticate(self, token: str) -> tuple[Account, ApiToken]:
        """The account an API token answers as (and mark it used now).

        Raises :class:`TokenRefused`: ``unknown`` for a token that is malformed or not
        issued here (the same for both, so nothing is learnt about which ids exist),
        ``revoked`` and ``expired`` only once the whole token matched.
        """
        token_id = _token_id(token)
        row = None
        if token_id is not None:
            row = (
                self._conn()
                .execute(
                    "SELECT t.token_hash, t.id, t.name, t.principal, t.note, t.created_us, "
                    "t.expires_us, t.last_used_us, t.revoked_us, a.principal, a.key_path, "
                    "a.key_name FROM inbox_api_tokens t JOIN inbox_approvers a ON a.name = t.name "
                    "WHERE t.id = ?",
                    (token_id,),
                )
                .fetchone()
            )
        # Compared in constant time even when no row was found, against a hash of nothing.
        stored = row[0] if row is not None else _id_hash("")
        if not hmac.compare_digest(stored.encode(), _id_hash(token).encode()) or row is None:
            raise TokenRefused(
                "unknown",
                "the API token is not one this inbox issued (or was mistyped); ask the inbox "
                "operator for one: `agentfence inbox token issue NAME`",
            )
        info = ApiToken(*row[1:9])
        now = self._clock()
        state = info.state(now)
        if state != "active":
            raise TokenRefused(
                state,
                f"API token {info.id} {'was revoked' if state == 'revoked' else 'has expired'}; "
                "ask the inbox operator for a new one: "
                f"`agentfence inbox token issue {info.name}`",
            )
        if row[9] != info.principal:  # changing an account deletes its tokens; belt and braces
            raise TokenRefused(
                "revoked",
                f"API token {info.id} was issued for {info.principal}, but account {info.name} "
                "now answers as another principal; issue a new token",
            )
        with self._tx() as conn:
            conn.execute(
                "UPDATE inbox_api_tokens SET last_used_us = ? WHERE id = ?", (now, info.id)
            )
        account = Account(info.name, row[9], Path(row[10]), row[11])
        return account, dataclasses.replace(info, last_used_us=now)
