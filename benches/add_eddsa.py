#!/usr/bin/env python3
"""Adds an Ed25519 key (kid "bench-ed", alg EdDSA) to the bench harness's JWKS and appends
TOKEN_EDDSA to its tokens.env: the same claims as TOKEN_RS256, signed with the new key.

  add_eddsa.py KEYS_DIR

The harness's peers have no Ed25519 key; only authgate is measured with this token.
"""
import base64
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

keys = sys.argv[1]
env = dict(
    line.split("=", 1) for line in open(f"{keys}/tokens.env").read().splitlines() if "=" in line
)
rs256 = env["TOKEN_RS256"].strip("'\"")
claims = jwt.decode(rs256, options={"verify_signature": False})

key = ed25519.Ed25519PrivateKey.generate()
raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
jwks = json.load(open(f"{keys}/jwks.json"))
jwks["keys"] = [k for k in jwks["keys"] if k.get("kid") != "bench-ed"]
jwks["keys"].append({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "bench-ed", "alg": "EdDSA", "use": "sig"})
json.dump(jwks, open(f"{keys}/jwks.json", "w"))

token = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "bench-ed"})
with open(f"{keys}/tokens.env", "a") as f:
    f.write(f"TOKEN_EDDSA='{token}'\n")
