"""C2SP signed notes and transparency-log checkpoints, signed with Ed25519.

The decision log commits to its Merkle tree head by signing a checkpoint
(https://c2sp.org/tlog-checkpoint): a note whose text is the log's origin, its tree size
and its root hash. The signature format is the C2SP signed note
(https://c2sp.org/signed-note), the same one golang.org/x/mod/sumdb/note reads and writes,
so checkpoints can be checked with standard tooling and co-signed by witnesses.

Keys use the sumdb/note text encodings:

* verifier key: ``<name>+<key id, 8 hex digits>+<base64(0x01 || 32-byte public key)>``;
* signer key: ``PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>``, to be kept
  secret (:func:`write_private_key` writes it with mode 0600).

Opening a note (:func:`open_note`, :func:`open_checkpoint`) parses it strictly and raises
:class:`~agentfence.errors.VerificationError` naming what is wrong; it never returns a bool.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from agentfence.errors import AgentfenceWarning, ConfigurationError, VerificationError

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "Note",
    "NoteSignature",
    "Signer",
    "Verifier",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_checkpoint_body",
    "read_private_key",
    "read_verifier_key",
    "sign_checkpoint",
    "write_private_key",
    "write_verifier_key",
]

# C2SP signed-note, "Signature types": 0x01 identifies Ed25519 signatures.
ALG_ED25519 = 0x01

# C2SP signed-note, "Format": verifiers SHOULD cap the number of signatures and MUST accept
# at least 16. sumdb/note caps at 100; so do we.
MAX_SIGNATURES = 100

# C2SP signed-note, "Format": a signature line is an em dash (U+2014), a space, the key
# name, a space, the base64 signature and a newline.
_SIG_PREFIX = "\u2014 "

_PRIVATE_PREFIX = "PRIVATE+KEY+"
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
# C2SP tlog-checkpoint, "Note text": the tree size is ASCII decimal with no leading zeroes
# (unless it is 0). [0-9] rather than \d, which would also match non-ASCII digits.
_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")
_MAX_TREE_SIZE = 2**64 - 1
_ROOT_SIZE = 32
_KEYS_HINT = "run `agentfence keys generate` to create a key pair"


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes:
    """Decode standard base64 (RFC 4648 section 4), accepting only the canonical form.

    Raises ValueError. Canonical means re-encoding gives back the same text, so a value has
    exactly one accepted spelling and a signature line cannot be altered without notice.
    """
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError("not standard base64") from exc
    if _b64encode(data) != text:
        raise ValueError("not canonical standard base64")
    return data


def _name_problem(name: str) -> str | None:
    # C2SP signed-note, "Format": key names MUST be non-empty and MUST NOT contain Unicode
    # spaces or plus (U+002B). Control characters cannot appear in a note at all.
    if not name:
        return "is empty"
    if "+" in name:
        return "contains '+'"
    if any(ch.isspace() for ch in name):
        return "contains whitespace"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "contains a control character"
    return None


def key_id(name: str, public_key: bytes) -> int:
    """The key ID of an Ed25519 key, as an unsigned 32-bit integer.

    C2SP signed-note, "Ed25519 signatures": SHA-256(key name || 0x0A || 0x01 || 32-byte
    public key), first four bytes, big-endian.
    """
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    ).digest()
    return int.from_bytes(digest[:4], "big")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 verifier key with its note key name and key ID."""

    name: str
    key_id: int
    public_key: bytes = field(repr=False)
    _key: Ed25519PublicKey = field(repr=False, compare=False)

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        """The verifier for a raw 32-byte Ed25519 public key under ``name``."""
        problem = _name_problem(name)
        if problem is not None:
            raise ConfigurationError(
                f"key name {name!r} {problem}; note key names must be non-empty and contain "
                "neither whitespace nor '+' (C2SP signed-note)"
            )
        if len(public_key) != 32:
            raise ConfigurationError(
                f"Ed25519 public key for {name!r} is {len(public_key)} bytes, expected 32"
            )
        return cls(
            name=name,
            key_id=key_id(name, public_key),
            public_key=public_key,
            _key=Ed25519PublicKey.from_public_bytes(public_key),
        )

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse a verifier key ``<name>+<key id>+<base64(0x01 || public key)>``.

        Raises :class:`~agentfence.errors.ConfigurationError` saying what is malformed.
        """
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise ConfigurationError(
                f"verifier key {vkey!r} is malformed: expected <name>+<key id>+<key>; "
                "copy it again from the .pub file the key pair was generated with"
            )
        name, id_hex, key_b64 = parts
        problem = _name_problem(name)
        if problem is not None:
            raise ConfigurationError(f"verifier key name {name!r} {problem}")
        if not _HEX8.fullmatch(id_hex):
            raise ConfigurationError(
                f"verifier key for {name!r} has key id {id_hex!r}, expected 8 hex digits"
            )
        try:
            key = _b64decode(key_b64)
        except ValueError as exc:
            raise ConfigurationError(
                f"verifier key for {name!r} is malformed: its key part is {exc}"
            ) from exc
        if len(key) != 33 or key[0] != ALG_ED25519:
            raise ConfigurationError(
                f"verifier key for {name!r} is not an Ed25519 key (algorithm byte 0x01 and "
                "32 key bytes); only Ed25519 note keys are supported"
            )
        verifier = cls.from_public_key(name, key[1:])
        if verifier.key_id != int(id_hex, 16):
            raise ConfigurationError(
                f"verifier key for {name!r} says key id {id_hex.lower()} but the key hashes "
                f"to {verifier.key_id:08x}; the key string was altered or mistyped"
            )
        return verifier

    @property
    def vkey(self) -> str:
        """The verifier key in its text encoding."""
        encoded = _b64encode(bytes([ALG_ED25519]) + self.public_key)
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    def verify(self, signature: bytes, message: bytes) -> None:
        """Check a raw Ed25519 ``signature`` over ``message``; raise VerificationError if not."""
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            raise VerificationError(
                f"signature by key {self.name}+{self.key_id:08x} does not verify: the signed "
                "text or the signature was altered"
            ) from None


@dataclass(frozen=True)
class Signer:
    """An Ed25519 signing key with its note key name and key ID. Keep it secret."""

    name: str
    key_id: int
    _key: Ed25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random signing key for ``name`` (the log origin is a good name)."""
        return cls._from_key(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        """The signer for a 32-byte Ed25519 seed (RFC 8032 private key)."""
        if len(seed) != 32:
            raise ConfigurationError(f"Ed25519 seed is {len(seed)} bytes, expected 32")
        return cls._from_key(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def _from_key(cls, name: str, key: Ed25519PrivateKey) -> Signer:
        problem = _name_problem(name)
        if problem is not None:
            raise ConfigurationError(
                f"key name {name!r} {problem}; note key names must be non-empty and contain "
                "neither whitespace nor '+' (C2SP signed-note)"
            )
        return cls(name=name, key_id=key_id(name, _raw_public(key.public_key())), _key=key)

    @classmethod
    def from_private_key(cls, skey: str) -> Signer:
        """Parse ``PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>``.

        Raises :class:`~agentfence.errors.ConfigurationError` saying what is malformed
        (without repeating the secret).
        """
        if not skey.startswith(_PRIVATE_PREFIX):
            raise ConfigurationError(
                "signer key does not start with PRIVATE+KEY+; is this a verifier key?"
            )
        parts = skey[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise ConfigurationError(
                "signer key is malformed: expected PRIVATE+KEY+<name>+<key id>+<key>"
            )
        name, id_hex, key_b64 = parts
        problem = _name_problem(name)
        if problem is not None:
            raise ConfigurationError(f"signer key name {name!r} {problem}")
        if not _HEX8.fullmatch(id_hex):
            raise ConfigurationError(
                f"signer key for {name!r} has a key id that is not 8 hex digits"
            )
        try:
            key = _b64decode(key_b64)
        except ValueError as exc:
            raise ConfigurationError(
                f"signer key for {name!r} is malformed: its key part is {exc}"
            ) from exc
        if len(key) != 33 or key[0] != ALG_ED25519:
            raise ConfigurationError(
                f"signer key for {name!r} is not an Ed25519 key (algorithm byte 0x01 and a "
                "32-byte seed); only Ed25519 note keys are supported"
            )
        signer = cls.from_seed(name, key[1:])
        if signer.key_id != int(id_hex, 16):
            raise ConfigurationError(
                f"signer key for {name!r} says key id {id_hex.lower()} but its public key "
                f"hashes to {signer.key_id:08x}; the key string was altered"
            )
        return signer

    def private_key(self) -> str:
        """The signer key in its text encoding. It is a secret: store it mode 0600."""
        seed = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        encoded = _b64encode(bytes([ALG_ED25519]) + seed)
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id:08x}+{encoded}"

    @property
    def verifier(self) -> Verifier:
        """The matching verifier."""
        return Verifier.from_public_key(self.name, _raw_public(self._key.public_key()))

    @property
    def verifier_key(self) -> str:
        """The matching verifier key in its text encoding, safe to publish."""
        return self.verifier.vkey

    def sign(self, message: bytes) -> bytes:
        """A raw 64-byte Ed25519 signature over ``message`` (RFC 8032)."""
        return self._key.sign(message)

    def signature_line(self, text: str) -> str:
        """The C2SP signed-note signature line for ``text``, with its newline."""
        _check_note_text(text)
        raw = self.key_id.to_bytes(4, "big") + self.sign(text.encode("utf-8"))
        return f"{_SIG_PREFIX}{self.name} {_b64encode(raw)}\n"

    def sign_note(self, text: str) -> str:
        """The signed note for ``text``: the text, a blank line and one signature line."""
        return text + "\n" + self.signature_line(text)


def _control_problem(text: str) -> str | None:
    # C2SP signed-note, "Format": notes MUST be valid UTF-8 and MUST NOT contain ASCII
    # control characters (below U+0020) other than newline.
    for offset, ch in enumerate(text):
        if ord(ch) < 0x20 and ch != "\n":
            return f"contains control character U+{ord(ch):04X} at offset {offset}"
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return f"contains a lone surrogate at offset {offset}, which is not valid UTF-8"
    return None


def _check_note_text(text: str) -> None:
    if not text.endswith("\n"):
        raise ConfigurationError(
            "note text must end with a newline (C2SP signed-note, Format); append '\\n'"
        )
    problem = _control_problem(text)
    if problem is not None:
        raise ConfigurationError(
            f"note text {problem}; notes may contain no control character but newline "
            "(C2SP signed-note, Format)"
        )


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note: who signed, and whether a known key verified it."""

    name: str
    key_id: int
    signature: bytes = field(repr=False)
    verified: bool

    @property
    def key(self) -> str:
        """``<name>+<key id>``, how sumdb/note names a key."""
        return f"{self.name}+{self.key_id:08x}"


@dataclass(frozen=True)
class Note:
    """An opened note: its text and signatures, at least one verified by a known key."""

    text: str
    signatures: tuple[NoteSignature, ...]

    @property
    def verified_by(self) -> tuple[str, ...]:
        """``<name>+<key id>`` of each key that verified a signature."""
        return tuple(sig.key for sig in self.signatures if sig.verified)


def _malformed(what: str) -> VerificationError:
    return VerificationError(
        f"malformed signed note: {what} (C2SP signed-note); the note was altered or "
        "truncated, fetch it again from the log"
    )


def _index_verifiers(verifiers: Sequence[Verifier]) -> dict[tuple[str, int], Verifier]:
    known: dict[tuple[str, int], Verifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        other = known.get(slot)
        if other is not None and other.public_key != verifier.public_key:
            # Both the name and the 4-byte ID collide: a signature could not be attributed.
            raise ConfigurationError(
                f"two different verifier keys share the name and key id "
                f"{verifier.name}+{verifier.key_id:08x}; remove the one you do not trust"
            )
        known[slot] = verifier
    return known


def open_note(note: str | bytes, verifiers: Sequence[Verifier]) -> Note:
    """Parse a signed note strictly and verify its signatures by the known ``verifiers``.

    C2SP signed-note, "Signatures": signatures from unknown keys are ignored; every
    signature from a known key must verify; at least one must. Raises
    :class:`~agentfence.errors.VerificationError` naming what is malformed or unverified.
    """
    # 1. The note is valid UTF-8 with no control character but newline.
    if isinstance(note, bytes):
        try:
            msg = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _malformed(f"it is not valid UTF-8 (byte offset {exc.start})") from None
    else:
        msg = note
    problem = _control_problem(msg)
    if problem is not None:
        raise _malformed(f"it {problem}")
    known = _index_verifiers(verifiers)

    # 2. The text is everything up to and including the newline before the last blank
    #    line; the signature lines follow it, each ending in a newline.
    split = msg.rfind("\n\n")
    if split < 0:
        raise _malformed("there is no blank line between the text and the signature lines")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block:
        raise _malformed("there are no signature lines after the blank line")
    if not block.endswith("\n"):
        raise _malformed("the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"it has {len(lines)} signature lines, more than {MAX_SIGNATURES}")

    # 3. Each line is "— <name> <base64(key id || signature)>".
    message = text.encode("utf-8")
    signatures: list[NoteSignature] = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIG_PREFIX):
            raise _malformed(f"signature line {number} does not start with an em dash and a space")
        name, sep, encoded = line[len(_SIG_PREFIX) :].partition(" ")
        name_problem = _name_problem(name)
        if not sep or name_problem is not None:
            raise _malformed(
                f"signature line {number} has no valid key name "
                f"({'missing' if not sep else name_problem})"
            )
        try:
            raw = _b64decode(encoded)
        except ValueError as exc:
            raise _malformed(f"signature line {number} for {name!r} is {exc}") from None
        if len(raw) < 5:
            raise _malformed(
                f"signature line {number} for {name!r} is {len(raw)} bytes, too short to "
                "hold a key id and a signature"
            )
        sig_id = int.from_bytes(raw[:4], "big")
        signature = raw[4:]
        # 4. Signatures by unknown keys are kept but not trusted; a known key's signature
        #    must verify, or the whole note is rejected.
        verifier = known.get((name, sig_id))
        if verifier is not None:
            verifier.verify(signature, message)
        signatures.append(
            NoteSignature(
                name=name, key_id=sig_id, signature=signature, verified=verifier is not None
            )
        )

    # 5. At least one signature is by a known key.
    if not any(sig.verified for sig in signatures):
        signed_by = ", ".join(sorted({sig.key for sig in signatures}))
        trusted = ", ".join(sorted(f"{n}+{i:08x}" for n, i in known)) or "none"
        raise VerificationError(
            f"the note is not signed by any trusted key: it is signed by {signed_by}, and the "
            f"trusted keys are {trusted}; pass the verifier key (<name>+<key id>+<key>) of "
            "the log that wrote it"
        )
    return Note(text=text, signatures=tuple(signatures))


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint: the log's origin, tree size and RFC 6962 root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # C2SP tlog-checkpoint, "Note text": at least three non-empty lines; the origin is
        # non-empty; extension lines, if any, are non-empty.
        if not self.origin or "\n" in self.origin:
            raise ConfigurationError(
                f"checkpoint origin {self.origin!r} must be one non-empty line "
                "(C2SP tlog-checkpoint)"
            )
        if not 0 <= self.size <= _MAX_TREE_SIZE:
            raise ConfigurationError(
                f"checkpoint tree size {self.size} is outside 0..2**64-1 (C2SP tlog-checkpoint)"
            )
        if len(self.root) != _ROOT_SIZE:
            raise ConfigurationError(
                f"checkpoint root hash is {len(self.root)} bytes, expected {_ROOT_SIZE} "
                "(RFC 6962 SHA-256)"
            )
        for number, line in enumerate(self.extensions, start=1):
            if not line or "\n" in line:
                raise ConfigurationError(
                    f"checkpoint extension line {number} must be one non-empty line "
                    "(C2SP tlog-checkpoint)"
                )
        problem = _control_problem("\n".join((self.origin, *self.extensions)))
        if problem is not None:
            raise ConfigurationError(f"checkpoint text {problem} (C2SP signed-note)")

    def body(self) -> str:
        """The note text: origin, size, base64 root hash and extension lines, each + newline."""
        lines = (self.origin, str(self.size), _b64encode(self.root), *self.extensions)
        return "".join(line + "\n" for line in lines)


def _malformed_checkpoint(what: str) -> VerificationError:
    return VerificationError(
        f"malformed checkpoint: {what} (C2SP tlog-checkpoint); the checkpoint was altered "
        "or is not a checkpoint, fetch it again from the log"
    )


def parse_checkpoint_body(text: str) -> Checkpoint:
    """Parse checkpoint note text (without signatures) strictly.

    Raises :class:`~agentfence.errors.VerificationError` naming the malformed line. Only
    use this on text whose signature has been verified (:func:`open_checkpoint` does both).
    """
    if not text.endswith("\n"):
        raise _malformed_checkpoint("the text does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise _malformed_checkpoint(
            f"it has {len(lines)} lines, but needs origin, tree size and root hash"
        )
    origin, size_line, root_line, *extensions = lines
    if not origin:
        raise _malformed_checkpoint("the origin line (line 1) is empty")
    if not _TREE_SIZE.fullmatch(size_line):
        raise _malformed_checkpoint(
            f"the tree size line (line 2) {size_line!r} is not a decimal number without "
            "leading zeroes"
        )
    size = int(size_line)
    if size > _MAX_TREE_SIZE:
        raise _malformed_checkpoint(f"the tree size {size} does not fit in 64 bits")
    if not root_line:
        raise _malformed_checkpoint("the root hash line (line 3) is empty")
    try:
        root = _b64decode(root_line)
    except ValueError as exc:
        raise _malformed_checkpoint(f"the root hash line (line 3) is {exc}") from None
    if len(root) != _ROOT_SIZE:
        raise _malformed_checkpoint(
            f"the root hash (line 3) is {len(root)} bytes, expected {_ROOT_SIZE}"
        )
    for number, line in enumerate(extensions, start=4):
        if not line:
            raise _malformed_checkpoint(f"extension line {number} is empty")
    return Checkpoint(origin=origin, size=size, root=root, extensions=tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """The signed checkpoint note: the checkpoint body signed by ``signer``."""
    return signer.sign_note(checkpoint.body())


def open_checkpoint(
    note: str | bytes, verifiers: Sequence[Verifier], *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note and return the checkpoint it commits to.

    The note must be signed by at least one of ``verifiers`` (others' signatures, such as
    witness cosignatures, are ignored) and its text must be a well-formed checkpoint. If
    ``origin`` is given, the checkpoint must be for that log. Raises
    :class:`~agentfence.errors.VerificationError` saying what failed.
    """
    opened = open_note(note, verifiers)
    checkpoint = parse_checkpoint_body(opened.text)
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(
            f"checkpoint is for log {checkpoint.origin!r}, expected {origin!r}: it belongs to "
            "another log; check which log file or evidence pack you are verifying"
        )
    return checkpoint


def write_private_key(
    path: str | os.PathLike[str], signer: Signer, *, overwrite: bool = False
) -> Path:
    """Write the signer key to ``path`` with mode 0600 and return the path.

    Refuses to replace an existing file unless ``overwrite`` is true, so a signing key is
    never lost by accident. The file is created 0600 before any secret is written.
    """
    target = Path(path)
    exists_message = (
        f"key file {target} already exists; move it away first, or pass overwrite=True if you "
        "mean to replace the signing key (old checkpoints stay verifiable only with the old "
        "verifier key)"
    )
    if target.exists() and not overwrite:
        raise ConfigurationError(exists_message)
    # Write a fresh file readable by the owner only, then move it into place in one step:
    # a reader never sees a partly written key, and a crash leaves the old key intact.
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create key file {target} ({exc}); check that the directory exists and "
            "is writable"
        ) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)  # The umask may have cleared bits; set exactly.
            handle.write(signer.private_key() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temp, target)
        else:
            # A hard link never replaces an existing file, closing the race with the
            # exists() check above.
            try:
                os.link(temp, target)
            except FileExistsError:
                raise ConfigurationError(exists_message) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return target


