"""Property tests for agentfence._merkle: proofs verify, and any altered byte fails."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfence._merkle import (
    FrontierState,
    MerkleFrontier,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from agentfence.errors import VerificationError

MAX_SIZE = 400
LEAVES = [leaf_hash(b"entry %d" % i) for i in range(MAX_SIZE)]
TREE = MerkleTree(LEAVES)
ROOTS = [TREE.root(size) for size in range(MAX_SIZE + 1)]

FAST = settings(max_examples=100, deadline=None)
MANY = settings(max_examples=300, deadline=None)

sizes = st.integers(min_value=1, max_value=MAX_SIZE)


def _flip(value: bytes, position: int, mask: int) -> bytes:
    position %= len(value)
    return value[:position] + bytes([value[position] ^ mask]) + value[position + 1 :]


@FAST
@given(size=sizes)
def test_every_inclusion_proof_verifies(size: int) -> None:
    for index in range(size):
        proof = TREE.inclusion_proof(index, size)
        verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size])


@FAST
@given(size=sizes)
def test_every_consistency_proof_verifies(size: int) -> None:
    for old in range(size + 1):
        proof = TREE.consistency_proof(old, size)
        verify_consistency(old, size, ROOTS[old], ROOTS[size], proof)


@FAST
@given(size=st.integers(min_value=1, max_value=150), data=st.data())
def test_proofs_from_leaf_list_match_the_tree(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    old = data.draw(st.integers(min_value=0, max_value=size), label="old")
    assert inclusion_proof(index, size, LEAVES) == TREE.inclusion_proof(index, size)
    assert consistency_proof(old, size, LEAVES) == TREE.consistency_proof(old, size)


@MANY
@given(
    data=st.data(),
    size=st.integers(min_value=2, max_value=MAX_SIZE),
    position=st.integers(min_value=0, max_value=31),
    mask=st.integers(min_value=1, max_value=255),
)
def test_flipping_any_byte_of_an_inclusion_proof_fails(
    data: st.DataObject, size: int, position: int, mask: int
) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    proof = TREE.inclusion_proof(index, size)
    target = data.draw(st.integers(min_value=0, max_value=len(proof) + 1), label="target")
    leaf, root = LEAVES[index], ROOTS[size]
    if target < len(proof):
        proof[target] = _flip(proof[target], position, mask)
    elif target == len(proof):
        root = _flip(root, position, mask)
    else:
        leaf = _flip(leaf, position, mask)
    with pytest.raises(VerificationError, match="does not lead to the expected root"):
        verify_inclusion(leaf, index, size, proof, root)


@MANY
@given(
    data=st.data(),
    size=st.integers(min_value=2, max_value=MAX_SIZE),
    position=st.integers(min_value=0, max_value=31),
    mask=st.integers(min_value=1, max_value=255),
)
def test_flipping_any_byte_of_a_consistency_proof_fails(
    data: st.DataObject, size: int, position: int, mask: int
) -> None:
    old = data.draw(st.integers(min_value=1, max_value=size - 1), label="old")
    proof = TREE.consistency_proof(old, size)
    target = data.draw(st.integers(min_value=0, max_value=len(proof) + 1), label="target")
    old_root, new_root = ROOTS[old], ROOTS[size]
    if target < len(proof):
        proof[target] = _flip(proof[target], position, mask)
    elif target == len(proof):
        old_root = _flip(old_root, position, mask)
    else:
        new_root = _flip(new_root, position, mask)
    with pytest.raises(VerificationError, match=f"from size {old} to size {size} does not lead"):
        verify_consistency(old, size, old_root, new_root, proof)


@MANY
@given(data=st.data(), size=st.integers(min_value=2, max_value=MAX_SIZE))
def test_inclusion_proof_does_not_verify_at_another_index(data: st.DataObject, size: int) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    other = data.draw(st.integers(min_value=0, max_value=size - 2), label="other")
    other += other >= index
    proof = TREE.inclusion_proof(index, size)
    with pytest.raises(VerificationError, match=f"leaf {other} in a tree of size {size}"):
        verify_inclusion(LEAVES[index], other, size, proof, ROOTS[size])


@MANY
@given(data=st.data(), size=st.integers(min_value=3, max_value=MAX_SIZE))
def test_consistency_proof_does_not_verify_for_other_sizes(data: st.DataObject, size: int) -> None:
    old = data.draw(st.integers(min_value=1, max_value=size - 1), label="old")
    other = data.draw(st.integers(min_value=1, max_value=size - 2), label="other")
    other += other >= old
    proof = TREE.consistency_proof(old, size)
    with pytest.raises(VerificationError, match=f"from size {other} to size {size}"):
        verify_consistency(other, size, ROOTS[other], ROOTS[size], proof)


@FAST
@given(size=st.integers(min_value=0, max_value=MAX_SIZE), data=st.data())
def test_frontier_resumes_anywhere(size: int, data: st.DataObject) -> None:
    stop = data.draw(st.integers(min_value=0, max_value=size), label="stop")
    frontier = MerkleFrontier.from_leaf_hashes(LEAVES[:stop])
    resumed = MerkleFrontier.from_state(FrontierState.from_bytes(frontier.state().to_bytes()))
    for leaf in LEAVES[stop:size]:
        resumed.append(leaf)
    assert resumed.root() == ROOTS[size] == root_from_leaf_hashes(LEAVES[:size])
