"""agentfence: every LangGraph tool call decided by Cedar policy and recorded before it runs.

The public API is the names in ``__all__``; everything else is internal and may change.
Names are imported on first use (PEP 562), so ``import agentfence`` and the auditor's
commands do not load LangGraph until something that needs it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfence._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "ActivationRecord": "agentfence.records",
    "AgentfenceError": "agentfence.errors",
    "AgentfenceWarning": "agentfence.errors",
    "BearerToken": "agentfence.identity",
    "BearerTokenResolver": "agentfence.identity",
    "ApprovalAnswer": "agentfence.approvals",
    "ApprovalStore": "agentfence.approvals",
    "ArgumentError": "agentfence.errors",
    "CallFacts": "agentfence.decision",
    "ConfigurationError": "agentfence.errors",
    "Decision": "agentfence.decision",
    "DecisionLog": "agentfence.log",
    "DecisionRecord": "agentfence.records",
    "Directory": "agentfence.labels",
    "Effect": "agentfence.decision",
    "EntityError": "agentfence.errors",
    "EntityRef": "agentfence.decision",
    "Fence": "agentfence.fence",
    "Finding": "agentfence.labels",
    "LogError": "agentfence.errors",
    "LogVerificationError": "agentfence.errors",
    "LogReader": "agentfence.log",
    "LogView": "agentfence.log",
    "MemoryLog": "agentfence.log",
    "Meter": "agentfence.labels",
    "OutcomeRecord": "agentfence.records",
    "PolicyEngine": "agentfence.policy",
    "PolicyLoadError": "agentfence.errors",
    "PresidioRedactor": "agentfence._redaction",
    "PrincipalRejected": "agentfence.errors",
    "PrincipalResolver": "agentfence.decision",
    "Provenance": "agentfence.labels",
    "Receipt": "agentfence.log",
    "Redactor": "agentfence.labels",
    "ReplayReport": "agentfence.verify",
    "Resource": "agentfence.tools",
    "SignedLog": "agentfence.log",
    "Telemetry": "agentfence.tracing",
    "ThreadDecision": "agentfence.log",
    "ToolSpec": "agentfence.tools",
    "ToolSpecError": "agentfence.errors",
    "VerificationError": "agentfence.errors",
    "VerifiedLog": "agentfence.verify",
    "VerifiedToken": "agentfence.identity",
    "canonical_bytes": "agentfence.records",
    "export_evidence": "agentfence.verify",
    "govern": "agentfence.tools",
    "labelled": "agentfence.labels",
    "prove": "agentfence.verify",
    "replay": "agentfence.verify",
    "sign_answer": "agentfence.approvals",
    "verify_evidence": "agentfence.verify",
    "verify_log": "agentfence.verify",
    "verify_receipt": "agentfence.verify",
}

__all__ = [
    "ActivationRecord",
    "AgentfenceError",
    "AgentfenceWarning",
    "ApprovalAnswer",
    "ApprovalStore",
    "ArgumentError",
    "BearerToken",
    "BearerTokenResolver",
    "CallFacts",
    "ConfigurationError",
    "Decision",
    "DecisionLog",
    "DecisionRecord",
    "Directory",
    "Effect",
    "EntityError",
    "EntityRef",
    "Fence",
    "Finding",
    "LogError",
    "LogReader",
    "LogVerificationError",
    "LogView",
    "MemoryLog",
    "Meter",
    "OutcomeRecord",
    "PolicyEngine",
    "PolicyLoadError",
    "PresidioRedactor",
    "PrincipalRejected",
    "PrincipalResolver",
    "Provenance",
    "Receipt",
    "Redactor",
    "ReplayReport",
    "Resource",
    "SignedLog",
    "Telemetry",
    "ThreadDecision",
    "ToolSpec",
    "ToolSpecError",
    "VerificationError",
    "VerifiedLog",
    "VerifiedToken",
    "canonical_bytes",
    "export_evidence",
    "govern",
    "labelled",
    "prove",
    "replay",
    "sign_answer",
    "verify_evidence",
    "verify_log",
    "verify_receipt",
]


__getattr__, __dir__ = lazy_exports("agentfence", _EXPORTS, globals(), __all__)


if TYPE_CHECKING:
    from agentfence._redaction import PresidioRedactor
    from agentfence.approvals import ApprovalAnswer, ApprovalStore, sign_answer
    from agentfence.decision import CallFacts, Decision, Effect, EntityRef, PrincipalResolver
    from agentfence.errors import (
        AgentfenceError,
        AgentfenceWarning,
        ArgumentError,
        ConfigurationError,
        EntityError,
        LogError,
        LogVerificationError,
        PolicyLoadError,
        PrincipalRejected,
        ToolSpecError,
        VerificationError,
    )
    from agentfence.fence import Fence
    from agentfence.identity import BearerToken, BearerTokenResolver, VerifiedToken
    from agentfence.labels import Directory, Finding, Meter, Provenance, Redactor, labelled
    from agentfence.log import (
        DecisionLog,
        LogReader,
        LogView,
        MemoryLog,
        Receipt,
        SignedLog,
        ThreadDecision,
    )
    from agentfence.policy import PolicyEngine
    from agentfence.records import (
        ActivationRecord,
        DecisionRecord,
        OutcomeRecord,
        canonical_bytes,
    )
    from agentfence.tools import Resource, ToolSpec, govern
    from agentfence.tracing import Telemetry
    from agentfence.verify import (
        ReplayReport,
        VerifiedLog,
        export_evidence,
        prove,
        replay,
        verify_evidence,
        verify_log,
        verify_receipt,
    )
