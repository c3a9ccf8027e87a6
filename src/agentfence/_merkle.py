"""RFC 6962 Merkle tree hashing over SHA-256: roots, a growing frontier, and proofs.

The decision log is the list of leaves of one Merkle hash tree as defined in RFC 6962
section 2.1 (the same tree RFC 9162 section 2.1 describes). This module computes:

* leaf and interior node hashes (:func:`leaf_hash`, :func:`node_hash`) and the tree head of
  a list of leaf hashes (:func:`root_from_leaf_hashes`);
* a :class:`MerkleFrontier` that the log writer keeps as entries are appended, so the root
  is current after every append in O(log n), and whose :class:`FrontierState` can be stored
  and restored;
* inclusion and consistency proofs (:func:`inclusion_proof`, :func:`consistency_proof`,
  RFC 6962 sections 2.1.1 and 2.1.2) and their verification (:func:`verify_inclusion`,
  :func:`verify_consistency`, RFC 9162 sections 2.1.3.2 and 2.1.4.2), which raise
  :class:`~agentfence.errors.VerificationError` and never return a bool.

Everything here works on 32-byte leaf hashes, not on entry bytes: the log hashes each entry
once with :func:`leaf_hash` and keeps the result.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agentfence.errors import ConfigurationError, LogError, VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "FrontierState",
    "MerkleFrontier",
    "MerkleTree",
    "SubtreeHashFn",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in a SHA-256 digest, the only hash this tree uses."""

# RFC 6962 section 2.1: the hash of an empty list is the hash of an empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

# RFC 6962 section 2.1 prefixes leaves with 0x00 and interior nodes with 0x01, so that no
# leaf can be passed off as an interior node (second-preimage resistance).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

SubtreeHashFn = Callable[[int, int], bytes]
"""``subtree_hash(start, end)`` returns MTH(D[start:end]) for ``0 <= start < end <= size``.

The log can answer this from stored nodes; :class:`MerkleTree` answers it in O(log n).
"""


def leaf_hash(data: bytes) -> bytes:
    """The RFC 6962 section 2.1 hash of one leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 section 2.1 hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The RFC 6962 section 2.1 tree head MTH(D[n]) of the given leaf hashes.

    Raises :class:`~agentfence.errors.ConfigurationError` if a hash is not 32 bytes.
    """
    _check_leaf_hashes(hashes)
    if not hashes:
        return EMPTY_ROOT
    return _levels(hashes, keep=False)[-1][0]


def _levels(hashes: Sequence[bytes], *, keep: bool) -> list[list[bytes]]:
    # RFC 6962 section 2.1 splits a list of n > 1 leaves at k, the largest power of two
    # smaller than n. Pairing nodes from the left on every level, and carrying an unpaired
    # last node up unchanged, builds exactly that tree: the left side of every split is a
    # perfect subtree of 2**j leaves starting at a multiple of 2**j, so its pairs line up
    # with the level's pairs. This is iterative and costs n - 1 SHA-256 calls for n leaves.
    sha256 = hashlib.sha256
    prefix = _NODE_PREFIX
    level = list(hashes)
    levels = [level]
    while len(level) > 1:
        last = len(level) - 1
        upper = [sha256(prefix + level[i] + level[i + 1]).digest() for i in range(0, last, 2)]
        if len(level) % 2:
            upper.append(level[last])
        if keep:
            levels.append(upper)
        else:
            levels[0] = upper
        level = upper
    return levels


def _check_leaf_hashes(hashes: Sequence[bytes]) -> None:
    for index, value in enumerate(hashes):
        if len(value) != HASH_SIZE:
            raise ConfigurationError(
                f"leaf hash {index} is {len(value)} bytes, expected {HASH_SIZE} (SHA-256); "
                "pass leaf_hash(entry_bytes), not the entry bytes themselves"
            )


def _split(n: int) -> int:
    # RFC 6962 section 2.1: k is the largest power of two smaller than n (n > 1).
    return 1 << ((n - 1).bit_length() - 1)


