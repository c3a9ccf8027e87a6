"""Tests for agentfence._signing: C2SP signed notes, checkpoints and key files."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from agentfence._merkle import EMPTY_ROOT, leaf_hash
from agentfence._signing import (
    MAX_SIGNATURES,
    Checkpoint,
    Signer,
    Verifier,
    key_id,
    open_checkpoint,
    open_note,
    parse_checkpoint_body,
    read_private_key,
    read_verifier_key,
    sign_checkpoint,
    write_private_key,
    write_verifier_key,
)
from agentfence.errors import AgentfenceWarning, ConfigurationError, VerificationError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "signed_note.json").read_text(encoding="utf-8")
)
PETER: dict[str, Any] = VECTORS["peter"]
ENOCH: dict[str, Any] = VECTORS["enoch"]
PETER_VERIFIER = Verifier.from_vkey(PETER["vkey"])
ENOCH_VERIFIER = Verifier.from_vkey(ENOCH["vkey"])
ROOT = leaf_hash(b"root")


@pytest.fixture(scope="module")
def log_signer() -> Signer:
    return Signer.generate("example.com/agentfence-test")


# Official vectors (golang.org/x/mod/sumdb/note; provenance in tests/vectors/signed_note.json).


def test_official_signer_key_parses_and_matches_its_verifier_key() -> None:
    signer = Signer.from_private_key(PETER["skey"])
    assert signer.name == "PeterNeumann"
    assert f"{signer.key_id:08x}" == PETER["key_id"]
    assert signer.verifier_key == PETER["vkey"]
    assert signer.private_key() == PETER["skey"]


def test_official_signature_is_reproduced_byte_for_byte() -> None:
    signer = Signer.from_private_key(PETER["skey"])
    assert signer.signature_line(PETER["text"]) == PETER["signature_line"]
    assert signer.sign_note(PETER["text"]) == PETER["signed_note"]


def test_official_note_opens() -> None:
    note = open_note(PETER["signed_note"], [PETER_VERIFIER])
    assert note.text == PETER["text"]
    assert note.verified_by == ("PeterNeumann+c74f20a3",)
    assert open_note(PETER["signed_note"].encode("utf-8"), [PETER_VERIFIER]) == note


def test_cosigned_note_ignores_unknown_keys_and_verifies_known_ones() -> None:
    msg = ENOCH["signed_note_with_peter"]
    only_peter = open_note(msg, [PETER_VERIFIER])
    assert only_peter.verified_by == ("PeterNeumann+c74f20a3",)
    assert [(s.key, s.verified) for s in only_peter.signatures] == [
        ("PeterNeumann+c74f20a3", True),
        ("EnochRoot+af0cfe78", False),
    ]
    both = open_note(msg, [PETER_VERIFIER, ENOCH_VERIFIER])
    assert both.verified_by == ("PeterNeumann+c74f20a3", "EnochRoot+af0cfe78")


def test_key_id_is_sha256_of_name_newline_alg_and_key() -> None:
    public = PETER_VERIFIER.public_key
    want = hashlib.sha256(b"PeterNeumann\n\x01" + public).digest()[:4]
    assert key_id("PeterNeumann", public) == int.from_bytes(want, "big") == 0xC74F20A3
    assert ENOCH_VERIFIER.key_id == 0xAF0CFE78
    assert key_id("PeterNeumann2", public) != PETER_VERIFIER.key_id


@pytest.mark.parametrize("case", VECTORS["bad_verifier_keys"], ids=lambda c: c["why"])
def test_official_bad_verifier_keys_are_rejected(case: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="verifier key for 'PeterNeumann'"):
        Verifier.from_vkey(case["vkey"])


def test_every_mangled_verifier_key_is_rejected() -> None:
    # After sumdb/note TestNewVerifier: any one-byte change or truncation must fail.
    vkey = PETER["vkey"]
    mangled = {vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :] for i in range(len(vkey))}
    mangled |= {vkey[:i] for i in range(len(vkey))} | {vkey[i:] for i in range(1, len(vkey))}
    for bad in sorted(mangled):
        with pytest.raises(ConfigurationError, match="verifier key"):
            Verifier.from_vkey(bad)


def test_every_mangled_signer_key_is_rejected() -> None:
    skey = PETER["skey"]
    for i in range(len(skey)):
        bad = skey[:i] + chr(ord(skey[i]) + 1) + skey[i + 1 :]
        with pytest.raises(ConfigurationError, match="signer key") as excinfo:
            Signer.from_private_key(bad)
        # The secret never appears in an error message.
        assert skey.rsplit("+", 1)[1] not in str(excinfo.value)


def test_verifier_key_messages() -> None:
    with pytest.raises(ConfigurationError, match="expected <name>\\+<key id>\\+<key>"):
        Verifier.from_vkey("PeterNeumann")
    with pytest.raises(ConfigurationError, match="says key id c74f20a4 but the key hashes to"):
        Verifier.from_vkey(PETER["vkey"].replace("c74f20a3", "c74f20a4"))
    with pytest.raises(ConfigurationError, match="does not start with PRIVATE\\+KEY\\+"):
        Signer.from_private_key(PETER["vkey"])


# Signing and opening.


def test_sign_and_open_round_trip(log_signer: Signer) -> None:
    text = "hello\nworld\n"
    note = log_signer.sign_note(text)
    assert note.startswith(text + "\n\u2014 example.com/agentfence-test ")
    opened = open_note(note, [log_signer.verifier])
    assert opened.text == text
    assert Verifier.from_vkey(log_signer.verifier_key) == log_signer.verifier


def test_text_may_contain_blank_lines(log_signer: Signer) -> None:
    # C2SP signed-note: the text is separated from the signatures by the last blank line.
    spec = VECTORS["spec_note_unknown_key"]
    note = log_signer.sign_note(spec["text"])
    assert open_note(note, [log_signer.verifier]).text == spec["text"]


def test_raw_signatures(log_signer: Signer) -> None:
    signature = log_signer.sign(b"msg")
    log_signer.verifier.verify(signature, b"msg")
    with pytest.raises(
        VerificationError, match=re.escape("signature by key example.com/agentfence-test")
    ):
        log_signer.verifier.verify(signature, b"msg2")


def test_signer_repr_hides_the_secret() -> None:
    signer = Signer.from_private_key(PETER["skey"])
    assert "PRIVATE" not in repr(signer)
    assert PETER["skey"].rsplit("+", 1)[1] not in repr(signer)


def test_bad_key_names_are_rejected() -> None:
    for name, problem in [("", "is empty"), ("a+b", "contains '\\+'"), ("a b", "whitespace")]:
        with pytest.raises(ConfigurationError, match=f"key name .* {problem}"):
            Signer.generate(name)
    with pytest.raises(ConfigurationError, match="contains whitespace"):
        Signer.generate("a\u00a0b")


def test_note_text_to_sign_must_be_well_formed(log_signer: Signer) -> None:
    with pytest.raises(ConfigurationError, match="must end with a newline"):
        log_signer.sign_note("abc")
    with pytest.raises(ConfigurationError, match="control character U\\+0009 at offset 1"):
        log_signer.sign_note("a\tb\n")


def test_altered_note_body_is_rejected() -> None:
    altered = PETER["signed_note"].replace("cryptography", "cryptograph")
    with pytest.raises(
        VerificationError, match="signature by key PeterNeumann\\+c74f20a3 does not verify"
    ):
        open_note(altered, [PETER_VERIFIER])


def test_altered_signature_is_rejected() -> None:
    msg = PETER["signed_note"]
    sig_start = msg.index("x08go")
    # Keep the key id (first 4 bytes = 8 base64 chars) so the known key is selected.
    at = sig_start + 20
    flipped = "A" if msg[at] != "A" else "B"
    altered = msg[:at] + flipped + msg[at + 1 :]
    with pytest.raises(VerificationError, match="PeterNeumann\\+c74f20a3 does not verify"):
        open_note(altered, [PETER_VERIFIER])
    # sumdb/note TestOpen: a signature with four base64 characters inserted.
    line = PETER["signature_line"]
    longer = PETER["text"] + "\n" + line[:60] + "ABCD" + line[60:]
    with pytest.raises(VerificationError, match="PeterNeumann\\+c74f20a3 does not verify"):
        open_note(longer, [PETER_VERIFIER])


def test_known_key_failing_rejects_the_whole_note_even_if_another_verifies() -> None:
    line = ENOCH["signature_line"]
    bad_enoch = line[:60] + "ABCD" + line[60:]
    msg = PETER["signed_note"] + bad_enoch
    with pytest.raises(VerificationError, match="EnochRoot\\+af0cfe78 does not verify"):
        open_note(msg, [PETER_VERIFIER, ENOCH_VERIFIER])
    # Unknown to this verifier set, the bad signature is ignored.
    assert open_note(msg, [PETER_VERIFIER]).verified_by == ("PeterNeumann+c74f20a3",)


def test_unknown_key_is_rejected_naming_the_signers() -> None:
    with pytest.raises(
        VerificationError,
        match=(
            "not signed by any trusted key: it is signed by PeterNeumann\\+c74f20a3, and the "
            "trusted keys are EnochRoot\\+af0cfe78; pass the verifier key"
        ),
    ):
        open_note(PETER["signed_note"], [ENOCH_VERIFIER])
    with pytest.raises(VerificationError, match="trusted keys are none; pass the verifier key"):
        open_note(PETER["signed_note"], [])


def test_same_name_other_key_is_treated_as_unknown() -> None:
    # C2SP signed-note: ignore signatures from unknown keys even if they share a name.
    impostor = Signer.generate("PeterNeumann")
    with pytest.raises(VerificationError, match="not signed by any trusted key"):
        open_note(PETER["signed_note"], [impostor.verifier])


def test_ambiguous_verifiers_are_a_configuration_error() -> None:
    other = Signer.generate("PeterNeumann").verifier
    clash = Verifier(
        name="PeterNeumann",
        key_id=PETER_VERIFIER.key_id,
        public_key=other.public_key,
        _key=other._key,
    )
    with pytest.raises(ConfigurationError, match="share the name and key id PeterNeumann"):
        open_note(PETER["signed_note"], [PETER_VERIFIER, clash])
    # The same key listed twice is fine.
    open_note(PETER["signed_note"], [PETER_VERIFIER, PETER_VERIFIER])


TEXT = PETER["text"]
SIG = PETER["signature_line"]
MALFORMED_NOTES = [
    pytest.param(TEXT, "no blank line between the text and the signature", id="text only"),
    pytest.param(TEXT + SIG, "no blank line between the text and the signature", id="no blank"),
    pytest.param(TEXT + "\n", "no signature lines after the blank line", id="no signatures"),
    pytest.param(
        TEXT + "\n" + SIG[:-1],
        "last signature line does not end with a newline",
        id="no trailing newline",
    ),
    pytest.param(
        "\x01" + TEXT + "\n" + SIG, "control character U\\+0001 at offset 0", id="control char"
    ),
    pytest.param(TEXT + "\r\n" + SIG, "control character U\\+000D", id="carriage return"),
    pytest.param(
        TEXT + "\n" + SIG + "Unexpected line.\n",
        "signature line 2 does not start with an em dash",
        id="unexpected line",
    ),
    pytest.param(
        TEXT + "\n" + "\u2014 Bad Name " + SIG.split(" ")[2],
        "signature line 1 for 'Bad' is not standard base64",
        id="space in name",
    ),
    pytest.param(
        TEXT + "\n" + "\u2014 PeterNeumann\n",
        "signature line 1 has no valid key name \\(missing\\)",
        id="no signature after name",
    ),
    pytest.param(
        TEXT + "\n" + "\u2014 a+b AAAAAAA=\n",
        "signature line 1 has no valid key name \\(contains '\\+'\\)",
        id="plus in name",
    ),
    pytest.param(
        TEXT + "\n" + "\u2014 PeterNeumann x08go/ZJ!!\n",
        "signature line 1 for 'PeterNeumann' is not standard base64",
        id="bad base64",
    ),
    pytest.param(
        TEXT + "\n" + "\u2014 PeterNeumann x08go/Y\n",
        "signature line 1 for 'PeterNeumann' is not standard base64",
        id="unpadded base64",
    ),
    pytest.param(
        TEXT + "\n" + "\u2014 PeterNeumann x08go/Z=\n",
        "signature line 1 for 'PeterNeumann' is not canonical standard base64",
        id="non-canonical base64",
    ),
    pytest.param(
        TEXT + "\n" + "\u2014 PeterNeumann x08goA==\n",
        "signature line 1 for 'PeterNeumann' is 4 bytes, too short",
        id="signature too short",
    ),
    pytest.param(
        TEXT + "\n" + "- PeterNeumann " + SIG.split(" ")[2],
        "signature line 1 does not start with an em dash",
        id="hyphen instead of em dash",
    ),
    pytest.param(
        TEXT + "\n" + SIG * (MAX_SIGNATURES + 1),
        "it has 101 signature lines, more than 100",
        id="too many signatures",
    ),
]


@pytest.mark.parametrize(("msg", "message"), MALFORMED_NOTES)
def test_malformed_notes_are_rejected(msg: str, message: str) -> None:
    with pytest.raises(VerificationError, match=f"malformed signed note: .*{message}"):
        open_note(msg, [PETER_VERIFIER])


def test_invalid_utf8_is_rejected() -> None:
    msg = b"\xff" + PETER["signed_note"].encode("utf-8")
    with pytest.raises(VerificationError, match="not valid UTF-8 \\(byte offset 0\\)"):
        open_note(msg, [PETER_VERIFIER])
    with pytest.raises(VerificationError, match="lone surrogate at offset 0"):
        open_note("\ud800" + PETER["signed_note"], [PETER_VERIFIER])


# Checkpoints.


def test_checkpoint_body_format() -> None:
    checkpoint = Checkpoint(origin="example.com/log", size=3, root=EMPTY_ROOT)
    assert checkpoint.body() == (
        "example.com/log\n3\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    )
    with_ext = Checkpoint(origin="o", size=0, root=EMPTY_ROOT, extensions=("ext one", "2"))
    assert with_ext.body().endswith("=\next one\n2\n")
    assert parse_checkpoint_body(with_ext.body()) == with_ext


def test_checkpoint_round_trip(log_signer: Signer) -> None:
    checkpoint = Checkpoint(origin=log_signer.name, size=20852163, root=ROOT)
    note = sign_checkpoint(checkpoint, log_signer)
    assert note.startswith(checkpoint.body() + "\n\u2014 ")
    assert open_checkpoint(note, [log_signer.verifier]) == checkpoint
    assert open_checkpoint(note, [log_signer.verifier], origin=log_signer.name) == checkpoint


def test_checkpoint_for_another_log_is_rejected(log_signer: Signer) -> None:
    note = sign_checkpoint(Checkpoint(origin="other.example/log", size=1, root=ROOT), log_signer)
    with pytest.raises(
        VerificationError,
        match=re.escape(
            "checkpoint is for log 'other.example/log', expected 'example.com/agentfence-test'"
        ),
    ):
        open_checkpoint(note, [log_signer.verifier], origin=log_signer.name)


def test_spec_checkpoint_vector() -> None:
    spec = VECTORS["spec_checkpoint_unknown_key"]
    text = spec["signed_note"].split("\n\n")[0] + "\n"
    checkpoint = parse_checkpoint_body(text)
    assert checkpoint.origin == spec["origin"]
    assert checkpoint.size == spec["size"]
    assert checkpoint.root == base64.b64decode(spec["root_base64"])
    assert checkpoint.body() == text
    # Its key is not published: the note parses, but no trusted key signed it.
    with pytest.raises(
        VerificationError,
        match=re.escape(
            "not signed by any trusted key: it is signed by example.com/behind-the-sofa+"
        ),
    ):
        open_checkpoint(spec["signed_note"], [PETER_VERIFIER])


def test_altered_checkpoint_is_rejected(log_signer: Signer) -> None:
    note = sign_checkpoint(Checkpoint(origin=log_signer.name, size=10, root=ROOT), log_signer)
    altered = note.replace("\n10\n", "\n11\n", 1)
    with pytest.raises(VerificationError, match="does not verify: the signed text or the"):
        open_checkpoint(altered, [log_signer.verifier])


ROOT_LINE = base64.b64encode(ROOT).decode()
MALFORMED_BODIES = [
    pytest.param("o\n1\n" + ROOT_LINE, "does not end with a newline", id="no final newline"),
    pytest.param("o\n1\n", "it has 2 lines, but needs origin, tree size and root", id="no root"),
    pytest.param("o\n", "it has 1 lines", id="origin only"),
    pytest.param(f"\n1\n{ROOT_LINE}\n", "origin line \\(line 1\\) is empty", id="empty origin"),
    pytest.param(f"o\n012\n{ROOT_LINE}\n", "line 2\\) '012' is not a decimal", id="leading 0"),
    pytest.param(f"o\n-1\n{ROOT_LINE}\n", "line 2\\) '-1' is not a decimal", id="negative"),
    pytest.param(f"o\n+1\n{ROOT_LINE}\n", "line 2\\) '\\+1' is not a decimal", id="plus sign"),
    pytest.param(f"o\n 1\n{ROOT_LINE}\n", "line 2\\) ' 1' is not a decimal", id="space"),
    pytest.param(f"o\n1.0\n{ROOT_LINE}\n", "line 2\\) '1.0' is not a decimal", id="fraction"),
    pytest.param(f"o\n\n{ROOT_LINE}\n", "line 2\\) '' is not a decimal", id="empty size"),
    pytest.param(
        f"o\n\uff11\n{ROOT_LINE}\n", "line 2\\) '\uff11' is not a decimal", id="non-ASCII digit"
    ),
    pytest.param(f"o\n{2**64}\n{ROOT_LINE}\n", "does not fit in 64 bits", id="size overflow"),
    pytest.param("o\n1\n\n", "root hash line \\(line 3\\) is empty", id="empty root"),
    pytest.param("o\n1\n!!!!\n", "root hash line \\(line 3\\) is not standard base64", id="bad"),
    pytest.param(
        f"o\n1\n{ROOT_LINE.rstrip('=')}\n",
        "root hash line \\(line 3\\) is not standard base64",
        id="unpadded root",
    ),
    pytest.param(
        "o\n1\n" + base64.b64encode(ROOT[:31]).decode() + "\n",
        "root hash \\(line 3\\) is 31 bytes, expected 32",
        id="short root",
    ),
    pytest.param(f"o\n1\n{ROOT_LINE}\n\next\n", "extension line 4 is empty", id="empty extension"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED_BODIES)
def test_malformed_checkpoint_bodies_are_rejected(text: str, message: str) -> None:
    with pytest.raises(VerificationError, match=f"malformed checkpoint: .*{message}"):
        parse_checkpoint_body(text)


def test_malformed_checkpoint_signed_by_a_trusted_key_is_still_rejected(
    log_signer: Signer,
) -> None:
    note = log_signer.sign_note(f"{log_signer.name}\n012\n{ROOT_LINE}\n")
    with pytest.raises(VerificationError, match="'012' is not a decimal number"):
        open_checkpoint(note, [log_signer.verifier])
    missing_root = log_signer.sign_note(f"{log_signer.name}\n12\n")
    with pytest.raises(VerificationError, match="it has 2 lines"):
        open_checkpoint(missing_root, [log_signer.verifier])


def test_checkpoint_values_are_checked_on_construction() -> None:
    with pytest.raises(ConfigurationError, match="origin '' must be one non-empty line"):
        Checkpoint(origin="", size=0, root=EMPTY_ROOT)
    with pytest.raises(ConfigurationError, match="tree size -1 is outside"):
        Checkpoint(origin="o", size=-1, root=EMPTY_ROOT)
    with pytest.raises(ConfigurationError, match="root hash is 3 bytes, expected 32"):
        Checkpoint(origin="o", size=0, root=b"abc")
    with pytest.raises(ConfigurationError, match="extension line 1 must be one non-empty line"):
        Checkpoint(origin="o", size=0, root=EMPTY_ROOT, extensions=("",))
    with pytest.raises(ConfigurationError, match="control character U\\+0009"):
        Checkpoint(origin="o\tx", size=0, root=EMPTY_ROOT)


# Key files.


def test_private_key_file_is_written_0600_and_read_back(tmp_path: Path) -> None:
    signer = Signer.from_private_key(PETER["skey"])
    path = write_private_key(tmp_path / "log.key", signer)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8") == PETER["skey"] + "\n"
    assert read_private_key(path).private_key() == PETER["skey"]
    assert [p.name for p in tmp_path.iterdir()] == ["log.key"]  # no temporary file left


def test_private_key_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = write_private_key(tmp_path / "log.key", Signer.generate("n"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_existing_private_key_is_not_overwritten(tmp_path: Path) -> None:
    path = write_private_key(tmp_path / "log.key", Signer.from_private_key(PETER["skey"]))
    with pytest.raises(ConfigurationError, match=f"key file {path} already exists"):
        write_private_key(path, Signer.generate("other"))
    assert read_private_key(path).name == "PeterNeumann"
    write_private_key(path, Signer.generate("other"), overwrite=True)
    assert read_private_key(path).name == "other"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["log.key"]


def test_missing_key_file_names_the_path_and_the_command(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(
        ConfigurationError,
        match=f"signing key file {missing} does not exist; run `agentfence keys generate`",
    ):
        read_private_key(missing)
    with pytest.raises(
        ConfigurationError,
        match=f"verifier key file {missing} does not exist; run `agentfence keys generate`",
    ):
        read_verifier_key(missing)


def test_malformed_key_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    path.write_text("PRIVATE+KEY+garbage\n", encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(
        ConfigurationError,
        match=f"signing key file {path} is malformed: .*run `agentfence keys generate`",
    ):
        read_private_key(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="must hold exactly one key line"):
        read_private_key(path)
    path.write_text(PETER["vkey"] + "\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="does not start with PRIVATE\\+KEY\\+"):
        read_private_key(path)


def test_readable_private_key_file_warns(tmp_path: Path) -> None:
    path = write_private_key(tmp_path / "log.key", Signer.generate("n"))
    path.chmod(0o644)
    with pytest.warns(AgentfenceWarning, match=f"mode 0644.*chmod 600 {path}"):
        read_private_key(path)


def test_verifier_key_file_round_trip(tmp_path: Path) -> None:
    path = write_verifier_key(tmp_path / "log.pub", PETER_VERIFIER)
    assert path.read_text(encoding="utf-8") == PETER["vkey"] + "\n"
    assert read_verifier_key(path) == PETER_VERIFIER
    path.write_text("PeterNeumann+c74f20a3+AAAA\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=f"verifier key file {path} is malformed"):
        read_verifier_key(path)


def test_private_key_in_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "log.key"
    with pytest.raises(
        ConfigurationError, match=re.escape(f"cannot create key file {target}") + ".*directory"
    ):
        write_private_key(target, Signer.generate("n"))
    assert not (tmp_path / "missing").exists()
