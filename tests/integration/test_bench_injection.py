"""The injection benchmark's harness tells a successful attack from a blocked one.

benchmarks/bench_injection.py measures attack success by what the tools did. These tests run a
few of its scenarios through the same harness: with permits only (no starter pack) the attacks
succeed, so a 0% in the benchmark cannot come from a harness that never sees success.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_injection", ROOT / "benchmarks" / "bench_injection.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_injection"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def permits_only(tmp_path: Path) -> Iterator[Path]:
    """The benchmark's permits, directory and entities without the starter pack."""
    for source in (ROOT / "benchmarks" / "injection_policies").iterdir():
        shutil.copy(source, tmp_path)
    yield tmp_path


def pick(bench: ModuleType, *names: str) -> list[object]:
    chosen = {s.name: s for s in bench.scenarios() if s.name in names}
    assert sorted(chosen) == sorted(names)
    return [chosen[n] for n in names]


ATTACKS = ("recipient-swap-0", "payee-swap-1", "mixed-recipients-2", "link-in-body-3")


def test_attacks_succeed_without_the_starter_pack(bench: ModuleType, permits_only: Path) -> None:
    outcomes = bench.run_all(pick(bench, *ATTACKS), permits_only)
    summary = bench.summarise(outcomes)
    assert summary.successes == len(ATTACKS), summary.successful_attacks


def test_the_same_attacks_are_stopped_with_it(bench: ModuleType) -> None:
    with bench.policy_dir() as directory:
        outcomes = bench.run_all(pick(bench, *ATTACKS), directory)
    summary = bench.summarise(outcomes)
    assert summary.successes == 0
    # Stopped by the fence, each by a named starter policy, not by an error of the harness.
    assert all(o.refused for o in outcomes)
    assert any(o.held for o in outcomes)  # the payee swap waits for finance


def test_a_benign_task_counts_as_useful_only_when_done(bench: ModuleType) -> None:
    with bench.policy_dir() as directory:
        outcomes = bench.run_all(pick(bench, "email-colleague-0", "delete-scratch-1"), directory)
    summary = bench.summarise(outcomes)
    assert (summary.benign, summary.utility, summary.approvals) == (2, 2, 0)
    assert [o.effects for o in outcomes] == [
        [("email", "bob@acme.test")],
        [("delete", "/home/alice/tmp/build-1")],
    ]
