#!/usr/bin/env python3
"""RSS of authgate holding N idle keep-alive client connections (issue #6: <= 64 MiB at 1,000).

  python3 benches/idle_rss.py [N [READ_BUFFER_BYTES]]   # after `cargo build --release`
  SLOW_HEAD=32000 python3 benches/idle_rss.py 1000     # N slow clients, 32000 bytes of head each
  PROTO=tls python3 benches/idle_rss.py 1000           # HTTP/1.1 over TLS (P-256 certificate)
  PROTO=h2 python3 benches/idle_rss.py 1000            # HTTP/2 over TLS (ALPN h2; pip install h2)

Starts target/release/authgate on a loopback port with a one-route config, opens N client
connections, sends one request on each (answered by the gateway itself: 404, no upstream
needed), keeps them all open and idle, and prints VmRSS before and after. With SLOW_HEAD=B,
each connection instead sends B bytes of a request head that never ends (a slowloris client
that has sent all it may) and stays open; header_read_timeout is raised so none is cut.
With PROTO=tls each connection is TLS 1.3 (a fresh self-signed P-256 certificate) carrying
one HTTP/1.1 request; with PROTO=h2 it is TLS with ALPN h2, the connection preface and one
request on stream 1 (python `h2` as the client), then idle (authgate answers pings and
nothing else arrives).
"""
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
read_buffer = f"read_buffer_bytes = {int(sys.argv[2])}\n" if len(sys.argv) > 2 else ""
slow_head = int(os.environ.get("SLOW_HEAD", "0"))
proto = os.environ.get("PROTO", "plain")
assert proto in ("plain", "tls", "h2"), f"PROTO={proto}: plain, tls or h2"
assert not (slow_head and proto != "plain"), "SLOW_HEAD is measured over plain HTTP/1.1"
if slow_head:
    read_buffer += 'header_read_timeout = "1h"\n'

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * n + 256)), hard))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


port, admin = free_port(), free_port()
d = tempfile.mkdtemp()
cfg = os.path.join(d, "authgate.toml")
tls_conf = ""
client_ctx = None
if proto != "plain":
    # The certificate maker of the TLS load bench (a fresh self-signed P-256 for 127.0.0.1).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from pathlib import Path
    from tls_load import make_cert
    cert_file, key_file, _ = make_cert("ecdsa", Path(d))
    tls_conf = f'[server.tls]\ncert = "{cert_file}"\nkey = "{key_file}"\n'
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    client_ctx.set_alpn_protocols(["h2"] if proto == "h2" else ["http/1.1"])
with open(cfg, "w") as f:
    f.write(f"""[server]
listen = "127.0.0.1:{port}"
threads = 2
keepalive_timeout = "10m"
{read_buffer}{tls_conf}[admin]
listen = "127.0.0.1:{admin}"
[upstreams.u]
url = "http://127.0.0.1:9"
[[routes]]
name = "x"
path_prefix = "/x"
auth = "none"
upstream = "u"
""")
env = dict(os.environ, RUST_LOG="warn")
proc = subprocess.Popen([os.environ.get("AUTHGATE_BIN", "target/release/authgate"), "run", "-c", cfg], env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (2 * n + 256, 2 * n + 256)))


def h2_request(s):
    """One GET on stream 1 of a fresh HTTP/2 connection; returns the h2 state (kept alive)."""
    import h2.config
    import h2.connection
    import h2.events
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"),
                       (":path", "/nowhere")], end_stream=True)
    s.sendall(c.data_to_send())
    status = None
    while True:
        data = s.recv(65536)
        assert data, "connection closed before the answer"
        for e in c.receive_data(data):
            if isinstance(e, h2.events.ResponseReceived):
                status = dict(e.headers)[b":status"]
            if isinstance(e, h2.events.StreamEnded) and e.stream_id == 1:
                assert status == b"404", status
                s.sendall(c.data_to_send())  # SETTINGS acks, window updates
                return c
        s.sendall(c.data_to_send())


def rss_mib():
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.5)
    before = rss_mib()
    conns = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if client_ctx is not None:
            s = client_ctx.wrap_socket(s, server_hostname="127.0.0.1")
            assert s.selected_alpn_protocol() == ("h2" if proto == "h2" else "http/1.1"), s.selected_alpn_protocol()
        if proto == "h2":
            conns.append((s, h2_request(s)))
            continue
        if slow_head:
            head = b"GET /x HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
            s.sendall(head + b"a" * (slow_head - len(head)))
        else:
            s.sendall(b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n")
            got = s.recv(4096)
            assert got.startswith(b"HTTP/1.1 404"), got[:64]
        conns.append(s)
    time.sleep(1.0)
    after = rss_mib()
    socks = [c[0] if isinstance(c, tuple) else c for c in conns]
    alive = sum(1 for s in socks if s.fileno() >= 0)
    what = {"plain": "idle keep-alive connections", "tls": "idle keep-alive TLS connections (HTTP/1.1)",
            "h2": "idle HTTP/2 connections over TLS"}[proto]
    if slow_head:
        what = f"slow clients with {slow_head} bytes of head each"
    per_kib = (after - before) * 1024 / n
    print(f"read_buffer_bytes {sys.argv[2] if len(sys.argv) > 2 else 'default'}: "
          f"{what}: {alive}; authgate VmRSS before {before:.1f} MiB, "
          f"with them {after:.1f} MiB ({per_kib:.1f} KiB per connection, "
          f"{1024 * 1024 / per_kib:.0f} per GiB)")
    for s in socks:
        s.close()
finally:
    proc.terminate()
    proc.wait(timeout=30)
