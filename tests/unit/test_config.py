"""Settings from AGENTFENCE_* environment variables."""

from __future__ import annotations

import pytest

from agentfence import ConfigurationError
from agentfence.config import Settings


def test_defaults() -> None:
    assert Settings.from_env({}) == Settings(policy_dir="policies", agent="agent", seed=None)


def test_environment_overrides_defaults() -> None:
    env = {"AGENTFENCE_POLICY_DIR": "p", "AGENTFENCE_AGENT": "bot", "AGENTFENCE_SEED": "42"}
    assert Settings.from_env(env) == Settings(policy_dir="p", agent="bot", seed=42)


def test_bad_seed_says_what_to_do() -> None:
    with pytest.raises(ConfigurationError, match=r"AGENTFENCE_SEED='x' is not an integer"):
        Settings.from_env({"AGENTFENCE_SEED": "x"})
