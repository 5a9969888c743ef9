#!/usr/bin/env python3
"""Syscalls per small request: sluice against nginx (issue 19, the first step).

What it measures
  For each server (sluice `serve DIR --workers 1`, default policy; nginx 1.x with
  one worker, no master, sendfile on, tcp_nopush on, `open_file_cache max=1000
  inactive=20s; open_file_cache_valid 30s;`, access log off) and each case
    - `GET /4k.bin` (a 4 KiB file, 200),
    - the same with `If-None-Match: <the server's own ETag>` (304),
  on ONE keep-alive connection, one request at a time (like `wrk -c1`):
    1. WARMUP requests (not traced), then `strace -f -c` attached to every
       thread of the server while REQUESTS requests are made: syscalls per
       request, by name (the count divided by REQUESTS; a "calls" figure, so it
       does not depend on the machine's load, except wake-ups: see below).
    2. `strace -f -tt -e trace=all` of TRACE further requests: the exact
       sequence per request, by thread, printed as-is (with `-s 64`).
  Syscall counts are per request on a sequential client: a server that reads
  until EAGAIN and then waits in epoll shows one EAGAIN read and one epoll_wait
  per request; a client that pipelines or a loaded server would show fewer.
  Futex counts (thread wake-ups) can vary with timing; run twice to see.

  3. With WRK_CONNS=N, also `strace -f -c` while `wrk -t1 -cN -d3s` runs:
       calls per request under concurrency (strace slows the server; the
       counts per request, not the rate, are the figure).

Environment: WRK_CONNS (0: off), REQUESTS (1000), WARMUP (200), TRACE (3), SLUICE_BIN (as
small_file.py), SLUICE_ARGS (extra words for `serve`, e.g. "--config x.toml").

Usage:  python3 tests/bench/syscalls.py > out.md    (needs strace, nginx, root or
        ptrace permission over its own children)
Output: markdown on stdout (tables, then the traces); progress on stderr.
"""

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
from sluice_test import sluice_binary  # noqa: E402
from small_file import free_port, log  # noqa: E402

REQUESTS = int(os.environ.get("REQUESTS", "1000"))
WARMUP = int(os.environ.get("WARMUP", "200"))
TRACE = int(os.environ.get("TRACE", "3"))
WRK_CONNS = int(os.environ.get("WRK_CONNS", "0"))
LIVE = []


def wait_listening(proc, port, timeout=60, poll=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(poll)
    sys.exit(f"no listener on {port}")


def start_sluice(www, workdir):
    port = free_port()
    argv = [sluice_binary(), "serve", www, "--listen", f"127.0.0.1:{port}", "--workers", "1"]
    argv += shlex.split(os.environ.get("SLUICE_ARGS", ""))
    logf = open(os.path.join(workdir, "sluice.log"), "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                         env=dict(os.environ, SLUICE_LOG="warn"))
    LIVE.append(p)
    wait_listening(p, port)
    return p, port, " ".join(shlex.quote(a) for a in ["sluice"] + argv[1:])


def nginx_conf(www, workdir, port, keepalive_requests=100000):
    """Writes the configuration nginx is measured with (one worker, no access
    log, `open_file_cache`, sendfile + tcp_nopush) in a new directory under
    `workdir`; returns (that directory, the configuration file)."""
    d = tempfile.mkdtemp(prefix="nginx-", dir=workdir)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  default_type application/octet-stream;
  sendfile on; tcp_nopush on;
  open_file_cache max=1000 inactive=20s;
  open_file_cache_valid 30s;
  keepalive_requests {keepalive_requests};
  server {{ listen 127.0.0.1:{port}; root {www}; }}
}}
""")
    return d, conf


def start_nginx(www, workdir):
    port = free_port()
    d, conf = nginx_conf(www, workdir, port)
    p = subprocess.Popen(["nginx", "-c", conf, "-p", d], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    LIVE.append(p)
    wait_listening(p, port)
    return p, port, "nginx (one worker, open_file_cache max=1000 inactive=20s, valid 30s, sendfile, tcp_nopush)"


class Client:
    """One keep-alive connection; one request at a time, response read whole."""

    def __init__(self, port):
        self.port = port
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def get(self, headers=""):
        req = f"GET /4k.bin HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{headers}\r\n".encode()
        self.s.sendall(req)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
        n = int(m.group(1)) if (m and status != 304) else 0
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        self.buf = self.buf[n:]
        return status, head.decode(errors="replace")


def threads(pid):
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


def strace(pid, args, out):
    argv = ["strace", "-f", "-o", out] + args
    for t in threads(pid):
        argv += ["-p", str(t)]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # attached (strace prints nothing on attach with -o; give it time)
    return p


def stop(p):
    p.send_signal(signal.SIGINT)
    p.wait(30)


def parse_c(path):
    """strace -c output: {syscall: (calls, errors)}."""
    calls = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and re.match(r"^[\d.]+$", f[0]) and f[-1] != "total":
            name = f[-1]
            errors = int(f[4]) if len(f) == 6 else 0
            calls[name] = (int(f[3]), errors)
    return calls


def measure_wrk(name, pid, port, headers, workdir, conns):
    """strace -f -c while `wrk -t1 -c<conns> -d3s` runs: calls per request
    under concurrency (wake-ups, batching), divided by wrk's request count."""
    argv = ["wrk", "-t1", f"-c{conns}", "-d3s"]
    if headers:
        argv += ["-H", headers.strip()]
    argv.append(f"http://127.0.0.1:{port}/4k.bin")
    subprocess.run(argv[:3] + ["-d1s"] + argv[4:], capture_output=True, check=True)  # warm-up
    out = os.path.join(workdir, f"{name}-wrk-c.txt")
    p = strace(pid, ["-c"], out)
    w = subprocess.run(argv, capture_output=True, text=True, check=True)
    stop(p)
    n = int(re.search(r"^\s*(\d+) requests in", w.stdout, re.M).group(1))
    return parse_c(out), n


