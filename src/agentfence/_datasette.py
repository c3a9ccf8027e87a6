"""Serving a browsable copy of a decision log with Datasette (extra ``agentfence[browse]``).

The only module that imports datasette; ``agentfence log browse`` imports it when it runs.
The copy (:func:`agentfence._storage.views.browsable_copy`) is opened immutable: Datasette
reads it without locking and never writes it, and nothing else writes it either.
The metadata shipped beside this module titles the log and describes each view and column;
a small plugin shows entry bodies and blob contents as text rather than download links.
"""

from __future__ import annotations

import json
import sys
import webbrowser
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from datasette import hookimpl
from datasette.app import Datasette
from datasette.plugins import pm
from markupsafe import Markup, escape

__all__ = ["DATABASE", "create_app", "metadata", "render_cell", "serve"]

DATABASE = "log"
"""The name Datasette gives the copy (its file is ``log.db``): pages are under ``/log/``."""

SETTINGS = {
    # Facets and counts over a large log read every body once; give them time, but keep
    # arbitrary SQL bounded.
    "sql_time_limit_ms": 5000,
    "facet_time_limit_ms": 2000,
    "allow_download": False,
}


def metadata() -> dict[str, Any]:
    """The Datasette metadata shipped with agentfence (title, views, columns, facets)."""
    text = resources.files("agentfence").joinpath("datasette-metadata.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@hookimpl  # type: ignore[untyped-decorator]  # datasette has no type hints
def render_cell(value: Any, column: str, table: str | None, database: str) -> Any:
    """Datasette plugin hook: a log entry's body (canonical JSON) and a blob's content are
    shown as text, not as a download link."""
    if database != DATABASE or not isinstance(value, bytes):
        return None
    if (table, column) not in {("entries", "body"), ("blobs", "content")}:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None  # not text: Datasette's download link
    return Markup("<pre>{}</pre>").format(escape(text))


_PLUGIN = "agentfence-text-cells"


def create_app(copy: Path) -> Any:
    """The Datasette ASGI app over the browsable copy ``copy`` (a file named ``log.db``)."""
    if not pm.has_plugin(_PLUGIN):
        pm.register(sys.modules[__name__], name=_PLUGIN)
    ds = Datasette(immutables=[str(copy)], metadata=metadata(), settings=SETTINGS)
    return ds.app()


def serve(copy: Path, *, host: str, port: int, open_browser: bool) -> None:
    """Serve the copy until interrupted, opening a browser on its decisions first if asked."""
    app = create_app(copy)
    if open_browser:
        webbrowser.open(f"http://{host}:{port}/{DATABASE}/decisions")
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
