"""A text result's recorded bytes are RFC 8785's (the fast encoder and the reference agree)."""

from __future__ import annotations

import hashlib

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import ToolMessage

from agentfence.langgraph import result_digest

# Any code point, lone surrogates and control characters included, and plenty of the
# characters JSON escapes.
text = st.text(
    st.one_of(st.characters(exclude_categories=()), st.sampled_from('"\\\b\f\n\r\t\x00\x1f\x7f')),
    max_size=60,
)


@settings(max_examples=600, deadline=None)
@given(value=text)
def test_text_result_is_recorded_by_its_rfc8785_bytes(value: str) -> None:
    status, digest, data = result_digest(ToolMessage(content=value, tool_call_id="c"))
    assert status == "success"
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:  # a lone surrogate: not UTF-8, so its repr
        expected = repr(value).encode("utf-8", "backslashreplace")
    assert data == expected
    assert digest == hashlib.sha256(expected).hexdigest()


def test_text_with_a_lone_surrogate_is_recorded_by_its_repr() -> None:
    value = "before \ud800 after"
    _, _, data = result_digest(ToolMessage(content=value, tool_call_id="c"))
    assert data == repr(value).encode("utf-8", "backslashreplace")
