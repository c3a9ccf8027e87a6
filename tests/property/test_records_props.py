"""Canonical bytes: the fast encoder and the RFC 8785 reference agree on every record."""

from __future__ import annotations

import enum
import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfence.records import (
    ActivationRecord,
    DecisionRecord,
    ErasureRecord,
    canonical_bytes,
    canonical_or_repr,
    entry_bytes,
)

text = st.text(st.characters(exclude_categories=()), max_size=30)  # any code point at all
ints = st.integers(min_value=-(2**60), max_value=2**60)


@settings(max_examples=400, deadline=None)
@given(
    thread=text,
    reason=text,
    principal=st.one_of(st.none(), text),
    step=ints,
    seed=ints,
    time_us=ints,
    policy_ids=st.lists(text, max_size=3),
)
def test_decision_records(
    thread: str,
    reason: str,
    principal: str | None,
    step: int,
    seed: int,
    time_us: int,
    policy_ids: list[str],
) -> None:
    record = DecisionRecord(
        decision_id="d",
        seed=seed,
        thread=thread,
        step=step,
        tool_call_id=reason,
        tool="t",
        principal=principal,
        agent=reason,
        action="a",
        resource=None,
        request_blob=None,
        effect="DENY",
        policy_ids=policy_ids,
        reasons=[reason],
        errors=[],
        approvers=[],
        policy_hash="h",
        engine="e",
        time_us=time_us,
    )
    check(record)


@settings(max_examples=300, deadline=None)
@given(files=st.dictionaries(text, text, max_size=4), reason=text)
def test_records_with_user_keys(files: dict[str, str], reason: str) -> None:
    check(
        ActivationRecord(
            policy_hash="h",
            files=files,
            file_blobs=files,
            schema_blob="s",
            generated_schema_blob="g",
            engine="e",
            time_us=1,
        )
    )
    check(ErasureRecord(blob="b", reason=reason, time_us=2))


def check(record: ActivationRecord | DecisionRecord | ErasureRecord) -> None:
    data = record.model_dump(mode="json")
    try:
        expected = rfc8785.dumps(data)
    except Exception as reference_error:
        # Where the reference refuses (integers beyond I-JSON's range, lone surrogates),
        # the fast path must refuse too rather than invent bytes.
        try:
            canonical_bytes(record)
        except Exception as ours:
            assert type(ours).__name__ in (
                type(reference_error).__name__,
                "UnicodeEncodeError",
                "IntegerDomainError",
            )
            return
        raise AssertionError("canonical_bytes accepted what RFC 8785 refuses") from None
    assert canonical_bytes(record) == expected
    entry = entry_bytes(3, record)
    assert entry == rfc8785.dumps({"format": "agentfence.entry/v1", "record": data, "seq": 3})
    assert json.loads(entry)["seq"] == 3


def test_keys_ordered_by_utf16_units_not_code_points() -> None:
    # U+10000 is the surrogate pair D800 DC00 in UTF-16, so RFC 8785 puts it before U+E000,
    # while a code-point sort puts it after: the fast path must not be used for such keys.
    files = {"\ue000": "a", "\U00010000": "b", "plain": "c"}
    check(
        ActivationRecord(
            policy_hash="h",
            files=files,
            file_blobs=files,
            schema_blob="s",
            generated_schema_blob="g",
            engine="e",
            time_us=1,
        )
    )


def test_numbers_at_the_edge_of_i_json_and_digit_runs_in_text_encode_as_rfc8785_does() -> None:
    """The fast encoder is taken only when its output cannot differ: a number token above
    2**53 - 1 (RFC 8785 then writes it otherwise) or digit runs that merely look like one
    inside a string (a hex hash, ``code:1234…``) must still give RFC 8785's bytes."""
    edges = [2**53 - 1, 2**53, 2**53 + 1, -(2**53 - 1), -(2**53), 10**15, 10**16 - 1, 10**16]
    # 16-digit runs are compared as text with 2**53 - 1: either side of it, by every digit.
    edges += [9_000_000_000_000_000, 9_007_199_254_740_990, 9_100_000_000_000_000, 8 * 10**15]
    texts = ["0" * 64, "code:12345678901234567", "[9007199254740993]", "\ue000key", "é😀 ü"]
    for number in edges:
        for words in texts:
            record = DecisionRecord(
                decision_id=words,
                seed=number,
                thread=words,
                step=number,
                tool_call_id="c",
                tool="t",
                principal=None,
                agent="a",
                action="a",
                resource=None,
                request_blob=None,
                effect="DENY",
                policy_ids=[words],
                reasons=[words],
                errors=[],
                approvers=[],
                policy_hash=words,
                engine="e",
                time_us=number,
            )
            data = record.model_dump(mode="json")
            try:
                expected = rfc8785.dumps(data)
            except rfc8785.IntegerDomainError:  # beyond I-JSON: refused, by both
                with pytest.raises(rfc8785.IntegerDomainError):
                    canonical_bytes(record)
                continue
            assert canonical_bytes(record) == expected, (number, words)


def reference_or_repr(value: object) -> bytes:
    """What canonical_or_repr gives by the RFC 8785 reference alone."""
    try:
        return rfc8785.dumps(value)
    except Exception:
        return repr(value).encode("utf-8", "backslashreplace")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**53 - 1, 2**53, -(2**53 - 1), -(2**53), 2**64])
    | st.floats(allow_nan=True, allow_infinity=True)
    | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=600, deadline=None)
@given(value=json_values)
def test_values_the_log_digests_get_the_reference_bytes(value: object) -> None:
    """Arguments, results and answers the log digests (canonical_or_repr) take a fast encoder
    for plain JSON; any value, floats, integers past I-JSON, keys past U+E000 and lone
    surrogates included, must still get the reference's bytes (or its repr), or a digest
    recorded by one version would not match the next."""
    assert canonical_or_repr(value) == reference_or_repr(value)


class Colour(enum.StrEnum):
    RED = "red"


class Name(str):
    pass


def deeply_nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        {"\ue000": 1, "\U00010000": 2},
        {"colour": Colour.RED},
        Name("alice"),
        {"n": True, "m": 1},
        (1, 2),
        ["\ud800"],
        deeply_nested(100),
    ],
)
def test_values_outside_the_fast_path_get_the_reference_bytes(value: object) -> None:
    assert canonical_or_repr(value) == reference_or_repr(value)