def _is_perfect(start: int, end: int) -> bool:
    width = end - start
    return width > 0 and width & (width - 1) == 0 and start % width == 0


@dataclass(frozen=True)
class FrontierState:
    """What a :class:`MerkleFrontier` needs to resume: the size and its subtree roots.

    ``hashes`` are the roots of the perfect subtrees that make up a tree of ``size`` leaves,
    largest (leftmost) first: one per set bit of ``size``, from the highest bit down.
    """

    size: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if self.size < 0:
            raise LogError(
                f"stored Merkle frontier has a negative size ({self.size}); "
                "rebuild it from the leaf hashes with MerkleFrontier.from_leaf_hashes"
            )
        want = self.size.bit_count()
        if len(self.hashes) != want:
            raise LogError(
                f"stored Merkle frontier for size {self.size} has {len(self.hashes)} subtree "
                f"hashes, expected {want}; rebuild it from the leaf hashes with "
                "MerkleFrontier.from_leaf_hashes"
            )
        for index, value in enumerate(self.hashes):
            if len(value) != HASH_SIZE:
                raise LogError(
                    f"stored Merkle frontier hash {index} is {len(value)} bytes, expected "
                    f"{HASH_SIZE}; rebuild it from the leaf hashes with "
                    "MerkleFrontier.from_leaf_hashes"
                )

    def to_bytes(self) -> bytes:
        """Encode as an 8-byte big-endian size followed by the subtree hashes in order."""
        return self.size.to_bytes(8, "big") + b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> FrontierState:
        """Decode what :meth:`to_bytes` wrote; raises LogError if it is malformed."""
        if len(data) < 8 or (len(data) - 8) % HASH_SIZE:
            raise LogError(
                f"stored Merkle frontier is {len(data)} bytes, which is not 8 + a multiple "
                f"of {HASH_SIZE}; rebuild it from the leaf hashes with "
                "MerkleFrontier.from_leaf_hashes"
            )
        size = int.from_bytes(data[:8], "big")
        body = data[8:]
        hashes = tuple(body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE))
        return cls(size=size, hashes=hashes)


