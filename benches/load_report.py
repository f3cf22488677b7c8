#!/usr/bin/env python3
"""Turns one run of benches/load.sh into a table of CPU us/request, ratios and the issue's
targets; writes docs/PERFORMANCE.md (argv[2] == "1").

  load_report.py RUN_DIR [WRITE_DOC]

Ratios are computed within the run only. criterion figures from target/criterion (the last
`make bench`, if any) are added for the pure decision path. A row whose requests were not all
answered 2xx, or whose DPoP proofs ran out (RUN_DIR/authgate-dpop-tPASS/dpop-wrk.jsonl), is
marked: its figures are not results.
"""
import json
import pathlib
import sys

run = pathlib.Path(sys.argv[1])
write = len(sys.argv) < 3 or sys.argv[2] == "1"
rows = [json.loads(l) for l in (run / "results.jsonl").read_text().splitlines() if l.strip()]
rows = [r for r in rows if not r.get("discarded")]
machine = (run / "machine.txt").read_text().strip()
checks = (run / "checks.log").read_text() if (run / "checks.log").exists() else ""

ORDER = ["upstream", "nginx", "haproxy", "haproxy-jwt", "authgate-base-none", "authgate-general-none",
         "authgate-none", "authgate-nocache", "authgate-base", "authgate-general", "authgate",
         "authgate-dpop"]
NAMES = {
    "upstream": "upstream alone",
    "nginx": "nginx plain proxy",
    "haproxy": "HAProxy plain proxy",
    "haproxy-jwt": "HAProxy jwt_verify",
    "authgate-none": 'authgate, `auth = "none"` route',
    "authgate-general-none": 'authgate, `auth = "none"` route, `fast_path = false`',
    "authgate-general": "authgate, token cache on, `fast_path = false`",
    "authgate-nocache": "authgate, token cache off",
    "authgate": "authgate, token cache on",
    "authgate-dpop": 'authgate, token cache on, `dpop = "required"` (a fresh ES256 proof per request)',
    "authgate-base-none": 'authgate before the change (AUTHGATE_BASE_BIN), `auth = "none"` route',
    "authgate-base": "authgate before the change (AUTHGATE_BASE_BIN), token cache on",
}


def row(p, target, load):
    for r in rows:
        if r["pass"] == p and r["target"] == target and r["load"] == load:
            return r
    return None


def us(p, target, load):
    r = row(p, target, load)
    return None if r is None else r["sut_us_per_req"]


def dpop_proofs(p):
    """What benches/load.sh recorded about the DPoP variant's proofs in pass p, or None."""
    d = run / f"authgate-dpop-t{p}"
    if not (d / "proofs.json").exists():
        return None
    made = json.loads((d / "proofs.json").read_text())
    log = d / "dpop-wrk.jsonl"
    runs = [json.loads(l) for l in log.read_text().splitlines() if l.strip()] if log.exists() else []
    return {"made": made["count"], "per_second": made["per_second"], "procs": made["procs"],
            "seconds": made["seconds"], "used": sum(r["used"] for r in runs),
            "ran_out": sum(r["ran_out"] for r in runs),
            "age": runs[-1]["time"] - made["first_iat"] if runs else None}


