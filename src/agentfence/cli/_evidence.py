"""``agentfence keys``, ``agentfence evidence`` and ``agentfence replay``: signing keys,
self-contained evidence packs, and re-deciding recorded calls."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from agentfence import _signing
from agentfence._storage.database import parse_url
from agentfence.cli._audit import (
    KeysOption,
    LogArg,
    describe_record,
    escape,
    exit_with,
    failed,
    print_json,
    progress_bar,
    short_key,
    steps_table,
    verifier_keys,
)
from agentfence.cli._common import JsonOption, out
from agentfence.config import Settings
from agentfence.errors import ConfigurationError
from agentfence.verify import (
    LogVerificationError,
    export_evidence,
    replay,
    verify_evidence,
)

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``keys`` and ``evidence`` groups and ``replay`` to ``app``."""
    app.add_typer(keys_app, name="keys")
    app.add_typer(evidence_app, name="evidence")
    app.command("replay")(replay_command)


evidence_app = typer.Typer(
    help="Export and verify self-contained evidence packs.", no_args_is_help=True
)


keys_app = typer.Typer(help="Create checkpoint signing keys.", no_args_is_help=True)


@keys_app.command("generate")
def keys_generate(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Write NAME.key and NAME.pub here (made if missing).")
    ],
    name: Annotated[
        str | None,
        typer.Option(
            help="The key name (default: the origin of the log $AGENTFENCE_LOG or fence.db, "
            "agentfence/fence for fence.db).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a new signing key NAME.key (mode 0600) and its public key NAME.pub.

    Ed25519 keys in the C2SP signed-note format. A name may be a URL-like log origin
    (example.com/log); in the file names, characters other than letters, digits and . _ + -
    become _. Without --name, a log signing key is named as the origin its log gets (C2SP
    tlog-checkpoint: the key name SHOULD match the checkpoint origin); an approver's key is
    named for the approver (--name fran). Existing files are never overwritten.
    """
    if name is None:
        name = parse_url(Settings.from_env().log or "fence.db").default_origin
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", name)
    private, public = out_dir / f"{stem}.key", out_dir / f"{stem}.pub"
    for path in (private, public):
        if path.exists():
            raise ConfigurationError(
                f"{path} already exists; keys are never overwritten: choose another --name or "
                "move the old files away first"
            )
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigurationError(f"--out {str(out_dir)!r} is a file, not a directory")
    signer = _signing.Signer.generate(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    _signing.write_private_key(private, signer)
    _signing.write_verifier_key(public, signer.verifier)
    if as_json:
        print_json(
            {"private_key": str(private), "public_key": str(public), "vkey": signer.verifier_key}
        )
        return
    out.print(
        f"wrote {private} (secret, mode 0600) and {public}:\n  {signer.verifier_key}",
        markup=False,
    )


@evidence_app.command("export")
def evidence_export(
    db: LogArg,
    out_file: Annotated[Path, typer.Option("--out", help="Write the evidence pack here.")],
    key: KeysOption = [],  # noqa: B006  # typer reads the default; it is never mutated
    thread: Annotated[
        str | None, typer.Option(help="The thread to export (default: every entry).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify the log, then write a self-contained evidence pack and verify it.

    The pack holds the entries with inclusion proofs, the signed checkpoint, the keys,
    the blobs with their salts, and the policy texts.
    """
    keys = verifier_keys(key)
    with progress_bar(not as_json) as progress:
        verified = export_evidence(db, out_file, keys=keys, thread=thread, progress=progress)
    if as_json:
        print_json({**verified.to_json(), "out": str(out_file)})
        return
    out.print(
        f"wrote {out_file}: {len(verified.records)} entries of "
        f"{'thread ' + repr(thread) if thread else 'the log'}, proven at tree size "
        f"{verified.size}; it verifies with `agentfence evidence verify {out_file} --key …`",
        markup=False,
    )


@evidence_app.command("verify")
def evidence_verify(
    pack: Annotated[Path, typer.Argument(help="An evidence pack from `evidence export`.")],
    key: KeysOption = [],  # noqa: B006  # typer reads the default; it is never mutated
    as_json: JsonOption = False,
) -> None:
    """Verify an evidence pack offline with only the pack and a key; exit 1 if it fails."""
    keys = verifier_keys(key)
    try:
        verified = verify_evidence(pack, keys)
    except LogVerificationError as exc:
        failed(
            exc, f"the evidence pack does not verify[/] ({exc.attack})", as_json=as_json, steps=True
        )
        return
    if as_json:
        print_json(verified.to_json())
        return
    out.print(steps_table(verified.steps, None))
    table = Table(title=f"{pack}: {len(verified.records)} entries", show_lines=False)
    for column in ("seq", "kind", "detail"):
        table.add_column(column, overflow="fold")
    for seq, record in verified.records:
        kind = record.format.removeprefix("agentfence.").removesuffix("/v1")
        table.add_row(str(seq), kind, escape(describe_record(record)))
    out.print(table)
    out.print(
        f"[bold green]verified[/]: {verified.origin} at tree size {verified.size}, signed by "
        f"{', '.join(short_key(k) for k in verified.signed_by)}"
    )


def replay_command(
    db: LogArg,
    policies: Annotated[
        Path | None,
        typer.Option(
            help="What if: re-decide with this policy directory instead of the recorded "
            "policies, and show what would change."
        ),
    ] = None,
    fail_on_change: Annotated[
        bool, typer.Option(help="With --policies: exit 1 if any decision would change.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Show at most this many changes.")] = 50,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes (default: one per CPU for logs of 50,000 decisions or more)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-decide every recorded decision through Cedar and show what differs.

    With the recorded policies, every decision must come out the same (exit 1 if not).
    With --policies DIR, show what would change (exit 1 only with --fail-on-change).
    """
    with progress_bar(not as_json) as progress:
        report = replay(db, policies=policies, progress=progress, workers=workers)
    failed = bool(report.changes) and (report.mode == "recorded" or fail_on_change)
    if as_json:
        print_json(report.to_json())
        if failed:
            exit_with(1)
        return
    style = {"ALLOW": "green", "DENY": "red", "REQUIRE_APPROVAL": "yellow"}
    if report.changes:
        verb = "would change" if report.mode == "what-if" else "replay differently"
        table = Table(title=f"{len(report.changes)} decisions {verb}", show_lines=True)
        for column in ("seq", "thread", "tool", "recorded", "replayed", "policies"):
            table.add_column(column, overflow="fold")
        for change in report.changes[:limit]:
            table.add_row(
                str(change.seq),
                change.thread,
                change.tool,
                f"[{style[change.recorded_effect]}]{change.recorded_effect}[/]",
                f"[{style[change.replayed_effect]}]{change.replayed_effect}[/]",
                escape(
                    f"{', '.join(change.recorded_policies) or '-'} -> "
                    f"{', '.join(change.replayed_policies) or '-'}"
                ),
            )
        out.print(table)
        if len(report.changes) > limit:
            out.print(f"… and {len(report.changes) - limit} more (--limit, or --json for all)")
    skipped: dict[str, int] = {}
    for item in report.not_replayable:
        skipped[item.reason] = skipped.get(item.reason, 0) + 1
    source = f"policies in {report.policies}" if report.policies else "the recorded policies"
    out.print(
        f"replayed {report.replayed} of {report.decisions} decisions with {source} "
        f"({report.engine}, {report.seconds:.2f} s): {report.unchanged} unchanged, "
        f"{len(report.changes)} changed",
        markup=False,
    )
    if report.reworded:
        out.print(
            f"{len(report.reworded)} decided alike with other reasons (a reworded @reason; "
            "not a change; --json lists them)",
            markup=False,
        )
    if skipped:
        listing = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in skipped.items())
        out.print(f"not replayable: {listing}", markup=False)
    if failed:
        exit_with(1)
