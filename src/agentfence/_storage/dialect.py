"""What every storage engine is: a log URL parsed into a :class:`Location`, and the
:class:`Dialect` protocol that :mod:`agentfence._storage.sqlite` and
:mod:`agentfence._storage.postgres` implement for :mod:`agentfence._storage.database`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from agentfence.errors import ConfigurationError

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


@dataclass(frozen=True)
class Location:
    """A parsed log URL: a SQLite file or a PostgreSQL connection string."""

    engine: str
    path: Path | None = None
    dsn: str | None = None

    @property
    def url(self) -> str:
        """The URL (with a PostgreSQL password, if any)."""
        if self.engine == SQLITE:
            return f"sqlite:///{self.path}"
        return str(self.dsn)

    @property
    def display(self) -> str:
        """How messages name the log: the file, or the URL without its password."""
        if self.engine == SQLITE:
            return str(self.path)
        parts = urlsplit(str(self.dsn))
        if parts.password is None:
            return str(self.dsn)
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def stem(self) -> str:
        """A short name for the default origin: the file's stem, or the database's name."""
        if self.engine == SQLITE:
            return Path(str(self.path)).stem
        return urlsplit(str(self.dsn)).path.lstrip("/") or "postgres"

    @property
    def default_origin(self) -> str:
        """The origin a new log here gets unless given one (``agentfence/fence`` for
        ``fence.db``); C2SP tlog-checkpoint: the signing key's name SHOULD be the same."""
        return f"agentfence/{self.stem}"


def parse_url(url: str | Path | Location) -> Location:
    """Parse a log URL: ``sqlite:///PATH``, a plain path, or ``postgresql://...``."""
    if isinstance(url, Location):
        return url
    text = str(url)
    if text.startswith("sqlite:///"):
        return Location(SQLITE, path=Path(text[len("sqlite:///") :]))
    if text.startswith(("postgresql://", "postgres://")):
        return Location(POSTGRESQL, dsn=text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"log URL {text!r}: unsupported scheme {scheme!r}; use sqlite:///PATH or "
            "postgresql://USER@HOST/DATABASE"
        )
    return Location(SQLITE, path=Path(text))


class Cursor(Protocol):
    """The part of a DB-API cursor the log uses."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Dialect(Protocol):
    """What differs between the engines a log can be stored in."""

    engine: str
    driver_errors: tuple[type[BaseException], ...]
    lock_suffix: str
    """Appended to the read of the tree state that sequencing starts from (a row lock)."""
    sequences_on_server: bool
    """Whether appends number and hash entries in the database (``agentfence_sequence``)."""
    log_schema: str
    """The decision log's tables (``docs/log-format.md``)."""

    def connect(self, location: Location, *, readonly: bool) -> Any:
        """A new connection in autocommit mode."""
        ...

    def create_schema(self, conn: Any, schema: str) -> None:
        """Create the tables (idempotent; safe with several processes starting at once)."""
        ...

    def begin(self, conn: Any) -> None:
        """Begin a write transaction."""
        ...

    def begin_snapshot(self, conn: Any) -> None:
        """Begin a read-only transaction that sees one snapshot throughout."""
        ...

    def execute(
        self, conn: Any, sql: str, params: Sequence[Any], *, binary: bool = False
    ) -> Cursor:
        """Run one statement written with ``?`` placeholders (``binary``: binary results)."""
        ...

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row of parameters."""
        ...

    def stream(self, conn: Any, sql: str, params: Sequence[Any]) -> Cursor:
        """Run a query whose rows are fetched in batches (inside a snapshot)."""
        ...

    def tables(self, conn: Any) -> set[str]:
        """The names of the tables the connection sees."""
        ...

    def usable(self, conn: Any) -> bool:
        """False once the connection is closed or broken (it is then replaced)."""
        ...

    def idle(self, conn: Any) -> bool:
        """Usable and in no transaction: fit to hand to another thread."""
        ...

    def hint(self, exc: BaseException) -> str:
        """What to do about a driver error, if the dialect knows ("" otherwise)."""
        ...

    def pipeline(self, conn: Any) -> AbstractContextManager[Any]:
        """Batch the statements run inside into as few round trips as the engine allows."""
        ...