def flaw(r):
    """Why a row's figures are not results ("" if they are)."""
    why = []
    if r["non2xx"] or r["sock_errors"]:
        why.append(f"{r['non2xx']} non-2xx answers, {r['sock_errors']} socket errors")
    if r["target"] == "authgate-dpop":
        d = dpop_proofs(r["pass"])
        if d is None:
            why.append("no record of its DPoP proofs")
        elif d["ran_out"]:
            why.append("its DPoP proofs ran out (a wrk thread stopped early)")
    return "; ".join(why)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def fmt(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


# The DPoP row's one signature per request is the proof's (ES256; the token's is cached): its
# peer figure is HAProxy's ES256 check.
SAME_ALG = {"DPoP": "ES256"}

out = []
passes = sorted({r["pass"] for r in rows}, key=str)
for p in passes:
    flawed = []
    out.append(f"\n### {p} worker(s)\n")
    out.append("| target | token | CPU µs/req | req/s | ÷ nginx | ÷ HAProxy jwt_verify (same alg) |")
    out.append("|---|---|---:|---:|---:|---:|")
    nginx = us(p, "nginx", "-")
    for t in ORDER:
        for load in ["-", "RS256", "ES256", "EdDSA", "DPoP"]:
            r = row(p, t, load)
            if r is None:
                continue
            v = r["sut_us_per_req"]
            hj = us(p, "haproxy-jwt", SAME_ALG.get(load, load)) if load != "-" else None
            why = flaw(r)
            if why:
                flawed.append(f"{NAMES.get(t, t)}, {load}: {why}")
            out.append(f"| {NAMES.get(t, t)} | {load} | {v:.1f}{' ⚠' if why else ''} | "
                       f"{r['rps']:.0f} | {fmt(ratio(v, nginx))} | {fmt(ratio(v, hj))} |")
    if flawed:
        out.append("\n⚠ not a result: " + "; ".join(flawed) + ".")

p1 = passes[0] if passes else None
targets = [
    ('authgate `auth = "none"` route ÷ nginx plain proxy', ratio(us(p1, "authgate-none", "-"), us(p1, "nginx", "-")), 1.5),
    ('authgate RS256, cache on ÷ authgate `auth = "none"` route', ratio(us(p1, "authgate", "RS256"), us(p1, "authgate-none", "-")), 1.1),
    ("authgate RS256, cache on ÷ nginx plain proxy", ratio(us(p1, "authgate", "RS256"), us(p1, "nginx", "-")), 1.65),
    ('the same, `fast_path = false`: `auth = "none"` ÷ nginx', ratio(us(p1, "authgate-general-none", "-"), us(p1, "nginx", "-")), 1.5),
    ("the same, `fast_path = false`: RS256, cache on ÷ nginx", ratio(us(p1, "authgate-general", "RS256"), us(p1, "nginx", "-")), 1.65),
    ("authgate RS256, cache on ÷ HAProxy jwt_verify RS256", ratio(us(p1, "authgate", "RS256"), us(p1, "haproxy-jwt", "RS256")), 0.6),
    ("authgate RS256, cache off ÷ HAProxy jwt_verify RS256", ratio(us(p1, "authgate-nocache", "RS256"), us(p1, "haproxy-jwt", "RS256")), 1.0),
    ("authgate ES256, cache off ÷ HAProxy jwt_verify ES256", ratio(us(p1, "authgate-nocache", "ES256"), us(p1, "haproxy-jwt", "ES256")), 0.8),
]
tt = ["| figure (one worker) | measured | target | |", "|---|---:|---:|---|"]
for name, got, want in targets:
    verdict = "—" if got is None else ("met" if got <= want else "**missed**")
    tt.append(f"| {name} | {fmt(got)} | ≤ {want} | {verdict} |")

crit = []
cdir = pathlib.Path("target/criterion")
def est(*parts):
    f = cdir.joinpath(*parts, "new", "estimates.json")
    if not f.exists():
        return None
    return json.loads(f.read_text())["mean"]["point_estimate"]
names = [("decide", n) for n in ["RS256", "RS256_cached", "PS256", "PS256_cached", "ES256",
                                 "ES256_cached", "EdDSA", "EdDSA_cached"]]
names += [("route_lookup", "10_routes"), ("route_lookup", "1000_routes"),
          ("claims_to_headers_5",), ("config_parse_build_1000_routes",)]
for n in names:
    v = est(*n)
    if v is not None:
        crit.append(f"| {'/'.join(n)} | {v / 1000:.2f} µs |")
r10, r1000 = est("route_lookup", "10_routes"), est("route_lookup", "1000_routes")



# DPoP (issue 15): what a fresh proof per request costs next to the same token without one.
def dpop_us(p):
    r = row(p, "authgate-dpop", "DPoP")
    return "—" if r is None else fmt(r["sut_us_per_req"], 1) + (" ⚠" if flaw(r) else "")


def dpop(p, other, load):
    """The DPoP row against another row of pass p: (ratio, difference in µs), marked ⚠ if
    the DPoP row is not a result."""
    r, v = row(p, "authgate-dpop", "DPoP"), us(p, other, load)
    if r is None or v is None:
        return "—", "—"
    mark = " ⚠" if flaw(r) else ""
    return fmt(ratio(r["sut_us_per_req"], v)) + mark, fmt(r["sut_us_per_req"] - v, 1) + mark


dpop_rows = [
    ("CPU µs/req (token cache on, a fresh ES256 proof per request)", dpop_us),
    ("**÷ authgate ES256, cache on** (the same token without a proof)",
     lambda p: dpop(p, "authgate", "ES256")[0]),
    ("µs/req the proof adds (− authgate ES256, cache on)", lambda p: dpop(p, "authgate", "ES256")[1]),
    ("÷ authgate ES256, cache off (also one ES256 check per request)",
     lambda p: dpop(p, "authgate-nocache", "ES256")[0]),
    ("÷ HAProxy jwt_verify ES256", lambda p: dpop(p, "haproxy-jwt", "ES256")[0]),
    ("÷ nginx plain proxy", lambda p: dpop(p, "nginx", "-")[0]),
]
dp = ["| figure | " + " | ".join(f"{p} worker(s)" for p in passes) + " |",
      "|---|" + "---:|" * len(passes)]
for name, f in dpop_rows:
    dp.append(f"| {name} | " + " | ".join(f(p) for p in passes) + " |")
dpop_notes = []
for p in passes:
    d = dpop_proofs(p)
    if d:
        dpop_notes.append(
            f"{p} worker(s): {d['made']:,} proofs signed in {d['seconds']} s ({d['per_second']:,}/s, "
            f"{d['procs']} process(es)), {d['used']:,} sent (warm-up and measurement), the last "
            f"{d['age']} s after the first was signed; "
            + ("**ran out**: not a result" if d["ran_out"] else "none ran out"))
dpop_text = "\n".join(dp) + ("\n\n" + "\n".join(f"* {n}" for n in dpop_notes) if dpop_notes else "")
has_dpop = any(us(p, "authgate-dpop", "DPoP") is not None for p in passes)
dpop_section = f"""
## DPoP (issue 15)

The `authgate` variant above (ES256 token, verified-token cache on) with `dpop = "required"`:
the token carries `cnf.jkt` (`benches/add_dpop.py`), and every request sends `Authorization:
DPoP <token>` with a proof of its own (`jti`, `iat` of the second it was signed, `htu`,
`ath`), as real clients do. The proofs are signed just before the measurement
(`benches/dpop_proofs.py`) and each is sent once (`benches/dpop.lua`). The cache spares the
token's signature, not the proof's: each request still verifies one ES256 signature, like
HAProxy `jwt_verify` ES256 and authgate with the cache off.

{dpop_text}
""" if has_dpop else ""

tls_rows = []
if (run / "tls" / "tls.jsonl").exists():
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    import tls_load
    tls_rows = [json.loads(l) for l in (run / "tls" / "tls.jsonl").read_text().splitlines() if l.strip()]
tls_text = tls_load.table(tls_rows) if tls_rows else ""
tls_section = f"""
## TLS and HTTP/2 (issue 17)

`benches/tls_load.py`, in the same run: each target behind TLS with one worker, first with an
ECDSA P-256 and then an RSA-2048 certificate (self-signed, made fresh), proxying to an nginx
upstream of its own (not measured). CPU µs of the target's process tree per request, or per
connection for the handshake loads (its inverse: the connections one core could take per
second). nginx and HAProxy use OpenSSL (`openssl version` above); authgate uses rustls with
aws-lc-rs. nginx has session tickets on, HAProxy its defaults (tickets on), authgate rustls's
defaults (tickets and a session cache). In the handshake loads each connection sends one
`GET /` without a token: nginx and the `auth = "none"` route proxy it (200), HAProxy jwt_verify
and authgate RS256 answer 401 themselves. `hs-resumed` rows are marked when fewer than 99 % of
the connections were resumed.

{tls_text}
""" if tls_rows else ""

report = "\n".join(out)
checks_failed = [l for l in checks.splitlines() if "FAIL" in l]
print(report)
print()
print("\n".join(tt))
if has_dpop:
    print("\nDPoP:\n" + dpop_text)
if tls_rows:
    print("\nTLS and HTTP/2:\n" + tls_text)
if r10 and r1000:
    print(f"\nroute lookup 1,000 ÷ 10 routes (criterion): {r1000 / r10:.2f} (target ≤ 2)")
if not write:
    sys.exit(0)
doc = f"""# Performance

Measured with `bash benches/load.sh` (as root, from the project root): one run of
[`../shared/bench`](../../shared/bench/README.md) with authgate's variants added — wrk
`-t1 -c32`, keep-alive, `GET /` with `Authorization: Bearer <token>` on every request, CPU
time of the system under test's process tree from `/proc` divided by completed requests, one
worker thread/process, upstream and wrk outside the measured process (the DPoP row: `Authorization:
DPoP <token>` and a proof made for that one request, see below). These machines are
shared and small: **only ratios within this one run mean anything**; absolute µs move by 2×
between runs.

Run `{run.name}` (raw records: `target/bench-work/runs/{run.name}/`):

```
{machine}
```

## CPU µs per request
{report}

EdDSA (Ed25519, kid `bench-ed`, same claims) is measured for authgate only: the peers have
no Ed25519 support in this harness (`benches/add_eddsa.py` adds the key to its JWKS).
{dpop_section}
Correctness checks before each measurement (missing/bad/expired/`alg: none`/no-`exp`/wrong
`aud`/wrong `iss` tokens refused, `sub` forwarded, a client `X-User-Id` overwritten; DPoP: a
fresh proof accepted, a replayed one, the bound token as Bearer, no proof, a proof for another
URL and an unbound token refused):
{"all passed" if not checks_failed else "FAILED: " + "; ".join(checks_failed)}.
{tls_section}
## Targets (issues 6 and 18)

{chr(10).join(tt)}

{f"route lookup, 1,000 routes ÷ 10 routes (criterion): **{r1000 / r10:.2f}** (target ≤ 2)" if r10 and r1000 else ""}

## criterion (`make bench`, pure decision path, mean)

| bench | mean |
|---|---:|
{chr(10).join(crit) if crit else "| (run `make bench` first) | |"}

`decide/X` verifies the signature every time (cache off); `decide/X_cached` is the same
request answered from the verified-token cache (hash of the token, lookup, time and
revocation rechecks, route rules, claim headers).
"""
# The generated part sits between markers; text around it (analysis, history) is kept.
BEGIN, END = "<!-- benches/load.sh: generated, do not edit -->", "<!-- end of generated part -->"
path = pathlib.Path("docs/PERFORMANCE.md")
path.parent.mkdir(exist_ok=True)
old = path.read_text() if path.exists() else ""
body = f"{BEGIN}\n{doc.strip()}\n{END}"
if BEGIN in old and END in old:
    new = old[: old.index(BEGIN)] + body + old[old.index(END) + len(END):]
else:
    new = body + "\n"
path.write_text(new)
print("\nwrote docs/PERFORMANCE.md")
