"""The agentfence error tree.

Every error agentfence raises derives from :class:`AgentfenceError`. Each message says
what happened and what to do next (which file, which line, which command).
"""

from __future__ import annotations

__all__ = [
    "AgentfenceError",
    "AgentfenceWarning",
    "ConfigurationError",
    "LogError",
    "PolicyLoadError",
    "ToolSpecError",
    "VerificationError",
]


class AgentfenceError(Exception):
    """Root of every error agentfence raises."""


class AgentfenceWarning(UserWarning):
    """Warnings about settings that weaken a guarantee (an empty policy set, an unsafe flag)."""


class ConfigurationError(AgentfenceError):
    """A setting, environment variable or argument is missing or malformed."""


class PolicyLoadError(AgentfenceError):
    """Policies, schema or entities could not be loaded; the message names the file and line.

    ``problems`` holds one line per problem found, each starting with ``file:line``.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class ToolSpecError(AgentfenceError):
    """A tool's governance metadata (action groups, resource mapping) is malformed."""


class LogError(AgentfenceError):
    """The decision log could not be written or read."""


class VerificationError(AgentfenceError):
    """A signature, checkpoint, proof or log failed verification."""
