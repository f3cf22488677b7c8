#!/usr/bin/env python3
"""TLS and HTTP/2 next to the peers, in one run (issue 17): `make load` runs this after the
plain-HTTP harness, with the harness's keys and tokens.

Targets, each with one worker, behind TLS with an ECDSA P-256 and then an RSA-2048
certificate (self-signed here, made fresh each run):
  nginx-tls        nginx 1 worker, `listen ssl http2`, proxy to the upstream (keep-alive)
  haproxy-jwt-tls  HAProxy nbthread 1, `bind ssl alpn h2,http/1.1`, the harness's jwt_verify rules
  authgate-none-tls authgate threads = 1, the route's `auth = "none"`
  authgate-tls     authgate threads = 1, RS256 token, verified-token cache on
The upstream is an nginx of its own (1 worker, plain HTTP, `return 200 "ok user=..."`), not
measured.

Loads, each measured as CPU µs of the target's process tree per request (from /proc, user +
system, over the measured window; the load generator runs outside it):
  h1    wrk -t1 -c32 over https (keep-alive), RS256 `Authorization` on every request
  h2    h2load -t1 -c32 -m10 over TLS with ALPN h2 (both peers speak h2 here)
  hs    full handshakes: `openssl s_time -new` (a new connection, a full handshake and one
        GET / per connection; TLS 1.3, no resumption)
  hs-resumed  the same with `-reuse` (session resumption with the tickets each server issues)
For handshakes the figure is CPU µs per connection, and its inverse the connections a core
could take per second.

Every target and load is measured --rounds times (default 2), the targets alternating within
each round; the table gives the median and the spread. authgate runs with RUST_LOG=warn (no
access log), as in the plain-HTTP harness: nginx and HAProxy log nothing either.

Writes RUN_DIR/tls.jsonl (one object per measurement) and prints a table. Every target is
checked once per start first: 200 and `ok user=<sub>` with the token over h1 and h2, 401 without it
(for the JWT targets).
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, logfile, within=15.0):
    until = time.time() + within
    while time.time() < until:
        if proc.poll() is not None:
            raise SystemExit(f"exited at start (see {logfile}):\n{Path(logfile).read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {within}s (see {logfile})")


def tree_cpu(pid):
    """User + system CPU seconds of `pid` and every descendant."""
    total = 0.0
    todo = [pid]
    seen = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / HZ
            for t in Path(f"/proc/{p}/task").iterdir():
                kids = Path(f"/proc/{p}/task/{t.name}/children").read_text().split()
                todo.extend(int(k) for k in kids)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


# --- certificates --------------------------------------------------------------------------

def make_cert(kind, out):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID
    import datetime
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa" else rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (out / f"{kind}.key").write_bytes(key_pem)
    (out / f"{kind}.crt").write_bytes(cert_pem)
    (out / f"{kind}.pem").write_bytes(cert_pem + key_pem)  # HAProxy wants both in one file
    return out / f"{kind}.crt", out / f"{kind}.key", out / f"{kind}.pem"


# --- servers -------------------------------------------------------------------------------

class Server:
    def __init__(self, name, cmd, port, logfile, cwd=None, env=None):
        self.name, self.port, self.logfile = name, port, logfile
        self.proc = subprocess.Popen(cmd, stdout=open(logfile, "wb"), stderr=subprocess.STDOUT,
                                     cwd=cwd, start_new_session=True,
                                     env=None if env is None else {**os.environ, **env})
        wait_port(port, self.proc, logfile)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def nginx_conf(d, port, body):
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(f"""
user www-data;
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi; uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  {body}
}}
""")
    return ["nginx", "-p", str(d), "-e", f"{d}/error.log", "-c", str(conf)]


def start_upstream(work):
    d = work / "upstream"
    port = free_port()
    cmd = nginx_conf(d, port, f"""server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "ok user=$http_x_user_id"; }}
  }}""")
    return Server("upstream", cmd, port, d / "stdout.log")


def start_nginx_tls(work, up, cert, key, tickets):
    d = work / "nginx-tls"
    port = free_port()
    cmd = nginx_conf(d, port, f"""upstream up {{
    server 127.0.0.1:{up};
    keepalive 64;
    keepalive_requests 10000000;
  }}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets {'on' if tickets else 'off'};
    http2_max_requests 10000000;
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}""")
    return Server("nginx-tls", cmd, port, d / "stdout.log")


def start_haproxy_jwt_tls(work, up, pem, keys, env):
    d = work / "haproxy-jwt-tls"
    d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = d / "haproxy.cfg"
    iss, aud = env["ISSUER"], env["AUDIENCE"]
    cfg.write_text(f"""global
  nbthread 1
  maxconn 4096
  tune.ssl.default-dh-param 2048

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option http-keep-alive

