"""BearerTokenResolver: every way a bearer token can be bad is a refusal that says why."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agentfence import (
    AgentfenceWarning,
    BearerToken,
    BearerTokenResolver,
    ConfigurationError,
    EntityRef,
    PrincipalRejected,
)
from agentfence.decision import parents_of
from tests.tokens import AUDIENCE, ISSUER, Provider, b64, hmac_token, serve_jwks, unsigned_token


@pytest.fixture(scope="module")
def idp() -> Provider:
    return Provider()


@pytest.fixture
def jwks_file(idp: Provider, tmp_path: Path) -> Path:
    return idp.write_jwks(tmp_path / "jwks.json")


@pytest.fixture
def resolver(jwks_file: Path) -> BearerTokenResolver:
    return BearerTokenResolver(issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks_file)


def rejected(resolver: BearerTokenResolver, token: str) -> PrincipalRejected:
    with pytest.raises(PrincipalRejected) as info:
        resolver.verify(token)
    # Whatever went wrong, the token itself is never in the error.
    assert token not in str(info.value)
    assert token.split(".")[-1] not in str(info.value) or not token.split(".")[-1]
    return info.value


# --- what a good token gives --------------------------------------------------------------


@pytest.mark.parametrize("kid", ["rsa-1", "ed-1", "ec-1"])
def test_token_from_each_key_type_maps_subject_and_groups(
    idp: Provider, resolver: BearerTokenResolver, kid: str
) -> None:
    verified = resolver.verify(idp.token(kid, groups=["support", "finance"]))
    assert verified.principal == EntityRef("User", "alice")
    assert verified.groups == (EntityRef("Group", "finance"), EntityRef("Group", "support"))
    assert (verified.issuer, verified.key_id, verified.token_id) == (ISSUER, kid, "tok-1")
    assert verified.as_principal() == {
        "type": "User",
        "id": "alice",
        "parents": [{"type": "Group", "id": "finance"}, {"type": "Group", "id": "support"}],
    }
    # The fence reads the parents back from that form.
    assert parents_of(verified.as_principal()) == verified.groups


def test_resolver_reads_the_token_from_the_config_with_or_without_bearer(
    idp: Provider, resolver: BearerTokenResolver
) -> None:
    token = idp.token()
    for given in (token, f"Bearer {token}"):
        principal = resolver({"configurable": {"agentfence_token": BearerToken(given)}})
        assert principal["id"] == "alice"
    assert token not in repr(BearerToken(token)) and token not in str(BearerToken(token))


def test_plain_string_token_in_the_config_works_but_warns(
    idp: Provider, resolver: BearerTokenResolver
) -> None:
    with pytest.warns(AgentfenceWarning, match=r"copies into every checkpoint's metadata"):
        principal = resolver({"configurable": {"agentfence_token": idp.token()}})
    assert principal["id"] == "alice"


def test_claims_mapping_is_configurable(idp: Provider, jwks_file: Path) -> None:
    resolver = BearerTokenResolver(
        issuer=ISSUER,
        audience=[AUDIENCE, "other"],
        jwks_file=jwks_file,
        principal_claim="email",
        principal_type="Employee",
        groups_claim="realm_access.roles",
        group_type="Role",
        token=lambda config: config["metadata"]["auth"],
    )
    token = idp.token(email="alice@acme.test", realm_access={"roles": ["payer"]}, groups=None)
    principal = resolver({"metadata": {"auth": token}})
    assert principal == {
        "type": "Employee",
        "id": "alice@acme.test",
        "parents": [{"type": "Role", "id": "payer"}],
    }


def test_token_without_groups_claim_has_no_groups(
    idp: Provider, resolver: BearerTokenResolver
) -> None:
    assert resolver.verify(idp.token(groups=None)).groups == ()


def test_expired_token_within_leeway_is_accepted(idp: Provider, jwks_file: Path) -> None:
    resolver = BearerTokenResolver(
        issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks_file, leeway=120
    )
    token = idp.token(exp=int(time.time()) - 30)
    assert resolver.verify(token).principal.id == "alice"


# --- the attacks ----------------------------------------------------------------------------


def test_alg_none_token_is_denied(idp: Provider, resolver: BearerTokenResolver) -> None:
    error = rejected(resolver, unsigned_token(idp.claims(groups=["admin"])))
    assert error.reason == (
        "the bearer token is not signed with an allowed algorithm (RS256, ES256, EdDSA)"
    )
    assert "alg='none'" in error.details


def test_hs256_token_using_public_key_as_secret_is_denied(
    idp: Provider, resolver: BearerTokenResolver
) -> None:
    # The key-confusion attack: the public key (known to all) used as an HMAC secret.
    for secret in (idp.public_pem(), json.dumps(idp.jwks()["keys"][0]).encode()):
        error = rejected(resolver, hmac_token(idp.claims(groups=["admin"]), secret))
        assert error.reason.startswith("the bearer token is not signed with an allowed algorithm")
        assert "alg='HS256'" in error.details


def test_token_signed_by_unknown_key_is_denied(resolver: BearerTokenResolver) -> None:
    stranger = Provider()
    stranger.keys["rsa-9"] = stranger.keys["rsa-1"]
    error = rejected(resolver, stranger.token("rsa-9"))
    assert error.reason == "the bearer token is signed by a key the trusted key set does not hold"
    assert "kid='rsa-9'" in error.details


def test_token_signed_by_another_key_under_a_trusted_kid_is_denied(
    resolver: BearerTokenResolver,
) -> None:
    # Same kid as a trusted key, but the attacker's own private key.
    error = rejected(resolver, Provider().token("rsa-1"))
    assert error.reason == (
        "the bearer token's signature does not verify (tampered, or another key)"
    )


def test_tampered_token_is_denied(idp: Provider, resolver: BearerTokenResolver) -> None:
    header, _, signature = idp.token().split(".")
    claims = idp.claims(groups=["finance", "admin"])
    forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    error = rejected(resolver, forged)
    assert error.reason.startswith("the bearer token's signature does not verify")
    assert "sub='alice'" in error.details and "jti='tok-1'" in error.details


def test_token_whose_alg_is_not_its_keys_is_denied(
    idp: Provider, resolver: BearerTokenResolver
) -> None:
    # Signed with RS256 but naming the EC key: the key decides the algorithm, not the header.
    key, _ = idp.keys["rsa-1"]
    import jwt

    token = jwt.encode(idp.claims(), key, algorithm="RS256", headers={"kid": "ec-1"})
    error = rejected(resolver, token)
    assert error.reason == "the bearer token's algorithm is not the algorithm of the key it names"


def test_expired_token_is_denied(idp: Provider, resolver: BearerTokenResolver) -> None:
    error = rejected(resolver, idp.token(exp=int(time.time()) - 30))
    assert error.reason == "the bearer token has expired"


def test_token_not_valid_yet_is_denied(idp: Provider, resolver: BearerTokenResolver) -> None:
    error = rejected(resolver, idp.token(nbf=int(time.time()) + 600))
    assert error.reason == "the bearer token is not valid yet (nbf or iat is in the future)"


def test_token_for_another_audience_is_denied(idp: Provider, resolver: BearerTokenResolver) -> None:
    error = rejected(resolver, idp.token(aud="some-other-service"))
    assert error.reason == "the bearer token is for another audience"


def test_token_from_another_issuer_is_denied(idp: Provider, resolver: BearerTokenResolver) -> None:
    error = rejected(resolver, idp.token(iss="https://evil.test"))
    assert error.reason == "the bearer token is from an issuer that is not trusted"
    assert "iss='https://evil.test'" in error.details


@pytest.mark.parametrize("claim", ["exp", "aud", "iss"])
def test_token_without_a_required_claim_is_denied(
    idp: Provider, resolver: BearerTokenResolver, claim: str
) -> None:
    error = rejected(resolver, idp.token(**{claim: None}))
    assert error.reason == f"the bearer token lacks the required {claim!r} claim"


def test_extra_required_claim_is_enforced(idp: Provider, jwks_file: Path) -> None:
    resolver = BearerTokenResolver(
        issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks_file, required_claims=["jti"]
    )
    error = rejected(resolver, idp.token(jti=None))
    assert error.reason == "the bearer token lacks the required 'jti' claim"


def test_token_without_kid_is_denied(idp: Provider, resolver: BearerTokenResolver) -> None:
    key, _ = idp.keys["rsa-1"]
    import jwt

    error = rejected(resolver, jwt.encode(idp.claims(), key, algorithm="RS256"))
    assert error.reason == "the bearer token names no signing key ('kid')"


def test_token_without_subject_is_denied(idp: Provider, resolver: BearerTokenResolver) -> None:
    error = rejected(resolver, idp.token(sub=None))
    assert error.reason == "the bearer token has no string 'sub' claim to name the principal by"


def test_groups_claim_that_is_not_a_list_of_names_is_denied(
    idp: Provider, resolver: BearerTokenResolver
) -> None:
    for groups in ("finance", [["finance"]], [""]):
        error = rejected(resolver, idp.token(groups=groups))
        assert error.reason == "the bearer token's 'groups' claim is not a list of group names"


def test_signed_token_with_malformed_claims_is_denied(
    idp: Provider, resolver: BearerTokenResolver
) -> None:
    for claims in ({"exp": "tomorrow"}, {"aud": {"not": "a string"}}, {"nbf": [1]}):
        error = rejected(resolver, idp.token(**claims))
        assert error.reason in (
            "the bearer token is not valid",
            "the bearer token is for another audience",
        ), claims


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 20_000])
def test_malformed_token_is_denied(resolver: BearerTokenResolver, token: str) -> None:
    with pytest.raises(PrincipalRejected) as info:
        resolver.verify(token)
    assert info.value.reason in (
        "the bearer token is malformed (not a signed JWT)",
        "the bearer token is longer than 16384 characters",
    )


def test_run_without_a_token_is_denied(resolver: BearerTokenResolver) -> None:
    with pytest.raises(PrincipalRejected, match=r"no bearer token: .*agentfence_token"):
        resolver({"configurable": {"agentfence_principal": 'User::"admin"'}})


# --- the key set from a URL ----------------------------------------------------------------


def test_jwks_url_is_fetched_once_and_again_for_a_rotated_key(idp: Provider) -> None:
    document = idp.jwks()
    rotated = Provider()
    with serve_jwks(document) as (url, requested):
        resolver = BearerTokenResolver(
            issuer=ISSUER, audience=AUDIENCE, jwks_url=url, jwks_refetch_seconds=0
        )
        assert resolver.verify(idp.token("ed-1")).principal.id == "alice"
        assert resolver.verify(idp.token("rsa-1")).principal.id == "alice"
        assert len(requested) == 1  # cached
        # The provider rotates in a new key: an unknown kid fetches the set again.
        new_key = rotated.jwks()["keys"][1]
        document["keys"].append({**new_key, "kid": "ed-2"})
        rotated.keys["ed-2"] = rotated.keys["ed-1"]
        assert resolver.verify(rotated.token("ed-2")).key_id == "ed-2"
        assert len(requested) == 2
        forger = Provider()
        forger.keys["ed-2"] = forger.keys["ed-1"]
        error = rejected(resolver, forger.token("ed-2"))  # a rotated kid, a forged signature
        assert error.reason.startswith("the bearer token's signature does not verify")


def test_unreachable_jwks_url_denies(idp: Provider) -> None:
    with serve_jwks(idp.jwks()) as (url, _):
        pass  # the server is gone once the block ends
    resolver = BearerTokenResolver(issuer=ISSUER, audience=AUDIENCE, jwks_url=url, timeout=2)
    error = rejected(resolver, idp.token())
    assert error.reason == (
        "the trusted key set could not be fetched; the token cannot be verified"
    )


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["RS256", "HS512"], []])
def test_unsafe_algorithms_cannot_be_allowed(jwks_file: Path, algorithms: list[str]) -> None:
    with pytest.raises(ConfigurationError, match="cannot be allowed: a bearer token must be"):
        BearerTokenResolver(
            issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks_file, algorithms=algorithms
        )


def test_exactly_one_key_source_is_required(jwks_file: Path) -> None:
    for kwargs in ({}, {"jwks_file": jwks_file, "jwks_url": "http://127.0.0.1:1/jwks.json"}):
        with pytest.raises(ConfigurationError, match="exactly one of jwks_url="):
            BearerTokenResolver(issuer=ISSUER, audience=AUDIENCE, **kwargs)  # type: ignore[arg-type]


def test_unusable_jwks_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text('{"keys": "no"}', encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"jwks\.json is not a usable JWKS"):
        BearerTokenResolver(issuer=ISSUER, audience=AUDIENCE, jwks_file=path)


def test_parents_of_rejects_a_malformed_list() -> None:
    with pytest.raises(ValueError, match="'parents' must be a list of entities"):
        parents_of({"type": "User", "id": "a", "parents": 'Group::"finance"'})
    assert parents_of({"type": "User", "id": "a", "parents": ["finance"]}) == (
        EntityRef("Group", "finance"),
    )
    assert parents_of('User::"a"') == ()


# --- a verified token is remembered, never past its expiry ------------------------------------


def test_a_verified_token_is_not_checked_again_on_each_call(
    idp: Provider, resolver: BearerTokenResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = idp.token()
    first = resolver.verify(token)
    checks: list[str] = []
    real = resolver._verify
    monkeypatch.setattr(resolver, "_verify", lambda t: checks.append(t) or real(t))
    assert resolver.verify("Bearer " + token) == first
    assert checks == []  # remembered: the signature is not checked again
    resolver.verify(idp.token(sub="sam"))
    assert len(checks) == 1  # another token is


def test_a_remembered_token_is_still_refused_once_it_expires(
    idp: Provider, resolver: BearerTokenResolver
) -> None:
    token = idp.token(exp=int(time.time()) + 1)
    assert resolver.verify(token).principal == EntityRef("User", "alice")
    time.sleep(2.1)  # past its exp (whole seconds): remembered or not, it must be refused
    assert rejected(resolver, token).reason == "the bearer token has expired"


def test_tampered_copy_of_a_remembered_token_is_denied(
    idp: Provider, resolver: BearerTokenResolver
) -> None:
    token = idp.token()
    resolver.verify(token)
    head, body, signature = token.split(".")
    claims = json.loads(base64_decode(body))
    forged_body = b64(json.dumps({**claims, "sub": "mallory"}).encode())
    assert "signature" in rejected(resolver, f"{head}.{forged_body}.{signature}").reason


def test_remembering_can_be_turned_off(
    idp: Provider, jwks_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = BearerTokenResolver(
        issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks_file, verified_cache_seconds=0
    )
    token = idp.token()
    resolver.verify(token)
    checks: list[str] = []
    real = resolver._verify
    monkeypatch.setattr(resolver, "_verify", lambda t: checks.append(t) or real(t))
    resolver.verify(token)
    assert checks == [token]


def base64_decode(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
