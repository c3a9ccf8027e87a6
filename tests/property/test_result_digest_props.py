"""A text result's recorded bytes: the quick encoder and the RFC 8785 reference agree."""

from __future__ import annotations

import hashlib

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import ToolMessage

from agentfence.langgraph import result_digest, text_bytes
from agentfence.records import canonical_or_repr

# Any code point, lone surrogates and control characters included, and plenty of the
# characters JSON escapes.
text = st.text(
    st.one_of(st.characters(exclude_categories=()), st.sampled_from('"\\\b\f\n\r\t\x00\x1f\x7f')),
    max_size=60,
)


@settings(max_examples=600, deadline=None)
@given(value=text)
def test_text_bytes_are_the_rfc8785_bytes_of_the_text(value: str) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:  # a lone surrogate: not UTF-8
        assert text_bytes(value) is None
        return
    assert text_bytes(value) == expected


@settings(max_examples=300, deadline=None)
@given(value=text)
def test_text_result_is_recorded_as_before(value: str) -> None:
    # What result_digest recorded before it had a quick path for text: canonical_or_repr.
    status, digest, data = result_digest(ToolMessage(content=value, tool_call_id="c"))
    assert status == "success"
    assert data == canonical_or_repr(value)
    assert digest == hashlib.sha256(canonical_or_repr(value)).hexdigest()


def test_text_with_a_lone_surrogate_is_recorded_by_its_repr() -> None:
    value = "before \ud800 after"
    assert text_bytes(value) is None
    _, _, data = result_digest(ToolMessage(content=value, tool_call_id="c"))
    assert data == repr(value).encode("utf-8", "backslashreplace")
