"""Who may answer approval requests: the approvers declared in ``approvers.toml`` beside the
policies, each with the principal they answer as and a verifier key.

Part of the policy set: the engine parses this file when it loads (a bad file fails loading)
and :mod:`agentfence.approvals` checks answers against it."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from agentfence._signing import Verifier
from agentfence.decision import EntityRef
from agentfence.errors import ConfigurationError, PolicyLoadError

__all__ = ["APPROVERS_FILE", "Approver", "ApproverRegistry"]

APPROVERS_FILE = "approvers.toml"


class _PolicyTexts(Protocol):
    """What the registry reads from a loaded policy set (a :class:`PolicyEngine`)."""

    @property
    def texts(self) -> Mapping[str, str]: ...

    @property
    def principal_types(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Approver:
    """A declared approver: the principal they answer as and one of their verifier keys."""

    principal: EntityRef
    verifier: Verifier


class ApproverRegistry:
    """Approvers' public keys, from ``approvers.toml`` beside the policies."""

    def __init__(self, approvers: Sequence[Approver]) -> None:
        self._by_key = {(a.verifier.name, a.verifier.key_id): a for a in approvers}

    @classmethod
    def from_text(
        cls, text: str, *, source: str = APPROVERS_FILE, default_type: str = "User"
    ) -> ApproverRegistry:
        """Parse the TOML text of an approvers file; raise PolicyLoadError naming the entry."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyLoadError(f"{source}: not valid TOML: {exc}") from exc
        approvers: list[Approver] = []
        for index, entry in enumerate(data.get("approver", []), start=1):
            where = f"{source}: approver {index}"
            if not isinstance(entry, dict) or "principal" not in entry or "key" not in entry:
                raise PolicyLoadError(f"{where} needs 'principal' and 'key'")
            try:
                principal = EntityRef.parse(entry["principal"], default_type)
                verifier = Verifier.from_vkey(str(entry["key"]))
            except (ValueError, ConfigurationError) as exc:
                raise PolicyLoadError(f"{where}: {exc}") from exc
            approvers.append(Approver(principal, verifier))
        return cls(approvers)

    @classmethod
    def from_engine(cls, engine: _PolicyTexts) -> ApproverRegistry:
        """The registry in the engine's policy texts (empty when there is no approvers file)."""
        text = engine.texts.get(APPROVERS_FILE)
        if text is None:
            return cls([])
        return cls.from_text(text, default_type=engine.principal_types[0])

    def lookup(self, key_name: str, key_id: int) -> Approver | None:
        """The approver holding a key, if declared."""
        return self._by_key.get((key_name, key_id))

    def __len__(self) -> int:
        return len(self._by_key)
