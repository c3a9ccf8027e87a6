"""The auditor's commands, run as an auditor runs them: subprocesses on real files.

``agentfence log …``, ``keys generate``, ``evidence …`` and ``replay``, with their exit
codes (0 verified, 1 a check failed, 2 could not run) and their ``--json`` output.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from agentfence import _signing
from agentfence.cli import app
from agentfence.demo import policy_dir
from agentfence.log import SignedLog
from tests.unit.test_verify import BuiltLog, build_log, copy_log, records, refund_seq, sql

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentfence.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=300,
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    return build_log(tmp_path_factory.mktemp("cli-base"))


@pytest.fixture
def log(base: BuiltLog, tmp_path: Path) -> BuiltLog:
    return BuiltLog(
        copy_log(base.path, tmp_path / "fence.db"), base.key_file, base.pub_file, base.signer
    )


# --- keys generate -------------------------------------------------------------------------


def test_keys_generate_writes_a_private_key_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = cli("keys", "generate", "--name", "auditlog", "--out", tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    data = as_json(result)
    private, public = tmp_path / "auditlog.key", tmp_path / "auditlog.pub"
    assert data["private_key"] == str(private) and data["public_key"] == str(public)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("PRIVATE+KEY+auditlog+")
    assert public.read_text().strip() == data["vkey"]
    assert re.fullmatch(r"auditlog\+[0-9a-f]{8}\+\S+", data["vkey"])
    again = cli("keys", "generate", "--name", "auditlog", "--out", tmp_path)
    assert again.returncode == 2
    assert "auditlog.key already exists; keys are never overwritten" in again.stderr
    assert private.read_text().startswith("PRIVATE+KEY+auditlog+")


def test_keys_generate_takes_a_url_form_name_and_makes_the_folder(tmp_path: Path) -> None:
    """C2SP says a log's key name should match its origin, which is URL-like
    (example.com/log): the name is kept in the key, and only the file name is made safe."""
    out = tmp_path / "keys" / "new"
    result = cli("keys", "generate", "--name", "example.com/log", "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    data = as_json(result)
    assert data["private_key"] == str(out / "example.com_log.key")
    assert data["vkey"].startswith("example.com/log+")
    key = out / "example.com_log.key"
    assert key.read_text().startswith("PRIVATE+KEY+example.com/log+")
    as_file = tmp_path / "a-file"
    as_file.write_text("")
    refused = cli("keys", "generate", "--name", "x", "--out", as_file)
    assert refused.returncode == 2 and "is a file, not a directory" in refused.stderr


def test_keys_generate_names_a_key_as_its_logs_origin_by_default(tmp_path: Path) -> None:
    """C2SP tlog-checkpoint: a log's key name SHOULD match the checkpoint origin, so without
    --name the key is named as the origin the log it will sign gets."""
    made = cli("keys", "generate", "--out", tmp_path, "--json", env={"AGENTFENCE_LOG": ""})
    assert made.returncode == 0, made.stderr
    assert as_json(made)["vkey"].startswith("agentfence/fence+")
    log_path = tmp_path / "fence.db"
    signer = _signing.read_private_key(tmp_path / "agentfence_fence.key")
    with SignedLog.open(log_path, signer=signer) as log:
        assert log.origin == signer.name == "agentfence/fence"
    desk_log = {"AGENTFENCE_LOG": f"sqlite:///{tmp_path / 'desk.db'}"}
    desk = cli("keys", "generate", "--out", tmp_path, "--json", env=desk_log)
    assert as_json(desk)["vkey"].startswith("agentfence/desk+"), desk.stderr


# --- log verify ----------------------------------------------------------------------------


def test_log_verify_shows_numbered_steps_and_exits_0(base: BuiltLog) -> None:
    result = cli("log", "verify", base.path, "--key", base.pub_file)
    assert result.returncode == 0, result.stderr
    for number, title in enumerate(
        ["open", "checkpoint signatures", "entries", "Merkle roots", "saved checkpoint", "blobs"],
        start=1,
    ):
        assert f"{number}. {title}" in result.stdout
    assert "verified: 22 entries; signed size 22" in result.stdout
    assert "--checkpoint FILE" in result.stdout


def test_log_verify_json_accepts_a_key_given_as_text(base: BuiltLog) -> None:
    result = cli("log", "verify", f"sqlite:///{base.path}", "--key", base.vkey, "--json")
    assert result.returncode == 0, result.stderr
    data = as_json(result)
    assert data["verified"] is True and data["size"] == 22 and data["entries"] == 22
    assert [s["number"] for s in data["steps"]] == [1, 2, 3, 4, 5, 6, 7]
    assert data["signed_by"] == [base.vkey]


def test_log_verify_of_a_tampered_log_exits_1_naming_the_attack(log: BuiltLog) -> None:
    sql(log.path, "DELETE FROM entries WHERE seq = 5")
    result = cli("log", "verify", log.path, "--key", log.pub_file)
    assert result.returncode == 1
    assert "entry 5 was deleted" in result.stdout
    assert "verification failed at step 3 (entry_deleted)" in result.stderr
    data = as_json(cli("log", "verify", log.path, "--key", log.pub_file, "--json"))
    assert data["verified"] is False
    assert (data["step"], data["attack"]) == (3, "entry_deleted")
    assert [s["number"] for s in data["steps"]] == [1, 2]


def test_log_verify_with_the_wrong_key_exits_1(base: BuiltLog, tmp_path: Path) -> None:
    cli("keys", "generate", "--name", "other", "--out", tmp_path)
    result = cli("log", "verify", base.path, "--key", tmp_path / "other.pub", "--json")
    assert result.returncode == 1
    assert as_json(result)["attack"] == "checkpoint_unknown_key"


def test_log_verify_cannot_run_without_a_key_or_a_log(base: BuiltLog, tmp_path: Path) -> None:
    no_key = cli("log", "verify", base.path)
    assert no_key.returncode == 2
    assert "no verifier key: pass --key NAME.pub" in no_key.stderr
    no_log = cli("log", "verify", tmp_path / "missing.db", "--key", base.pub_file)
    assert no_log.returncode == 2
    assert "no decision log at" in no_log.stderr
    bad_key = cli("log", "verify", base.path, "--key", tmp_path / "missing.pub")
    assert bad_key.returncode == 2
    assert "is neither a verifier key file nor a key" in bad_key.stderr


def test_a_saved_checkpoint_catches_a_rollback(log: BuiltLog, tmp_path: Path) -> None:
    saved = tmp_path / "saved.note"
    printed = cli("log", "checkpoint", log.path)
    assert printed.returncode == 0
    saved.write_text(printed.stdout)
    assert printed.stdout == log.latest_note()
    data = as_json(cli("log", "checkpoint", log.path, "--json"))
    assert data["size"] == 22 and data["note"] == printed.stdout
    ok = cli("log", "verify", log.path, "--key", log.pub_file, "--checkpoint", saved)
    assert ok.returncode == 0 and "your checkpoint of size 22 is the log's latest" in ok.stdout
    copy_log(build_older(log, tmp_path), log.path)
    rolled = cli("log", "verify", log.path, "--key", log.pub_file, "--checkpoint", saved)
    assert rolled.returncode == 1
    assert "the log was truncated or rolled back" in rolled.stdout


def build_older(log: BuiltLog, tmp_path: Path) -> Path:
    """A copy of the log cut back to its first thread, checkpoints and tree state included."""
    older = copy_log(log.path, tmp_path / "older.db")
    sql(older, "DELETE FROM entries WHERE seq >= 9", "DELETE FROM checkpoints WHERE size > 9")
    from agentfence import _merkle

    with sqlite3.connect(older) as conn:
        leaves = [bytes(r[0]) for r in conn.execute("SELECT leaf_hash FROM entries ORDER BY seq")]
        state = _merkle.MerkleFrontier.from_leaf_hashes(leaves).state()
        conn.execute("UPDATE tree_state SET size = ?, frontier = ?", (state.size, state.to_bytes()))
    return older


# --- show / tail / export ------------------------------------------------------------------


def test_log_show_filters_by_effect_thread_and_tool(base: BuiltLog) -> None:
    denied = as_json(cli("log", "show", base.path, "--effect", "deny", "--json"))
    assert {row["record"]["effect"] for row in denied} == {"DENY"}
    assert len(denied) == 9
    refunds = as_json(
        cli("log", "show", base.path, "--thread", "ticket-2", "--tool", "refund", "--json")
    )
    expected = [
        s
        for s, r in records(base.path)
        if getattr(r, "thread", None) == "ticket-2" and getattr(r, "tool", None) == "refund"
    ]
    assert len(expected) == 1
    assert [(r["seq"], r["record"]["tool"]) for r in refunds] == [(expected[0], "refund")]
    table = cli("log", "show", base.path, "--kind", "decision", "--limit", "3")
    assert table.returncode == 0
    for header in ("seq", "time (UTC)", "kind", "thread", "tool", "effect", "detail"):
        assert header in table.stdout
    assert "support-reads-customers" in table.stdout
    assert "not verified here" in table.stdout


def test_log_show_rejects_a_bad_filter(base: BuiltLog) -> None:
    result = cli("log", "show", base.path, "--effect", "maybe")
    assert result.returncode == 2
    assert "use allow, deny or require_approval" in result.stderr
    when = cli("log", "show", base.path, "--since", "yesterday")
    assert when.returncode == 2 and "is not a time" in when.stderr


def test_log_show_time_window(base: BuiltLog) -> None:
    everything = as_json(cli("log", "show", base.path, "--since", "2000-01-01", "--json"))
    assert len(everything) == 22
    assert as_json(cli("log", "show", base.path, "--until", "2000-01-01", "--json")) == []


def test_log_tail_shows_the_last_entries_oldest_first(base: BuiltLog) -> None:
    rows = as_json(cli("log", "tail", base.path, "-n", "3", "--json"))
    assert [r["seq"] for r in rows] == [19, 20, 21]
    assert all(len(r["leaf_hash"]) == 64 for r in rows)


def test_log_export_writes_one_json_line_per_entry(base: BuiltLog, tmp_path: Path) -> None:
    out = tmp_path / "siem.jsonl"
    result = cli("log", "export", base.path, "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    assert as_json(result) == {"exported": 22, "out": str(out)}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(22))
    assert set(lines[1]) == {"@timestamp", "seq", "leaf_hash", "kind", "time_us", "record"}
    assert lines[0]["record"]["format"] == "agentfence.activation/v1"
    for line in lines:  # @timestamp is time_us in ISO 8601, UTC, to the microsecond
        stamp = datetime.datetime.fromisoformat(line["@timestamp"].replace("Z", "+00:00"))
        assert stamp.tzinfo == datetime.UTC and line["@timestamp"].endswith("Z")
        delta = stamp - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        assert delta // datetime.timedelta(microseconds=1) == line["time_us"]
    streamed = cli("log", "export", base.path, "--thread", "anonymous")
    assert len(streamed.stdout.splitlines()) == 5


# --- prove ---------------------------------------------------------------------------------


def test_log_prove_and_verify_receipt(base: BuiltLog, tmp_path: Path) -> None:
    seq = refund_seq(base.path)
    result = cli("log", "prove", base.path, str(seq))
    assert result.returncode == 0, result.stderr
    receipt = tmp_path / "receipt.json"
    receipt.write_text(result.stdout)
    data = json.loads(result.stdout)
    assert data["format"] == "agentfence.receipt/v1" and data["seq"] == seq
    ok = cli("log", "verify-receipt", receipt, "--key", base.pub_file, "--json")
    assert ok.returncode == 0, ok.stderr
    assert as_json(ok)["record"]["tool"] == "refund"
    data["record"]["effect"] = "DENY"
    receipt.write_text(json.dumps(data))
    bad = cli("log", "verify-receipt", receipt, "--key", base.pub_file)
    assert bad.returncode == 1
    assert "receipt does not verify" in bad.stderr and "differs" in bad.stderr


def test_log_prove_beyond_the_signed_tree_cannot_run(base: BuiltLog) -> None:
    result = cli("log", "prove", base.path, "99")
    assert result.returncode == 2
    assert "entry 99 is not covered by the checkpoint of size 22" in result.stderr


# --- erase and rotate-key ------------------------------------------------------------------


def test_log_erase_needs_the_signing_key_and_is_reported(log: BuiltLog) -> None:
    decision = next(r for _, r in records(log.path) if getattr(r, "request_blob", None))
    ref = decision.request_blob  # type: ignore[union-attr]
    env = {"AGENTFENCE_SIGNING_KEY": ""}
    refused = cli("log", "erase", log.path, ref, "--reason", "DSR-1", env=env)
    assert refused.returncode == 2
    assert "needs the log's signing key" in refused.stderr
    erased = cli(
        "log", "erase", log.path, ref, "--reason", "DSR-1", "--key-file", log.key_file, "--json"
    )
    assert erased.returncode == 0, erased.stderr
    assert as_json(erased)["erased"] == ref
    data = as_json(cli("log", "verify", log.path, "--key", log.pub_file, "--json"))
    assert data["verified"] is True
    assert [(b["ref"], b["reason"]) for b in data["erased_blobs"]] == [(ref, "DSR-1")]


def test_log_erase_reads_the_key_from_the_environment(log: BuiltLog) -> None:
    decision = next(r for _, r in records(log.path) if getattr(r, "request_blob", None))
    ref = decision.request_blob  # type: ignore[union-attr]
    env = {"AGENTFENCE_SIGNING_KEY": str(log.key_file)}
    assert cli("log", "erase", log.path, ref, "--reason", "DSR-2", env=env).returncode == 0


def test_log_retain_erases_old_entries_blobs_records_why_and_the_log_still_verifies(
    log: BuiltLog,
) -> None:
    """Retention: the arguments, results and answers of entries past the period are erased,
    each erasure on the log with its reason; policy texts stay (replay needs them), and
    verification passes, naming every erased blob."""
    from agentfence.records import ActivationRecord, blob_refs

    key = ("--key-file", log.key_file)
    kept = cli("log", "retain", log.path, "--older-than", "1d", *key, "--json")
    assert kept.returncode == 0, kept.stderr
    assert as_json(kept)["erased"] == []  # nothing is a day old
    shown = as_json(
        cli("log", "retain", log.path, "--older-than", "0s", *key, "--dry-run", "--json")
    )
    assert shown["due"] and shown["erased"] == []
    done = as_json(cli("log", "retain", log.path, "--older-than", "0s", *key, "--json"))
    assert sorted(e["blob"] for e in done["erased"]) == sorted(shown["due"])
    policy_texts = {
        ref for _, r in records(log.path) if isinstance(r, ActivationRecord) for ref in blob_refs(r)
    }
    assert policy_texts and not policy_texts & set(shown["due"])
    data = as_json(cli("log", "verify", log.path, "--key", log.pub_file, "--json"))
    assert data["verified"] is True
    erased = {b["ref"]: b["reason"] for b in data["erased_blobs"]}
    assert erased == {ref: "retention: older than 0s" for ref in shown["due"]}
    bad = cli("log", "retain", log.path, "--older-than", "ninety days", *key)
    assert bad.returncode == 2 and "--older-than" in bad.stderr


def test_log_rotate_key_then_verify_with_either_key(log: BuiltLog, tmp_path: Path) -> None:
    assert cli("keys", "generate", "--name", "next", "--out", tmp_path).returncode == 0
    result = cli(
        "log",
        "rotate-key",
        log.path,
        "--old-key",
        log.key_file,
        "--new-key",
        tmp_path / "next.key",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert as_json(result)["seq"] == 22
    for key in (log.pub_file, tmp_path / "next.pub"):
        data = as_json(cli("log", "verify", log.path, "--key", key, "--json"))
        assert data["verified"] is True, data
        assert data["key_changes"][0]["seq"] == 22
    # The log takes appends signed by the new key.
    erase = cli(
        "log",
        "erase",
        log.path,
        next(r for _, r in records(log.path) if getattr(r, "request_blob", None)).request_blob,  # type: ignore[union-attr]
        "--reason",
        "after rotation",
        "--key-file",
        tmp_path / "next.key",
    )
    assert erase.returncode == 0, erase.stderr


# --- evidence ------------------------------------------------------------------------------


def test_evidence_export_and_verify(base: BuiltLog, tmp_path: Path) -> None:
    pack = tmp_path / "pack.json"
    exported = cli(
        "evidence", "export", base.path, "--thread", "ticket-1", "--out", pack, "--key",
        base.pub_file, "--json",
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert as_json(exported)["thread"] == "ticket-1"
    verified = cli("evidence", "verify", pack, "--key", base.pub_file)
    assert verified.returncode == 0, verified.stderr
    assert "verified: agentfence/fence at tree size 22" in verified.stdout
    data = json.loads(pack.read_text())
    data["blobs"][0]["content"] = "AAAA"
    pack.write_text(json.dumps(data))
    failed = cli("evidence", "verify", pack, "--key", base.pub_file, "--json")
    assert failed.returncode == 1
    assert as_json(failed)["attack"] == "blob_altered"


# --- replay --------------------------------------------------------------------------------


def test_replay_reproduces_the_recorded_decisions(base: BuiltLog) -> None:
    result = cli("replay", base.path)
    assert result.returncode == 0, result.stderr
    assert "replayed 10 of 15 decisions with the recorded policies" in result.stdout
    assert "10 unchanged, 0 changed" in result.stdout
    assert "not replayable: 5 refused before cedar" in result.stdout


def test_replay_what_if_shows_changes_and_fails_only_on_request(
    base: BuiltLog, tmp_path: Path
) -> None:
    candidate = tmp_path / "candidate"
    shutil.copytree(policy_dir(), candidate)
    (candidate / "destructive.cedar").write_text(
        '@id("deletes-in-tickets")\n'
        'permit (principal, action == Action::"delete_file", resource)\n'
        'when { context.args.path like "/srv/tickets/*" };\n'
    )
    shown = cli("replay", base.path, "--policies", candidate)
    assert shown.returncode == 0, shown.stderr
    assert "2 decisions would change" in shown.stdout
    assert "no-deletes -> deletes-in-tickets" in shown.stdout
    failing = cli("replay", base.path, "--policies", candidate, "--fail-on-change", "--json")
    assert failing.returncode == 1
    data = as_json(failing)
    assert data["mode"] == "what-if" and data["changed"] == 2
    assert {(c["recorded_effect"], c["replayed_effect"]) for c in data["changes"]} == {
        ("DENY", "ALLOW")
    }


def test_replay_of_a_log_that_does_not_reproduce_exits_1(log: BuiltLog) -> None:
    from agentfence.log import SignedLog
    from agentfence.records import DecisionRecord

    denied = next(
        r for _, r in records(log.path) if isinstance(r, DecisionRecord) and r.tool == "delete_file"
    )
    with SignedLog.open(log.path, signer=log.signer) as signed:
        signed.append(denied.model_copy(update={"decision_id": "d" * 32, "effect": "ALLOW"}))
    result = cli("replay", log.path)
    assert result.returncode == 1
    assert "1 decisions replay differently" in result.stdout


# --- help text and docs --------------------------------------------------------------------


def _commands() -> dict[str, str]:
    """Each auditor command and the first line of its --help."""
    group = typer.main.get_group(app)
    context = type(group).context_class(group)
    found: dict[str, str] = {}
    for name in ("log", "keys", "evidence"):
        sub = group.get_command(context, name)
        for command_name, command in sub.commands.items():  # type: ignore[union-attr]
            found[f"{name} {command_name}"] = (command.help or "").splitlines()[0]
    replay = group.get_command(context, "replay")
    found["replay"] = (replay.help or "").splitlines()[0]  # type: ignore[union-attr]
    return found


def test_the_auditor_guide_quotes_every_commands_help() -> None:
    guide = (ROOT / "docs" / "auditor-guide.md").read_text(encoding="utf-8")
    missing = [
        f"{name}: {summary}"
        for name, summary in _commands().items()
        if f"agentfence {name}" not in guide or summary not in guide
    ]
    assert missing == []


def test_log_show_names_an_allowed_call_whose_outcome_was_not_recorded(tmp_path: Path) -> None:
    """A decision that let a tool run with no outcome on the log (a crash within the flush
    window) is its own state in `log show`, not a silent row: the auditor sees it ran."""
    from typer.testing import CliRunner

    from agentfence._signing import Signer
    from agentfence.log import SignedLog
    from agentfence.records import Blob
    from tests.conformance.test_backends import decision, done

    db = tmp_path / "gap.db"
    log = SignedLog.open(db, signer=Signer.generate("gap"))
    finished, unfinished = decision("gap", 1), decision("gap", 2)
    blob = Blob.of(b"result")
    log.append(finished)
    log.append(done(finished, blob), [blob])
    log.append(unfinished)
    log.close()

    shown = CliRunner().invoke(app, ["log", "show", str(db), "--kind", "decision", "--json"])
    assert shown.exit_code == 0, shown.output
    states = {row["record"]["decision_id"]: row.get("state") for row in json.loads(shown.output)}
    assert states == {
        finished.decision_id: None,
        unfinished.decision_id: "ran, outcome not recorded",
    }
    table = CliRunner().invoke(app, ["log", "show", str(db)], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert table.output.count("ran, outcome not recorded") == 1


def test_log_show_gives_the_approvers_answer_and_the_fences_verdict_and_outcomes_their_tool(
    tmp_path: Path,
) -> None:
    """ "accepted" is the fence's verdict on an answer, not the approver's decision: the two
    are separate columns, and an outcome row names the tool its decision was about."""
    from typer.testing import CliRunner

    ran = cli("demo", "--scripted", "--dir", tmp_path)
    assert ran.returncode == 0, ran.stderr
    db = str(tmp_path / "demo-log.db")
    env = {"COLUMNS": "250"}
    answers = CliRunner().invoke(app, ["log", "show", db, "--kind", "approval_answer"], env=env)
    assert answers.exit_code == 0, answers.output
    assert "approver's answer" in answers.output and "fence's verdict" in answers.output
    [row] = [line for line in answers.output.splitlines() if "approval_answer" in line]
    assert "approved" in row and "accepted" in row and "verdict=" not in row
    outcomes = CliRunner().invoke(app, ["log", "show", db, "--kind", "outcome"], env=env)
    rows = [line for line in outcomes.output.splitlines() if "│ outcome" in line]
    assert rows and all("refund" in r or "lookup_customer" in r or "send_email" in r for r in rows)
