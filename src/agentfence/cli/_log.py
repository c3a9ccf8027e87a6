"""The auditor's commands: ``agentfence log …``, ``keys``, ``evidence …`` and ``replay``.

:func:`register` adds them to the main ``agentfence`` app. Each command is a thin layer over
:mod:`agentfence.verify`, :class:`~agentfence.log.SignedLog` and the key files; ``--json``
prints what the API returns. Exit codes: 0 when everything verifies, 1 when a check fails
(a tampered log, a replay that differs), 2 when the command cannot run (a missing file, a
malformed key): those errors leave through ``agentfence.cli.main``.
"""

from __future__ import annotations

import datetime
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentfence import _signing
from agentfence._siem import entry_json
from agentfence._storage.database import SQLITE, parse_url
from agentfence._storage.tables import EntryRow, LogBackend, copy_log
from agentfence.cli._audit import (
    ANSWERS,
    VERDICTS,
    KeysOption,
    LogArg,
    describe_record,
    escape,
    failed,
    print_json,
    progress_bar,
    short_key,
    steps_table,
    verifier_keys,
)
from agentfence.cli._browse import log_browse
from agentfence.cli._common import JsonOption, err, out
from agentfence.cli._export import FormatOption, PollOption, entry_format, log_push, write_export
from agentfence.config import Settings
from agentfence.errors import ConfigurationError, VerificationError
from agentfence.log import SignedLog, parse_entry
from agentfence.records import (
    DECISION_KIND,
    OUTCOME_KIND,
    RECORD_KINDS,
    ActivationRecord,
    ApprovalAnswerRecord,
    DecisionRecord,
    LogRecord,
    OutcomeRecord,
    blob_refs,
)
from agentfence.verify import (
    InclusionReceipt,
    LogVerificationError,
    prove,
    verify_log,
    verify_receipt,
)

__all__ = ["register"]

log_app = typer.Typer(
    help="Verify, inspect, prove and maintain the signed decision log.", no_args_is_help=True
)
log_app.command("browse")(log_browse)  # its own module: cli/_browse.py


ThreadOption = Annotated[str | None, typer.Option(help="Only entries of this thread.")]
ToolOption = Annotated[str | None, typer.Option(help="Only decisions about this tool.")]
EffectOption = Annotated[
    str | None, typer.Option(help="Only decisions with this effect: allow, deny, require_approval.")
]
KindOption = Annotated[
    str | None,
    typer.Option(help="Only entries of this kind: decision, outcome, activation, keychange, ..."),
]
SinceOption = Annotated[
    str | None,
    typer.Option(help="Only entries at or after this time (ISO 8601, UTC if no zone)."),
]
UntilOption = Annotated[
    str | None, typer.Option(help="Only entries before this time (ISO 8601, UTC if no zone).")
]


def register(app: typer.Typer) -> None:
    """Add the ``log`` group to ``app``."""
    app.add_typer(log_app, name="log")


def _backend(db: str) -> LogBackend:
    return LogBackend(db, create=False, readonly=True)


# --- log verify / checkpoint / prove --------------------------------------------------------


