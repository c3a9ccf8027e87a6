"""Verified principals: who a run acts for, from a signed bearer token (an OAuth 2 / OIDC JWT).

:class:`BearerTokenResolver` verifies a JWT against a JSON Web Key Set (a file, or a URL it
fetches and caches), checks its issuer, audience, expiry and required claims, and maps its
claims to a Cedar principal and the groups it is in, so that policies can say
``principal in Group::"finance"``. Pass it as ``Fence(..., principal_resolver=...)``; it reads
the token from ``configurable["agentfence_token"]`` (or from a callable you give). Outside
LangGraph, :meth:`BearerTokenResolver.verify` takes the token string itself.

A token that is missing, malformed, unsigned (``alg: none``), signed with an algorithm not
allowed, by a key the set does not hold, or whose signature, issuer, audience or validity
window does not check out raises :class:`~agentfence.errors.PrincipalRejected`: the fence
denies the call with a reason that says why and the tool never runs. The token is never put
in an error, the decision log or a span; only its ``iss``, ``sub``, ``kid`` and ``jti`` are.

PyJWT (``pip install 'agentfence[jwt]'``) is imported here only, when a resolver is built.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentfence.config import CONFIG_TOKEN
from agentfence.decision import EntityRef
from agentfence.errors import AgentfenceWarning, ConfigurationError, PrincipalRejected

if TYPE_CHECKING:
    import jwt

__all__ = ["ASYMMETRIC_ALGORITHMS", "BearerToken", "BearerTokenResolver", "VerifiedToken"]

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""The JWS algorithms (RFC 7518 section 3, RFC 8037) a resolver may allow: signatures that a
public key verifies. ``none`` and the HMAC family (``HS256``, ...) are never allowed: a JWKS
holds public keys, and an HMAC "verified" with a public key proves nothing."""

MAX_TOKEN_CHARS = 16 * 1024
_CACHED_TOKENS = 1024  # verified tokens remembered at most (the oldest go first)
"""A longer bearer token is refused before it is parsed."""

_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*$")
_BEARER = re.compile(r"^bearer\s+", re.IGNORECASE)
_SHOWN = 80  # characters of an unverified claim value shown in details


@dataclass(frozen=True)
class BearerToken:
    """A bearer token in a run's config: ``configurable={"agentfence_token": BearerToken(t)}``.

    Wrapped, the token stays out of LangGraph's checkpoints (a checkpointer copies the plain
    string and number values of ``configurable`` into each checkpoint's metadata, so a bare
    string token would be stored with every step) and out of reprs and tracebacks.
    """

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "BearerToken(...)"


@dataclass(frozen=True)
class VerifiedToken:
    """What a verified bearer token says: the principal, its groups and the token's ids.

    ``claims`` are all the verified claims. ``as_principal()`` is the form a
    :class:`~agentfence.decision.PrincipalResolver` returns and ``Fence.decide`` accepts.
    """

    principal: EntityRef
    groups: tuple[EntityRef, ...]
    issuer: str
    key_id: str
    token_id: str | None
    expires_at: int
    claims: Mapping[str, Any] = field(repr=False)

    def as_principal(self) -> dict[str, Any]:
        """``{"type": ..., "id": ..., "parents": [{"type": ..., "id": ...}, ...]}``."""
        return {
            "type": self.principal.type,
            "id": self.principal.id,
            "parents": [g.as_json() for g in self.groups],
        }


