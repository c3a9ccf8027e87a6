"""What the auditor's commands share: the log and key arguments, verifier keys from
``--key``, a progress bar, the steps table, JSON output and the one-line record summary."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from agentfence import _signing
from agentfence.cli._common import err, out
from agentfence.errors import ConfigurationError
from agentfence.records import (
    ActivationRecord,
    ApprovalAnswerRecord,
    DecisionRecord,
    ErasureRecord,
    KeyChangeRecord,
    LogRecord,
    OutcomeRecord,
)
from agentfence.verify import (
    LogVerificationError,
    VerifiedStep,
)

KeysOption = Annotated[
    list[str],
    typer.Option(
        "--key",
        "-k",
        help="A verifier key you trust: a NAME.pub file or its <name>+<key id>+<key> text. "
        "Repeat for several (for example the keys before and after a rotation).",
    ),
]
LogArg = Annotated[
    str,
    typer.Argument(help="The decision log: a SQLite file, sqlite:///PATH or postgresql://..."),
]


def exit_with(code: int) -> None:
    """Leave with ``code`` (1: a check failed); ``main()`` lets SystemExit through unchanged."""
    raise SystemExit(code)


def failed(exc: LogVerificationError, headline: str, *, as_json: bool, steps: bool) -> None:
    """Report a failed verification (JSON, or the steps table and a headline) and exit 1."""
    if as_json:
        print_json(failure_json(exc))
    else:
        if steps:
            out.print(steps_table(exc.steps, exc))
        err.print(f"[bold red]{headline}")
    exit_with(1)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def verifier_keys(values: Sequence[str]) -> list[str]:
    """Verifier keys from ``--key`` values: key files or key text."""
    if not values:
        raise ConfigurationError(
            "no verifier key: pass --key NAME.pub (the public key written by `agentfence keys "
            "generate`); verification needs a key you trust, not one taken from the log"
        )
    keys: list[str] = []
    for value in values:
        path = Path(value)
        if path.is_file():
            keys.append(_signing.read_verifier_key(path).vkey)
        elif value.count("+") >= 2 and path.suffix != ".pub":
            keys.append(_signing.Verifier.from_vkey(value).vkey)
        else:
            raise ConfigurationError(
                f"--key {value!r} is neither a verifier key file nor a key "
                "(<name>+<key id>+<key>); check the path"
            )
    return keys


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress bar on stderr for people at a terminal; nothing for scripts."""
    if not enabled or not err.is_terminal:
        yield None
        return
    bar = Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        TextColumn("{task.completed:>,}/{task.total:,}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def update(step: str, done: int, total: int) -> None:
        if step not in tasks:
            tasks[step] = bar.add_task(step, total=total)
        bar.update(tasks[step], completed=done, total=total)

    with bar:
        yield update


def steps_table(steps: Sequence[VerifiedStep], failed: LogVerificationError | None) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for step in steps:
        mark = "[yellow]-[/]" if step.skipped else "[green]✓[/]"
        table.add_row(mark, f"{step.number}. {step.title}", escape(step.detail))
    if failed is not None:
        table.add_row("[red]✗[/]", f"{failed.step}. {failed.title}", escape(str(failed)))
    return table


def failure_json(exc: LogVerificationError) -> dict[str, Any]:
    return {
        "verified": False,
        "step": exc.step,
        "title": exc.title,
        "attack": exc.attack,
        "error": str(exc),
        "steps": [vars(s) for s in exc.steps],
    }


def short_key(vkey: str) -> str:
    return "+".join(vkey.split("+", 2)[:2])


def describe_record(record: LogRecord | None) -> str:
    """One line about a record for the table's detail column."""
    if record is None:
        return "(malformed entry: run `agentfence log verify`)"
    if isinstance(record, DecisionRecord):
        policies = ", ".join(record.policy_ids) or "no policy"
        reason = record.reasons[0] if record.reasons else ""
        return f"{policies}: {reason}"
    if isinstance(record, OutcomeRecord):
        return f"{record.status} (decision {record.decision_id[:12]}…)"
    if isinstance(record, ActivationRecord):
        return f"policy set {record.policy_hash[:16]}… ({len(record.files)} files, {record.engine})"
    if isinstance(record, KeyChangeRecord):
        return f"{short_key(record.old_key)} -> {short_key(record.new_key)}"
    if isinstance(record, ErasureRecord):
        return f"erased {record.blob[:23]}…: {record.reason}"
    if isinstance(record, ApprovalAnswerRecord):
        return record.reason
    fields = record.model_dump(mode="json")
    shown = [f"{k}={fields[k]}" for k in ("approvers", "risk") if k in fields]
    return ", ".join(shown) or record.format


ANSWERS = {
    "approve": "approved",
    "edit": "edited",
    "reject": "rejected",
    "respond": "responded",
    "expired": "none (expired)",
    "none": "none (not asked)",
    "unknown": "unreadable",
}
"""The approver's decision in an answer entry, as ``log show`` words it."""

VERDICTS = {
    "accepted": "accepted",
    "refused": "refused",
    "expired": "expired",
    "replayed": "re-delivered: the call had already run, not run again",
    "unattended": "refused: the run takes no approvals",
}
"""The fence's verdict on an answer, as ``log show`` words it (``accepted`` means the fence
took the answer, whatever the approver decided)."""


def escape(text: str) -> str:
    return text.replace("[", "\\[")
