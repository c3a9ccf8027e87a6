"""PolicyEngine: loading (with file:line errors) and the three outcomes."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from langchain_core.tools import BaseTool

from agentfence import AgentfenceWarning, Effect, EntityRef, Fence, PolicyLoadError
from agentfence._cedar import stored_form
from agentfence._recording import decision_record
from agentfence.policy import CallFacts, PolicyEngine
from agentfence.tools import ToolCatalog


def decide(fence: Fence, tool: str, args: dict, principal: str = "alice"):  # type: ignore[no-untyped-def]
    return fence.decide(tool, args, principal=principal, thread="t", step=1, tool_call_id="c")


def test_allow_names_the_permit_and_its_reason(make_fence: Callable[..., Fence]) -> None:
    d = decide(make_fence(), "read_record", {"record_id": "r1"})
    assert d.effect is Effect.ALLOW
    assert d.policy_ids == ("read-anything",)
    assert d.reasons == ("records may be read",)


def test_forbid_wins_and_is_reported(make_fence: Callable[..., Fence]) -> None:
    d = decide(make_fence(), "wipe", {"path": "/etc"})
    assert d.effect is Effect.DENY
    assert d.policy_ids == ("no-wipe",)
    assert d.reasons == ("wiping is never allowed",)


def test_unmentioned_call_is_default_deny(make_fence: Callable[..., Fence]) -> None:
    d = decide(make_fence(), "send_email", {"to": "x@evil.test", "body": "hi"})
    assert d.effect is Effect.DENY
    assert d.policy_ids == ()
    assert "no policy permits" in d.reasons[0] and "default deny" in d.reasons[0]


def test_require_approval_annotation_holds_the_call(make_fence: Callable[..., Fence]) -> None:
    d = decide(make_fence(), "pay", {"account": "acc-1", "amount": 500})
    assert d.effect is Effect.REQUIRE_APPROVAL
    assert d.approvers == ("finance",)
    assert d.reasons == ("payments over 100 need finance",)


def test_reason_defaults_to_policy_location(make_fence: Callable[..., Fence]) -> None:
    d = decide(make_fence(), "pay", {"account": "acc-1", "amount": 5})
    assert d.effect is Effect.ALLOW
    assert d.reasons[0].startswith("policy pay-small (")
    assert "base.cedar:" in d.reasons[0]


def test_a_hold_without_a_reason_says_it_is_held_not_permitted(
    policy_dir: Path, tools: list[BaseTool], tmp_path: Path
) -> None:
    """The approver reads the reason as why the call waits for them: a holding permit
    without @reason must not tell them "policy X permits this call"."""
    import shutil

    copied = tmp_path / "without-reason"
    shutil.copytree(policy_dir, copied)
    for cedar in copied.glob("*.cedar"):
        cedar.write_text(
            cedar.read_text().replace('@reason("payments over 100 need finance")\n', "")
        )
    d = decide(
        Fence.from_directory(copied, tools=tools), "pay", {"account": "acc-1", "amount": 500}
    )
    assert d.effect is Effect.REQUIRE_APPROVAL
    [reason] = d.reasons
    assert reason.startswith("held for approval by policy ") and "permits" not in reason


def test_principal_in_blocked_group_is_denied(make_fence: Callable[..., Fence]) -> None:
    d = decide(make_fence(), "read_record", {"record_id": "r1"}, principal='User::"mallory"')
    assert d.effect is Effect.DENY
    assert d.policy_ids == ("blocked-users",)


def test_overridable_forbid_requires_approval_only_when_a_permit_exists(
    make_fence: Callable[..., Fence], policy_dir: Path
) -> None:
    (policy_dir / "override.cedar").write_text(
        '@id("no-weekend-mail") @overridable("ops") @reason("mail is paused")\n'
        'forbid (principal, action == Action::"send_email", resource);\n'
    )
    fence = make_fence()
    held = decide(fence, "send_email", {"to": "a@corp.test", "body": "x"})
    assert held.effect is Effect.REQUIRE_APPROVAL
    assert held.approvers == ("ops",)
    assert held.policy_ids == ("no-weekend-mail",)
    # Overriding the forbid would not create a permit for an outside address: still denied.
    denied = decide(fence, "send_email", {"to": "a@evil.test", "body": "x"})
    assert denied.effect is Effect.DENY


def test_unknown_tool_is_denied(make_fence: Callable[..., Fence]) -> None:
    d = decide(make_fence(), "launch_missiles", {})
    assert d.effect is Effect.DENY
    assert "not governed by this fence" in d.reasons[0]


def test_missing_principal_is_denied_not_anonymous(make_fence: Callable[..., Fence]) -> None:
    fence = make_fence()
    d = fence.decide("read_record", {"record_id": "r"}, principal=None)
    assert d.effect is Effect.DENY
    assert "no principal" in d.reasons[0]


def test_principal_of_unknown_type_is_denied(make_fence: Callable[..., Fence]) -> None:
    d = decide(make_fence(), "read_record", {"record_id": "r"}, principal='Robot::"r2"')
    assert d.effect is Effect.DENY
    assert "not of a known principal type" in d.reasons[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"account": "a", "amount": "lots"}, "argument 'amount'"),
        ({"account": "a", "amount": float("nan")}, "argument 'amount': nan is not a finite"),
        ({"account": "a", "amount": float("inf")}, "argument 'amount'"),
        ({"account": "a", "amount": 10**30}, "argument 'amount'"),
        ({"amount": 5}, "argument 'account'"),
        ({"account": ["x"], "amount": 5}, "argument 'account'"),
        ("not an object", "arguments must be an object"),
    ],
)
def test_arguments_that_do_not_fit_are_denied_naming_the_argument(
    make_fence: Callable[..., Fence], args: object, fragment: str
) -> None:
    d = decide(make_fence(), "pay", args)  # type: ignore[arg-type]
    assert d.effect is Effect.DENY
    assert fragment in d.reasons[0], d.reasons


def test_deeply_nested_value_is_denied_not_a_crash(make_fence: Callable[..., Fence]) -> None:
    nested: object = "x"
    for _ in range(5000):
        nested = [nested]
    d = decide(make_fence(), "read_record", {"record_id": nested})
    assert d.effect is Effect.DENY
    assert "argument 'record_id'" in d.reasons[0]


def test_erroring_forbid_never_turns_into_allow(
    make_fence: Callable[..., Fence], policy_dir: Path
) -> None:
    # This forbid passes validation but overflows a 64-bit long when evaluated. Cedar skips
    # an erroring policy, so without the fence's fail-closed rule the permit would allow it.
    (policy_dir / "overflow.cedar").write_text(
        '@id("need-clearance")\n'
        'forbid (principal, action in Action::"read", resource)\n'
        "when { context.run.step + 9223372036854775807 > 0 };\n"
    )
    d = decide(make_fence(), "read_record", {"record_id": "r1"})
    assert d.effect is Effect.DENY
    assert d.errors
    assert "could not be evaluated" in d.reasons[0]
    assert "evaluating need-clearance failed" in d.reasons[0]
    # Cedar's own message (it can quote argument values) stays in the errors, off the
    # reasons the model sees.
    assert "9223372036854775807" not in d.explain()
    assert any("9223372036854775807" in e or "overflow" in e for e in d.errors)


# --- loading ----------------------------------------------------------------------------


def test_malformed_policy_names_file_and_line(
    make_fence: Callable[..., Fence], policy_dir: Path
) -> None:
    (policy_dir / "broken.cedar").write_text(
        "// first a good one\n"
        'permit (principal, action == Action::"read_record", resource);\n'
        "\n"
        "permit (principal, action, resource)\n"
        "when { context.args == };\n"
    )
    with pytest.raises(PolicyLoadError) as info:
        make_fence()
    assert f"{policy_dir / 'broken.cedar'}:4:" in str(info.value)
    assert "unexpected token" in str(info.value)
    assert info.value.problems and info.value.problems[0].startswith(str(policy_dir))


def test_unknown_attribute_fails_loading_naming_policy_and_line(
    make_fence: Callable[..., Fence], policy_dir: Path
) -> None:
    (policy_dir / "typo.cedar").write_text(
        "\n\n"
        '@id("typo")\n'
        'permit (principal, action == Action::"pay", resource)\n'
        'when { context.args.amout.lessThan(decimal("1.0")) };\n'
    )
    with pytest.raises(PolicyLoadError) as info:
        make_fence()
    message = str(info.value)
    assert f"{policy_dir / 'typo.cedar'}:3:" in message
    assert "amout" in message and "`typo`" in message


def test_duplicate_policy_ids_are_refused(
    make_fence: Callable[..., Fence], policy_dir: Path
) -> None:
    (policy_dir / "dup.cedar").write_text(
        '@id("no-wipe")\nforbid (principal, action == Action::"wipe", resource);\n'
    )
    with pytest.raises(PolicyLoadError, match=r"already used at .*base\.cedar"):
        make_fence()


def test_bad_entities_file_is_reported(make_fence: Callable[..., Fence], policy_dir: Path) -> None:
    (policy_dir / "entities.json").write_text('[{"uid": {"type": "User", "id": "x"},\n')
    with pytest.raises(PolicyLoadError, match=r"entities\.json:2: not valid JSON"):
        make_fence()


def test_malformed_schema_names_file_and_line(
    make_fence: Callable[..., Fence], policy_dir: Path
) -> None:
    (policy_dir / "people.cedarschema").write_text("entity Group;\n\nentity User in [Group\n;")
    with pytest.raises(PolicyLoadError, match=r"people.cedarschema:3: "):
        make_fence()


def test_missing_directory_says_so(tools: list[BaseTool], tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="does not exist"):
        Fence.from_directory(tmp_path / "nope", tools=tools)


def test_empty_directory_warns_and_denies_everything(tools: list[BaseTool], tmp_path: Path) -> None:
    with pytest.warns(AgentfenceWarning, match="no \\*.cedar policies: every tool call"):
        fence = Fence.from_directory(tmp_path, tools=tools)
    d = decide(fence, "read_record", {"record_id": "r"})
    assert d.effect is Effect.DENY
    assert "default deny" in d.reasons[0]


def test_policy_hash_is_stable_and_tracks_content(
    make_fence: Callable[..., Fence], policy_dir: Path
) -> None:
    first, again = make_fence(), make_fence()
    assert first.policy_hash == again.policy_hash
    (policy_dir / "base.cedar").write_text((policy_dir / "base.cedar").read_text() + "\n// x\n")
    assert make_fence().policy_hash != first.policy_hash


def test_decision_records_policy_hash(make_fence: Callable[..., Fence]) -> None:
    fence = make_fence()
    assert decide(fence, "wipe", {"path": "/"}).policy_hash == fence.policy_hash


def test_engine_decides_facts_directly(policy_dir: Path, tools: list[BaseTool]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = PolicyEngine.load(policy_dir, ToolCatalog.from_tools(tools))
    facts = CallFacts(
        tool="wipe",
        args={"path": "/"},
        principal=EntityRef("User", "alice"),
        agent="a",
        thread="t",
        step=1,
        tool_call_id="c",
        seed=1,
    )
    assert engine.decide(facts).effect is Effect.DENY
    assert engine.source_of("no-wipe") is not None
    assert engine.source_of("nope") is None


def _facts(**changes: object) -> CallFacts:
    base: dict[str, object] = {
        "tool": "wipe",
        "args": {"path": "/tmp/x"},
        "principal": EntityRef("User", "alice"),
        "agent": "a",
        "thread": "t",
        "step": 1,
        "tool_call_id": "c",
        "seed": 1,
    }
    return CallFacts(**{**base, **changes})  # type: ignore[arg-type]  # test values


def test_rebound_arguments_never_reuse_the_decision_id_of_the_raw_ones() -> None:
    # The id is cached on the facts; a copy with other arguments (binding, an edit) must not
    # inherit it, or a different call would share a decision id and find the first call's
    # record and outcome as its own.
    raw = _facts()
    raw_id = raw.decision_id
    rebound = raw.evolve(args={"path": "/"})
    assert rebound.decision_id == _facts(args={"path": "/"}).decision_id
    assert rebound.decision_id != raw_id
    assert raw.decision_id == raw_id == _facts().decision_id
    assert raw.evolve(thread="t2").decision_id == _facts(thread="t2").decision_id


def test_binding_after_the_id_was_read_decides_under_the_bound_arguments_id(
    policy_dir: Path, tools: list[BaseTool]
) -> None:
    engine = PolicyEngine.load(policy_dir, ToolCatalog.from_tools(tools))
    # Binding coerces "5" to 5.0 and fills in the default memo: other arguments, another id.
    raw = _facts(tool="pay", args={"account": "a", "amount": "5"})
    raw_id = raw.decision_id
    bound = engine.bind(raw)
    assert bound.bound is not None and bound.args == {"account": "a", "amount": 5.0, "memo": None}
    assert bound.decision_id == _facts(tool="pay", args=dict(bound.args)).decision_id != raw_id
    assert engine.decide(bound).decision_id == bound.decision_id


def test_recorded_request_is_the_one_cedar_evaluated(make_fence: Callable[..., Fence]) -> None:
    decision = decide(make_fence(), "pay", {"account": "a", "amount": "5"})
    assert decision.stored_request is not None  # made from the text Cedar was given
    _, blobs = decision_record(decision, time_us=1)
    assert blobs[0].content == stored_form(decision.request)


def test_decision_given_another_request_records_that_request_not_the_first(
    make_fence: Callable[..., Fence],
) -> None:
    # The stored form is kept with the request it was made from: a decision carrying another
    # request must never put the first one's bytes on the log (replay would decide those).
    decision = decide(make_fence(), "wipe", {"path": "/"})
    assert decision.request is not None and decision.stored_request is not None
    other = {**decision.request, "resource": {"type": "Tool", "id": "elsewhere"}}
    moved = dataclasses.replace(decision, request=other)
    record, blobs = decision_record(moved, time_us=1)
    assert blobs[0].content == stored_form(other) != decision.stored_request[1]
    assert record.resource == 'Tool::"elsewhere"'


def test_reload_naming_other_argument_values_decides_with_those_values(
    make_fence: Callable[..., Fence], policy_dir: Path
) -> None:
    # Which arguments context.values describes is worked out per engine: after a reload the
    # new policies' arguments are described, not the old ones' (a stale list would describe
    # `body` to a schema that declares `to`, and fail every call closed).
    (policy_dir / "values.cedar").write_text(
        '@id("no-password-body")\n@reason("no passwords")\n'
        'forbid (principal, action == Action::"send_email", resource)\n'
        'when { context.values.body.compact like "*password*" };\n'
    )
    fence = make_fence()
    args = {"to": "bob@corp.test", "body": "the password"}
    before = decide(fence, "send_email", args)
    assert (before.effect, before.policy_ids) == (Effect.DENY, ("no-password-body",))
    (policy_dir / "values.cedar").write_text(
        '@id("no-evil-domain")\n'
        'forbid (principal, action == Action::"send_email", resource)\n'
        'when { context.values.to.email_domain == "evil.test" };\n'
    )
    fence.reload()
    after = decide(fence, "send_email", args)
    assert (after.effect, after.policy_ids, after.errors) == (Effect.ALLOW, ("email-internal",), ())
    denied = decide(fence, "send_email", {"to": "eve@evil.test", "body": "hi"})
    assert denied.effect is Effect.DENY and "no-evil-domain" in denied.policy_ids


def test_evolve_refuses_a_field_facts_do_not_have() -> None:
    with pytest.raises(TypeError, match="CallFacts has no field"):
        _facts().evolve(argz={})


def test_entity_ref_parsing() -> None:
    assert EntityRef.parse('User::"a\\"b"', "User") == EntityRef("User", 'a"b')
    assert EntityRef.parse("bob", "User") == EntityRef("User", "bob")
    assert EntityRef.parse({"type": "Svc", "id": "x"}, "User") == EntityRef("Svc", "x")
    assert str(EntityRef("User", 'a"b')) == 'User::"a\\"b"'
    with pytest.raises(ValueError, match="non-empty string"):
        EntityRef.parse("", "User")


def test_bare_principal_is_read_with_each_callers_default_type() -> None:
    # Parsed texts are kept: the default type is part of the key, so a bare id read for one
    # fence (User) is never handed to another whose principals are Services.
    assert EntityRef.parse("alice", "User") == EntityRef("User", "alice")
    assert EntityRef.parse("alice", "Service") == EntityRef("Service", "alice")
    assert EntityRef.parse("alice", "User") == EntityRef("User", "alice")
    long = "x" * 1000  # not kept, still read
    assert EntityRef.parse(long, "User") == EntityRef("User", long)


def test_entity_text_follows_the_fields_of_each_value() -> None:
    ref = EntityRef.parse('User::"alice"', "User")
    assert str(ref) == 'User::"alice"' == str(ref)
    # A copy with another id is another value: its text is worked out afresh.
    assert str(dataclasses.replace(ref, id="mallory")) == 'User::"mallory"'
    assert str(EntityRef("User", 'a"b')) == 'User::"a\\"b"'
    assert ref == EntityRef("User", "alice") and hash(ref) == hash(EntityRef("User", "alice"))


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('[[approver]]\nprincipal = "fran"\nkey = "nonsense"\n', "verifier key 'nonsense'"),
        ('[[approver]]\nprincipal = "fran"\n', "approver 1 needs 'principal' and 'key'"),
        ("not = = toml", "not valid TOML"),
    ],
)
def test_bad_approvers_file_fails_loading_naming_it(
    make_fence: Callable[..., Fence], policy_dir: Path, content: str, fragment: str
) -> None:
    (policy_dir / "approvers.toml").write_text(content)
    with pytest.raises(PolicyLoadError) as info:
        make_fence()
    assert f"{policy_dir / 'approvers.toml'}" in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("group", "entities", "hint"),
    [
        ("finnace", None, 'no Group::"finnace"'),
        (
            "oncall-lead",
            '{"uid": {"type": "User", "id": "oncall-lead"}, "attrs": {}, "parents": []}',
            'User::"oncall-lead" exists, but it is not a group',
        ),
    ],
)
def test_an_approver_group_nobody_is_in_is_named_when_the_policies_load(
    policy_dir: Path, tools: list[BaseTool], tmp_path: Path, group: str, entities: str, hint: str
) -> None:
    """A typo in @require_approval, or a team declared under another entity type, leaves a
    held call that nobody can ever approve: loading says so, naming the policy and the fix."""
    import shutil

    copied = tmp_path / "groups"
    shutil.copytree(policy_dir, copied)
    base = copied / "base.cedar"
    base.write_text(
        base.read_text().replace('@require_approval("finance")', f'@require_approval("{group}")')
    )
    if entities is not None:  # one more entity, of another type than Group
        listed = copied / "entities.json"
        listed.write_text(listed.read_text().rstrip().removesuffix("]") + "," + entities + "]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AgentfenceWarning)
        Fence.from_directory(copied, tools=tools)
    notes = [str(w.message) for w in caught if issubclass(w.category, AgentfenceWarning)]
    assert any(
        f'@require_approval("{group}")' in n and hint in n and "base.cedar:" in n for n in notes
    ), notes


def test_declared_approver_groups_load_without_a_note(
    make_fence: Callable[..., Fence],
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AgentfenceWarning)
        make_fence()
    assert not [w for w in caught if "names a group no entity is in" in str(w.message)]
