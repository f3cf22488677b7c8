#!/usr/bin/env python3
"""Adds a DPoP client key and a DPoP-bound access token to the bench harness's keys:
dpop.key (the client's P-256 key, PKCS#8 PEM; not in the JWKS: the gateway learns it from
each proof's `jwk`) and TOKEN_DPOP in tokens.env: TOKEN_ES256's claims plus
`cnf.jkt` = the RFC 7638 thumbprint of that key, signed with the harness's ES256 key (kid
"bench-ec"), so it differs from TOKEN_ES256 only by the binding.

  add_dpop.py KEYS_DIR
  add_dpop.py --selftest      # the thumbprint against RFC 7638's and RFC 9449's examples

Proofs for this key come from benches/dpop_proofs.py.
"""
import base64
import hashlib
import json
import os
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

# RFC 7638 §3.1: the example RSA key and its thumbprint.
RFC7638_KEY = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS"
         "oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65Y"
         "GjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrd"
         "kt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKn"
         "qDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
# RFC 9449: the P-256 key of its example proofs and the `jkt` its examples give for it.
RFC9449_KEY = {"kty": "EC", "crv": "P-256", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
               "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}
RFC9449_THUMBPRINT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
REQUIRED = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict) -> str:
    """RFC 7638: SHA-256 of the required members only, keys sorted, no whitespace."""
    members = {m: jwk[m] for m in REQUIRED[jwk["kty"]]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64u(hashlib.sha256(canonical.encode()).digest())


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict:
    """The P-256 public JWK a proof carries: kty, crv, x, y only (no private `d`)."""
    nums = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64u(nums.x.to_bytes(32, "big")),
            "y": b64u(nums.y.to_bytes(32, "big"))}


def selftest():
    for name, key, want in [("RFC 7638", RFC7638_KEY, RFC7638_THUMBPRINT),
                            ("RFC 9449", RFC9449_KEY, RFC9449_THUMBPRINT)]:
        got = thumbprint(key)
        if got != want:
            sys.exit(f"{name} example key: thumbprint {got}, want {want}")


def read_env(keys):
    with open(f"{keys}/tokens.env") as f:
        return dict(l.split("=", 1) for l in f.read().splitlines() if "=" in l)


def main(keys):
    selftest()
    env = read_env(keys)
    es256 = env["TOKEN_ES256"].strip("'\"")
    claims = jwt.decode(es256, options={"verify_signature": False})
    with open(f"{keys}/ec.key", "rb") as f:
        issuer_key = serialization.load_pem_private_key(f.read(), None)

    client = ec.generate_private_key(ec.SECP256R1())
    pem = client.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    fd = os.open(f"{keys}/dpop.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)

    jkt = thumbprint(public_jwk(client))
    token = jwt.encode(dict(claims, cnf={"jkt": jkt}), issuer_key, algorithm="ES256",
                       headers={"kid": "bench-ec"})
    # sanity: it verifies with the JWKS's ES256 key and carries the binding
    got = jwt.decode(token, issuer_key.public_key(), algorithms=["ES256"],
                     audience=claims["aud"], issuer=claims["iss"])
    assert got["cnf"] == {"jkt": jkt} and got["sub"] == claims["sub"]
    with open(f"{keys}/tokens.env", "a") as f:
        f.write(f"TOKEN_DPOP='{token}'\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        selftest()
        print(f"thumbprints of the RFC 7638 and RFC 9449 example keys: {RFC7638_THUMBPRINT}, "
              f"{RFC9449_THUMBPRINT} (ok)")
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        sys.exit(f"usage: {sys.argv[0]} KEYS_DIR | --selftest")
