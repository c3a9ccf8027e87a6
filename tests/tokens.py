"""An identity provider for the tests: keys generated here, a JWKS file and a JWKS URL.

Keys are made with ``cryptography`` (RSA, Ed25519 and EC P-256); tokens are signed with PyJWT,
and the few a real provider would never sign (``alg: none``, HMAC with a public key) are
assembled by hand so that the fence's refusal of them is tested, not PyJWT's refusal to
make them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ISSUER = "https://id.acme.test"
AUDIENCE = "agentfence-tests"


def b64(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Provider:
    """Three signing keys (``rsa-1``, ``ed-1``, ``ec-1``) and tokens signed with them."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[Any, str]] = {
            "rsa-1": (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
            "ed-1": (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
            "ec-1": (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        }

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWK Set (RFC 7517 section 5)."""
        out = []
        for kid, (key, alg) in self.keys.items():
            algorithm = jwt.get_algorithm_by_name(alg)
            jwk = json.loads(algorithm.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": out}

    def write_jwks(self, path: Path) -> Path:
        """Write the JWKS file; return its path."""
        path.write_text(json.dumps(self.jwks()), encoding="utf-8")
        return path

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid claims for alice in finance, with any claim replaced (None drops it)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "groups": ["finance"],
            "iat": now,
            "exp": now + 600,
            "jti": "tok-1",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, kid: str = "rsa-1", **claims: Any) -> str:
        """A token signed by the key ``kid`` with :meth:`claims`."""
        key, alg = self.keys[kid]
        return jwt.encode(self.claims(**claims), key, algorithm=alg, headers={"kid": kid})

    def public_pem(self, kid: str = "rsa-1") -> bytes:
        """The public key ``kid`` as PEM."""
        key, _ = self.keys[kid]
        return bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def unsigned_token(claims: dict[str, Any], kid: str = "rsa-1") -> str:
    """An ``alg: none`` token (RFC 7519 section 6.1): no signature at all."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def hmac_token(claims: dict[str, Any], secret: bytes, kid: str = "rsa-1") -> str:
    """An HS256 token whose secret is ``secret`` (the key-confusion attack uses a public key)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


@contextmanager
def serve_jwks(document: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """Serve ``document`` at ``http://127.0.0.1:<port>/jwks.json`` from a thread.

    Yields the URL and the list of paths requested so far (the test can count fetches);
    ``document`` may be changed while serving (key rotation).
    """
    requested: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
