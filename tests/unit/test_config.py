"""Settings from AGENTFENCE_* environment variables."""

from __future__ import annotations

import pytest

from agentfence import ConfigurationError
from agentfence.config import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.policy_dir, settings.agent, settings.seed) == ("policies", "agent", None)
    assert settings.log is None and settings.signing_key is None


def test_environment_overrides_defaults() -> None:
    env = {
        "AGENTFENCE_POLICY_DIR": "p",
        "AGENTFENCE_AGENT": "bot",
        "AGENTFENCE_SEED": "42",
        "AGENTFENCE_LOG": "sqlite:///x.db",
        "AGENTFENCE_SIGNING_KEY": "k.key",
    }
    settings = Settings.from_env(env)
    assert (settings.policy_dir, settings.agent, settings.seed) == ("p", "bot", 42)
    assert (settings.log, settings.signing_key) == ("sqlite:///x.db", "k.key")


def test_bad_seed_says_what_to_do_when_it_is_used() -> None:
    settings = Settings.from_env({"AGENTFENCE_SEED": "x"})  # reading the variable is fine
    with pytest.raises(ConfigurationError, match=r"AGENTFENCE_SEED='x' is not an integer"):
        _ = settings.seed