frontend fe
  bind 127.0.0.1:{port} ssl crt {pem} alpn h2,http/1.1
  http-request del-header X-User-Id
  http-request set-var(txn.bearer) http_auth_bearer
  http-request return status 401 content-type text/plain string "missing bearer token" hdr WWW-Authenticate 'Bearer realm="bench"' unless {{ var(txn.bearer) -m found }}
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request set-var(txn.kid) var(txn.bearer),jwt_header_query('$.kid')
  http-request set-var(txn.sig) int(0)
  http-request set-var(txn.sig) var(txn.bearer),jwt_verify("RS256","{keys}/rsa.pub.pem") if {{ var(txn.kid) -m str bench-rsa }} {{ var(txn.alg) -m str RS256 }}
  http-request set-var(txn.sig) var(txn.bearer),jwt_verify("ES256","{keys}/ec.pub.pem") if {{ var(txn.kid) -m str bench-ec }} {{ var(txn.alg) -m str ES256 }}
  http-request return status 401 content-type text/plain string "invalid token" hdr WWW-Authenticate 'Bearer realm="bench", error="invalid_token"' unless {{ var(txn.sig) -m int 1 }}
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('$.iss')
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('$.aud')
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request set-var(txn.sub) var(txn.bearer),jwt_payload_query('$.sub')
  http-request set-var(txn.now) date()
  http-request return status 401 content-type text/plain string "invalid token claims" hdr WWW-Authenticate 'Bearer realm="bench", error="invalid_token"' unless {{ var(txn.iss) -m str {iss} }} {{ var(txn.aud) -m str {aud} }} {{ var(txn.exp),sub(txn.now) -m int gt 0 }} {{ var(txn.sub) -m found }}
  http-request set-header X-User-Id %[var(txn.sub)]
  default_backend be

backend be
  http-reuse safe
  server up 127.0.0.1:{up}
""")
    subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], check=True)
    return Server("haproxy-jwt-tls", ["haproxy", "-db", "-f", str(cfg)], port, d / "stdout.log")


def start_authgate_tls(work, name, binary, up, cert, key, keys, env, none):
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = d / "authgate.toml"
    conf.write_text(f"""[server]
listen = "127.0.0.1:{port}"
threads = 1

[server.tls]
cert = "{cert}"
key = "{key}"

[admin]
listen = "127.0.0.1:{free_port()}"

[upstreams.bench]
url = "http://127.0.0.1:{up}"

[providers.bench]
issuer = "{env['ISSUER']}"
audiences = ["{env['AUDIENCE']}"]
jwks_file = "{keys}/jwks.json"
algorithms = ["RS256", "ES256"]
leeway = "30s"

[headers]
forward_claims = {{ sub = "X-User-Id" }}

[[routes]]
name = "bench"
path_prefix = "/"
upstream = "bench"
{'auth = "none"' if none else ''}
""")
    # No access log, as for the peers (nginx `access_log off`, HAProxy without a log) and as
    # the plain-HTTP harness runs authgate (RUST_LOG=warn): a log line per request is measured
    # by itself elsewhere, not here.
    s = Server(name, [binary, "run", "--config", str(conf)], port, d / "stdout.log",
               env={"RUST_LOG": os.environ.get("RUST_LOG", "warn")})
    return s


# --- checks and loads ----------------------------------------------------------------------

def curl(port, http2, headers=()):
    cmd = ["curl", "-sk", "-o", "-", "-w", "\n%{http_code} %{http_version}", "--max-time", "5",
           "--http2" if http2 else "--http1.1", f"https://127.0.0.1:{port}/check"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    body, _, tail = out.rpartition("\n")
    code, _, version = tail.partition(" ")
    return int(code or 0), version, body


def check(target, port, auth, token, sub):
    failures = []
    for http2 in (False, True):
        code, version, body = curl(port, http2, [f"Authorization: Bearer {token}", "X-User-Id: evil"])
        want_version = "2" if http2 else "1.1"
        if code != 200 or version != want_version or (auth and body.strip() != f"ok user={sub}"):
            failures.append(f"{'h2' if http2 else 'h1'} with token: {code} HTTP/{version} {body[:80]!r}")
        if auth:
            code, _, _ = curl(port, http2)
            if code != 401:
                failures.append(f"{'h2' if http2 else 'h1'} without token: {code}")
    if failures:
        log(f"WARNING: {target} failed checks: {failures}")
    return "ok" if not failures else f"FAILED: {'; '.join(failures)}"


def measured(pid, run):
    """Runs `run()` (a load that returns (count, seconds, extra)) with the target's CPU counted."""
    before = tree_cpu(pid)
    count, seconds, extra = run()
    cpu = tree_cpu(pid) - before
    return {"count": count, "seconds": seconds, "rate": count / seconds if seconds else 0,
            "cpu_s": cpu, "cpu_us_per": cpu * 1e6 / count if count else None, **extra}


