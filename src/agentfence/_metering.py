"""Usage: what a call sees of its principal's usage before it is decided, and what it counts.

Read and counted under the ledger's lock by the fence, so that parallel calls cannot each
slip under a limit that together they cross (docs/policy-guide.md, "Usage limits").
"""

from __future__ import annotations

import dataclasses
import decimal
from collections.abc import Mapping

from agentfence._usage import UsageLedger
from agentfence.decision import CallFacts, Decision, Effect
from agentfence.policy import PolicyEngine
from agentfence.records import Metered

__all__ = ["reserve", "usage_for"]


def usage_for(ledger: UsageLedger, engine: PolicyEngine, facts: CallFacts) -> CallFacts:
    """The facts with the session usage the call sees (hold ``ledger.lock``); unchanged when
    no policy reads ``context.usage`` or nobody is known to act."""
    if facts.principal is None or "usage" not in engine.flow:
        return facts
    entry = engine.catalog.get(facts.tool)
    meter = entry.spec.meter if entry is not None else None
    args = facts.args if isinstance(facts.args, Mapping) else {}
    usage = ledger.usage(
        principal=str(facts.principal),
        thread=facts.thread,
        tool=facts.tool,
        meter=meter.name if meter is not None else None,
        amount=meter.amount(args) if meter is not None else decimal.Decimal(0),
        exclude=facts.decision_id,
    )
    return dataclasses.replace(facts, usage=usage)


def reserve(ledger: UsageLedger, decision: Decision, metered: Metered | None) -> None:
    """Count an allowed call before it is recorded; note a held one (it counts once run).
    ``metered`` is what the call spends (:func:`~agentfence._recording.metered_call`)."""
    facts = decision.facts
    if decision.effect is Effect.DENY or facts.principal is None:
        return
    ledger.reserve(
        decision_id=decision.decision_id,
        principal=str(facts.principal),
        thread=facts.thread,
        tool_call_id=facts.tool_call_id,
        tool=facts.tool,
        meter=metered.meter if metered else None,
        amount=decimal.Decimal(metered.amount) if metered else decimal.Decimal(0),
        allowed=decision.effect is Effect.ALLOW,
    )
