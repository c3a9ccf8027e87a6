"""``agentfence log browse``, run as an auditor runs it: a real Datasette server on a free
localhost port, read over HTTP.
"""

from __future__ import annotations

import html
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.unit.test_views import Built, built  # noqa: F401  # the fixture

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", **extra}


class Server:
    def __init__(self, proc: subprocess.Popen[str], base: str) -> None:
        self.proc, self.base = proc, base

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, timeout=30)


@pytest.fixture
def server(built: Built, tmp_path: Path) -> Iterator[Server]:  # noqa: F811
    """``log browse --key`` serving the log; its temporary folder is ``tmp_path/tmp``."""
    port = free_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = subprocess.Popen(  # stopped below, by its own pid
        [
            *(sys.executable, "-m", "agentfence.cli", "log", "browse", str(built.path)),
            *("--port", str(port), "--no-open", "--key", built.signer.verifier_key),
        ],
        cwd=ROOT,
        env=env(TMPDIR=str(temp)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    srv = Server(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 120  # a bound for a loaded machine, not a timing assumption
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"log browse exited {proc.returncode}: {proc.communicate()}")
            try:
                if srv.get("/-/versions.json").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("log browse did not start serving within 120 s")
            time.sleep(0.2)
        yield srv
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_log_browse_serves_decisions_as_json_and_entry_bodies_as_text(
    server: Server,
    built: Built,  # noqa: F811
    tmp_path: Path,
) -> None:
    decisions = server.get("/log/decisions.json?_shape=objects").json()["rows"]
    assert [(d["tool"], d["effect"]) for d in decisions] == [  # newest first (metadata)
        ("refund", "REQUIRE_APPROVAL"),
        ("wipe", "DENY"),
        ("lookup", "ALLOW"),
    ]
    denied = decisions[1]
    assert denied["time"] == "2026-12-05T20:54:55.716830Z"
    assert json.loads(denied["policies"]) == ["wipe-policy"]

    # The entry's HTML row page shows its signed body as text, not a download link.
    page = server.get(f"/log/entries/{denied['seq']}")
    assert page.status_code == 200
    [body] = re.findall(r"<pre>(.*?)</pre>", page.text, flags=re.S)
    record = json.loads(html.unescape(body))["record"]
    assert (record["tool"], record["effect"], record["decision_id"]) == ("wipe", "DENY", "d2")

    [outcome] = server.get("/log/outcomes.json?_shape=objects").json()["rows"]
    assert (outcome["tool"], outcome["result"]) == ("lookup", '"Dana, gold tier"')
    [approval] = server.get("/log/approvals.json?_shape=objects").json()["rows"]
    assert (approval["answer"], approval["verdict"]) == ("reject", "accepted")

    decisions_page = server.get("/log/decisions").text
    assert "One row per policy decision on a tool call" in decisions_page  # the metadata
    [database] = server.get("/-/databases.json").json()
    assert (database["name"], database["is_mutable"]) == ("log", False)  # immutable mode


def test_log_browse_verifies_the_copy_and_removes_it_when_stopped(
    server: Server, tmp_path: Path
) -> None:
    assert list((tmp_path / "tmp").iterdir())  # the copy is served while it runs
    server.proc.terminate()
    out, err = server.proc.communicate(timeout=60)
    assert "Not verified" not in err
    assert "verified: 7 entries; signed size 7" in out
    assert "Browsing a read-only copy of" in out and "(7 entries)" in out
    assert list((tmp_path / "tmp").iterdir()) == []


def cli(*args: str | Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentfence.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env(**extra),
        timeout=300,
    )


def test_log_browse_with_the_wrong_key_exits_1_and_serves_nothing(
    built: Built,  # noqa: F811
    tmp_path: Path,
) -> None:
    from agentfence._signing import Signer

    other = Signer.generate("test-log").verifier_key
    result = cli("log", "browse", built.path, "--no-open", "--port", "1", "--key", other)
    assert result.returncode == 1, result.stderr
    assert "verification failed at step 2" in result.stderr
    assert "not serving it" in result.stderr
    assert "Browsing" not in result.stdout


def test_log_browse_without_the_browse_extra_names_it(
    built: Built,  # noqa: F811
    tmp_path: Path,
) -> None:
    shadow = tmp_path / "shadow" / "datasette"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'datasette'\")\n")
    path = os.pathsep.join([str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])
    result = cli("log", "browse", built.path, "--no-open", PYTHONPATH=path)
    assert result.returncode == 2
    assert "log browse needs the browse extra" in result.stderr
    assert "pip install 'agentfence[browse]'" in result.stderr


def test_log_help_and_browse_help_do_not_load_datasette() -> None:
    """The browse extra is optional: the log commands' help (and every other log command)
    works without importing it."""
    probe = (
        "import sys\n"
        "from agentfence.cli import main\n"
        "for argv in (['log', '--help'], ['log', 'browse', '--help']):\n"
        "    sys.argv = ['agentfence', *argv]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('datasette', 'agentfence._da')))\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert "Browse the log read-only in Datasette" in result.stdout
    assert "LOADED []" in result.stderr, result.stderr


def test_markup_an_attacker_put_in_a_logged_call_is_shown_escaped(tmp_path: Path) -> None:
    """A tool's arguments and results come from the model and the outside world: a
    recipient or a result that is HTML must reach the auditor's browser as text, on the
    entry's row page (its body, rendered by agentfence) as on the views' pages."""
    import asyncio
    import math

    from agentfence import _datasette
    from agentfence._signing import Signer
    from agentfence._storage.views import browsable_copy
    from agentfence.log import SignedLog
    from agentfence.records import Blob, OutcomeRecord
    from tests.unit.test_views import decision

    script = "<script>alert('auditor')</script>"
    result = Blob.of(json.dumps(script).encode())
    path = tmp_path / "fence.db"
    planted = decision(1, "send_email", "ALLOW").model_copy(update={"resource": script})
    with SignedLog.open(path, signer=Signer.generate("t"), checkpoint_interval=math.inf) as log:
        log.append(planted)
        outcome = OutcomeRecord(
            decision_id="d1",
            status="success",
            result_digest="0" * 64,
            result_blob=result.ref,
            time_us=1,
        )
        log.append(outcome, [result])
    copy = tmp_path / "browse" / "log.db"
    copy.parent.mkdir()
    browsable_copy(path, copy)

    async def pages() -> list[str]:
        transport = httpx.ASGITransport(app=_datasette.create_app(copy))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            paths = ["/log/entries/0", "/log/decisions", "/log/outcomes", "/log/blob_texts"]
            return [(await client.get(p)).text for p in paths]

    for page in asyncio.run(pages()):
        assert "<script>alert(" not in page
        assert "&lt;script&gt;alert(" in page
