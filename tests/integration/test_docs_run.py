"""Blocks in the docs that a reader copies and runs are run here, so they cannot drift.

A block is marked by the HTML comment ``<!-- the block below is run by
tests/integration/test_docs_run.py -->`` on the line before it. A marked Python block whose
first line is ``# NAME.py`` is written to ``NAME.py`` in a fresh directory and run with
pytest there, as the docs tell the reader to; every test in it must pass.

Shell walk-throughs are marked ``<!-- run: SCENARIO -->`` and run command by command, their
exit statuses and shown output checked: see "shell walk-throughs" below.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
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


# --- shell walk-throughs -------------------------------------------------------------------
#
# A block a reader copies into a shell is marked ``<!-- run: SCENARIO -->`` (options after
# commas). The marked blocks of one scenario in one file run in order, in one fresh
# directory, with the virtualenv's bin first on PATH and this checkout's sources imported:
#
# - ```console blocks: each ``$ `` line is a command (a trailing ``\`` continues it, and a
#   here-document's lines are its input), the lines after it the output it shows. A command
#   must exit 0 unless the next command is ``echo $?``, whose shown output is then the status
#   expected. Every output line shown must appear, in order, in what the command prints
#   (stdout and stderr as one stream, whitespace runs counted as one space, so a wrapped line
#   still matches). ``…`` stands for anything; hex digests, keys, signatures, ids, times,
#   durations and checkpoint counts differ on every run and match any such token.
# - ```sh blocks: every line is a command, checked for its exit status; a ```text block right
#   after it marked ``<!-- output -->`` is the output shown.
# - ```python (or any) block with the option ``file NAME``: written to NAME, not run.
# - Options: ``first`` runs the block before the unmarked-order ones (a doc may show how the
#   input was made at its end); ``fails``: the block's last command must exit non-zero;
#   ``no-output``: the output shown is not compared (a table whose widths vary).
# - An HTML comment ``<!-- run: SCENARIO, hidden`` followed by ``$ `` lines and ``-->`` holds
#   setup the reader does another way (copying from another host, waiting a day).

# A mark is a line of its own (a doc may quote one inline, in backticks).
RUN_MARK = re.compile(
    r"^<!-- run: (?P<scenario>[\w-]+)(?P<options>(?:, [^>\n]*?)?)(?P<end> -->|\n)", re.M
)
FENCE = re.compile(r"```(?P<lang>\w*)\n(?P<body>.*?)^```\n", re.S | re.M)
OUTPUT_MARK = "<!-- output -->"
HEREDOC = re.compile(r"<<-?\s*['\"]?(?P<word>\w+)['\"]?")
VENV_BIN = Path(sys.executable).parent
# Tokens that differ on every run: digests, key ids, base64 keys and signatures, ISO times,
# temporary paths, durations, and how many checkpoints were signed (at most one every half
# second).
VOLATILE = re.compile(
    # A policy set's hash is not volatile: the same policy files always hash the same.
    r"(?<![Pp]olicy set )[0-9a-f]{7,}"
    r"|\b\d+(?= (?:signed )?checkpoints\b)"
    r"|\b\d+\.\d+(?= s\b)"
    r"|[A-Za-z0-9+/]{20,}={0,2}"
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?"
    r"|/tmp/[\w./-]+"
)


@dataclass
class Step:
    """One block of a walk-through: commands with the output each shows, or a file."""

    doc: str
    line: int
    commands: list[tuple[str, list[str]]] = field(default_factory=list)
    options: frozenset[str] = frozenset()
    file: tuple[str, str] | None = None


def _console(body: str) -> list[tuple[str, list[str]]]:
    commands: list[tuple[str, list[str]]] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.startswith("$ "):
            if commands:
                commands[-1][1].append(line)
            continue
        command = line[2:]
        while command.endswith("\\") and i < len(lines):
            command += "\n" + lines[i]  # bash reads backslash-newline as a continuation
            i += 1
        heredoc = HEREDOC.search(command)
        if heredoc:  # the here-document's lines, up to its delimiter, are input, not output
            while i < len(lines):
                command += "\n" + lines[i]
                i += 1
                if lines[i - 1] == heredoc["word"]:
                    break
        commands.append((command, []))
    return commands


def walkthroughs() -> dict[str, list[Step]]:
    """Every scenario's steps, keyed ``doc:scenario``, in the order they run."""
    found: dict[str, list[tuple[int, int, Step]]] = {}
    for doc in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]):
        for key, steps in _steps(doc.name, doc.read_text(encoding="utf-8")).items():
            found.setdefault(key, []).extend(steps)
    return {
        key: [s for _, _, s in sorted(steps, key=lambda t: t[:2])] for key, steps in found.items()
    }


