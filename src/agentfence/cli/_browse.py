"""``agentfence log browse``: a read-only copy of the log, with views, in Datasette.

The command copies the log (one snapshot, SQLite or PostgreSQL) into a temporary SQLite
file, creates the views there (:mod:`agentfence._storage.views`), optionally verifies that
copy, and serves it immutable with Datasette (the ``browse`` extra, imported only here and
only when the command runs). The log itself is opened read-only and never written.
"""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from agentfence._storage.views import browsable_copy
from agentfence.cli._audit import KeysOption, LogArg, failed, verifier_keys
from agentfence.cli._common import err, out
from agentfence.errors import ConfigurationError
from agentfence.verify import LogVerificationError, verify_log

__all__ = ["log_browse"]

_HOST = "127.0.0.1"


def log_browse(
    db: LogArg,
    port: Annotated[int, typer.Option("--port", help="The local port to serve on.")] = 8001,
    no_open: Annotated[bool, typer.Option("--no-open", help="Do not open a web browser.")] = False,
    key: KeysOption = [],  # noqa: B006  # typer reads the default; it is never mutated
) -> None:
    """Browse the log read-only in Datasette: decisions, outcomes and approvals as tables.

    Serves a copy with views on http://127.0.0.1:PORT/log (needs the browse extra).
    With --key, the copy is verified first and not served unless it verifies.
    """
    try:
        from agentfence import _datasette
    except ImportError as exc:
        raise ConfigurationError(
            f"log browse needs the browse extra ({exc}); run `pip install 'agentfence[browse]'`"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="agentfence-browse-") as folder:
        copy = Path(folder) / f"{_datasette.DATABASE}.db"
        copied = browsable_copy(db, copy)
        if key:
            # The copy is what is served, so the copy is what is verified.
            try:
                result = verify_log(copy, verifier_keys(key))
            except LogVerificationError as exc:
                failed(
                    exc,
                    f"verification failed[/] at step {exc.step} ({exc.attack}); not serving it",
                    as_json=False,
                    steps=True,
                )
                return
            out.print(
                f"[bold green]verified[/]: {result.entries} entries; signed size {result.size}, "
                f"root {result.root.hex()[:16]}…"
            )
        else:
            err.print(
                f"Not verified: pass --key to verify the copy before browsing it "
                f"(or run `agentfence log verify {db} --key KEY`).",
                markup=False,
            )
        url = f"http://{_HOST}:{port}/{_datasette.DATABASE}"
        out.print(
            f"Browsing a read-only copy of {db} ({copied} entries) on {url} (Ctrl-C stops it)",
            markup=False,
        )
        # A stop by SIGTERM leaves through Python as Ctrl-C does, so the copy is removed.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        _datasette.serve(copy, host=_HOST, port=port, open_browser=not no_open)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
