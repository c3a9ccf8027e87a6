"""Whatever arguments a model emits, deciding never crashes and never allows what it should not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.tools import tool

from agentfence import Effect, Fence, Resource, govern

POLICIES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def fence() -> Fence:
    @tool
    def read_record(record_id: str) -> str:
        """Read."""
        return record_id

    @tool
    def send_email(to: str, body: str) -> str:
        """Send."""
        return to

    @tool
    def pay(account: str, amount: float, memo: str | None = None) -> str:
        """Pay."""
        return account

    @tool
    def wipe(path: str) -> str:
        """Wipe."""
        return path

    govern(read_record, groups=["read"], resource=Resource("Record", arg="record_id"))
    govern(send_email, groups=["external_send"])
    govern(pay, groups=["payments"], resource=Resource("Account", arg="account"))
    govern(wipe, groups=["destructive"])
    return Fence.from_directory(POLICIES, tools=[read_record, send_email, pay, wipe])


FENCE = fence()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tool_name=st.sampled_from(["read_record", "send_email", "pay", "wipe", "unknown"]),
    args=st.dictionaries(
        st.sampled_from(["record_id", "to", "body", "account", "amount", "memo", "path", "x"]),
        json_values,
        max_size=5,
    ),
)
def test_decide_is_total(tool_name: str, args: dict[str, Any]) -> None:
    decision = FENCE.decide(tool_name, args, principal="alice")
    assert isinstance(decision.effect, Effect)
    assert decision.reasons
    # Policy forbids every wipe and never mentions unknown tools: no input may change that.
    if tool_name in ("wipe", "unknown"):
        assert decision.effect is Effect.DENY


@settings(max_examples=200, deadline=None)
@given(amount=st.floats(allow_nan=True, allow_infinity=True))
def test_payments_over_limit_are_never_plain_allows(amount: float) -> None:
    decision = FENCE.decide("pay", {"account": "a", "amount": amount}, principal="alice")
    if decision.effect is Effect.ALLOW:
        assert amount <= 100  # never rounded: more than 4 decimal places is refused
