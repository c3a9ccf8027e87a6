"""Issue 4 end to end: three processes share a SQLite log and a LangGraph ``SqliteSaver``.

Process 1 runs the support-desk agent until it pauses on the EUR 2,500 refund and exits.
Process 2 is the approver's CLI (``agentfence approvals approve`` as fran). Process 3 builds
the same agent again and resumes the thread: the refund runs exactly once, also when process
3 is run a second time, and the signed log verifies and shows request, answer and outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from agentfence._signing import Signer, write_private_key
from agentfence._storage.tables import LogBackend
from agentfence.demo import demo_approver, policy_dir
from agentfence.log import parse_entry
from agentfence.records import ApprovalAnswerRecord, ApprovalRequestRecord, OutcomeRecord
from agentfence.verify import verify_log

ROOT = Path(__file__).resolve().parents[2]

# The deployment's side: one script, run as `desk.py start WORKDIR` or `desk.py resume WORKDIR`.
DESK = textwrap.dedent(
    '''
    import json
    import sys
    from pathlib import Path

    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.tools import StructuredTool
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    from agentfence import Fence
    from agentfence.demo import policy_dir
    from agentfence.demo.tools import TOOLS, refund
    from agentfence.testing import ScriptedChatModel, tool_call

    mode, work = sys.argv[1], Path(sys.argv[2])
    # The decision log and LangGraph's checkpointer: SQLite files, or PostgreSQL URLs.
    log_url = sys.argv[3] if len(sys.argv) > 3 else f"sqlite:///{work / 'log.db'}"
    graph_store = sys.argv[4] if len(sys.argv) > 4 else str(work / "checkpoints.db")


    def refund_and_note(customer_id: str, amount: float, reason: str) -> str:
        """Refund, leaving a line in refunds.txt: the side effect the test counts."""
        with open(work / "refunds.txt", "a", encoding="utf-8") as ledger:
            ledger.write(f"{customer_id} {amount:.2f} {reason}\\n")
        return f"refunded EUR {amount:.2f} to {customer_id}"


    # Same name, arguments and governance metadata as the demo's refund tool.
    counted = StructuredTool.from_function(
        refund_and_note,
        name=refund.name,
        description=refund.description,
        args_schema=refund.args_schema,
        metadata=dict(refund.metadata or {}),
    )
    tools = [counted if t.name == "refund" else t for t in TOOLS]


    class Restartable(ScriptedChatModel):
        """Replies by how far the conversation got, so a new process carries on the script."""

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            turn = sum(isinstance(m, AIMessage) for m in messages)
            return ChatResult(generations=[ChatGeneration(message=self.responses[turn])])


    model = Restartable(
        responses=[
            AIMessage(
                content="Looking up the customer.",
                tool_calls=[tool_call("lookup_customer", {"customer_id": "c-102"}, "call-1")],
            ),
            AIMessage(
                content="Refunding the broken laptop.",
                tool_calls=[
                    tool_call(
                        "refund",
                        {"customer_id": "c-102", "amount": 2500.0, "reason": "laptop broken"},
                        "call-2",
                    )
                ],
            ),
            AIMessage(content="Refund done."),
        ]
    )
    fence = Fence.from_directory(
        policy_dir(),
        tools=tools,
        log=log_url,
        signing_key=work / "log.key",
        agent="support-bot",
    )
    config = {"configurable": {"thread_id": "ticket-T-88", "agentfence_principal": "alice"}}
    try:
        if graph_store.startswith("postgresql://"):
            saver_context = PostgresSaver.from_conn_string(graph_store)
        else:
            saver_context = SqliteSaver.from_conn_string(graph_store)
        with saver_context as saver:
            if mode == "start" and isinstance(saver, PostgresSaver):
                saver.setup()  # LangGraph's tables, created once by the first worker
            agent = create_agent(model, tools, middleware=[fence.middleware()], checkpointer=saver)
            if mode == "start":
                request = {"messages": [("user", "Refund EUR 2,500 to c-102 for the laptop.")]}
                # timeout=0: run until the first pause, then return instead of waiting.
                out = fence.run(agent, request, config, timeout=0)
                pauses = out.get("__interrupt__", [])
                report = {
                    "requests": [
                        a["agentfence"]["request_id"]
                        for p in pauses
                        for a in p.value["action_requests"]
                    ]
                }
            else:
                out = fence.resume(agent, config)
                report = {
                    "resumed": out is not None,
                    "last": None if out is None else str(out["messages"][-1].content),
                }
    finally:
        fence.close()
    print(json.dumps(report))
    '''
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFENCE_")}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, "COLUMNS": "160"},
        timeout=120,
    )


def desk(mode: str, work: Path, *stores: str) -> dict[str, Any]:
    result = run(str(work / "desk.py"), mode, str(work), *stores)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def approve_as_fran(request_id: str, key: Path, db: str, *checked: str) -> None:
    """Fran approves from the CLI (``checked``: ``--policies``/``--tools`` to check against,
    by default the demo's)."""
    checks = checked or ("--policies", str(policy_dir()), "--tools", "agentfence.demo.tools:TOOLS")
    approved = run(
        "-m", "agentfence.cli", "approvals", "approve", request_id[:12], "--as", "fran",
        "--key", str(key), "--db", db, *checks,
    )  # fmt: skip
    assert approved.returncode == 0, approved.stderr


def refunds(work: Path) -> list[str]:
    ledger = work / "refunds.txt"
    return ledger.read_text(encoding="utf-8").splitlines() if ledger.exists() else []


def test_pause_approve_in_another_process_resume_runs_once(tmp_path: Path) -> None:
    (tmp_path / "desk.py").write_text(DESK, encoding="utf-8")
    log_key = write_private_key(tmp_path / "log.key", Signer.generate("desk-log"))
    fran_key = write_private_key(tmp_path / "fran.key", demo_approver())
    db = tmp_path / "log.db"

    # Process 1: runs until the refund pauses for a finance approver, then exits.
    [request_id] = desk("start", tmp_path)["requests"]
    assert refunds(tmp_path) == []

    # Process 2: fran approves from the CLI, checked at once against the policies.
    approve_as_fran(request_id, fran_key, f"sqlite:///{db}")
    assert refunds(tmp_path) == []

    # Process 3: the same agent, built again, resumes; the refund runs once.
    resumed = desk("resume", tmp_path)
    assert resumed == {"resumed": True, "last": "Refund done."}
    assert refunds(tmp_path) == ["c-102 2500.00 laptop broken"]

    # Process 3 again: the thread is finished; nothing resumes and nothing runs twice.
    assert desk("resume", tmp_path) == {"resumed": False, "last": None}
    assert refunds(tmp_path) == ["c-102 2500.00 laptop broken"]

    # The log verifies with the log's verifier key, and shows request, answer and outcome.
    verifier = Signer.from_private_key(log_key.read_text().strip()).verifier_key
    verified = verify_log(db, [verifier])
    assert verified.unsigned_tail == 0
    backend = LogBackend(db, create=False, readonly=True)
    try:
        records = [(row.seq, parse_entry(row.body)[1]) for row in backend.entries()]
    finally:
        backend.close()
    [(asked_at, asked)] = [
        (seq, r)
        for seq, r in records
        if isinstance(r, ApprovalRequestRecord) and r.request_id == request_id
    ]
    assert (asked.tool, asked.principal, asked.approvers) == (
        "refund",
        'User::"alice"',
        ["finance"],
    )
    [(answered_at, answer)] = [
        (seq, r)
        for seq, r in records
        if isinstance(r, ApprovalAnswerRecord) and r.request_id == request_id
    ]
    assert (answer.verdict, answer.answer, answer.approver) == (
        "accepted",
        "approve",
        'User::"fran"',
    )
    [(ran_at, outcome)] = [
        (seq, r)
        for seq, r in records
        if isinstance(r, OutcomeRecord) and r.decision_id == asked.decision_id
    ]
    assert outcome.status == "success"
    assert asked_at < answered_at < ran_at

    shown = run("-m", "agentfence.cli", "approvals", "show", request_id, "--db", str(db), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "used"
