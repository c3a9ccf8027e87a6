"""The public API: __all__ is sorted, complete, and every public name is documented."""

from __future__ import annotations

import inspect

import agentfence


def test_all_is_sorted_and_unique() -> None:
    assert list(agentfence.__all__) == sorted(set(agentfence.__all__))


def test_all_names_exist_and_nothing_public_is_missing() -> None:
    exported = set(agentfence.__all__)
    for name in exported:
        assert hasattr(agentfence, name), name
    public = {
        name
        for name, value in vars(agentfence).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and getattr(value, "__module__", "").startswith("agentfence")
    }
    assert public == exported


def test_every_public_name_and_method_has_a_docstring() -> None:
    missing = []
    for name in agentfence.__all__:
        value = getattr(agentfence, name)
        if not inspect.getdoc(value):
            missing.append(name)
        if inspect.isclass(value):
            for attr, member in vars(value).items():
                if attr.startswith("_") or (
                    not callable(member) and not isinstance(member, property)
                ):
                    continue
                if not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    assert missing == []
