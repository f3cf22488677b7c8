#!/usr/bin/env python3
"""DPoP proofs (RFC 9449 §4.2) for the load benchmark's DPoP variant, signed with the client
key benches/add_dpop.py made (KEYS_DIR/dpop.key) and bound to its token (TOKEN_DPOP: `ath`).

  dpop_proofs.py KEYS_DIR URL                                # one proof for GET URL, on stdout
  dpop_proofs.py KEYS_DIR URL --count N --out FILE [--procs P]

The second form writes N proofs, one per line, all of the same length (a fixed-width `jti`,
a ten-digit `iat`), so that benches/dpop.lua can seek to proof k without reading the ones
before it; it splits the work over P processes (default: one per core), each writing its
own range of FILE, and prints a JSON summary (count, seconds, proofs per second, iat range).

Each proof: header {"typ": "dpop+jwt", "alg": "ES256", "jwk": {kty, crv, x, y}}, claims
{"jti": unique, "htm": "GET", "htu": URL without query or fragment, "iat": now,
"ath": base64url(SHA-256(token))}. `iat` is the second the proof was signed: the gateway
refuses proofs older than its window, so they are made just before they are sent.
"""
import argparse
import base64
import hashlib
import json
import multiprocessing
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from add_dpop import b64u, public_jwk, read_env

CHUNK = 4096  # proofs per write


class Signer:
    """Everything but `jti`, `iat` and the signature is the same in every proof: built once."""

    def __init__(self, keys, url, prefix):
        with open(f"{keys}/dpop.key", "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), None)
        token = read_env(keys)["TOKEN_DPOP"].strip("'\"")
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(self.key)}
        self.header = b64u(json.dumps(header, separators=(",", ":")).encode())
        htu = url.split("#", 1)[0].split("?", 1)[0]
        ath = b64u(hashlib.sha256(token.encode()).digest())
        self.head = '{"jti":"' + prefix
        self.tail = '","htm":"GET","htu":' + json.dumps(htu) + ',"iat":%d,"ath":"' + ath + '"}'
        self.algorithm = ec.ECDSA(hashes.SHA256())

    def proof(self, n, iat):
        """Proof number n (its `jti` is the prefix and n in ten digits)."""
        claims = f"{self.head}{n:010d}{self.tail % iat}"
        signing_input = f"{self.header}.{b64u(claims.encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), self.algorithm))
        return f"{signing_input}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def check(proof, url):
    """The proof verifies with its own jwk and says what it should (once per call, not per
    proof: a format mistake shows before a whole run is spent on it)."""
    header = jwt.get_unverified_header(proof)
    key = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(header["jwk"]))
    claims = jwt.decode(proof, key, algorithms=["ES256"])
    assert header["typ"] == "dpop+jwt" and set(header["jwk"]) == {"kty", "crv", "x", "y"}
    assert claims["htm"] == "GET" and url.startswith(claims["htu"]), claims


def write_range(keys, url, prefix, path, start, end, reclen):
    """Proofs start..end-1 into their places in path."""
    signer = Signer(keys, url, prefix)
    fd = os.open(path, os.O_WRONLY)
    try:
        for c in range(start, end, CHUNK):
            lines = [signer.proof(n, int(time.time())) for n in range(c, min(c + CHUNK, end))]
            data = ("\n".join(lines) + "\n").encode()
            if len(data) != len(lines) * reclen:
                raise SystemExit(f"proofs {c}..: not all {reclen - 1} bytes long")
            os.pwrite(fd, data, c * reclen)
    finally:
        os.close(fd)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("keys")
    ap.add_argument("url")
    ap.add_argument("--count", type=int)
    ap.add_argument("--out")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    prefix = b64u(os.urandom(9))  # 12 characters: this batch's jti differ from any other's
    signer = Signer(a.keys, a.url, prefix)
    if a.count is None:
        proof = signer.proof(0, int(time.time()))
        check(proof, a.url)
        print(proof)
        return
    if not a.out or not 0 < a.count < 10**10:
        sys.exit("--count needs --out, and 0 < N < 10^10")
    sample = signer.proof(0, int(time.time()))
    check(sample, a.url)
    reclen = len(sample) + 1
    with open(a.out, "wb") as f:
        f.truncate(a.count * reclen)
    procs = max(1, min(a.procs, a.count // CHUNK + 1))
    bounds = [a.count * i // procs for i in range(procs + 1)]
    jobs = [(a.keys, a.url, prefix, a.out, bounds[i], bounds[i + 1], reclen) for i in range(procs)]
    t0, first_iat = time.monotonic(), int(time.time())
    if procs == 1:
        write_range(*jobs[0])
    else:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            pool.starmap(write_range, jobs)
    secs = time.monotonic() - t0
    print(json.dumps({"count": a.count, "record_bytes": reclen, "procs": procs,
                      "seconds": round(secs, 2), "per_second": round(a.count / secs),
                      "first_iat": first_iat, "last_iat": int(time.time())}))


if __name__ == "__main__":
    main()
