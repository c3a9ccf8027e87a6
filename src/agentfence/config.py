"""Settings: constructor arguments, then ``AGENTFENCE_*`` environment variables, then defaults.

This is the only module that reads the environment. Every variable is listed in
``docs/configuration.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from agentfence.errors import ConfigurationError

__all__ = ["Settings"]

DEFAULT_AGENT = "agent"
DEFAULT_POLICY_DIR = "policies"

# The RunnableConfig keys the fence reads from ``config["configurable"]``.
CONFIG_PRINCIPAL = "agentfence_principal"
CONFIG_AGENT = "agentfence_agent"
CONFIG_SEED = "agentfence_seed"
CONFIG_THREAD = "thread_id"


@dataclass(frozen=True)
class Settings:
    """agentfence's settings after arguments, environment and defaults are combined."""

    policy_dir: str = DEFAULT_POLICY_DIR
    agent: str = DEFAULT_AGENT
    seed_text: str | None = None
    log: str | None = None
    signing_key: str | None = None
    trace_exporter_text: str | None = None
    trace_content_text: str | None = None
    approver_key: str | None = None

    @property
    def trace_exporter(self) -> str:
        """``AGENTFENCE_TRACE_EXPORTER``: ``console``, ``otlp`` or ``none`` (the default)."""
        value = (self.trace_exporter_text or "none").strip().lower()
        if value not in ("console", "otlp", "none"):
            raise ConfigurationError(
                f"AGENTFENCE_TRACE_EXPORTER={value!r} is not an exporter agentfence knows; set "
                "it to 'console', 'otlp' or 'none' (see docs/observability.md)"
            )
        return value

    @property
    def trace_content(self) -> bool:
        """``AGENTFENCE_TRACE_CONTENT``: put redacted values on spans (default false)."""
        value = (self.trace_content_text or "false").strip().lower()
        if value not in ("true", "false", "1", "0"):
            raise ConfigurationError(
                f"AGENTFENCE_TRACE_CONTENT={value!r} is not a boolean; set it to 'true' to "
                "put redacted argument and result values on spans, or 'false' (the default)"
            )
        return value in ("true", "1")

    @property
    def seed(self) -> int | None:
        """``AGENTFENCE_SEED`` as an integer; raises ConfigurationError if it is not one.

        Read only when no ``seed=`` argument was given, so a bad variable never breaks a
        fence whose seed is set in code.
        """
        if not self.seed_text:
            return None
        try:
            return int(self.seed_text)
        except ValueError as exc:
            raise ConfigurationError(
                f"AGENTFENCE_SEED={self.seed_text!r} is not an integer; set it to a number "
                "from 0 to 2**53-1 or unset it to derive seeds from thread ids"
            ) from exc

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the ``AGENTFENCE_*`` variables (listed in ``docs/configuration.md``)."""
        env = os.environ if environ is None else environ
        return cls(
            policy_dir=env.get("AGENTFENCE_POLICY_DIR") or DEFAULT_POLICY_DIR,
            agent=env.get("AGENTFENCE_AGENT") or DEFAULT_AGENT,
            seed_text=env.get("AGENTFENCE_SEED") or None,
            log=env.get("AGENTFENCE_LOG") or None,
            signing_key=env.get("AGENTFENCE_SIGNING_KEY") or None,
            trace_exporter_text=env.get("AGENTFENCE_TRACE_EXPORTER") or None,
            trace_content_text=env.get("AGENTFENCE_TRACE_CONTENT") or None,
            approver_key=env.get("AGENTFENCE_APPROVER_KEY") or None,
        )