def wrk_load(port, token, duration):
    def run():
        subprocess.run(["wrk", "-t1", "-c32", "-d2s", "-H", f"Authorization: Bearer {token}",
                        f"https://127.0.0.1:{port}/"], capture_output=True)  # warm-up
        out = subprocess.run(["wrk", "-t1", "-c32", f"-d{duration}s", "--timeout", "5s",
                              "-H", f"Authorization: Bearer {token}", f"https://127.0.0.1:{port}/"],
                             capture_output=True, text=True).stdout
        n = int(re.search(r"(\d+) requests in ([\d.]+)(m?s)", out).group(1))
        secs = float(re.search(r"requests in ([\d.]+)s", out).group(1)) if "requests in" in out else duration
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return n, secs, {"non_2xx": int(non2xx.group(1)) if non2xx else 0}
    return run


def h2load_load(port, token, duration):
    def run():
        base = ["h2load", "-t1", "-c32", "-m10", "-H", f"Authorization: Bearer {token}",
                f"https://127.0.0.1:{port}/"]
        subprocess.run(base[:1] + ["-D", "2"] + base[1:], capture_output=True)  # warm-up
        out = subprocess.run(base[:1] + ["-D", str(duration)] + base[1:], capture_output=True,
                             text=True).stdout
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", out)
        t = re.search(r"finished in ([\d.]+)s", out)
        proto = re.search(r"Application protocol: (\S+)", out)
        codes = re.search(r"status codes: (\d+) 2xx", out)
        done = int(m.group(3))
        return done, float(t.group(1)), {"protocol": proto.group(1) if proto else "?",
                                         "non_2xx": done - int(codes.group(1)) if codes else None}
    return run


def handshake_load(port, duration, reuse, clients=2):
    def run():
        cmd = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-www", "/", "-time",
               str(duration), "-reuse" if reuse else "-new"]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(clients)]
        started = time.time()
        total = reused = fresh = 0
        for p in procs:
            out = p.communicate()[0]
            m = re.findall(r"(\d+) connections in [\d.]+s", out)
            total += int(m[-1]) if m else 0
            # s_time prints one mark per connection: `r` resumed, `*` a full handshake.
            marks = "".join(l for l in out.splitlines() if re.fullmatch(r"[r*]+", l))
            reused, fresh = reused + marks.count("r"), fresh + marks.count("*")
        extra = {"clients": clients}
        if reuse:
            extra["resumed"] = round(reused / (reused + fresh), 3) if reused + fresh else None
        return total, time.time() - started, extra
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", required=True, help="the harness's keys dir (jwks.json, *.pub.pem, tokens.env)")
    ap.add_argument("--work", required=True, help="where configs, logs and results go")
    ap.add_argument("--authgate", required=True)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--targets", default="nginx-tls haproxy-jwt-tls authgate-none-tls authgate-tls")
    ap.add_argument("--certs", default="ecdsa rsa")
    ap.add_argument("--loads", default="h1 h2 hs hs-resumed")
    ap.add_argument("--rounds", type=int, default=2,
                    help="every target and load this many times, alternating; the table gives the median")
    a = ap.parse_args()
    keys = Path(a.keys)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(re.findall(r"^(\w+)='(.*)'$", (keys / "tokens.env").read_text(), re.M))
    token, sub = env["TOKEN_RS256"], env["SUBJECT"]
    results = work / "tls.jsonl"
    up = start_upstream(work)
    rows = []
    try:
        certs = {kind: make_cert(kind, work) for kind in a.certs.split()}
        for rnd, kind, target in [(r, k, t) for r in range(1, a.rounds + 1) for k in certs
                                  for t in a.targets.split()]:
            cert, key, pem = certs[kind]
            if target == "nginx-tls":
                s = start_nginx_tls(work / kind, up.port, cert, key, tickets=True)
            elif target == "haproxy-jwt-tls":
                s = start_haproxy_jwt_tls(work / kind, up.port, pem, keys, env)
            else:
                s = start_authgate_tls(work / kind, target, a.authgate, up.port, cert, key, keys,
                                       env, none=target == "authgate-none-tls")
            try:
                auth = target in ("haproxy-jwt-tls", "authgate-tls")
                checks = check(target, s.port, auth, token, sub)
                for load in a.loads.split():
                    run = {"h1": lambda: wrk_load(s.port, token, a.duration),
                           "h2": lambda: h2load_load(s.port, token, a.duration),
                           "hs": lambda: handshake_load(s.port, a.duration, False),
                           "hs-resumed": lambda: handshake_load(s.port, a.duration, True)}[load]()
                    row = {"target": target, "cert": kind, "load": load, "round": rnd,
                           "checks": checks,
                           **measured(s.proc.pid, run)}
                    rows.append(row)
                    with results.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    log(f"r{rnd} {kind:5} {target:18} {load:10} {row['rate']:9.0f}/s "
                        f"{row['cpu_us_per'] or 0:8.1f} CPU µs each"
                        + (f", {row['resumed']:.0%} resumed" if row.get('resumed') is not None else ""))
            finally:
                s.stop()
    finally:
        up.stop()
    print(table(rows))


