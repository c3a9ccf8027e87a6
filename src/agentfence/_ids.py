"""Deterministic seeds and ids.

Every id the fence mints is derived from (seed, thread, step, tool_call_id), never from a
clock or ``uuid4``: LangGraph re-executes a node when a thread resumes, and the second pass
must find the first pass's decision instead of minting a new one.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from agentfence.errors import ConfigurationError

# 53 bits: the largest integer RFC 8785 canonical JSON carries exactly (an IEEE double).
_SEED_BITS = 53


def derive_seed(thread: str) -> int:
    """The seed of a run that was given none: derived from its thread id."""
    digest = hashlib.sha256(b"agentfence.seed/v1\x00" + thread.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - _SEED_BITS)


def derive_id(
    kind: str, seed: int, thread: str, step: int, tool_call_id: str, extra: str = ""
) -> str:
    """A 128-bit id (32 hex digits) for ``kind`` ("decision", "approval", ...) of one call.

    ``extra`` binds more of the call (the fence passes a digest of the tool, arguments and
    principal), so that a different call reusing a tool call id gets a different id.
    """
    material = "\x00".join(
        ("agentfence.id/v1", kind, str(seed), thread, str(step), tool_call_id, extra)
    ).encode()
    return hashlib.sha256(material).hexdigest()[:32]


def call_digest(tool: str, args: Any, principal: str, nonce: str = "") -> str:
    """SHA-256 hex of a call's tool, arguments and principal (and a run nonce, if any).

    Arguments that are not JSON (NaN, objects) are digested through their ``repr``.
    """
    try:
        body = _DIGESTED.encode([tool, args, principal, nonce])
    except (TypeError, ValueError, RecursionError):
        try:
            body = repr([tool, args, principal, nonce])
        except RecursionError:  # nested too deep to print: such calls are refused anyway
            body = repr([tool, "<too deeply nested>", principal, nonce])
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


# What json.dumps(sort_keys=True, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
# would build on every call, built once: every call's decision id digests its arguments.
_DIGESTED = json.JSONEncoder(
    sort_keys=True, allow_nan=False, separators=(",", ":"), ensure_ascii=False
)


def check_seed(seed: int) -> int:
    """A seed is a non-negative integer below 2**53, so records carry it exactly."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**_SEED_BITS:
        raise ConfigurationError(
            f"seed must be an integer from 0 to 2**53-1, got {seed!r}; pass another seed= or "
            "AGENTFENCE_SEED, or none to derive seeds from thread ids"
        )
    return seed


_IMMUTABLE = (str, int, float, bool, type(None))


def private_copy(value: Any) -> Any:
    """A deep copy of call arguments, quick for what models send (JSON: dicts, lists and
    scalars); anything else goes through :func:`copy.deepcopy`."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is dict:
        return {key: private_copy(item) for key, item in value.items()}
    if kind is list:
        return [private_copy(item) for item in value]
    return copy.deepcopy(value)
