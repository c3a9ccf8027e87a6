"""Blocks in the docs that a reader copies and runs are run here, so they cannot drift.

A block is marked by the HTML comment ``<!-- the block below is run by
tests/integration/test_docs_run.py -->`` on the line before it. A marked Python block whose
first line is ``# NAME.py`` is written to ``NAME.py`` in a fresh directory and run with
pytest there, as the docs tell the reader to; every test in it must pass.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- the block below is run by tests/integration/test_docs_run.py -->"
BLOCK = re.compile(
    re.escape(MARK) + r"\n```python\n# (?P<name>[\w.-]+\.py)\n(?P<code>.*?)```", re.S
)


def marked() -> list[tuple[str, str, str]]:
    found = []
    for doc in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]):
        text = doc.read_text(encoding="utf-8")
        blocks = list(BLOCK.finditer(text))
        assert len(blocks) == text.count(MARK), f"{doc.name}: a mark not followed by a block"
        found += [(doc.name, m["name"], m["code"]) for m in blocks]
    return found


def test_there_are_marked_blocks() -> None:
    assert any(name == "test_refunds.py" for _, name, _ in marked())


@pytest.mark.parametrize(("doc", "name", "code"), marked(), ids=lambda v: str(v)[:40])
def test_a_marked_test_file_in_the_docs_passes(
    doc: str, name: str, code: str, tmp_path: Path
) -> None:
    (tmp_path / name).write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{doc}: {name} fails as shown:\n{result.stdout}"
    assert re.search(r"\d+ passed", result.stdout) and "failed" not in result.stdout
