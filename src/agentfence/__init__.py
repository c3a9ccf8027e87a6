"""agentfence: every LangGraph tool call decided by Cedar policy and recorded before it runs.

The public API is the names in ``__all__``; everything else is internal and may change.
"""

from agentfence._redaction import PresidioRedactor
from agentfence.errors import (
    AgentfenceError,
    AgentfenceWarning,
    ConfigurationError,
    LogError,
    PolicyLoadError,
    ToolSpecError,
    VerificationError,
)
from agentfence.fence import Fence, PrincipalResolver
from agentfence.labels import Directory, Finding, Meter, Provenance, Redactor, labelled
from agentfence.log import DecisionLog, MemoryLog, Receipt
from agentfence.policy import CallFacts, Decision, Effect, EntityRef, PolicyEngine
from agentfence.records import ActivationRecord, DecisionRecord, OutcomeRecord, canonical_bytes
from agentfence.tools import Resource, ToolSpec, govern

__version__ = "0.1.0"

__all__ = [
    "ActivationRecord",
    "AgentfenceError",
    "AgentfenceWarning",
    "CallFacts",
    "ConfigurationError",
    "Decision",
    "DecisionLog",
    "DecisionRecord",
    "Directory",
    "Effect",
    "EntityRef",
    "Fence",
    "Finding",
    "LogError",
    "MemoryLog",
    "Meter",
    "OutcomeRecord",
    "PolicyEngine",
    "PolicyLoadError",
    "PresidioRedactor",
    "PrincipalResolver",
    "Provenance",
    "Receipt",
    "Redactor",
    "Resource",
    "ToolSpec",
    "ToolSpecError",
    "VerificationError",
    "canonical_bytes",
    "govern",
    "labelled",
]
