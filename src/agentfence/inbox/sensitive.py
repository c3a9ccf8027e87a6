"""Sensitive arguments: values the inbox masks until an allowed approver asks to see them.

Declared in the ``[inbox]`` table of ``approvers.toml``, beside the approvers, so they are
part of the policy set (and of its hash)::

    [inbox]
    sensitive_args = { refund = ["reason"], send_email = ["body"] }

Each key is a tool name and each value lists top-level argument names. A name that is not a
governed tool or not one of its arguments fails loading: a typo must not leave a value
unmasked.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentfence._approvers import APPROVERS_FILE
from agentfence.errors import PolicyLoadError
from agentfence.policy import PolicyEngine

__all__ = ["MASK", "SensitiveArgs"]

MASK = "••••••"


@dataclass(frozen=True)
class SensitiveArgs:
    """Which arguments of which tools the inbox masks."""

    by_tool: Mapping[str, frozenset[str]]

    @classmethod
    def from_engine(cls, engine: PolicyEngine) -> SensitiveArgs:
        """Read ``[inbox] sensitive_args`` from the engine's ``approvers.toml`` (if any)."""
        text = engine.texts.get(APPROVERS_FILE)
        if text is None:
            return cls({})
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyLoadError(f"{APPROVERS_FILE}: not valid TOML: {exc}") from exc
        table = data.get("inbox", {})
        where = f"{APPROVERS_FILE}: [inbox] sensitive_args"
        raw = table.get("sensitive_args", {}) if isinstance(table, dict) else None
        if not isinstance(raw, dict):
            raise PolicyLoadError(
                f"{where} must be a table of tool = [argument names], e.g. "
                '{ refund = ["reason"] }'
            )
        by_tool: dict[str, frozenset[str]] = {}
        for tool, names in raw.items():
            entry = engine.catalog.get(tool)
            if entry is None:
                raise PolicyLoadError(
                    f"{where} names tool {tool!r}, which is not one of the governed tools; "
                    "fix the name so its arguments are masked"
                )
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise PolicyLoadError(f"{where}: {tool} must be a list of argument names")
            known = _argument_names(entry.model, entry.args_type)
            unknown = sorted(set(names) - known)
            if unknown and known:
                raise PolicyLoadError(
                    f"{where}: {tool} has no argument(s) {', '.join(unknown)} (its arguments "
                    f"are {', '.join(sorted(known))}); fix the names so they are masked"
                )
            by_tool[tool] = frozenset(names)
        return cls(by_tool)

    def names(self, tool: str) -> frozenset[str]:
        """The sensitive argument names of a tool."""
        return self.by_tool.get(tool, frozenset())

    def mask(self, tool: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments with every sensitive value replaced by :data:`MASK`."""
        hidden = self.names(tool)
        return {k: (MASK if k in hidden else v) for k, v in args.items()}


def _argument_names(model: Any, args_type: Any) -> set[str]:
    if model is not None:
        fields = getattr(model, "model_fields", None)
        if isinstance(fields, Mapping):
            return set(fields)
    return {f.name for f in getattr(args_type, "fields", ())}
