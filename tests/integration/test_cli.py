"""The agentfence command, run as a user runs it: a subprocess with real files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_POLICIES = ROOT / "src" / "agentfence" / "demo" / "policies"
DEMO_TOOLS = "agentfence.demo.tools:TOOLS"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "agentfence.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=120,
    )


def test_validate_ok_with_tools() -> None:
    result = cli("policy", "validate", str(DEMO_POLICIES), "--tools", DEMO_TOOLS, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is True and data["parsed_only"] is False
    assert data["policies"] == 10


def test_validate_without_tools_parses_only_and_says_so() -> None:
    result = cli("policy", "validate", str(DEMO_POLICIES))
    assert result.returncode == 0
    assert "parsed only: pass --tools" in result.stderr


def test_validate_reports_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "pol"
    bad.mkdir()
    (bad / "a.cedar").write_text("permit (principal, action, resource);\n\npermit (principal,\n")
    result = cli("policy", "validate", str(bad))
    assert result.returncode == 2
    assert f"{bad / 'a.cedar'}:3:" in result.stderr
    assert "agentfence policy validate" in result.stderr


def test_validate_unknown_tools_module_is_a_clear_error() -> None:
    result = cli("policy", "validate", str(DEMO_POLICIES), "--tools", "no_such_mod:TOOLS")
    assert result.returncode == 2
    assert "cannot import 'no_such_mod'" in result.stderr


def test_schema_prints_generated_actions() -> None:
    result = cli("policy", "schema", "--tools", DEMO_TOOLS)
    assert result.returncode == 0
    assert 'action "refund" in ["payments"] appliesTo' in result.stdout
    assert '"amount": decimal' in result.stdout


def write_cases(path: Path, expect_large: str) -> None:
    path.write_text(
        f'policies = "{DEMO_POLICIES}"\n'
        f'tools = "{DEMO_TOOLS}"\n'
        "[[case]]\n"
        'name = "small refund"\n'
        'tool = "refund"\n'
        "principal = 'User::\"alice\"'\n"
        'args = { customer_id = "c-1", amount = 20.0, reason = "late" }\n'
        'expect = "allow"\n'
        'policies = ["refund-small"]\n'
        "[[case]]\n"
        'name = "large refund"\n'
        'tool = "refund"\n'
        "principal = 'User::\"alice\"'\n"
        'args = { customer_id = "c-1", amount = 2000.0, reason = "broken" }\n'
        f'expect = "{expect_large}"\n'
    )


def test_policy_test_passes(tmp_path: Path) -> None:
    cases = tmp_path / "cases.toml"
    write_cases(cases, "require_approval")
    result = cli("policy", "test", str(cases))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 0 failed" in result.stdout


def test_policy_test_mismatch_exits_1_with_a_readable_diff(tmp_path: Path) -> None:
    cases = tmp_path / "cases.toml"
    write_cases(cases, "allow")
    result = cli("policy", "test", str(cases))
    assert result.returncode == 1
    assert "FAIL large refund: expected ALLOW, got REQUIRE_APPROVAL" in result.stdout
    assert "refunds over EUR 100 need a finance approver" in result.stdout
    assert "1 passed, 1 failed" in result.stdout
    as_json = json.loads(cli("policy", "test", str(cases), "--json").stdout)
    assert as_json["failed"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[case]]\nname = 'x'\n", "lacks tool, principal, expect"),
        ("not toml = = =", "not valid TOML"),
        ("[[case]]\ntool='refund'\nprincipal='alice'\nexpect='maybe'\n", "use allow, deny"),
        (
            "[[case]]\ntool='refund'\nprincipal='alice'\nexpect='allow'\n"
            "expected_policies=['refund-small']\n",
            "unknown key(s) 'expected_policies'",
        ),
        (
            "polices = 'p'\n[[case]]\ntool='refund'\nprincipal='alice'\nexpect='allow'\n",
            "'polices'",
        ),
        ("case = [1]\n", "case 1 is not a table; write each as [[case]]"),
        (
            "[[case]]\ntool='refund'\nprincipal='alice'\nexpect='allow'\nargs='x'\n",
            "args must be a table",
        ),
        (
            "[[case]]\ntool='refund'\nprincipal='alice'\nexpect='allow'\npolicies='p'\n",
            "policies must be a list of policy ids",
        ),
    ],
)
def test_policy_test_bad_cases_file(tmp_path: Path, content: str, message: str) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(content)
    result = cli(
        "policy", "test", str(cases), "--policies", str(DEMO_POLICIES), "--tools", DEMO_TOOLS
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_policy_test_reports_every_problem_in_a_cases_file_at_once(tmp_path: Path) -> None:
    """A cases file with several mistakes names all of them, so a fix takes one round."""
    cases = tmp_path / "cases.toml"
    cases.write_text(
        "[[case]]\nname = 'one'\ntool = 'refund'\n"
        "[[case]]\nname = 'two'\ntool = 'refund'\nprincipal = 'alice'\nexpect = 'perhaps'\n"
        "[[case]]\nname = 'three'\ntool = 'refund'\nprincipal = 'alice'\nexpect = 'deny'\n"
        "expect_policy = []\n"
    )
    result = cli(
        "policy", "test", str(cases), "--policies", str(DEMO_POLICIES), "--tools", DEMO_TOOLS
    )
    assert result.returncode == 2
    assert "3 problem(s)" in result.stderr
    for name in ("'one'", "'two'", "'three'"):
        assert name in result.stderr


def test_demo_shows_all_three_outcomes_an_approval_and_a_verified_log(tmp_path: Path) -> None:
    result = cli("demo", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for effect in ("ALLOW", "DENY", "REQUIRE_APPROVAL"):
        assert effect in result.stdout
    assert "6 decisions: 3 allowed, 2 denied, 1 held for approval" in result.stdout
    assert 'approve by User::"fran" (accepted' in result.stdout
    assert "SCRIPTED APPROVER" in result.stdout  # labelled as such when not interactive
    assert f"The signed log {tmp_path / 'demo-log.db'} verifies: 13 entries" in result.stdout


@pytest.mark.parametrize("example", ["toolnode_graph.py", "create_agent_middleware.py"])
def test_examples_run(example: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert ": success: " in result.stdout and ": error: agentfence denied" in result.stdout
    assert "2 decisions recorded" in result.stdout


def test_demo_trace_prints_the_span_tree_linked_to_the_log(tmp_path: Path) -> None:
    result = cli("demo", "--dir", str(tmp_path), "--trace")
    assert result.returncode == 0, result.stderr
    tree = result.stdout[result.stdout.index("Trace") :]
    assert "invoke_agent support-bot" in tree
    assert "agentfence.step tools" in tree
    # Each tool span names its decision's log entry; the denied call's span is an error.
    assert re.search(r"execute_tool lookup_customer \[[\d.]+ ms\] effect=ALLOW, .*seq=1", tree)
    assert re.search(r"execute_tool delete_file \[[\d.]+ ms\] ERROR effect=DENY", tree)
    assert "agentfence.approval.requested, agentfence.approval.answered" in tree