class BearerTokenResolver:
    """A principal resolver that verifies a JWT bearer token against a JWKS.

    Give exactly one of ``jwks_url`` (fetched with ``jwt.PyJWKClient``, cached for
    ``jwks_cache_seconds`` and fetched again when a token names a key id the cache lacks, at
    most once per ``jwks_refetch_seconds`` so that made-up key ids cannot flood the provider) and
    ``jwks_file`` (read once with ``jwt.PyJWKSet``). ``issuer`` is the one issuer trusted and
    ``audience`` the audience (or audiences) this fence serves. ``algorithms`` are the JWS
    algorithms allowed (asymmetric only, see :data:`ASYMMETRIC_ALGORITHMS`); a token must name
    its key with ``kid``, and that key's algorithm must be the token's.

    ``exp``, ``iss`` and ``aud`` are always required; ``required_claims`` adds more (``iat``,
    ``nbf``, ``jti``). ``leeway`` (seconds) tolerates clock skew on ``exp``, ``nbf`` and
    ``iat``. The principal is ``principal_type::"<principal_claim>"``; its groups are the
    strings of the list at ``groups_claim`` (a dotted path such as ``realm_access.roles``;
    ``None`` for no groups), each a ``group_type`` entity. The token comes from
    ``configurable["agentfence_token"]``, best as a :class:`BearerToken` (a plain string
    works but warns: checkpointers store it), unless ``token`` is given: a callable taking
    the run's config and returning the token or ``None``. A ``Bearer`` prefix is dropped.

    A token that verified is remembered (by its SHA-256) for ``verified_cache_seconds``, at
    most as long as the key set is, so each call of a run does not check its signature again;
    its expiry is still checked on every use. ``0`` verifies every time.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Sequence[str],
        jwks_url: str | None = None,
        jwks_file: str | Path | None = None,
        algorithms: Sequence[str] = ("RS256", "ES256", "EdDSA"),
        leeway: float = 0.0,
        required_claims: Sequence[str] = (),
        principal_claim: str = "sub",
        principal_type: str = "User",
        groups_claim: str | None = "groups",
        group_type: str = "Group",
        token: Callable[[Mapping[str, Any]], str | None] | None = None,
        jwks_cache_seconds: float = 300.0,
        jwks_refetch_seconds: float = 30.0,
        timeout: float = 10.0,
        verified_cache_seconds: float = 60.0,
    ) -> None:
        pyjwt = _import_jwt()
        if (jwks_url is None) == (jwks_file is None):
            raise ConfigurationError(
                "BearerTokenResolver needs exactly one of jwks_url= (the identity provider's "
                "JWKS endpoint) and jwks_file= (a JWKS JSON file)"
            )
        allowed = tuple(algorithms)
        unsafe = sorted(set(allowed) - ASYMMETRIC_ALGORITHMS)
        if unsafe or not allowed:
            raise ConfigurationError(
                f"algorithms {unsafe or '(none given)'} cannot be allowed: a bearer token must "
                "be signed with a public-key algorithm, one or more of "
                f"{', '.join(sorted(ASYMMETRIC_ALGORITHMS))}"
            )
        if not isinstance(issuer, str) or not issuer:
            raise ConfigurationError("issuer= must be the trusted issuer's identifier (its 'iss')")
        audiences = [audience] if isinstance(audience, str) else list(audience)
        if not audiences or not all(isinstance(a, str) and a for a in audiences):
            raise ConfigurationError("audience= must name the audience (or audiences) served")
        for name, value in (("principal_type", principal_type), ("group_type", group_type)):
            if not _TYPE_NAME.match(value):
                raise ConfigurationError(f"{name}={value!r} is not a Cedar entity type name")
        if leeway < 0:
            raise ConfigurationError(f"leeway= must be zero or more seconds, got {leeway}")
        if verified_cache_seconds < 0:
            raise ConfigurationError(
                "verified_cache_seconds= must be zero or more seconds, got "
                f"{verified_cache_seconds}"
            )
        self._cache_seconds = min(verified_cache_seconds, jwks_cache_seconds)
        self._verified: OrderedDict[bytes, tuple[VerifiedToken, float]] = OrderedDict()
        self._jwt = pyjwt
        self._issuer = issuer
        self._audience: str | list[str] = audience if isinstance(audience, str) else audiences
        self._algorithms = allowed
        self._leeway = leeway
        self._required = sorted({"exp", "iss", "aud", *required_claims})
        self._principal_claim = principal_claim
        self._principal_type = principal_type
        self._groups_path = tuple(groups_claim.split(".")) if groups_claim else ()
        self._group_type = group_type
        self._token = token
        self._lock = threading.Lock()
        self._client: jwt.PyJWKClient | None = None
        self._keys: jwt.PyJWKSet | None = None
        if jwks_url is not None:
            self._client = pyjwt.PyJWKClient(
                jwks_url,
                cache_keys=False,
                lifespan=jwks_cache_seconds,
                cooldown_duration=jwks_refetch_seconds,
                timeout=timeout,
            )
        else:
            path = Path(str(jwks_file))
            try:
                self._keys = pyjwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigurationError(f"cannot read the JWKS file {path}: {exc}") from exc
            except (ValueError, pyjwt.PyJWKSetError, pyjwt.PyJWKError) as exc:
                raise ConfigurationError(
                    f"{path} is not a usable JWKS (a JSON object with a 'keys' list of public "
                    f"JWKs): {exc}"
                ) from exc

    def __call__(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The principal of a run, from the bearer token in its config (a PrincipalResolver).

        Raises :class:`PrincipalRejected` when the run has no token or its token fails.
        """
        if self._token is not None:
            token = self._token(config)
        else:
            configurable = config.get("configurable") or {}
            token = configurable.get(CONFIG_TOKEN) if isinstance(configurable, Mapping) else None
            if isinstance(token, str) and token:
                # Works, but LangGraph stores plain strings of configurable in checkpoints.
                warnings.warn(
                    f"configurable[{CONFIG_TOKEN!r}] is a plain string, which a LangGraph "
                    "checkpointer copies into every checkpoint's metadata; pass "
                    "BearerToken(token) instead",
                    AgentfenceWarning,
                    stacklevel=2,
                )
        if isinstance(token, BearerToken):
            token = token.value
        if token is None or token == "":
            raise PrincipalRejected(
                "no bearer token: the run did not carry one; set "
                f"configurable[{CONFIG_TOKEN!r}] to BearerToken(<the caller's access token>)"
            )
        return self.verify(token).as_principal()

    def verify(self, token: str | BearerToken) -> VerifiedToken:
        """Verify one bearer token (with or without its ``Bearer`` prefix) and map its claims.

        Returns the :class:`VerifiedToken`, or raises :class:`PrincipalRejected` saying why.
        """
        if isinstance(token, BearerToken):
            token = token.value
        # 1. A string of bounded size, the compact JWS serialization (RFC 7515 section 7.1).
        if not isinstance(token, str):
            raise PrincipalRejected("the bearer token is not a string")
        token = _BEARER.sub("", token.strip())
        if len(token) > MAX_TOKEN_CHARS:
            raise PrincipalRejected(f"the bearer token is longer than {MAX_TOKEN_CHARS} characters")
        digest = hashlib.sha256(token.encode()).digest()
        remembered = self._remembered(digest)
        if remembered is not None:
            return remembered
        verified = self._verify(token)
        if self._cache_seconds > 0:
            with self._lock:
                self._verified[digest] = (verified, time.monotonic() + self._cache_seconds)
                while len(self._verified) > _CACHED_TOKENS:
                    self._verified.popitem(last=False)
        return verified

    def _remembered(self, digest: bytes) -> VerifiedToken | None:
        """A token verified a moment ago, unless its time there or its own expiry is up."""
        with self._lock:
            found = self._verified.get(digest)
            if found is None:
                return None
            verified, until = found
            if time.monotonic() >= until or time.time() >= verified.expires_at + self._leeway:
                del self._verified[digest]  # verified again: an expired one is refused there
                return None
            return verified

    def _verify(self, token: str) -> VerifiedToken:
        jwt = self._jwt
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise PrincipalRejected("the bearer token is malformed (not a signed JWT)") from None
        details = _details(jwt, token, header)
        # 2. The algorithm is one allowed before any key is looked at: this refuses
        # ``alg: none`` and HMAC tokens that would use a public key as their secret.
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise PrincipalRejected(
                "the bearer token is not signed with an allowed algorithm "
                f"({', '.join(self._algorithms)})",
                details,
            )
        # 3. The key is the one the token names (RFC 7515 section 4.1.4), from the trusted set.
        key = self._key(header.get("kid"), details)
        if key.algorithm_name != alg:
            raise PrincipalRejected(
                "the bearer token's algorithm is not the algorithm of the key it names", details
            )
        # 4. Signature, then the registered claims (RFC 7519 section 4.1).
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(self._algorithms),
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": self._required},
            )
        except jwt.InvalidTokenError as exc:
            raise PrincipalRejected(_why(jwt, exc), details) from None
        except Exception as exc:  # fail closed: whatever else a hostile token provokes
            why = f"{details}, error={type(exc).__name__}" if details else type(exc).__name__
            raise PrincipalRejected("the bearer token is not valid", why) from None
        # 5. The claims become the principal and its groups.
        subject = _at(claims, (self._principal_claim,))
        if not isinstance(subject, str) or not subject:
            raise PrincipalRejected(
                f"the bearer token has no string {self._principal_claim!r} claim to name the "
                "principal by",
                details,
            )
        return VerifiedToken(
            principal=EntityRef(self._principal_type, subject),
            groups=self._groups(claims, details),
            issuer=str(claims["iss"]),
            key_id=str(header["kid"]),
            token_id=str(claims["jti"]) if "jti" in claims else None,
            expires_at=int(claims["exp"]),
            claims=claims,
        )

    def _key(self, kid: object, details: str) -> jwt.PyJWK:
        pyjwt = self._jwt
        if not isinstance(kid, str) or not kid:
            raise PrincipalRejected("the bearer token names no signing key ('kid')", details)
        if self._keys is not None:
            try:
                found: jwt.PyJWK = self._keys[kid]
                return found
            except KeyError:
                raise PrincipalRejected(
                    "the bearer token is signed by a key the trusted key set does not hold",
                    details,
                ) from None
        client = self._client
        if client is None:  # pragma: no cover - the constructor sets one of the two
            raise PrincipalRejected("no key set is configured", details)
        try:
            with self._lock:  # one fetch at a time: parallel calls share the refreshed set
                fetched: jwt.PyJWK = client.get_signing_key(kid)
                return fetched
        except pyjwt.PyJWKClientConnectionError:
            # Fail closed: keys that cannot be fetched verify nothing.
            raise PrincipalRejected(
                "the trusted key set could not be fetched; the token cannot be verified",
                details,
            ) from None
        except (pyjwt.PyJWKClientError, pyjwt.PyJWKSetError, pyjwt.PyJWKError):
            raise PrincipalRejected(
                "the bearer token is signed by a key the trusted key set does not hold", details
            ) from None

    def _groups(self, claims: Mapping[str, Any], details: str) -> tuple[EntityRef, ...]:
        if not self._groups_path:
            return ()
        value = _at(claims, self._groups_path)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(g, str) and g for g in value):
            raise PrincipalRejected(
                f"the bearer token's {'.'.join(self._groups_path)!r} claim is not a list of "
                "group names",
                details,
            )
        return tuple(EntityRef(self._group_type, g) for g in sorted(set(value)))


def _import_jwt() -> Any:
    try:
        import jwt
    except ImportError as exc:
        raise ConfigurationError(
            "verifying bearer tokens needs PyJWT; run: pip install 'agentfence[jwt]'"
        ) from exc
    return jwt


def _at(claims: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = claims
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _details(jwt: Any, token: str, header: Mapping[str, Any]) -> str:
    """The token's identifiers for the log (unverified, quoted, cut short), never the token."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except Exception:  # best effort: the details only describe a token being refused
        claims = {}
    shown = {
        "alg": header.get("alg"),
        "kid": header.get("kid"),
        "iss": claims.get("iss"),
        "sub": claims.get("sub"),
        "jti": claims.get("jti"),
    }
    return ", ".join(f"{k}={_short(v)}" for k, v in shown.items() if v is not None)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _why(jwt: Any, exc: Exception) -> str:
    """A fixed sentence per failure: PyJWT's own text is not shown to the model."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the bearer token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the bearer token is not valid yet (nbf or iat is in the future)"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the bearer token is for another audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the bearer token is from an issuer that is not trusted"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the bearer token lacks the required {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the bearer token's signature does not verify (tampered, or another key)"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "the bearer token is not signed with an allowed algorithm"
    return "the bearer token is not valid"
