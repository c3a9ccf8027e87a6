"""The names agentfence gives OpenTelemetry: spans, attributes, events, error types, metrics.

Names follow the OpenTelemetry GenAI semantic conventions where those define one (all of them
have *Development* status) and use the ``agentfence.*`` namespace for the rest;
``docs/observability.md`` lists them with their meaning. :mod:`agentfence.tracing` re-exports
every one.
"""

from __future__ import annotations

from typing import Final

INSTRUMENTATION_NAME: Final = "agentfence"

# --- OpenTelemetry GenAI semantic conventions (Development status) -------------------------
# Names as defined by open-telemetry/semantic-conventions-genai (gen-ai-spans.md "Execute tool
# span", gen-ai-agent-spans.md "Invoke agent internal span") and shipped as constants in
# opentelemetry-semantic-conventions 0.66b2 (opentelemetry.semconv._incubating.attributes.
# gen_ai_attributes). They are written out here rather than imported: that module is
# incubating and marks them as moved, and a rename upstream must be a visible change here.
ATTR_GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
ATTR_GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
ATTR_GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
ATTR_GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
ATTR_GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
ATTR_GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
ATTR_GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
ATTR_GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
# Opt-in content attributes (the conventions say: not captured by default).
ATTR_GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
ATTR_GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
# Stable general attribute (semantic conventions registry, error.type).
ATTR_ERROR_TYPE: Final = "error.type"

OP_EXECUTE_TOOL: Final = "execute_tool"
OP_INVOKE_AGENT: Final = "invoke_agent"
# Defined by the conventions for runs that coordinate several agents; the fence cannot tell a
# LangGraph graph that is one agent from one that is several, so it reports invoke_agent.
OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
TOOL_TYPE_FUNCTION: Final = "function"
ERROR_TYPE_OTHER: Final = "_OTHER"

# --- agentfence span names ------------------------------------------------------------------
SPAN_EXECUTE_TOOL: Final = OP_EXECUTE_TOOL  # span name: "execute_tool {gen_ai.tool.name}"
SPAN_INVOKE_AGENT: Final = OP_INVOKE_AGENT  # span name: "invoke_agent {gen_ai.agent.name}"
SPAN_DECIDE: Final = "agentfence.decide"
SPAN_STEP: Final = "agentfence.step"  # span name: "agentfence.step {node}"

# --- agentfence attributes ------------------------------------------------------------------
ATTR_DECISION_EFFECT: Final = "agentfence.decision.effect"
ATTR_DECISION_ID: Final = "agentfence.decision.id"
ATTR_DECISION_POLICY_IDS: Final = "agentfence.decision.policy_ids"
ATTR_DECISION_REASONS: Final = "agentfence.decision.reasons"
ATTR_POLICY_HASH: Final = "agentfence.policy.hash"
ATTR_RESOURCE: Final = "agentfence.resource"
ATTR_DATA_RESOURCES: Final = "agentfence.data.resources"
ATTR_DATA_LABELS: Final = "agentfence.data.labels"
ATTR_LOG_SEQ: Final = "agentfence.log.seq"
ATTR_LOG_LEAF_HASH: Final = "agentfence.log.leaf_hash"
ATTR_ARGS_DIGEST: Final = "agentfence.args.digest"
ATTR_RESULT_DIGEST: Final = "agentfence.result.digest"
ATTR_OUTCOME: Final = "agentfence.outcome"
ATTR_INTERRUPTED: Final = "agentfence.interrupted"
ATTR_STEP_NODE: Final = "agentfence.step.node"
ATTR_STEP_INDEX: Final = "agentfence.step.index"
ATTR_APPROVAL_REQUEST_ID: Final = "agentfence.approval.request_id"
ATTR_APPROVAL_APPROVERS: Final = "agentfence.approval.approvers"
ATTR_APPROVAL_APPROVER: Final = "agentfence.approval.approver"
ATTR_APPROVAL_EXPIRES_AT: Final = "agentfence.approval.expires_at"
ATTR_APPROVAL_OUTCOME: Final = "agentfence.approval.outcome"
ATTR_APPROVAL_WAIT: Final = "agentfence.approval.wait"

# --- agentfence span events -----------------------------------------------------------------
EVENT_APPROVAL_REQUESTED: Final = "agentfence.approval.requested"
EVENT_APPROVAL_ANSWERED: Final = "agentfence.approval.answered"
EVENT_APPROVAL_EXPIRED: Final = "agentfence.approval.expired"

# --- error.type values the fence reports (the conventions ask each instrumentation to list
# its own); a tool's own exception is reported by its class name, see error_type_of. ---------
ERROR_DENIED: Final = "agentfence.denied"
ERROR_APPROVAL_REQUIRED: Final = "agentfence.approval_required"
ERROR_FAIL_CLOSED: Final = "agentfence.fail_closed"

# --- metrics --------------------------------------------------------------------------------
METRIC_DECISIONS: Final = "agentfence.decisions"
METRIC_DECISION_DURATION: Final = "agentfence.decision.duration"
METRIC_LOG_APPEND_DURATION: Final = "agentfence.log.append.duration"
METRIC_APPROVALS_REQUESTED: Final = "agentfence.approvals.requested"
METRIC_APPROVALS_ANSWERED: Final = "agentfence.approvals.answered"
METRIC_APPROVALS_EXPIRED: Final = "agentfence.approvals.expired"
METRIC_APPROVAL_WAIT_DURATION: Final = "agentfence.approval.wait.duration"

# Deciding and appending take microseconds to milliseconds: the SDK's default boundaries
# (0, 5, 10, 25 … seconds) would put every sample in the first bucket.
_FAST_BUCKETS: Final = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
# A human answers in seconds to hours.
_WAIT_BUCKETS: Final = (
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 28800.0, 86400.0,
)  # fmt: skip