def measure(name, pid, port, headers, workdir):
    c = Client(port)
    for _ in range(WARMUP):
        status, _ = c.get(headers)
    out = os.path.join(workdir, f"{name}-c.txt")
    p = strace(pid, ["-c"], out)
    for _ in range(REQUESTS):
        status, _ = c.get(headers)
    time.sleep(0.3)
    stop(p)
    counts = parse_c(out)
    tout = os.path.join(workdir, f"{name}-trace.txt")
    p = strace(pid, ["-tt", "-s", "64", "-e", "trace=all"], tout)
    for _ in range(TRACE):
        status, head = c.get(headers)
        time.sleep(0.05)  # keeps the requests apart in the trace
    stop(p)
    c.s.close()
    trace = [ln.rstrip() for ln in open(tout) if "resumed>" in ln or "(" in ln]
    return counts, trace, status


def main():
    for tool in ("strace", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"missing {tool}")
    tmp = tempfile.mkdtemp(prefix="sluice-syscalls-")
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    with open(os.path.join(www, "4k.bin"), "wb") as f:
        f.write(os.urandom(4096))
    try:
        servers = [("sluice",) + start_sluice(www, tmp), ("nginx",) + start_nginx(www, tmp)]
        results, wrk_results = {}, {}
        for name, proc, port, desc in servers:
            c = Client(port)
            _, head = c.get()
            c.s.close()
            etag = re.search(r"\r\netag:\s*(\S+)", "\r\n" + head, re.I).group(1)
            for case, headers in (("200", ""), ("304", f"If-None-Match: {etag}\r\n")):
                log(f"{name} {case}")
                counts, trace, status = measure(f"{name}-{case}", proc.pid, port, headers, tmp)
                if status != int(case):
                    sys.exit(f"{name}: expected {case}, got {status}")
                results[(name, case)] = (counts, trace)
                if WRK_CONNS:
                    wc, n = measure_wrk(f"{name}-{case}", proc.pid, port, headers, tmp, WRK_CONNS)
                    wrk_results[(name, case)] = (wc, n)
        names = sorted({k for v in results.values() for k in v[0]},
                       key=lambda k: -max(v[0].get(k, (0, 0))[0] for v in results.values()))
        print(f"Syscalls per request, {REQUESTS:,} sequential requests on one keep-alive "
              f"connection after {WARMUP} untraced (`strace -f -c`, every thread):\n")
        for name, _, _, desc in servers:
            print(f"- {name}: `{desc}`")
        print("\n| syscall | sluice 200 | nginx 200 | sluice 304 | nginx 304 |")
        print("|---|---|---|---|---|")
        tot = {k: 0.0 for k in results}
        for n in names:
            cells = []
            for k in (("sluice", "200"), ("nginx", "200"), ("sluice", "304"), ("nginx", "304")):
                calls, errs = results[k][0].get(n, (0, 0))
                tot[k] += calls / REQUESTS
                cells.append(f"{calls / REQUESTS:.2f}" + (f" ({errs / REQUESTS:.2f} err)" if errs else ""))
            print(f"| {n} | " + " | ".join(cells) + " |")
        print("| **total** | " + " | ".join(f"**{tot[k]:.2f}**" for k in (
            ("sluice", "200"), ("nginx", "200"), ("sluice", "304"), ("nginx", "304"))) + " |")
        if wrk_results:
            print(f"\nUnder `wrk -t1 -c{WRK_CONNS} -d3s` (traced, so slowed: the counts, not the rate, "
                  "are the figure), calls per request:\n")
            keys = (("sluice", "200"), ("nginx", "200"), ("sluice", "304"), ("nginx", "304"))
            wnames = sorted({k for v in wrk_results.values() for k in v[0]},
                            key=lambda k: -max(v[0].get(k, (0, 0))[0] / v[1] for v in wrk_results.values()))
            print("| syscall | sluice 200 | nginx 200 | sluice 304 | nginx 304 |")
            print("|---|---|---|---|---|")
            tot = {k: 0.0 for k in keys}
            for n in wnames:
                cells = []
                for k in keys:
                    (calls, errs), reqs = wrk_results[k][0].get(n, (0, 0)), wrk_results[k][1]
                    tot[k] += calls / reqs
                    cells.append(f"{calls / reqs:.3f}" + (f" ({errs / reqs:.3f} err)" if errs else ""))
                print(f"| {n} | " + " | ".join(cells) + " |")
            print("| **total** | " + " | ".join(f"**{tot[k]:.2f}**" for k in keys) + " |")
            print("| requests traced | " + " | ".join(f"{wrk_results[k][1]:,}" for k in keys) + " |")
        for (name, case), (_, trace) in results.items() if TRACE else ():
            print(f"\n{name} {case}: `strace -f -tt -s 64` of {TRACE} requests\n\n```")
            print("\n".join(trace))
            print("```")
    finally:
        for p in LIVE:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