LOADS = {
    "h1": "HTTP/1.1 over TLS, `wrk -t1 -c32` (keep-alive), RS256 token on every request",
    "h2": "HTTP/2 over TLS, `h2load -t1 -c32 -m10`, RS256 token on every request",
    "hs": "full TLS 1.3 handshakes, `openssl s_time -new` × 2 clients, one `GET /` each, no resumption",
    "hs-resumed": "resumed TLS 1.3 handshakes (session tickets), `openssl s_time -reuse` × 2 clients",
}
NAMES = {
    "nginx-tls": "nginx TLS proxy",
    "haproxy-jwt-tls": "HAProxy TLS + jwt_verify RS256",
    "authgate-none-tls": 'authgate, `auth = "none"` route',
    "authgate-tls": "authgate, RS256, token cache on",
}


def merged(rs):
    """Rounds of one (cert, target, load): the median CPU figure and rate, the spread, and
    every flag any round raised."""
    import statistics
    us = [r["cpu_us_per"] for r in rs if r["cpu_us_per"]]
    return {"cpu_us_per": statistics.median(us) if us else None,
            "spread": (min(us), max(us)) if len(us) > 1 else None,
            "rate": statistics.median(r["rate"] for r in rs),
            "non_2xx": sum(r.get("non_2xx") or 0 for r in rs),
            "checks": "ok" if all(r["checks"] == "ok" for r in rs) else "failed",
            "resumed": min((r["resumed"] for r in rs if r.get("resumed") is not None), default=None)}


def table(rows):
    """Per load: the median over rounds of CPU µs per request (per connection for handshakes, with the connections one
    core could take per second) for each certificate, and ratios to nginx and HAProxy."""
    by = {}
    for r in rows:
        by.setdefault((r["cert"], r["target"], r["load"]), []).append(r)
    by = {k: merged(v) for k, v in by.items()}
    certs = list(dict.fromkeys(r["cert"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    out = []
    for load in dict.fromkeys(r["load"] for r in rows):
        hs = load.startswith("hs")
        out += ["", f"**{LOADS.get(load, load)}**", ""]
        head = "| target |"
        rule = "|---|"
        for c in certs:
            head += f" {c}: CPU µs/{'conn' if hs else 'req'} |" + (" conn/s per core |" if hs else " rate /s |") \
                + " ÷ nginx | ÷ HAProxy |"
            rule += "---:|" * 4
        out += [head, rule]
        for t in targets:
            line = f"| {NAMES.get(t, t)} |"
            for c in certs:
                r = by.get((c, t, load))
                us = r and r["cpu_us_per"]
                if not us:
                    line += " — | — | — | — |"
                    continue

                def ratio(peer):
                    q = by.get((c, peer, load))
                    return f"{us / q['cpu_us_per']:.2f}" if q and q["cpu_us_per"] else "—"
                flag = ""
                if r.get("non_2xx") and load in ("h1", "h2"):
                    flag = f" ({r['non_2xx']} non-2xx!)"
                if r["checks"] != "ok":
                    flag += " (checks failed!)"
                if hs and load == "hs-resumed" and r.get("resumed") is not None and r["resumed"] < 0.99:
                    flag += f" ({r['resumed']:.0%} resumed)"
                second = f"{1e6 / us:,.0f}" if hs else f"{r['rate']:,.0f}"
                if r["spread"]:
                    flag += f" ({r['spread'][0]:.0f}–{r['spread'][1]:.0f})"
                line += f" {us:.1f}{flag} | {second} | {ratio('nginx-tls')} | {ratio('haproxy-jwt-tls')} |"
            out.append(line)
    return "\n".join(out).strip()


if __name__ == "__main__":
    main()