def _steps(name: str, text: str) -> dict[str, list[tuple[int, int, Step]]]:
    """The marked steps of one doc, keyed ``doc:scenario``, each with its sort key."""
    found: dict[str, list[tuple[int, int, Step]]] = {}
    for mark in RUN_MARK.finditer(text):
        # An option may carry a note after a colon ("hidden: why").
        parts = (o.split(":", 1)[0].strip() for o in mark["options"].split(","))
        options = frozenset(o for o in parts if o)
        line = text.count("\n", 0, mark.start()) + 1
        step = Step(name, line, options=options)
        if "hidden" in options:
            end = text.index("-->", mark.end())
            step.commands = _console(text[mark.end() : end])
        else:
            rest = text[mark.end() :].lstrip("\n")
            block = FENCE.match(rest)
            assert block, f"{name}:{line}: a run mark not followed by a ``` block"
            named = [o for o in options if o.startswith("file ")]
            if named:
                step.file = (named[0][5:], block["body"])
            elif block["lang"] == "console":
                step.commands = _console(block["body"])
            elif block["lang"] == "sh":
                shown: list[str] = []
                after = rest[block.end() :].lstrip("\n")
                if after.startswith(OUTPUT_MARK):
                    output = FENCE.match(after[len(OUTPUT_MARK) :].lstrip("\n"))
                    assert output, f"{name}:{line}: {OUTPUT_MARK} not followed by a block"
                    shown = output["body"].splitlines()
                lines = [c for c in block["body"].splitlines() if c and not c.startswith("#")]
                step.commands = [(c, []) for c in lines]
                if step.commands:
                    step.commands[-1] = (step.commands[-1][0], shown)
            else:
                raise AssertionError(f"{name}:{line}: cannot run a {block['lang']} block")
        rank = 0 if "first" in options else 1
        found.setdefault(f"{name}:{mark['scenario']}", []).append((rank, line, step))
    return found


def _pattern(shown: str) -> re.Pattern[str] | None:
    """A regex for one shown output line, volatile tokens and ``…`` as wildcards."""
    text = " ".join(shown.split())
    if not text or text == "…":
        return None
    parts: list[str] = []
    for piece in re.split(r"(…)", text):
        if piece == "…":
            parts.append(".*?")
            continue
        at = 0
        for token in VOLATILE.finditer(piece):
            parts.append(re.escape(piece[at : token.start()]) + r"\S+?")
            at = token.end()
        parts.append(re.escape(piece[at:]))
    return re.compile("".join(parts))


def check_output(where: str, command: str, shown: list[str], printed: str) -> None:
    flat = " ".join(printed.split())
    at = 0
    for line in shown:
        pattern = _pattern(line)
        if pattern is None:
            continue
        found = pattern.search(flat, at)
        assert found, (
            f"{where}: `{command}` does not print the line the doc shows (in order):\n  {line}\n"
            f"It printed:\n{printed}"
        )
        at = found.end()


WALKTHROUGHS = walkthroughs()


def test_the_guides_walkthroughs_are_marked() -> None:
    assert {"auditor-guide.md:auditor", "README.md:quickstart"} <= set(WALKTHROUGHS)