def write_verifier_key(path: str | os.PathLike[str], verifier: Verifier) -> Path:
    """Write the verifier key to ``path`` (mode 0644: it is public) and return the path."""
    target = Path(path)
    target.write_text(verifier.vkey + "\n", encoding="utf-8")
    target.chmod(0o644)
    return target


def _read_key_line(path: Path, what: str) -> str:
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{what} file {path} does not exist; {_KEYS_HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"{what} file {path} cannot be read ({exc}); check its permissions, or {_KEYS_HINT}"
        ) from exc
    line = content.strip()
    if not line or "\n" in line:
        raise ConfigurationError(
            f"{what} file {path} is malformed: it must hold exactly one key line; {_KEYS_HINT}"
        )
    return line


def read_private_key(path: str | os.PathLike[str]) -> Signer:
    """Read a signer key file written by :func:`write_private_key`.

    Raises :class:`~agentfence.errors.ConfigurationError` naming the path if it is missing
    or malformed, and warns (:class:`~agentfence.errors.AgentfenceWarning`) if other users
    can read it.
    """
    target = Path(path)
    line = _read_key_line(target, "signing key")
    try:
        signer = Signer.from_private_key(line)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"signing key file {target} is malformed: {exc}; {_KEYS_HINT}"
        ) from exc
    mode = stat.S_IMODE(target.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        warnings.warn(
            f"signing key file {target} has mode {mode:04o}, so other users may read the "
            f"secret key; run `chmod 600 {target}`",
            AgentfenceWarning,
            stacklevel=2,
        )
    return signer


def read_verifier_key(path: str | os.PathLike[str]) -> Verifier:
    """Read a verifier key file; raises ConfigurationError naming the path if it is bad."""
    target = Path(path)
    line = _read_key_line(target, "verifier key")
    try:
        return Verifier.from_vkey(line)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"verifier key file {target} is malformed: {exc}; {_KEYS_HINT}"
        ) from exc
