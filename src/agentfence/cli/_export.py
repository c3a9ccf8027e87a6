"""Getting decisions to a SIEM: writing ``log export`` output (once, or following the log)
and ``agentfence log push`` to an HTTP collector with a durable cursor (``docs/siem.md``).

``agentfence.cli._log`` registers :func:`log_push` in the ``log`` group and calls
:func:`write_export` from ``log export``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated

import typer

from agentfence._push import BODIES, Body, Pusher
from agentfence._siem import FORMATS, Format, dumps, follow, render, stop_on_signals
from agentfence._storage.tables import EntryRow, LogBackend
from agentfence.cli._audit import LogArg, print_json
from agentfence.cli._common import JsonOption, err
from agentfence.errors import ConfigurationError

__all__ = ["FormatOption", "PollOption", "log_push", "write_export"]

FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        help="jsonl: agentfence's own entry form; ecs: mapped to the Elastic Common Schema "
        "(docs/siem.md).",
    ),
]
PollOption = Annotated[
    float,
    typer.Option("--poll-interval", help="With --follow: seconds between reads of the log."),
]


def entry_format(value: str) -> Format:
    """A ``--format`` value, checked."""
    for form in FORMATS:
        if value == form:
            return form
    raise ConfigurationError(f"--format {value!r}: use one of {', '.join(FORMATS)}")


def write_export(
    backend: LogBackend,
    rows: Iterable[EntryRow] | None,
    *,
    out_file: Path | None,
    form: Format,
    follow_log: bool,
    poll_interval: float,
    keep: Callable[[EntryRow], bool],
) -> int:
    """Write entries as JSON Lines to ``out_file`` or stdout; return how many.

    ``rows`` are the entries to write; with ``follow_log`` the log is read from seq 0 on
    instead, ``keep`` choosing among them, until SIGINT or SIGTERM.
    """
    if poll_interval <= 0:
        raise ConfigurationError(f"--poll-interval {poll_interval}: give a number above 0")
    origin = backend.get_meta().get("origin") or backend.name
    target = out_file.open("w", encoding="utf-8") if out_file is not None else sys.stdout
    count = 0
    try:
        if not follow_log:
            for row in rows or ():
                target.write(dumps(render(row, form, origin=origin)) + "\n")
                count += 1
            return count
        with stop_on_signals() as stop:
            for batch in follow(backend, 0, stop=stop, poll_interval=poll_interval):
                for row in batch:
                    if keep(row):
                        target.write(dumps(render(row, form, origin=origin)) + "\n")
                        count += 1
                target.flush()  # a reader of the pipe sees each batch as it is read
        return count
    finally:
        if out_file is not None:
            target.close()


def _body(value: str) -> Body:
    for body in BODIES:
        if value == body:
            return body
    raise ConfigurationError(f"--body {value!r}: use one of {', '.join(BODIES)}")


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
        raise ConfigurationError(
            f"--header {text.split(':', 1)[0]!r}…: write it as 'Name: value', "
            "e.g. 'Authorization: Bearer TOKEN'"
        )
    return name.strip(), value.strip()


def log_push(
    db: LogArg,
    to: Annotated[str, typer.Option("--to", help="The collector's URL (http:// or https://).")],
    cursor: Annotated[
        Path | None,
        typer.Option(
            "--cursor",
            help="Keep what the collector acknowledged in this file, so a restart skips "
            "nothing and sends nothing again (without it, every run starts at entry 0).",
        ),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Entries per request.")] = 100,
    entry_form: FormatOption = "jsonl",
    body: Annotated[
        str,
        typer.Option("--body", help="ndjson: one entry per line; json: one JSON array."),
    ] = "ndjson",
    header: Annotated[
        list[str],
        typer.Option("--header", help="An HTTP header for every request, 'Name: value'."),
    ] = [],  # noqa: B006  # typer reads the default; it is never mutated
    follow_log: Annotated[
        bool,
        typer.Option("--follow", help="Keep pushing new entries until Ctrl-C or SIGTERM."),
    ] = False,
    poll_interval: PollOption = 1.0,
    retries: Annotated[
        int, typer.Option("--retries", help="Retries of a failed request before giving up.")
    ] = 10,
    backoff: Annotated[
        float,
        typer.Option("--backoff", help="Seconds before the first retry; doubled each time."),
    ] = 0.5,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Push entries in batches to an HTTP collector, with retries and a durable cursor.

    Each batch is one POST with an Idempotency-Key naming the log and its first and last
    seq. The cursor moves only after a 2xx; a restart resends the batch in flight, identical.
    """
    form, encoding = entry_format(entry_form), _body(body)
    if poll_interval <= 0:
        raise ConfigurationError(f"--poll-interval {poll_interval}: give a number above 0")
    if cursor is None:
        err.print(
            "no --cursor: nothing records what the collector acknowledged, so the next run "
            "pushes every entry again",
            markup=False,
        )
    backend = LogBackend(db, create=False, readonly=True)
    with stop_on_signals() as stop:
        pusher = Pusher(
            backend,
            to,
            stop=stop,
            cursor_file=cursor,
            batch=batch,
            form=form,
            body=encoding,
            headers=[_header(h) for h in header],
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            say=lambda text: err.print(text, markup=False),
        )
        report = pusher.run(follow_log=follow_log, poll_interval=poll_interval)
    if as_json:
        print_json(
            {
                "batches": report.batches,
                "entries": report.entries,
                "acked_seq": report.acked_seq,
                "stopped": report.stopped,
            }
        )
        return
    state = "stopped" if report.stopped else "done"
    err.print(
        f"{state}: pushed {report.entries} entries in {report.batches} batches; the collector "
        f"has every entry up to seq {report.acked_seq}",
        markup=False,
    )
