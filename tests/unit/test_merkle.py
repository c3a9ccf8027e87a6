"""Tests for agentfence._merkle: RFC 6962 hashing, the frontier, and proofs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from agentfence._merkle import (
    EMPTY_ROOT,
    FrontierState,
    MerkleFrontier,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from agentfence.errors import ConfigurationError, LogError, VerificationError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "rfc6962.json").read_text(encoding="utf-8")
)
LEAVES = [leaf_hash(bytes.fromhex(data)) for data in VECTORS["leaves"]]
ROOTS = {item["size"]: bytes.fromhex(item["root"]) for item in VECTORS["roots"]}
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _hashes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(value) for value in values]


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _flip(value: bytes, bit: int = 3) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


# Official vectors (transparency-dev/merkle; provenance in tests/vectors/rfc6962.json).


def test_hasher_vectors() -> None:
    hasher = VECTORS["hasher"]
    assert bytes.fromhex(hasher["empty_root"]) == EMPTY_ROOT
    assert leaf_hash(b"").hex() == hasher["empty_leaf_hash"]
    assert leaf_hash(hasher["leaf"]["data_ascii"].encode()).hex() == hasher["leaf"]["hash"]
    node = hasher["node"]
    assert (
        node_hash(node["left_ascii"].encode(), node["right_ascii"].encode()).hex() == (node["hash"])
    )
    # RFC 6962 section 2.1: the empty tree head is not the hash of an empty leaf.
    assert leaf_hash(b"") != EMPTY_ROOT


@pytest.mark.parametrize("size", sorted(ROOTS))
def test_root_vectors(size: int) -> None:
    assert root_from_leaf_hashes(LEAVES[:size]) == ROOTS[size]
    assert MerkleFrontier.from_leaf_hashes(LEAVES[:size]).root() == ROOTS[size]
    assert MerkleTree(LEAVES).root(size) == ROOTS[size]


@pytest.mark.parametrize(
    "case", VECTORS["inclusion"], ids=lambda c: f"leaf{c['index']}-of-{c['size']}"
)
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    index, size, want = case["index"], case["size"], _hashes(case["proof"])
    assert inclusion_proof(index, size, LEAVES) == want
    assert MerkleTree(LEAVES).inclusion_proof(index, size) == want
    verify_inclusion(LEAVES[index], index, size, want, ROOTS[size])


@pytest.mark.parametrize(
    "case", VECTORS["consistency"], ids=lambda c: f"{c['old_size']}-to-{c['new_size']}"
)
def test_consistency_vectors(case: dict[str, Any]) -> None:
    old, new, want = case["old_size"], case["new_size"], _hashes(case["proof"])
    assert consistency_proof(old, new, LEAVES) == want
    assert MerkleTree(LEAVES).consistency_proof(old, new) == want
    verify_consistency(old, new, ROOTS[old], ROOTS[new], want)


# Tampered inclusion proofs, after transparency-dev/merkle's corruptInclusionProof.


def _inclusion_probes(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes, str]]:
    short, long_ = "fewer than such a proof has", "more than such a proof has"
    mismatch = "does not lead to the expected root"
    any_index = f"{mismatch}|{short}|{long_}|but that leaf does not exist"
    probes = [
        ("leaf index + 1", index + 1, size, proof, root, leaf, any_index),
        ("leaf index ^ 2", index ^ 2, size, proof, root, leaf, any_index),
        ("tree size * 2", index, size * 2, proof, root, leaf, f"{short}|{mismatch}"),
        ("wrong leaf", index, size, proof, root, SOME_HASH, mismatch),
        ("empty-tree root", index, size, proof, EMPTY_ROOT, leaf, mismatch),
        ("random root", index, size, proof, SOME_HASH, leaf, mismatch),
        ("trailing root", index, size, [*proof, root], root, leaf, long_),
        ("preceding root", index, size, [root, *proof], root, leaf, f"{long_}|{mismatch}"),
    ]
    if index > 0:
        probes.append(("leaf index - 1", index - 1, size, proof, root, leaf, any_index))
    if size > 1:
        probes.append(("tree size / 2", index, size // 2, proof, root, leaf, any_index))
    for i in range(len(proof)):
        tampered = [*proof]
        tampered[i] = _flip(tampered[i])
        probes.append((f"proof[{i}] bit flipped", index, size, tampered, root, leaf, mismatch))
    if proof:
        probes.append(("removed last hash", index, size, proof[:-1], root, leaf, short))
    if len(proof) > 1:
        inserted = [proof[0], SOME_HASH, *proof[1:]]
        probes.append(("inserted hash", index, size, inserted, root, leaf, long_))
    return probes


INCLUSION_PROBES = [
    pytest.param(i, n, p, root, leaf, message, id=f"leaf{c['index']}-of-{c['size']}: {desc}")
    for c in VECTORS["inclusion"]
    for desc, i, n, p, root, leaf, message in _inclusion_probes(
        c["index"], c["size"], _hashes(c["proof"]), ROOTS[c["size"]], LEAVES[c["index"]]
    )
]


@pytest.mark.parametrize(("index", "size", "proof", "root", "leaf", "message"), INCLUSION_PROBES)
def test_tampered_inclusion_is_rejected(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes, message: str
) -> None:
    with pytest.raises(VerificationError, match=message):
        verify_inclusion(leaf, index, size, proof, root)


def test_inclusion_rejects_index_outside_tree() -> None:
    with pytest.raises(VerificationError, match=r"leaf 8 in a tree of size 8, but that leaf"):
        verify_inclusion(LEAVES[0], 8, 8, [], ROOTS[8])
    with pytest.raises(VerificationError, match=r"a tree of size 0 has leaves 0 to -1"):
        verify_inclusion(LEAVES[0], 0, 0, [], EMPTY_ROOT)
    with pytest.raises(VerificationError, match="does not exist"):
        verify_inclusion(LEAVES[0], -1, 8, [], ROOTS[8])


def test_inclusion_rejects_hashes_of_the_wrong_length() -> None:
    proof = _hashes(VECTORS["inclusion"][1]["proof"])
    with pytest.raises(VerificationError, match="leaf hash is 9 bytes, expected 32"):
        verify_inclusion(b"WrongLeaf", 0, 8, proof, ROOTS[8])
    with pytest.raises(VerificationError, match="root hash is 0 bytes, expected 32"):
        verify_inclusion(LEAVES[0], 0, 8, proof, b"")
    with pytest.raises(VerificationError, match="inclusion proof hash 3 is 0 bytes"):
        verify_inclusion(LEAVES[0], 0, 8, [*proof, b""], ROOTS[8])


def test_single_leaf_tree_root_is_the_leaf_hash() -> None:
    leaf = leaf_hash(b"data")
    assert root_from_leaf_hashes([leaf]) == leaf
    verify_inclusion(leaf, 0, 1, [], leaf)
    with pytest.raises(VerificationError, match="does not lead to the expected root"):
        verify_inclusion(leaf, 0, 1, [], leaf_hash(b"other"))


# Tampered consistency proofs, after transparency-dev/merkle's corruptConsistencyProof.


def _consistency_probes(
    old: int, new: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    probes = [
        ("old size - 1", old - 1, new, root1, root2, proof),
        ("old size + 1", old + 1, new, root1, root2, proof),
        ("old size ^ 2", old ^ 2, new, root1, root2, proof),
        ("new size * 2", old, new * 2, root1, root2, proof),
        ("new size / 2", old, new // 2, root1, root2, proof),
        ("wrong old root", old, new, SOME_HASH, root2, proof),
        ("wrong new root", old, new, root1, SOME_HASH, proof),
        ("swapped roots", old, new, root2, root1, proof),
        ("empty proof", old, new, root1, root2, []),
        ("trailing old root", old, new, root1, root2, [*proof, root1]),
        ("trailing new root", old, new, root1, root2, [*proof, root2]),
        ("preceding old root", old, new, root1, root2, [root1, *proof]),
        ("preceding new root", old, new, root1, root2, [root2, *proof]),
        ("preceding proof[0]", old, new, root1, root2, [proof[0], *proof]),
        ("truncated proof", old, new, root1, root2, proof[:-1]),
    ]
    for i in range(len(proof)):
        tampered = [*proof]
        tampered[i] = _flip(tampered[i], bit=4)
        probes.append((f"proof[{i}] bit flipped", old, new, root1, root2, tampered))
    return probes


CONSISTENCY_PROBES = [
    pytest.param(o, n, r1, r2, p, id=f"{c['old_size']}-to-{c['new_size']}: {desc}")
    for c in VECTORS["consistency"]
    if c["proof"]
    for desc, o, n, r1, r2, p in _consistency_probes(
        c["old_size"],
        c["new_size"],
        ROOTS[c["old_size"]],
        ROOTS[c["new_size"]],
        _hashes(c["proof"]),
    )
]


@pytest.mark.parametrize(("old", "new", "root1", "root2", "proof"), CONSISTENCY_PROBES)
def test_tampered_consistency_is_rejected(
    old: int, new: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> None:
    with pytest.raises(VerificationError, match=f"size {old} to size {new}|shrank from"):
        verify_consistency(old, new, root1, root2, proof)


def test_consistency_messages_name_the_attack() -> None:
    proof = _hashes(VECTORS["consistency"][2]["proof"])  # 6 -> 8
    with pytest.raises(VerificationError, match=r"log shrank from size 8 to size 6.*truncated"):
        verify_consistency(8, 6, ROOTS[8], ROOTS[6], [])
    with pytest.raises(
        VerificationError, match=r"two different roots for the same tree size 5.*forked"
    ):
        verify_consistency(5, 5, ROOTS[5], ROOTS[6], [])
    with pytest.raises(VerificationError, match="from size 6 to size 8 does not lead to the old"):
        verify_consistency(6, 8, ROOTS[5], ROOTS[8], proof)
    with pytest.raises(VerificationError, match="from size 6 to size 8 does not lead to the new"):
        verify_consistency(6, 8, ROOTS[6], ROOTS[7], proof)
    with pytest.raises(VerificationError, match="from size 6 to size 8 is empty"):
        verify_consistency(6, 8, ROOTS[6], ROOTS[8], [])
    with pytest.raises(VerificationError, match="fewer than such a proof has"):
        verify_consistency(6, 8, ROOTS[6], ROOTS[8], proof[:-1])
    with pytest.raises(VerificationError, match="more than such a proof has"):
        verify_consistency(6, 8, ROOTS[6], ROOTS[8], [*proof, ROOTS[8]])


def test_consistency_edge_sizes() -> None:
    # The empty tree is a prefix of every tree, but only with the empty root.
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 8, EMPTY_ROOT, ROOTS[8], [])
    verify_consistency(8, 8, ROOTS[8], ROOTS[8], [])
    assert consistency_proof(0, 8, LEAVES) == []
    assert consistency_proof(8, 8, LEAVES) == []
    with pytest.raises(VerificationError, match="size 0 does not carry the empty-tree root"):
        verify_consistency(0, 8, ROOTS[1], ROOTS[8], [])
    with pytest.raises(VerificationError, match="from size 0 to size 8 must be empty"):
        verify_consistency(0, 8, EMPTY_ROOT, ROOTS[8], [EMPTY_ROOT])
    with pytest.raises(VerificationError, match="from size 8 to size 8 must be empty"):
        verify_consistency(8, 8, ROOTS[8], ROOTS[8], [EMPTY_ROOT])
    with pytest.raises(VerificationError, match="old tree size -1 is negative"):
        verify_consistency(-1, 8, EMPTY_ROOT, ROOTS[8], [])
    with pytest.raises(VerificationError, match="old root hash is 9 bytes"):
        verify_consistency(1, 1, b"WrongRoot", ROOTS[1], [])
    with pytest.raises(VerificationError, match="consistency proof hash 0 is 3 bytes"):
        verify_consistency(1, 2, ROOTS[1], ROOTS[2], [b"bad"])


# The frontier.


def test_empty_tree() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert MerkleFrontier().root() == EMPTY_ROOT
    assert MerkleFrontier().size == 0
    assert MerkleTree([]).root() == EMPTY_ROOT


def test_frontier_matches_batch_root_at_every_size() -> None:
    leaves = _leaves(300)
    tree = MerkleTree(leaves)
    frontier = MerkleFrontier()
    for size in range(1, 301):
        assert frontier.append(leaves[size - 1]) == size - 1
        assert frontier.size == size
        want = root_from_leaf_hashes(leaves[:size])
        assert frontier.root() == want, size
        assert tree.root(size) == want, size
        assert len(frontier.state().hashes) == size.bit_count()


def test_frontier_restores_from_serialized_state() -> None:
    leaves = _leaves(300)
    for stop in (0, 1, 2, 3, 7, 8, 9, 64, 127, 255, 256, 299):
        original = MerkleFrontier.from_leaf_hashes(leaves[:stop])
        stored = original.state().to_bytes()
        assert len(stored) == 8 + 32 * stop.bit_count()
        restored = MerkleFrontier.from_state(FrontierState.from_bytes(stored))
        assert restored.size == stop
        assert restored.root() == original.root()
        for leaf in leaves[stop:]:
            restored.append(leaf)
        assert restored.root() == root_from_leaf_hashes(leaves)


def test_frontier_copy_is_independent() -> None:
    frontier = MerkleFrontier.from_leaf_hashes(_leaves(5))
    copy = frontier.copy()
    copy.append(leaf_hash(b"x"))
    assert frontier.size == 5
    assert copy.size == 6
    assert frontier.root() == root_from_leaf_hashes(_leaves(5))


def test_malformed_frontier_state_is_rejected() -> None:
    with pytest.raises(LogError, match=r"not 8 \+ a multiple of 32.*from_leaf_hashes"):
        FrontierState.from_bytes(b"\x00" * 7)
    with pytest.raises(LogError, match=r"not 8 \+ a multiple of 32"):
        FrontierState.from_bytes(b"\x00" * 8 + b"\x01" * 31)
    with pytest.raises(LogError, match="size 3 has 1 subtree hashes, expected 2"):
        FrontierState.from_bytes((3).to_bytes(8, "big") + b"\x01" * 32)
    with pytest.raises(LogError, match="negative size"):
        FrontierState(size=-1, hashes=())
    with pytest.raises(LogError, match="hash 0 is 31 bytes"):
        FrontierState(size=1, hashes=(b"\x01" * 31,))


def test_leaf_hashes_must_be_32_bytes() -> None:
    with pytest.raises(ConfigurationError, match=r"leaf hash is 5 bytes.*leaf_hash\(entry_bytes\)"):
        MerkleFrontier().append(b"entry")
    with pytest.raises(ConfigurationError, match="leaf hash 1 is 5 bytes"):
        root_from_leaf_hashes([LEAVES[0], b"entry"])
    with pytest.raises(ConfigurationError, match="leaf hash 1 is 5 bytes"):
        MerkleTree([LEAVES[0], b"entry"])


# Proof generation.


def test_proof_generation_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="leaf index 8 is outside a tree of size 8"):
        inclusion_proof(8, 8, LEAVES)
    with pytest.raises(ConfigurationError, match="leaf index 0 is outside a tree of size 0"):
        inclusion_proof(0, 0, LEAVES)
    with pytest.raises(ConfigurationError, match="leaf index -1 is outside"):
        inclusion_proof(-1, 8, LEAVES)
    with pytest.raises(ConfigurationError, match="needs 9 leaf hashes, got 8"):
        inclusion_proof(0, 9, LEAVES)
    with pytest.raises(ConfigurationError, match="from size 9 to size 8"):
        consistency_proof(9, 8, LEAVES)
    with pytest.raises(ConfigurationError, match="needs 10 leaf hashes, got 8"):
        consistency_proof(3, 10, LEAVES)
    tree = MerkleTree(LEAVES)
    with pytest.raises(ConfigurationError, match="tree size 9 is outside the 8 leaves"):
        tree.root(9)
    with pytest.raises(ConfigurationError, match="tree size 9 is outside the 8 leaves"):
        tree.inclusion_proof(0, 9)
    with pytest.raises(ConfigurationError, match=r"subtree \[3, 3\) is not a non-empty range"):
        tree.subtree_hash(3, 3)


def test_tree_and_leaf_list_and_getter_give_the_same_proofs() -> None:
    leaves = _leaves(70)
    tree = MerkleTree(leaves)
    for size in range(1, 71):
        root = tree.root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == inclusion_proof(index, size, leaves)
            assert proof == inclusion_proof(index, size, tree.subtree_hash)
            verify_inclusion(leaves[index], index, size, proof, root)
        for old in range(size + 1):
            proof = tree.consistency_proof(old, size)
            assert proof == consistency_proof(old, size, leaves)
            verify_consistency(old, size, tree.root(old), root, proof)
