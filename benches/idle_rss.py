#!/usr/bin/env python3
"""RSS of authgate holding N idle keep-alive client connections (issue #6: <= 64 MiB at 1,000).

  python3 benches/idle_rss.py [N [READ_BUFFER_BYTES]]   # after `cargo build --release`
  SLOW_HEAD=32000 python3 benches/idle_rss.py 1000     # N slow clients, 32000 bytes of head each

Starts target/release/authgate on a loopback port with a one-route config, opens N client
connections, sends one request on each (answered by the gateway itself: 404, no upstream
needed), keeps them all open and idle, and prints VmRSS before and after. With SLOW_HEAD=B,
each connection instead sends B bytes of a request head that never ends (a slowloris client
that has sent all it may) and stays open; header_read_timeout is raised so none is cut.
"""
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
read_buffer = f"read_buffer_bytes = {int(sys.argv[2])}\n" if len(sys.argv) > 2 else ""
slow_head = int(os.environ.get("SLOW_HEAD", "0"))
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
with open(cfg, "w") as f:
    f.write(f"""[server]
listen = "127.0.0.1:{port}"
threads = 2
keepalive_timeout = "10m"
{read_buffer}[admin]
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
    alive = sum(1 for s in conns if s.fileno() >= 0)
    what = f"slow clients with {slow_head} bytes of head each" if slow_head else "idle keep-alive connections"
    per_kib = (after - before) * 1024 / n
    print(f"read_buffer_bytes {sys.argv[2] if len(sys.argv) > 2 else 'default'}: "
          f"{what}: {alive}; authgate VmRSS before {before:.1f} MiB, "
          f"with them {after:.1f} MiB ({per_kib:.1f} KiB per connection, "
          f"{1024 * 1024 / per_kib:.0f} per GiB)")
    for s in conns:
        s.close()
finally:
    proc.terminate()
    proc.wait(timeout=30)