@pytest.mark.parametrize("scenario", sorted(WALKTHROUGHS))
def test_a_docs_walkthrough_runs_as_shown(scenario: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT / "src"),
        "HOME": str(tmp_path / "home"),
        "COLUMNS": "160",
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
        "TERM": "dumb",
        "AGENTFENCE_DOCS_ROOT": str(ROOT),
    }
    for name in list(env):
        if name.startswith("AGENTFENCE_") and name != "AGENTFENCE_DOCS_ROOT":
            del env[name]
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    for step in WALKTHROUGHS[scenario]:
        if step.file is not None:
            (work / step.file[0]).write_text(step.file[1], encoding="utf-8")
            continue
        status = 0
        for index, (command, shown) in enumerate(step.commands):
            where = f"{step.doc}:{step.line}"
            if command.strip() == "echo $?":
                assert shown and shown[0].strip() == str(status), (
                    f"{where}: the command before `echo $?` exited {status}, the doc shows "
                    f"{shown[:1]}"
                )
                continue
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=work,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # one stream, in the order a terminal shows
                text=True,
                timeout=120,
            )
            status = result.returncode
            printed = result.stdout
            last = index == len(step.commands) - 1
            followed = not last and step.commands[index + 1][0].strip() == "echo $?"
            if "fails" in step.options and last:
                assert status != 0, f"{where}: `{command}` should fail and exited 0:\n{printed}"
            elif not followed:
                assert status == 0, f"{where}: `{command}` exited {status}:\n{printed}"
            if "no-output" not in step.options:
                check_output(where, command, shown, printed)


def test_a_line_the_command_does_not_print_fails_the_walkthrough() -> None:
    printed = "Verifying fence.db\nverified: 25 entries; signed size 25, root 6c5601c2d8fd5ed7…\n"
    check_output(
        "doc.md:1", "v", ["verified: 25 entries; signed size 25, root 827c2a09e6e9c91e…"], printed
    )
    with pytest.raises(AssertionError, match="does not print the line the doc shows"):
        check_output("doc.md:1", "v", ["verified: 26 entries; signed size 25, root 8…"], printed)
    # In order: a line shown after another must be printed after it.
    with pytest.raises(AssertionError, match=re.escape("the doc shows (in order)")) as failed:
        check_output("doc.md:1", "v", ["verified: 25 entries", "Verifying fence.db"], printed)
    assert "Verifying fence.db" in str(failed.value).split("It printed")[0]


def test_a_console_block_splits_into_commands_with_their_input_and_output() -> None:
    body = (
        "$ cat > a.toml <<EOF\nkey = 1\nEOF\n$ agentfence x \\\n    --flag\nout 1\nout 2\n"
        "$ echo $?\n0\n"
    )
    assert _console(body) == [
        ("cat > a.toml <<EOF\nkey = 1\nEOF", []),
        ("agentfence x \\\n    --flag", ["out 1", "out 2"]),
        ("echo $?", ["0"]),
    ]


def test_an_sh_block_runs_each_line_and_its_marked_text_block_is_its_output() -> None:
    doc = (
        "<!-- run: s -->\n```sh\n# a comment\nmkdir keys\nagentfence keys generate --out keys\n"
        "```\n<!-- output -->\n```text\nwrote keys/agentfence_fence.key …\n```\n"
        "<!-- run: s, first, file make.py -->\n```python\nprint(1)\n```\n"
    )
    steps = _steps("doc.md", doc)["doc.md:s"]
    first, second = (step for _, _, step in sorted(steps, key=lambda t: t[:2]))
    assert first.file == ("make.py", "print(1)\n")
    assert second.commands == [
        ("mkdir keys", []),
        ("agentfence keys generate --out keys", ["wrote keys/agentfence_fence.key …"]),
    ]
    with pytest.raises(
        AssertionError, match=re.escape("doc.md:1: a run mark not followed by a ``` block")
    ):
        _steps("doc.md", "<!-- run: s -->\nno block\n")