@log_app.command("verify")
def log_verify(
    db: LogArg,
    key: KeysOption = [],  # noqa: B006  # typer reads the default; it is never mutated
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="A checkpoint note you saved earlier (`agentfence log checkpoint DB > FILE`): "
            "proves the log extends it, which catches truncation, rollback and forks.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes reading the entries of a large SQLite log (default: one "
            "per CPU; 1: all in this process).",
            min=1,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify the log offline in numbered steps; exit 0 only if every step passes.

    1. open the log read-only;  2. check every checkpoint's signature;
    3. read every entry;  4. recompute the Merkle root at every checkpoint;
    5. check the log extends your saved checkpoint;  6. check blobs;  7. check order.
    Exit 1 when a step fails (the message names the attack), 2 when it cannot run.
    """
    keys = verifier_keys(key)
    saved = _read_text(checkpoint, "checkpoint") if checkpoint is not None else None
    if not as_json:
        err.print(f"Verifying {db} with {len(keys)} trusted key(s)")
    try:
        with progress_bar(not as_json) as progress:
            result = verify_log(
                db, keys, saved_checkpoint=saved, progress=progress, workers=workers
            )
    except LogVerificationError as exc:
        failed(
            exc,
            f"verification failed[/] at step {exc.step} ({exc.attack})",
            as_json=as_json,
            steps=True,
        )
        return
    if as_json:
        print_json(result.to_json())
        return
    out.print(steps_table(result.steps, None))
    tail = f", {result.unsigned_tail} more not yet signed" if result.unsigned_tail else ""
    out.print(
        f"[bold green]verified[/]: {result.entries} entries{tail}; signed size {result.size}, "
        f"root {result.root.hex()[:16]}…"
    )
    if checkpoint is None:
        out.print(
            f"Keep the latest checkpoint off this host (`agentfence log checkpoint {db} > "
            "FILE`) and pass it next time with --checkpoint FILE.",
            markup=False,
        )


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{what} file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{what} file {str(path)!r} cannot be read: {exc}") from exc


@log_app.command("checkpoint")
def log_checkpoint(db: LogArg, as_json: JsonOption = False) -> None:
    """Print the latest signed checkpoint note, to keep where the log's host cannot reach.

    For example: agentfence log checkpoint DB > saved.note
    Next time, pass it to: agentfence log verify DB --key KEY --checkpoint saved.note
    """
    latest = _backend(db).latest_checkpoint()
    if latest is None:
        raise ConfigurationError(f"{db} has no signed checkpoint")
    if as_json:
        body = _signing.parse_checkpoint_body(latest.note[: latest.note.rfind("\n\n") + 1])
        print_json(
            {"origin": body.origin, "size": body.size, "root": body.root.hex(), "note": latest.note}
        )
        return
    sys.stdout.write(latest.note)


@log_app.command("copy")
def log_copy(
    db: LogArg,
    target: Annotated[
        str,
        typer.Argument(help="Where to copy it: a new SQLite file, or an empty PostgreSQL log."),
    ],
    as_json: JsonOption = False,
) -> None:
    """Copy a log, byte for byte, from one consistent snapshot (a fence may be writing).

    For example, to verify a PostgreSQL log offline:
    agentfence log copy postgresql://auditor@db/agentfence fence.db
    """
    location = parse_url(target)
    if location.engine == SQLITE and Path(str(location.path)).exists():
        raise ConfigurationError(f"{location.display} exists; copy into a new file")
    copied = copy_log(db, location)
    if as_json:
        print_json({"copied": copied, "to": location.display})
        return
    out.print(f"copied {copied} entries to {location.display}", markup=False)


@log_app.command("prove")
def log_prove(
    db: LogArg,
    seq: Annotated[int, typer.Argument(help="The sequence number of the entry to prove.")],
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Prove against this saved checkpoint note (default: the latest)."),
    ] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the receipt here.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print an inclusion receipt for one entry, verifiable on its own.

    The receipt holds the entry's bytes, an RFC 6962 inclusion proof and the signed checkpoint.
    Check it with: agentfence log verify-receipt RECEIPT --key KEY
    """
    note = _read_text(checkpoint, "checkpoint") if checkpoint is not None else None
    receipt = prove(db, seq, checkpoint=note)
    if out_file is not None:
        out_file.write_text(receipt.to_json(), encoding="utf-8")
        message = {"seq": seq, "tree_size": receipt.tree_size, "out": str(out_file)}
        if as_json:
            print_json(message)
        else:
            err.print(
                f"wrote the receipt for entry {seq} (tree size {receipt.tree_size}) to {out_file}"
            )
        return
    sys.stdout.write(receipt.to_json())


@log_app.command("verify-receipt")
def log_verify_receipt(
    receipt_file: Annotated[Path, typer.Argument(help="A receipt from `agentfence log prove`.")],
    key: KeysOption = [],  # noqa: B006  # typer reads the default; it is never mutated
    as_json: JsonOption = False,
) -> None:
    """Verify an inclusion receipt with only the receipt and a key; exit 1 if it fails."""
    keys = verifier_keys(key)
    receipt = InclusionReceipt.from_json(_read_text(receipt_file, "receipt"))
    try:
        verified = verify_receipt(receipt, keys)
    except LogVerificationError as exc:
        failed(
            exc,
            f"receipt does not verify[/] (step {exc.step}): {exc}",
            as_json=as_json,
            steps=False,
        )
        return
    if as_json:
        print_json(
            {
                "verified": True,
                "origin": verified.origin,
                "seq": verified.seq,
                "tree_size": verified.tree_size,
                "root": verified.root.hex(),
                "leaf_hash": verified.leaf_hash.hex(),
                "signed_by": list(verified.signed_by),
                "record": verified.record.model_dump(mode="json"),
            }
        )
        return
    out.print(
        f"[bold green]verified[/]: entry {verified.seq} ({verified.record.format}) is in "
        f"{verified.origin} at tree size {verified.tree_size}, signed by "
        f"{', '.join(short_key(k) for k in verified.signed_by)}"
    )
    out.print(describe_record(verified.record), markup=False)


# --- log show / tail / export ---------------------------------------------------------------


def _time_us(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(
            f"{option} {text!r} is not a time: use ISO 8601 such as 2026-11-22 or "
            "2026-11-22T10:30:00Z, or integer microseconds since the epoch"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1_000_000)


def _select(
    db: str,
    *,
    thread: str | None,
    tool: str | None,
    effect: str | None,
    kind: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    newest_first: bool = False,
) -> list[EntryRow]:
    if kind is not None and kind not in RECORD_KINDS and kind not in RECORD_KINDS.values():
        raise ConfigurationError(f"--kind {kind!r}: use one of {', '.join(RECORD_KINDS)}")
    if effect is not None and effect.upper() not in ("ALLOW", "DENY", "REQUIRE_APPROVAL"):
        raise ConfigurationError(f"--effect {effect!r}: use allow, deny or require_approval")
    rows = _backend(db).select(
        thread=thread,
        tool=tool,
        effect=effect.upper() if effect else None,
        kind=RECORD_KINDS.get(kind, kind) if kind else None,
        since_us=_time_us(since, "--since"),
        until_us=_time_us(until, "--until"),
        limit=limit,
        newest_first=newest_first,
    )
    return rows[::-1] if newest_first else rows


def _shadow_denied(record: LogRecord | None) -> bool:
    """A decision the @shadow policies would have denied, though it was not denied."""
    if not isinstance(record, DecisionRecord) or record.shadow is None:
        return False
    return record.shadow.effect == "DENY" and record.effect != "DENY"


def _record(row: EntryRow) -> LogRecord | None:
    try:
        return parse_entry(row.body)[1]
    except VerificationError:
        return None


def _when(time_us: int) -> str:
    moment = datetime.datetime.fromtimestamp(time_us / 1_000_000, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


NOT_RECORDED = "ran, outcome not recorded"
"""The state of an allowed decision with no outcome entry (docs/log-format.md, "Crashes")."""


def _print_entries(db: str, rows: Sequence[EntryRow], title: str, *, as_json: bool) -> None:
    """Print entries as ``log show`` and ``log tail`` do: a table, or JSON."""
    records = [_record(row) for row in rows]
    unrecorded, tools = _looked_up(db, rows, records)
    if as_json:
        print_json(_rows_json(rows, unrecorded))
        return
    out.print(_entries_table(rows, records, title, unrecorded, tools))


def _looked_up(
    db: str, rows: Sequence[EntryRow], records: Sequence[LogRecord | None]
) -> tuple[set[int], dict[str, str]]:
    """What the shown entries do not say themselves, read from the log in one pass: the seqs
    of allowed decisions with no outcome on the log (the tool was let run and its outcome was
    not recorded: a crash within the flush window, or a call still running), and the tool of
    each outcome (an outcome entry has no tool column of its own)."""
    backend = _backend(db)
    unrecorded: set[int] = set()
    tools: dict[str, str] = {}
    for row, record in zip(rows, records, strict=True):
        if isinstance(record, DecisionRecord) and record.effect == "ALLOW":
            if backend.find_entry(f"{OUTCOME_KIND}:{record.decision_id}") is None:
                unrecorded.add(row.seq)
        elif isinstance(record, OutcomeRecord):
            decision = backend.find_entry(f"{DECISION_KIND}:{record.decision_id}")
            if decision is not None and decision.tool:
                tools[record.decision_id] = decision.tool
    return unrecorded, tools


def _answer_cells(record: LogRecord | None) -> list[str]:
    """The approver's answer and the fence's verdict, for an answer entry (else blanks)."""
    if not isinstance(record, ApprovalAnswerRecord):
        return ["", ""]
    return [ANSWERS.get(record.answer, record.answer), VERDICTS.get(record.verdict, record.verdict)]


def _entries_table(
    rows: Sequence[EntryRow],
    records: Sequence[LogRecord | None],
    title: str,
    unrecorded: set[int],
    tools: dict[str, str],
) -> Table:
    traces = any(getattr(r, "trace_id", None) for r in records)
    answers = any(isinstance(r, ApprovalAnswerRecord) for r in records)
    table = Table(title=title, caption="not verified here: run `agentfence log verify`")
    columns = ["seq", "time (UTC)", "kind", "thread", "tool", "effect"]
    columns += ["approver's answer", "fence's verdict"] if answers else []
    for column in [*columns, "detail"]:
        table.add_column(column, overflow="fold", no_wrap=column in ("seq", "time (UTC)"))
    if traces:
        table.add_column("trace id", overflow="fold")
    style = {"ALLOW": "green", "DENY": "red", "REQUIRE_APPROVAL": "yellow"}
    for row, record in zip(rows, records, strict=True):
        kind = row.kind.removeprefix("agentfence.").removesuffix("/v1")
        effect = f"[{style.get(row.effect, '')}]{row.effect}[/]" if row.effect else ""
        cells = [str(row.seq), _when(row.time_us), kind, row.thread or "", row.tool or "", effect]
        if isinstance(record, OutcomeRecord):  # an outcome names its tool through its decision
            cells[4] = tools.get(record.decision_id, "")
        if answers:
            cells += _answer_cells(record)
        cells.append(
            escape((f"{NOT_RECORDED}; " if row.seq in unrecorded else "") + describe_record(record))
        )
        if traces:
            cells.append(getattr(record, "trace_id", None) or "")
        table.add_row(*cells)
    return table


def _rows_json(rows: Sequence[EntryRow], unrecorded: set[int]) -> list[dict[str, Any]]:
    shown = [entry_json(row) for row in rows]
    for item in shown:
        if item["seq"] in unrecorded:
            item["state"] = NOT_RECORDED
    return shown


@log_app.command("show")
def log_show(
    db: LogArg,
    thread: ThreadOption = None,
    tool: ToolOption = None,
    effect: EffectOption = None,
    kind: KindOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int | None, typer.Option(help="Show at most this many entries.")] = None,
    shadow_denied: Annotated[
        bool,
        typer.Option(
            "--shadow-denied",
            help="Only decisions that @shadow policies would have denied (they were not).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show entries as a table, oldest first, filtered by thread, tool, effect, kind or time."""
    rows = _select(
        db,
        thread=thread,
        tool=tool,
        effect=effect,
        kind="decision" if shadow_denied else kind,
        since=since,
        until=until,
        limit=None if shadow_denied else limit,
    )
    if shadow_denied:
        rows = [row for row in rows if _shadow_denied(_record(row))][:limit]
    _print_entries(db, rows, f"{db}: {len(rows)} entries", as_json=as_json)


@log_app.command("tail")
def log_tail(
    db: LogArg,
    n: Annotated[int, typer.Option("-n", "--lines", help="How many entries.")] = 10,
    thread: ThreadOption = None,
    tool: ToolOption = None,
    effect: EffectOption = None,
    kind: KindOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the last N entries (10 by default), oldest of them first."""
    rows = _select(
        db,
        thread=thread,
        tool=tool,
        effect=effect,
        kind=kind,
        since=None,
        until=None,
        limit=n,
        newest_first=True,
    )
    _print_entries(db, rows, f"{db}: last {len(rows)} entries", as_json=as_json)


@log_app.command("export")
def log_export(
    db: LogArg,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write JSON Lines here (default: stdout).")
    ] = None,
    thread: ThreadOption = None,
    kind: KindOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    entry_form: FormatOption = "jsonl",
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", help="Keep writing entries as they are appended, until Ctrl-C or SIGTERM."
        ),
    ] = False,
    poll_interval: PollOption = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Export entries as JSON Lines for a SIEM.

    One object per line: @timestamp (ISO 8601, UTC), seq, leaf_hash, kind, time_us and
    record; or, with --format ecs, an Elastic Common Schema event (docs/siem.md).
    With --out FILE and --json, print a summary instead of nothing.
    """
    form = entry_format(entry_form)
    if kind is not None and kind not in RECORD_KINDS and kind not in RECORD_KINDS.values():
        raise ConfigurationError(f"--kind {kind!r}: use one of {', '.join(RECORD_KINDS)}")
    kind_name = RECORD_KINDS.get(kind, kind) if kind else None
    since_us, until_us = _time_us(since, "--since"), _time_us(until, "--until")
    rows: Any = None  # with --follow, write_export reads from entry 0 on and keeps what keep() does
    if not follow and any(v is not None for v in (thread, kind, since, until)):
        rows = _select(
            db,
            thread=thread,
            tool=None,
            effect=None,
            kind=kind,
            since=since,
            until=until,
            limit=None,
        )
    elif not follow:
        rows = _backend(db).entries()

    def keep(row: EntryRow) -> bool:
        return (
            (thread is None or row.thread == thread)
            and (kind_name is None or row.kind == kind_name)
            and (since_us is None or row.time_us >= since_us)
            and (until_us is None or row.time_us < until_us)
        )

    count = write_export(
        _backend(db),
        rows,
        out_file=out_file,
        form=form,
        follow_log=follow,
        poll_interval=poll_interval,
        keep=keep,
    )
    if out_file is not None:
        if as_json:
            print_json({"exported": count, "out": str(out_file)})
        else:
            err.print(f"exported {count} entries to {out_file}")


log_app.command("push")(log_push)


# --- log erase / rotate-key, keys generate --------------------------------------------------


def _signer(path: Path | None) -> _signing.Signer:
    source = str(path) if path is not None else Settings.from_env().signing_key
    if not source:
        raise ConfigurationError(
            "this command signs checkpoints, so it needs the log's signing key: pass "
            "--key-file NAME.key or set AGENTFENCE_SIGNING_KEY"
        )
    return _signing.read_private_key(source)


@log_app.command("erase")
def log_erase(
    db: LogArg,
    blob: Annotated[str, typer.Argument(help="The blob ref to erase (sha256:…).")],
    reason: Annotated[
        str, typer.Option(help="Why (for example the data-subject request id); recorded.")
    ],
    key_file: Annotated[
        Path | None,
        typer.Option(help="The log's signing key (default: $AGENTFENCE_SIGNING_KEY)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Erase one blob's content, recorded first as an erasure entry.

    The content and salt are removed; every entry and proof still verifies.
    `agentfence log verify` then reports the blob as erased, not as tampering.
    """
    with SignedLog.open(db, signer=_signer(key_file)) as log:
        receipt = log.erase_blob(blob, reason=reason)
    if as_json:
        print_json({"erased": blob, "seq": receipt.seq, "leaf_hash": receipt.leaf_hash})
        return
    out.print(f"erased {blob}; the erasure is entry {receipt.seq}", markup=False)


@log_app.command("retain")
def log_retain(
    db: LogArg,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="The retention period: erase what entries older than this hold (90d).",
        ),
    ],
    key_file: Annotated[
        Path | None,
        typer.Option(help="The log's signing key (default: $AGENTFENCE_SIGNING_KEY)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be erased; erase nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Erase the blobs (arguments, results, answers) of entries older than a retention period.

    Each erasure is recorded first, as `log erase` does, with the reason "retention: older
    than PERIOD"; entries, policy texts and proofs stay, and the log still verifies.
    """
    from agentfence.approvals import parse_duration

    try:
        seconds = parse_duration(older_than)
    except ValueError as exc:
        raise ConfigurationError(f"--older-than: {exc}") from exc
    reason = f"retention: older than {older_than}"
    with SignedLog.open(db, signer=_signer(key_file)) as log:
        cutoff = time.time_ns() // 1000 - seconds * 1_000_000
        old: dict[str, int] = {}
        kept: set[str] = set()
        for seq, record in log.read():
            if isinstance(record, ActivationRecord):  # policy texts stay: replay needs them
                kept.update(blob_refs(record))
                continue
            for ref in blob_refs(record):
                if record.time_us < cutoff:
                    old.setdefault(ref, seq)
                else:
                    kept.add(ref)  # also held by a newer entry: kept
        due = [ref for ref in old if ref not in kept and log.blob(ref) is not None]
        erased = [] if dry_run else [(ref, log.erase_blob(ref, reason=reason).seq) for ref in due]
    if as_json:
        print_json(
            {"cutoff_us": cutoff, "due": due, "erased": [{"blob": r, "seq": s} for r, s in erased]}
        )
        return
    verb = "would erase" if dry_run else "erased"
    out.print(f"{verb} {len(due)} blobs of entries older than {older_than}", markup=False)


@log_app.command("rotate-key")
def log_rotate_key(
    db: LogArg,
    old_key: Annotated[Path, typer.Option(help="The current signing key file.")],
    new_key: Annotated[Path, typer.Option(help="The new signing key file.")],
    as_json: JsonOption = False,
) -> None:
    """Hand checkpoint signing to a new key, recorded as a key-change entry.

    The handover checkpoint is signed by both keys.
    Auditors holding either public key can follow the handover.
    """
    new_signer = _signing.read_private_key(new_key)
    # No time-based checkpoints while rotating: the append of the key change would otherwise
    # sign a checkpoint of its size with the old key alone, taking the place of the handover
    # checkpoint that rotate_key signs with both keys (see the report on SignedLog).
    with SignedLog.open(db, signer=_signer(old_key), checkpoint_interval=math.inf) as log:
        receipt = log.rotate_key(new_signer)
    if as_json:
        print_json({"seq": receipt.seq, "new_key": new_signer.verifier_key})
        return
    out.print(
        f"key change recorded as entry {receipt.seq}; checkpoints are now signed by "
        f"{short_key(new_signer.verifier_key)}. Give auditors the new public key:\n"
        f"  {new_signer.verifier_key}",
        markup=False,
    )


# --- evidence -------------------------------------------------------------------------------


# --- replay ---------------------------------------------------------------------------------
