"""The public API: __all__ is sorted and complete, every name resolves and is documented."""

from __future__ import annotations

import inspect
import subprocess
import sys

import agentfence


def test_all_is_sorted_unique_and_matches_the_lazy_exports() -> None:
    assert list(agentfence.__all__) == sorted(set(agentfence.__all__))
    assert set(agentfence.__all__) == set(agentfence._EXPORTS)


def test_every_exported_name_resolves_to_an_agentfence_object() -> None:
    for name in agentfence.__all__:
        value = getattr(agentfence, name)
        assert getattr(value, "__module__", "").startswith("agentfence"), name
        assert getattr(value, "__name__", name) == name, name


def test_unknown_names_raise_attribute_error() -> None:
    try:
        agentfence.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no attribute 'no_such_thing'" in str(exc)
    else:
        raise AssertionError("an unknown attribute must raise")


def test_every_public_name_and_method_has_a_docstring() -> None:
    missing = []
    for name in agentfence.__all__:
        value = getattr(agentfence, name)
        if not inspect.getdoc(value):
            missing.append(name)
        if inspect.isclass(value):
            for attr, member in vars(value).items():
                public = not attr.startswith("_")
                if not public or not (callable(member) or isinstance(member, property)):
                    continue
                if not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    assert missing == []


def test_importing_agentfence_does_not_load_langgraph() -> None:
    code = "import sys, agentfence; print('langgraph' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
