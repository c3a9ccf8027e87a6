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
CONFIG_ON_HOLD = "agentfence_on_hold"
CONFIG_TOKEN = "agentfence_token"  # noqa: S105 - the key's name, not a secret
ON_HOLD = ("interrupt", "deny", "queue")
"""What a run does with a call policy holds: pause for an approver, refuse it at once, or
(``queue``, for callers that cannot pause, such as the MCP proxy) file the request and refuse
the call for now, running it when the same call comes again once an approver said yes."""


def check_on_hold(value: object, where: str) -> str:
    """``value`` if it is an ``on_hold`` mode, else a ConfigurationError naming ``where``."""
    if value not in ON_HOLD:
        raise ConfigurationError(
            f"{where}={value!r} is not an on_hold mode; use 'interrupt' (pause for an approver, "
            "the default), 'deny' (refuse held calls at once, for unattended runs) or 'queue' "
            "(file the request and answer 'held' until the same call comes again, answered)"
        )
    return str(value)


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
    approver: str | None = None
    inbox_trace_url_text: str | None = None
    inbox_session_idle_text: str | None = None
    inbox_session_max_text: str | None = None
    inbox_secure_cookies_text: str | None = None
    on_hold_text: str | None = None

    @property
    def on_hold(self) -> str:
        """``AGENTFENCE_ON_HOLD``: ``interrupt`` (the default) or ``deny``."""
        value = (self.on_hold_text or "interrupt").strip().lower()
        return check_on_hold(value, "AGENTFENCE_ON_HOLD")

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

    @property
    def inbox_trace_url(self) -> str | None:
        """``AGENTFENCE_INBOX_TRACE_URL``: a link to a trace, with ``{trace_id}`` in it.

        For example ``http://127.0.0.1:16686/trace/{trace_id}`` (Jaeger). Unset: the inbox
        shows trace ids as text.
        """
        value = (self.inbox_trace_url_text or "").strip()
        if not value:
            return None
        if not value.startswith(("http://", "https://")) or "{trace_id}" not in value:
            raise ConfigurationError(
                f"AGENTFENCE_INBOX_TRACE_URL={value!r} must be an http(s) URL containing "
                "{trace_id}, e.g. http://127.0.0.1:16686/trace/{trace_id}; or unset it"
            )
        return value

    @property
    def inbox_session_idle(self) -> int:
        """``AGENTFENCE_INBOX_SESSION_IDLE``: seconds an idle inbox session lasts (``30m``)."""
        return _seconds("AGENTFENCE_INBOX_SESSION_IDLE", self.inbox_session_idle_text, "30m")

    @property
    def inbox_session_max(self) -> int:
        """``AGENTFENCE_INBOX_SESSION_MAX``: seconds any inbox session lasts at most (``12h``)."""
        return _seconds("AGENTFENCE_INBOX_SESSION_MAX", self.inbox_session_max_text, "12h")

    @property
    def inbox_secure_cookies(self) -> bool | None:
        """``AGENTFENCE_INBOX_SECURE_COOKIES``: ``true`` marks inbox cookies Secure always.

        ``auto`` (the default, ``None``) marks them Secure when the request came over TLS;
        set ``true`` behind a TLS proxy that does not send ``X-Forwarded-Proto``.
        """
        value = (self.inbox_secure_cookies_text or "auto").strip().lower()
        if value not in ("auto", "true", "false", "1", "0"):
            raise ConfigurationError(
                f"AGENTFENCE_INBOX_SECURE_COOKIES={value!r} is not 'auto', 'true' or 'false'; "
                "set 'true' when the inbox is reached over TLS through a proxy"
            )
        return None if value == "auto" else value in ("true", "1")

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
            approver=env.get("AGENTFENCE_APPROVER") or None,
            inbox_trace_url_text=env.get("AGENTFENCE_INBOX_TRACE_URL") or None,
            inbox_session_idle_text=env.get("AGENTFENCE_INBOX_SESSION_IDLE") or None,
            inbox_session_max_text=env.get("AGENTFENCE_INBOX_SESSION_MAX") or None,
            inbox_secure_cookies_text=env.get("AGENTFENCE_INBOX_SECURE_COOKIES") or None,
            on_hold_text=env.get("AGENTFENCE_ON_HOLD") or None,
        )


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(variable: str, text: str | None, default: str) -> int:
    """Seconds in a duration such as ``90s``, ``30m``, ``12h`` or ``1d``."""
    value = (text or default).strip().lower()
    number, unit = value[:-1], value[-1:]
    if unit not in _UNIT_SECONDS or not number.isdigit() or int(number) <= 0:
        raise ConfigurationError(
            f"{variable}={value!r} is not a duration like 90s, 30m, 12h or 1d; fix or unset it"
        )
    return int(number) * _UNIT_SECONDS[unit]


def env_secret(variable: str, where: str) -> str:
    """The value of ``variable``, named by a configuration file for a secret (a webhook URL)."""
    value = os.environ.get(variable, "").strip()
    if not value:
        raise ConfigurationError(
            f"{where} names the environment variable {variable}, which is not set; "
            "set it to the secret or change the file"
        )
    return value
