"""Deterministic seeds and ids.

Every id the fence mints is derived from (seed, thread, step, tool_call_id), never from a
clock or ``uuid4``: LangGraph re-executes a node when a thread resumes, and the second pass
must find the first pass's decision instead of minting a new one.
"""

from __future__ import annotations

import hashlib

# 53 bits: the largest integer RFC 8785 canonical JSON carries exactly (an IEEE double).
_SEED_BITS = 53


def derive_seed(thread: str) -> int:
    """The seed of a run that was given none: derived from its thread id."""
    digest = hashlib.sha256(b"agentfence.seed/v1\x00" + thread.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - _SEED_BITS)


def derive_id(kind: str, seed: int, thread: str, step: int, tool_call_id: str) -> str:
    """A 128-bit id (32 hex digits) for ``kind`` ("decision", "approval", ...) of one call."""
    material = "\x00".join(
        ("agentfence.id/v1", kind, str(seed), thread, str(step), tool_call_id)
    ).encode()
    return hashlib.sha256(material).hexdigest()[:32]


def check_seed(seed: int) -> int:
    """A seed is a non-negative integer below 2**53, so records carry it exactly."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**_SEED_BITS:
        raise ValueError(f"seed must be an integer from 0 to 2**53-1, got {seed!r}")
    return seed
