"""The Cedar request's one encoding: what Cedar is given and what the log stores agree."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfence._cedar import prepare, stored_form

text = st.text(
    st.one_of(st.characters(exclude_categories=()), st.sampled_from('"\\\n\x00:,{}')),
    max_size=20,
)
scalars = st.one_of(st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), text)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=12,
)
entity = st.fixed_dictionaries({"type": text, "id": text})


@settings(max_examples=250, deadline=None)
@given(
    principal=entity,
    resource=entity,
    context=st.dictionaries(text, values, max_size=5),
    entities=st.one_of(st.none(), st.lists(values, max_size=2)),
)
def test_stored_form_is_the_request_encoded_whole(
    principal: dict[str, str],
    resource: dict[str, str],
    context: dict[str, Any],
    entities: list[Any] | None,
) -> None:
    request: dict[str, Any] = {
        "principal": principal,
        "action": {"type": "Action", "id": "pay"},
        "resource": resource,
        "context": context,
    }
    if entities is not None:
        request["entities"] = entities
    try:
        expected = stored_form(request)
    except UnicodeEncodeError:  # a lone surrogate somewhere: the request is given as it is
        assert prepare(request) == (request, None)
        return
    cedar_request, stored = prepare(request)
    assert stored == expected
    # Cedar is given the same request, its context as the JSON text of the same values.
    assert {k: v for k, v in cedar_request.items() if k != "context"} == {
        k: v for k, v in request.items() if k != "context"
    }
    assert json.loads(cedar_request["context"]) == context


def test_context_with_a_lone_surrogate_is_given_to_cedar_as_it_is() -> None:
    request = {"principal": {"type": "User", "id": "a"}, "context": {"note": "x\ud800"}}
    assert prepare(request) == (request, None)


def test_request_without_a_context_object_is_given_as_it_is() -> None:
    request = {"principal": {"type": "User", "id": "a"}, "context": "{}"}
    assert prepare(request) == (request, None)
