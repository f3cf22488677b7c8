#!/usr/bin/env python3
"""Turns one run of benches/load.sh into a table of CPU us/request, ratios and the issue's
targets; writes docs/PERFORMANCE.md (argv[2] == "1").

  load_report.py RUN_DIR [WRITE_DOC]

Ratios are computed within the run only. criterion figures from target/criterion (the last
`make bench`, if any) are added for the pure decision path.
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

ORDER = ["upstream", "nginx", "haproxy", "haproxy-jwt", "authgate-base-none", "authgate-none",
         "authgate-nocache", "authgate-base", "authgate"]
NAMES = {
    "upstream": "upstream alone",
    "nginx": "nginx plain proxy",
    "haproxy": "HAProxy plain proxy",
    "haproxy-jwt": "HAProxy jwt_verify",
    "authgate-none": 'authgate, `auth = "none"` route',
    "authgate-nocache": "authgate, token cache off",
    "authgate": "authgate, token cache on",
    "authgate-base-none": 'authgate before the change (AUTHGATE_BASE_BIN), `auth = "none"` route',
    "authgate-base": "authgate before the change (AUTHGATE_BASE_BIN), token cache on",
}


def us(p, target, load):
    for r in rows:
        if r["pass"] == p and r["target"] == target and r["load"] == load:
            return r["sut_us_per_req"]
    return None


def rps(p, target, load):
    for r in rows:
        if r["pass"] == p and r["target"] == target and r["load"] == load:
            return r["rps"]
    return None


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def fmt(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


out = []
passes = sorted({r["pass"] for r in rows}, key=str)
for p in passes:
    out.append(f"\n### {p} worker(s)\n")
    out.append("| target | token | CPU µs/req | req/s | ÷ nginx | ÷ HAProxy jwt_verify (same alg) |")
    out.append("|---|---|---:|---:|---:|---:|")
    nginx = us(p, "nginx", "-")
    for t in ORDER:
        for load in ["-", "RS256", "ES256", "EdDSA"]:
            v = us(p, t, load)
            if v is None:
                continue
            hj = us(p, "haproxy-jwt", load) if load != "-" else None
            out.append(f"| {NAMES.get(t, t)} | {load} | {v:.1f} | {rps(p, t, load):.0f} | "
                       f"{fmt(ratio(v, nginx))} | {fmt(ratio(v, hj))} |")

p1 = passes[0] if passes else None
targets = [
    ('authgate `auth = "none"` route ÷ nginx plain proxy', ratio(us(p1, "authgate-none", "-"), us(p1, "nginx", "-")), 1.5),
    ('authgate RS256, cache on ÷ authgate `auth = "none"` route', ratio(us(p1, "authgate", "RS256"), us(p1, "authgate-none", "-")), 1.1),
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

report = "\n".join(out)
checks_failed = [l for l in checks.splitlines() if "FAIL" in l]
print(report)
print()
print("\n".join(tt))
if r10 and r1000:
    print(f"\nroute lookup 1,000 ÷ 10 routes (criterion): {r1000 / r10:.2f} (target ≤ 2)")
if not write:
    sys.exit(0)
doc = f"""# Performance

Measured with `bash benches/load.sh` (as root, from the project root): one run of
[`../shared/bench`](../../shared/bench/README.md) with authgate's variants added — wrk
`-t1 -c32`, keep-alive, `GET /` with `Authorization: Bearer <token>` on every request, CPU
time of the system under test's process tree from `/proc` divided by completed requests, one
worker thread/process, upstream and wrk outside the measured process. These machines are
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

Correctness checks before each measurement (missing/bad/expired/`alg: none`/no-`exp`/wrong
`aud`/wrong `iss` tokens refused, `sub` forwarded, a client `X-User-Id` overwritten):
{"all passed" if not checks_failed else "FAILED: " + "; ".join(checks_failed)}.

## Targets (issue #6)

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
