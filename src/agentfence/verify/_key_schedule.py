"""Which key may sign which checkpoint: trusted keys, signed checkpoint notes, key changes.

Checkpoints are C2SP signed notes (:mod:`agentfence._signing`). A key-change entry rotates
the log's signing key; :class:`KeySchedule` works out which key may sign each checkpoint
size, and which of the log's keys the auditor's trusted keys vouch for.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agentfence import _signing
from agentfence._signing import Checkpoint, Verifier
from agentfence.errors import CheckpointError, ConfigurationError, VerificationError
from agentfence.verify._common import KEEP_EVIDENCE, NO_CHECKPOINT

__all__ = ["KeyChange"]


@dataclass(frozen=True)
class KeyChange:
    """A key-change entry: checkpoint signing passed from ``old_key`` to ``new_key``."""

    seq: int
    old_key: str
    new_key: str


def trusted_verifiers(keys: Sequence[Verifier | str]) -> list[Verifier]:
    if isinstance(keys, str | Verifier):
        keys = [keys]
    found = [k if isinstance(k, Verifier) else Verifier.from_vkey(k.strip()) for k in keys]
    if not found:
        raise ConfigurationError(
            "no verifier key given: pass the log's public key (the NAME.pub file written by "
            "`agentfence keys generate`, or its <name>+<key id>+<key> text)"
        )
    return found


def note_text(note: str) -> str:
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationError(
            "malformed signed note: there is no blank line between the text and the "
            "signature lines (C2SP signed-note); fetch the checkpoint again"
        )
    return note[: split + 1]


def saved_note(note: str) -> str:
    """A note as kept in a file: Windows line ends and extra final newlines undone.

    Neither is in the signed text (a note has no control character but newline, and the
    signature lines end it with exactly one newline), so this changes nothing signed.
    """
    return note.replace("\r\n", "\n").rstrip("\n") + "\n"


def _claimed_signers(note: str) -> set[tuple[str, int]]:
    """The (name, key id) of each signature line, read without verifying anything."""
    claimed: set[tuple[str, int]] = set()
    split = note.rfind("\n\n")
    for line in note[split + 2 :].split("\n") if split >= 0 else ():
        name, _, encoded = line.removeprefix("\u2014 ").partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) >= 4:
            claimed.add((name, int.from_bytes(raw[:4], "big")))
    return claimed


def open_trusted_checkpoint(
    note: str, known: Sequence[Verifier], what: str, *, step: int, origin: str | None
) -> tuple[Checkpoint, frozenset[str]]:
    """Open a checkpoint note; return it and the vkeys of the known keys that signed it."""
    try:
        opened = _signing.open_note(note, known)
        checkpoint = _signing.parse_checkpoint_body(opened.text)
    except VerificationError as exc:
        slots = {(v.name, v.key_id) for v in known}
        if _claimed_signers(note) & slots:
            raise CheckpointError(
                f"{what} was altered: {exc}. Its text or signature changed after it was "
                f"signed; {KEEP_EVIDENCE}",
                step=step,
                attack="checkpoint_altered",
            ) from exc
        raise CheckpointError(
            f"{what} is not signed by a trusted key: {exc}",
            step=step,
            attack="checkpoint_unknown_key",
        ) from exc
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(
            f"{what} is for log {checkpoint.origin!r}, but this log is {origin!r}: it belongs "
            "to another log; check which log or checkpoint file you passed",
            step=step,
            attack="checkpoint_wrong_log",
        )
    by_slot = {(v.name, v.key_id): v.vkey for v in known}
    signed = frozenset(by_slot[(s.name, s.key_id)] for s in opened.signatures if s.verified)
    return checkpoint, signed


def short_key(vkey: str) -> str:
    """``<name>+<key id>``, how signed notes name a key."""
    return "+".join(vkey.split("+", 2)[:2])


def unique_keys(verifiers: Sequence[Verifier]) -> list[Verifier]:
    seen: dict[str, Verifier] = {}
    for verifier in verifiers:
        seen.setdefault(verifier.vkey, verifier)
    return list(seen.values())


@dataclass
class KeySchedule:
    """The log's signing keys in order, and the checkpoint sizes each may sign.

    Following :class:`~agentfence.records.KeyChangeRecord`: the key before a key change at
    entry ``s`` signs checkpoints of size ``<= s`` and the handover (the first checkpoint
    that includes entry ``s``); the key after it signs checkpoints of size ``>= s + 1``
    until the next change.
    """

    epochs: list[Verifier]
    changes: list[KeyChange]
    handovers: dict[int, int] = field(default_factory=dict)  # change index -> size

    @classmethod
    def build(
        cls,
        changes: Sequence[KeyChange],
        trusted: Sequence[Verifier],
        first_note: str | None,
        *,
        step: int,
        origin: str | None,
    ) -> KeySchedule:
        if changes:
            epochs = [Verifier.from_vkey(changes[0].old_key)]
            for index, change in enumerate(changes):
                if index and change.old_key != changes[index - 1].new_key:
                    raise CheckpointError(
                        f"the key change at entry {change.seq} hands over from "
                        f"{change.old_key}, but the key in force was "
                        f"{changes[index - 1].new_key} (key change at entry "
                        f"{changes[index - 1].seq}): the chain of keys is broken; {KEEP_EVIDENCE}",
                        step=step,
                        attack="key_chain_broken",
                    )
                epochs.append(Verifier.from_vkey(change.new_key))
            return cls(epochs=epochs, changes=list(changes))
        # No key change: the log's only key is the trusted key that signed its first checkpoint.
        if first_note is None:
            raise CheckpointError(
                NO_CHECKPOINT,
                step=step,
                attack="checkpoint_missing",
            )
        _, signed = open_trusted_checkpoint(
            first_note, trusted, "the log's first checkpoint", step=step, origin=origin
        )
        first = next(v for v in trusted if v.vkey in signed)
        return cls(epochs=[first], changes=[])

    def set_handovers(self, sizes: Sequence[int]) -> None:
        ordered = sorted(sizes)
        for index, change in enumerate(self.changes):
            later = [s for s in ordered if s >= change.seq + 1]
            if later:
                self.handovers[index] = later[0]

    def allowed(self, size: int) -> set[str]:
        """The vkeys that may sign a checkpoint of ``size``."""
        keys: set[str] = set()
        for index, key in enumerate(self.epochs):
            low = 0 if index == 0 else self.changes[index - 1].seq + 1
            high = self.changes[index].seq if index < len(self.changes) else None
            if (low <= size and (high is None or size <= high)) or (
                index < len(self.changes) and self.handovers.get(index) == size
            ):
                keys.add(key.vkey)
        return keys

    def range_of(self, vkey: str) -> str:
        for index, key in enumerate(self.epochs):
            if key.vkey == vkey:
                low = 0 if index == 0 else self.changes[index - 1].seq + 1
                if index == len(self.changes):
                    return f"sizes {low} and up"
                end = self.handovers.get(index, self.changes[index].seq)
                return f"sizes {low} to {self.changes[index].seq} and the handover at {end}"
        return "no size (it is not one of the log's keys)"

    def trust(
        self, signed: Mapping[int, frozenset[str]], latest: int, trusted: set[str], *, step: int
    ) -> tuple[set[str], tuple[str, ...]]:
        """Which of the log's keys are trusted, and which of them signed the latest checkpoint.

        A key is trusted if the auditor trusts it, or if the key before it is trusted and
        signed its handover checkpoint (so a rotation cannot be forged without the old key).
        The latest checkpoint must be signed by such a key; it then vouches for every entry
        below it, key changes included, so the keys before are trusted too.
        """
        forward = {i for i, k in enumerate(self.epochs) if k.vkey in trusted}
        for index in range(len(self.changes)):
            handover = self.handovers.get(index)
            if (
                index in forward
                and handover is not None
                and self.epochs[index].vkey in signed.get(handover, frozenset())
            ):
                forward.add(index + 1)
        vouching = {self.epochs[i].vkey for i in forward} & self.allowed(latest)
        by = tuple(sorted(vouching & signed[latest]))
        if not by:
            signers = sorted(short_key(k) for k in signed[latest]) or ["no key of this log"]
            allowed = sorted(self.allowed(latest))
            raise CheckpointError(
                f"the latest checkpoint (size {latest}) is not signed by a trusted key valid "
                f"at that size: it is signed by {', '.join(signers)}; the log's key for that "
                f"size is {', '.join(allowed)}, and your trusted keys are "
                f"{', '.join(sorted(short_key(k) for k in trusted))}. Pass the verifier key of the "
                "log's current signer, or find out why the log is signed by another key",
                step=step,
                attack="checkpoint_unknown_key",
            )
        top = max(forward)
        return {k.vkey for k in self.epochs[: top + 1]}, by
