#!/usr/bin/env python3
"""Transfer-engine benchmark (issue 3), per ../shared/BENCH-METHOD.md.

Serves one 256 MiB file over loopback from, all at once:
  sluice zero-copy, sluice copy 256 KiB, sluice copy 16 KiB   (release binary, --workers 1)
  nginx sendfile on + tcp_nopush, nginx sendfile off + output_buffers 2 256k  (one process)
  aiohttp FileResponse                                         (one process)
every server pinned on CPU 1, the clients (curl to /dev/null) on CPU 0; 1 and 4
concurrent downloads; rounds interleaved (the order rotates every round).
Reports throughput and MB per server CPU-second (and per server+client
CPU-second), medians with [min-max], and the ratios the issue asks for.

Usage: python3 tests/bench/transfer.py [--rounds 7] [--size-mib 256] [--no-build]
The binary is $SLUICE_BIN, else $CARGO_TARGET_DIR (or target)/release/sluice;
$SLUICE_BASELINE_BIN adds an older build's zero-copy and copy 256 KiB rows
(labelled $SLUICE_BASELINE_LABEL, default "baseline").
Needs: nginx, curl, taskset; aiohttp (pip install aiohttp).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import small_file as sf

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVER_CPU = "1"
CLIENT_CPU = "0"


def cpu_seconds(pid):
    """On-CPU time of every thread of `pid` (schedstat: nanoseconds), and the
    part of it spent by sluice's wasmtime epoch ticker thread."""
    total = ticker = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that just exited
        total += ns
        if comm == "sluice-epoch":
            ticker += ns
    return total / 1e9, ticker / 1e9


def start_servers(tmp, www, sluice_bin):
    servers = []

    def sluice(name, config, binary=sluice_bin):
        port = sf.free_port()
        cfg = os.path.join(tmp, f"{name}.toml")
        with open(cfg, "w") as f:
            f.write(config)
        env = dict(os.environ, SLUICE_LOG="warn")
        servers.append(
            sf.Server(name, [binary, "serve", www, "--listen", f"127.0.0.1:{port}", "--workers", "1", "--config", cfg],
                      port, tmp, "sluice", env)
        )

    sluice("sluice zero-copy", "")
    sluice("sluice copy 256K", '[policy]\nzero-copy = "false"\nchunk-size = "256k"\n')
    sluice("sluice copy 16K", '[policy]\nzero-copy = "false"\nchunk-size = "16k"\n')
    # An older build side by side (same rounds, same machine state), to see
    # what a change costs: $SLUICE_BASELINE_BIN, labelled
    # $SLUICE_BASELINE_LABEL.
    baseline = os.environ.get("SLUICE_BASELINE_BIN")
    if baseline:
        label = os.environ.get("SLUICE_BASELINE_LABEL", "baseline")
        sluice(f"{label} zero-copy", "", baseline)
        sluice(f"{label} copy 256K", '[policy]\nzero-copy = "false"\nchunk-size = "256k"\n', baseline)

    def nginx(name, body_conf):
        port = sf.free_port()
        d = os.path.join(tmp, name.replace(" ", "_"))
        os.makedirs(d)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                f"""
worker_processes 1;
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log crit;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  default_type application/octet-stream;
  keepalive_requests 100000;
  {body_conf}
  server {{ listen 127.0.0.1:{port}; root {www}; }}
}}
"""
            )
        servers.append(sf.Server(name, ["nginx", "-c", conf, "-p", d], port, tmp, "nginx"))

    nginx("nginx sendfile on", "sendfile on; tcp_nopush on;")
    nginx("nginx sendfile off", "sendfile off; output_buffers 2 256k;")

    port = sf.free_port()
    app = os.path.join(tmp, "aio.py")
    with open(app, "w") as f:
        f.write(
            f"""
import sys
from aiohttp import web
root = {www!r}
async def handler(request):
    return web.FileResponse(root + "/" + request.match_info["name"])
app = web.Application()
app.router.add_get("/{{name}}", handler)
web.run_app(app, host="127.0.0.1", port={port}, access_log=None, print=None)
"""
        )
    servers.append(sf.Server("aiohttp FileResponse", [sys.executable, app], port, tmp, "aiohttp"))
    for s in servers:
        s.wait_listening()
    return servers


