"""What verifying a bearer token costs each governed call, with and without remembering it.

``BearerTokenResolver.verify`` of one RS256 token against a JWKS file, N times in a row:
once with ``verified_cache_seconds=0`` (the signature and claims checked every time) and once
with the default (the token remembered after its first check; its expiry still checked).

Run ``.venv/bin/python benchmarks/bench_identity.py`` (``--iterations N``). Timing is never a
test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.tokens import AUDIENCE, ISSUER, Provider

from agentfence import BearerTokenResolver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    args = parser.parse_args()
    provider = Provider()
    with tempfile.TemporaryDirectory() as tmp:
        jwks = provider.write_jwks(Path(tmp) / "jwks.json")
        for seconds in (0.0, 60.0):
            resolver = BearerTokenResolver(
                issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks, verified_cache_seconds=seconds
            )
            token = provider.token("rsa-1")
            resolver.verify(token)
            samples = []
            for _ in range(args.iterations):
                started = time.perf_counter_ns()
                resolver.verify(token)
                samples.append(time.perf_counter_ns() - started)
            print(
                f"verified_cache_seconds={seconds:g}: p50 "
                f"{statistics.median(samples) / 1000:.1f} µs per verify (RS256), "
                f"{args.iterations:,} calls"
            )


if __name__ == "__main__":
    main()