class MerkleFrontier:
    """A growing RFC 6962 tree kept as its perfect-subtree roots (a compact range [0, n)).

    :meth:`append` takes one leaf hash in O(log n) and :meth:`root` gives the current tree
    head in O(log n). Only O(log n) hashes are kept, so the log writer can hold one for the
    life of the process and store :meth:`state` next to each checkpoint.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_state(cls, state: FrontierState) -> MerkleFrontier:
        """Resume from a stored :class:`FrontierState`."""
        frontier = cls()
        frontier._size = state.size
        frontier._hashes = list(state.hashes)
        return frontier

    @classmethod
    def from_leaf_hashes(cls, hashes: Sequence[bytes]) -> MerkleFrontier:
        """Build the frontier of a tree with the given leaf hashes."""
        frontier = cls()
        for value in hashes:
            frontier.append(value)
        return frontier

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    def append(self, leaf: bytes) -> int:
        """Append one leaf hash and return its index."""
        if len(leaf) != HASH_SIZE:
            raise ConfigurationError(
                f"leaf hash is {len(leaf)} bytes, expected {HASH_SIZE} (SHA-256); "
                "pass leaf_hash(entry_bytes), not the entry bytes themselves"
            )
        index = self._size
        # Each trailing one bit of the old size is a perfect subtree the same size as the
        # one being completed; merge them right to left, as a binary counter carries.
        merged = leaf
        carry = index
        while carry & 1:
            merged = node_hash(self._hashes.pop(), merged)
            carry >>= 1
        self._hashes.append(merged)
        self._size = index + 1
        return index

    def root(self) -> bytes:
        """The RFC 6962 tree head of the leaves appended so far."""
        if not self._hashes:
            return EMPTY_ROOT
        # RFC 6962 section 2.1 puts the largest power-of-two subtree on the left at every
        # split, so the head folds the subtree roots from the smallest (rightmost) up.
        root = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            root = node_hash(left, root)
        return root

    def state(self) -> FrontierState:
        """A value that :meth:`from_state` restores this frontier from."""
        return FrontierState(size=self._size, hashes=tuple(self._hashes))

    def copy(self) -> MerkleFrontier:
        """An independent frontier at the same size."""
        return MerkleFrontier.from_state(self.state())


class MerkleTree:
    """All interior nodes of an RFC 6962 tree over a fixed list of leaf hashes.

    Building costs one pass over the leaves; afterwards :meth:`subtree_hash` answers any
    range in O(log n), so every proof costs O(log^2 n) hashes. Pass ``tree.subtree_hash``
    to :func:`inclusion_proof` or :func:`consistency_proof`, or call the methods here.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        _check_leaf_hashes(leaf_hashes)
        self._levels = _levels(leaf_hashes, keep=True)

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._levels[0])

    def root(self, size: int | None = None) -> bytes:
        """The tree head of the first ``size`` leaves (all of them by default)."""
        size = self.size if size is None else size
        _check_size(size, self.size)
        return EMPTY_ROOT if size == 0 else self.subtree_hash(0, size)

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for ``0 <= start < end <= size``."""
        if not 0 <= start < end <= self.size:
            raise ConfigurationError(
                f"subtree [{start}, {end}) is not a non-empty range inside a tree of "
                f"{self.size} leaves"
            )
        return self._subtree(start, end)

    def _subtree(self, start: int, end: int) -> bytes:
        if _is_perfect(start, end):
            # A perfect, aligned subtree that ends inside the tree is stored as is: node
            # start >> h on level h, where 2**h is its width.
            height = (end - start).bit_length() - 1
            return self._levels[height][start >> height]
        k = _split(end - start)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """See :func:`inclusion_proof`; ``size`` defaults to the whole tree."""
        size = self.size if size is None else size
        _check_size(size, self.size)
        return inclusion_proof(index, size, self.subtree_hash)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """See :func:`consistency_proof`; ``new_size`` defaults to the whole tree."""
        new_size = self.size if new_size is None else new_size
        _check_size(new_size, self.size)
        return consistency_proof(old_size, new_size, self.subtree_hash)


def _check_size(size: int, available: int) -> None:
    if not 0 <= size <= available:
        raise ConfigurationError(
            f"tree size {size} is outside the {available} leaves available; "
            f"ask for a size between 0 and {available}"
        )


def _subtree_fn(leaves: Sequence[bytes] | SubtreeHashFn, size: int) -> SubtreeHashFn:
    if callable(leaves):
        return leaves
    if len(leaves) < size:
        raise ConfigurationError(
            f"a proof for a tree of size {size} needs {size} leaf hashes, got {len(leaves)}"
        )
    _check_leaf_hashes(leaves[:size])

    def subtree_hash(start: int, end: int) -> bytes:
        # Each proof asks for subtrees that together cover the tree about once, so this is
        # O(n) per proof; build a MerkleTree when asking for many proofs.
        return _levels(leaves[start:end], keep=False)[-1][0]

    return subtree_hash


def inclusion_proof(index: int, size: int, leaves: Sequence[bytes] | SubtreeHashFn) -> list[bytes]:
    """The RFC 6962 section 2.1.1 audit path PATH(index, D[size]), bottom-most node first.

    ``leaves`` is either the leaf hashes (at least ``size`` of them) or a
    :data:`SubtreeHashFn`. Raises :class:`~agentfence.errors.ConfigurationError` unless
    ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise ConfigurationError(
            f"leaf index {index} is outside a tree of size {size}; an inclusion proof "
            f"needs 0 <= index < size"
        )
    subtree_hash = _subtree_fn(leaves, size)
    # RFC 6962 section 2.1.1, unrolled: for n > 1 with k the largest power of two below n,
    # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) if m < k,
    #               = PATH(m - k, D[k:n]) : MTH(D[0:k]) otherwise.
    # Walking down from the root collects the siblings top first, so reverse at the end.
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(subtree_hash(start + k, end))
            end = start + k
        else:
            path.append(subtree_hash(start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(
    old_size: int, new_size: int, leaves: Sequence[bytes] | SubtreeHashFn
) -> list[bytes]:
    """The RFC 6962 section 2.1.2 proof PROOF(old_size, D[new_size]).

    The proof is empty when ``old_size`` is 0 (the empty tree is a prefix of every tree) or
    equals ``new_size``. ``leaves`` is either the leaf hashes (at least ``new_size`` of
    them) or a :data:`SubtreeHashFn`. Raises :class:`~agentfence.errors.ConfigurationError`
    unless ``0 <= old_size <= new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise ConfigurationError(
            f"cannot prove consistency from size {old_size} to size {new_size}; "
            "a consistency proof needs 0 <= old_size <= new_size"
        )
    if old_size in (0, new_size):
        return []
    subtree_hash = _subtree_fn(leaves, new_size)
    # RFC 6962 section 2.1.2, unrolled: PROOF(m, D[n]) = SUBPROOF(m, D[n], true), and for
    # m < n with k the largest power of two below n,
    # SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])        if m <= k,
    #                      = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]) otherwise;
    # SUBPROOF(m, D[m], true) = {} and SUBPROOF(m, D[m], false) = {MTH(D[m])}.
    proof: list[bytes] = []
    start, end, m = 0, new_size, old_size
    whole_old_tree = True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(subtree_hash(start + k, end))
            end = start + k
        else:
            proof.append(subtree_hash(start, start + k))
            start += k
            m -= k
            whole_old_tree = False
    if not whole_old_tree:
        proof.append(subtree_hash(start, end))
    proof.reverse()
    return proof


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise VerificationError(
            f"{what} is {len(value)} bytes, expected {HASH_SIZE} (SHA-256); "
            "the proof or checkpoint is corrupt, fetch it again from the log"
        )


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Follows RFC 9162 section 2.1.3.2. Returns ``None`` when the proof holds and raises
    :class:`~agentfence.errors.VerificationError` saying what failed otherwise.
    """
    where = f"leaf {index} in a tree of size {size}"
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    for position, value in enumerate(proof):
        _check_hash(value, f"inclusion proof hash {position}")
    # 1. Compare leaf_index from the inclusion_proof_v2 structure against tree_size. If
    #    leaf_index is greater than or equal to tree_size, then fail the proof verification.
    if not 0 <= index < size:
        raise VerificationError(
            f"inclusion proof is for {where}, but that leaf does not exist; a tree of size "
            f"{size} has leaves 0 to {size - 1}: check the index and the checkpoint"
        )
    # 2. Set fn to leaf_index and sn to tree_size - 1.
    fn, sn = index, size - 1
    # 3. Set r to hash.
    r = leaf
    # 4. For each value p in the inclusion_path array:
    for p in proof:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise VerificationError(
                f"inclusion proof for {where} has {len(proof)} hashes, more than such a "
                "proof has; the proof was altered or made for another index or size"
            )
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, r)
            # ii. If LSB(fn) is not set, then right-shift both fn and sn equally until
            #     either LSB(fn) is set or fn is 0.
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        # Otherwise: Set r to HASH(0x01 || r || p).
        else:
            r = node_hash(r, p)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 5. Compare sn to 0. Compare r against the root_hash. If sn is equal to 0 and r and
    #    the root_hash are equal, then the log has proven the inclusion of hash.
    if sn != 0:
        raise VerificationError(
            f"inclusion proof for {where} has {len(proof)} hashes, fewer than such a proof "
            "has; the proof was truncated or made for another index or size"
        )
    if not hmac.compare_digest(r, root):
        raise VerificationError(
            f"inclusion proof for {where} does not lead to the expected root: the leaf, "
            "the proof or the root was altered, or they come from different logs"
        )


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree of ``old_size`` leaves is a prefix of the tree of ``new_size``.

    Follows RFC 9162 section 2.1.4.2 for ``0 < old_size < new_size``. Equal sizes need an
    empty proof and equal roots; a size-0 tree needs an empty proof and the empty root.
    Returns ``None`` when the proof holds and raises
    :class:`~agentfence.errors.VerificationError` saying what failed otherwise.
    """
    where = f"from size {old_size} to size {new_size}"
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    for position, value in enumerate(proof):
        _check_hash(value, f"consistency proof hash {position}")
    if old_size < 0:
        raise VerificationError(f"old tree size {old_size} is negative; check the checkpoint")
    if old_size > new_size:
        raise VerificationError(
            f"the log shrank {where}: a later checkpoint must not be smaller than an earlier "
            "one, so the log was truncated or rolled back; keep the older checkpoint as "
            "evidence"
        )
    if old_size == new_size:
        if proof:
            raise VerificationError(
                f"consistency proof {where} must be empty, it has {len(proof)} hashes; "
                "the proof was made for other sizes"
            )
        if not hmac.compare_digest(old_root, new_root):
            raise VerificationError(
                f"two different roots for the same tree size {old_size}: the log was forked "
                "or rewritten; keep both checkpoints as evidence"
            )
        return
    if old_size == 0:
        if proof:
            raise VerificationError(
                f"consistency proof {where} must be empty, it has {len(proof)} hashes; "
                "the proof was made for other sizes"
            )
        if not hmac.compare_digest(old_root, EMPTY_ROOT):
            raise VerificationError(
                "the checkpoint of size 0 does not carry the empty-tree root "
                "SHA-256(''); that checkpoint is corrupt"
            )
        return
    # 1. If consistency_path is an empty array, stop and fail the proof verification.
    if not proof:
        raise VerificationError(
            f"consistency proof {where} is empty, but these sizes need one; fetch the proof "
            "again from the log"
        )
    path = list(proof)
    # 2. If first is an exact power of 2, then prepend first_hash to the consistency_path
    #    array.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = old_size - 1, new_size - 1
    # 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise VerificationError(
                f"consistency proof {where} has {len(proof)} hashes, more than such a proof "
                "has; the proof was altered or made for other sizes"
            )
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set fr to HASH(0x01 || c || fr).
            fr = node_hash(c, fr)
            # ii. Set sr to HASH(0x01 || c || sr).
            sr = node_hash(c, sr)
            # iii. If LSB(fn) is not set, then right-shift both fn and sn equally until
            #      either LSB(fn) is set or fn is 0.
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        # Otherwise: i. Set sr to HASH(0x01 || sr || c).
        else:
            sr = node_hash(sr, c)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. After completing iterating through the consistency_path array as described above,
    #    verify that the fr calculated is equal to the first_hash supplied, that the sr
    #    calculated is equal to the second_hash supplied, and that sn is 0.
    if sn != 0:
        raise VerificationError(
            f"consistency proof {where} has {len(proof)} hashes, fewer than such a proof "
            "has; the proof was truncated or made for other sizes"
        )
    old_matches = hmac.compare_digest(fr, old_root)
    new_matches = hmac.compare_digest(sr, new_root)
    if not old_matches:
        raise VerificationError(
            f"consistency proof {where} does not lead to the old root: the old checkpoint is "
            "not a prefix of the new tree (a rewritten history or a fork) or the proof was "
            "altered; keep both checkpoints as evidence"
        )
    if not new_matches:
        raise VerificationError(
            f"consistency proof {where} does not lead to the new root: the new checkpoint "
            "does not extend the old tree (a rewritten history or a fork) or the proof was "
            "altered; keep both checkpoints as evidence"
        )