def run_once(server, conns, size, url=None, curl_args=()):
    """`conns` concurrent curl downloads of `url` (default: big.bin over plain
    HTTP), each with `curl_args`; returns (MB/s, server MB/CPU-s, total
    MB/CPU-s, share of the server CPU spent by the epoch ticker)."""
    url = url or f"http://127.0.0.1:{server.port}/big.bin"
    c0, s0, t0 = sf.children_cpu(), cpu_seconds(server.pid), time.perf_counter()
    procs = [
        subprocess.Popen(
            ["taskset", "-c", CLIENT_CPU, "curl", "-s", *curl_args, "-o", "/dev/null", "-w", "%{size_download}", url],
            stdout=subprocess.PIPE,
        )
        for _ in range(conns)
    ]
    outs = [p.communicate()[0] for p in procs]
    t1, s1, c1 = time.perf_counter(), cpu_seconds(server.pid), sf.children_cpu()
    for out, p in zip(outs, procs):
        if p.returncode != 0 or int(out) != size:
            sys.exit(f"{server.name}: curl failed ({p.returncode}, {out!r})")
    mb = conns * size / 1e6
    server_cpu = s1[0] - s0[0]
    ticker = (s1[1] - s0[1]) / server_cpu
    return mb / (t1 - t0), mb / server_cpu, mb / (server_cpu + (c1 - c0)), ticker


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    size = args.size_mib << 20

    for tool in ("nginx", "curl", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"missing {tool} (apt-get install nginx curl util-linux)")
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        sys.exit("missing aiohttp (pip install aiohttp)")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "sluice"], cwd=REPO, check=True)
    sluice_bin = sf.sluice_binary()

    tmp = tempfile.mkdtemp(prefix="sluice-bench-")
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    path = os.path.join(www, "big.bin")
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
    with open(path, "rb") as f:  # warm the page cache
        while f.read(8 << 20):
            pass

    servers = start_servers(tmp, www, sluice_bin)
    results = {}
    try:
        for s in servers:  # warm-up download each
            run_once(s, 1, size)
        cases = [(s, c) for c in (1, 4) for s in servers]
        for r in range(args.rounds):
            k = r % len(cases)
            for s, c in cases[k:] + cases[:k]:
                results.setdefault((s.name, c), []).append(run_once(s, c, size))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def med(name, conns, i):
        return statistics.median(v[i] for v in results[(name, conns)])

    print(f"\n{args.size_mib} MiB file, loopback, {args.rounds} interleaved rounds, medians [min–max]; MB = 10^6 bytes\n")
    print("| server — body path | conns | MB/s | MB per server CPU-s | MB per server+client CPU-s | MB/s vs nginx sf on | vs nginx sf off |")
    print("|---|---|---|---|---|---|---|")
    for c in (1, 4):
        for s in servers:
            v = results[(s.name, c)]
            thr = med(s.name, c, 0)
            print(
                f"| {s.name} | {c} | {sf.fmt([x[0] for x in v])} | {sf.fmt([x[1] for x in v])} | {sf.fmt([x[2] for x in v])} "
                f"| {thr / med('nginx sendfile on', c, 0):.2f} | {thr / med('nginx sendfile off', c, 0):.2f} |"
            )
    print("\nTargets (ratios of medians from this run):")
    for c in (1, 4):
        r = med("sluice zero-copy", c, 0) / med("nginx sendfile on", c, 0)
        print(f"- zero-copy / nginx sendfile on, throughput, {c} conn: {r:.2f} {'MET' if r >= 1 else 'MISSED'}")
    r = med("sluice zero-copy", 4, 1) / med("nginx sendfile on", 4, 1)
    print(f"- zero-copy / nginx sendfile on, MB per server CPU-s, 4 conns: {r:.2f} {'MET' if r >= 1 else 'MISSED'}")
    for c in (1, 4):
        r = med("sluice copy 256K", c, 0) / med("nginx sendfile off", c, 0)
        print(f"- copy 256K / nginx sendfile off, throughput, {c} conn: {r:.2f} {'MET' if r >= 1 else 'MISSED'}")
    for c in (1, 4):
        share = med("sluice zero-copy", c, 3) * 100
        print(f"- share of sluice zero-copy's server CPU spent by its epoch ticker thread, {c} conn: {share:.1f}%")
    for c in (1, 4):
        t = med("sluice copy 256K", c, 0) / med("sluice copy 16K", c, 0)
        e = med("sluice copy 256K", c, 1) / med("sluice copy 16K", c, 1)
        print(f"- sluice copy 256K / 16K, {c} conn: throughput {t:.2f}x, MB per server CPU-s {e:.2f}x")


if __name__ == "__main__":
    main()
