#!/usr/bin/env python3
"""TLS and HTTP/2 benchmark (issue 9, item 7), per BENCH-METHOD.md (on the
build machines /work/shared/BENCH-METHOD.md): sluice against nginx, one run,
side by side. Reuses small_file.py's servers and report helpers and
transfer.py's curl downloads.

Servers (all started at once, each pinned on CPU 1 with one worker, access
logs off, the same self-signed P-256 certificate, TLS 1.3):
  sluice 16K / 256K / 1M   the release binary, `--workers 1`, the default
                           policy with `[policy] chunk-size` 16k, 256k (the
                           default), 1m: TLS always takes the copying path
  nginx TLS                small_file.py's nginx (one worker, no master,
                           sendfile on, open_file_cache) plus `listen ... ssl
                           http2` (nginx 1.22 predates `http2 on`, which is
                           the same switch), `ssl_protocols TLSv1.3`; over TLS
                           nginx does not sendfile (no kTLS): it reads into its
                           default output_buffers (2 x 32k)
  nginx TLS 256k bufs      the same with `output_buffers 2 256k`

Cases (clients pinned on CPU 0; rounds interleaved, the server order rotating
every round; page cache warm; one unmeasured warm-up of each case first):
  tls 1 / tls 4   1 and 4 concurrent `curl -k --http1.1` downloads of a
                  SIZE_MIB file (transfer.py's run_once): MB/s, MB per server
                  CPU-second, per server+client CPU-second, and the clients'
                  CPU use (to show the client was not the bottleneck)
  h2 large        `h2load -c1 -m1 -n H2_LARGE_N` of the same file: one stream
                  at a time on one connection
  h2 4k           `h2load -c8 -m32 -t1 -D DURATION` over 64 distinct 4 KiB
                  files (sluice 256K and nginx TLS only: the chunk size does
                  not matter for a 4 KiB body): req/s, server CPU µs/request
Server CPU is the on-CPU time of all its threads (schedstat, ns) before and
after each run; client CPU is getrusage of the finished clients.

Environment: ROUNDS (5), SIZE_MIB (256), H2_LARGE_N (2), DURATION (4s),
SLUICE_BIN (default $CARGO_TARGET_DIR or target, /release/sluice).
Usage:  python3 tests/bench/tls.py        (ROUNDS=1 DURATION=2s for a quick look)
Output: a markdown section for BENCHMARKS.md on stdout, progress on stderr.
Needs: nginx, curl, h2load (apt-get install nginx curl nghttp2-client),
openssl, taskset, and a release build (cargo build --release -p sluice).
"""

import datetime
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

import small_file as sf
import transfer

sys.path.insert(0, os.path.join(sf.REPO, "tests", "support"))
from sluice_test import make_cert, sluice_binary  # noqa: E402

SLUICE_CHUNKS = {"sluice 16K": "16k", "sluice 256K": "256k", "sluice 1M": "1m"}
NGINX_TLS = "ssl_certificate {cert}; ssl_certificate_key {key}; ssl_protocols TLSv1.3;"
SMALL_FILES = 64
ENV_KNOBS = ("ROUNDS", "SIZE_MIB", "H2_LARGE_N", "DURATION", "SLUICE_BIN")


def make_site(tmp, size):
    """The benchmarks' site under `tmp`: big.bin of `size` bytes (whole MiB)
    and SMALL_FILES files of 4 KiB under 4k/, in the page cache; returns its
    directory."""
    www = os.path.join(tmp, "www")
    os.makedirs(os.path.join(www, "4k"))
    with open(os.path.join(www, "big.bin"), "wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
    for i in range(SMALL_FILES):
        with open(os.path.join(www, "4k", f"{i:02}.bin"), "wb") as f:
            f.write(os.urandom(4096))
    for root, _, files in os.walk(www):  # warm the page cache
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                while f.read(8 << 20):
                    pass
    return www


def start_servers(sluice_bin, www, tmp, cert, key, nofile):
    servers = []
    env = dict(os.environ, SLUICE_LOG="warn")
    for name, chunk in SLUICE_CHUNKS.items():
        port = sf.free_port()
        cfg = os.path.join(tmp, f"{chunk}.toml")
        with open(cfg, "w") as f:
            f.write(f'[policy]\nchunk-size = "{chunk}"\n')
        argv = [sluice_bin, "serve", www, "--listen", f"127.0.0.1:{sf.free_port()}",
                "--tls-cert", cert, "--tls-key", key, "--tls-listen", f"127.0.0.1:{port}",
                "--workers", "1", "--config", cfg]
        servers.append(sf.Server(name, argv, port, tmp, "sluice", env))
    tls = NGINX_TLS.format(cert=cert, key=key)
    servers.append(sf.start_nginx("nginx TLS", www, tmp, nofile, listen="ssl http2", server_conf=tls))
    servers.append(sf.start_nginx("nginx TLS 256k bufs", www, tmp, nofile, listen="ssl http2",
                                  server_conf=tls + " output_buffers 2 256k;"))
    for s in servers:
        s.wait_listening()
    return servers


def https(server, path):
    return f"https://127.0.0.1:{server.port}/{path}"


def negotiated(server):
    """What curl (as in the TLS rows) and the server agreed on: TLS version
    and cipher, ALPN."""
    out = subprocess.run(["curl", "-sk", "-v", "--http1.1", "-o", "/dev/null", https(server, "4k/00.bin")],
                         capture_output=True, text=True, timeout=30).stderr
    cipher = re.search(r"SSL connection using (\S+) / (\S+)", out)
    alpn = re.search(r"ALPN: server accepted (\S+)", out) or re.search(r"ALPN, server accepted to use (\S+)", out)
    return f"{cipher.group(1)} {cipher.group(2)}, ALPN {alpn.group(1)}" if cipher and alpn else "?"


def h2load(server, argv):
    """Runs h2load (pinned on CPU 0) against `server`; returns its parsed
    summary with the server's and the client's CPU seconds."""
    c0, s0 = sf.children_cpu(), transfer.cpu_seconds(server.pid)[0]
    out = subprocess.run(["taskset", "-c", str(sf.CLIENT_CPU), "h2load", *argv],
                         capture_output=True, text=True, timeout=600)
    s1, c1 = transfer.cpu_seconds(server.pid)[0], sf.children_cpu()
    text = out.stdout + out.stderr
    done = re.search(r"finished in ([\d.]+)(s|ms),", text)
    reqs = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    proto = re.search(r"Application protocol: (\S+)", text)
    tls = re.search(r"TLS Protocol: (\S+)\nCipher: (\S+)", text)
    data = re.search(r"\((\d+)\) data", text)
    if out.returncode != 0 or not (done and reqs and status and proto and tls and data):
        sys.exit(f"h2load {' '.join(argv)} against {server.name} failed:\n{text}")
    ok = int(reqs.group(4))
    # With -D, responses that end after the measured time count in the
    # status codes but not as done: at least `ok` 2xx, and nothing else.
    bad = any(int(status.group(i)) for i in (2, 3, 4))
    if proto.group(1) != "h2" or int(reqs.group(5)) or int(reqs.group(6)) or int(status.group(1)) < ok or bad or not ok:
        sys.exit(f"h2load against {server.name}: not all requests succeeded over h2:\n{text}")
    secs = float(done.group(1)) / (1000 if done.group(2) == "ms" else 1)
    server.h2load_tls = f"{tls.group(1)} {tls.group(2)}"
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", text)
    mean_ms = float(mean.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[mean.group(2)] if mean else float("nan")
    return {"secs": secs, "requests": ok, "data": int(data.group(1)), "server_cpu": s1 - s0, "client_cpu": c1 - c0,
            "mean_ms": mean_ms}


def tls_case(server, conns, size):
    thr, per_cpu, per_total, _ = transfer.run_once(
        server, conns, size, url=https(server, "big.bin"), curl_args=["-k", "--http1.1"])
    mb = conns * size / 1e6
    client_cpu = mb / per_total - mb / per_cpu
    return {"mbps": thr, "mb_cpu": per_cpu, "mb_total_cpu": per_total, "client_util": client_cpu / (mb / thr)}


def h2_large_case(server, size, n):
    r = h2load(server, ["-c1", "-m1", "-t1", f"-n{n}", https(server, "big.bin")])
    if r["data"] != n * size:
        sys.exit(f"h2load against {server.name}: {r['data']} body bytes, expected {n * size}")
    mb = n * size / 1e6
    return {"mbps": mb / r["secs"], "mb_cpu": mb / r["server_cpu"],
            "mb_total_cpu": mb / (r["server_cpu"] + r["client_cpu"]), "client_util": r["client_cpu"] / r["secs"]}


def h2_small_case(server, uris, duration):
    r = h2load(server, ["-c8", "-m32", "-t1", f"-D{duration}", "-i", uris])
    return {"rps": r["requests"] / r["secs"], "cpu_us": r["server_cpu"] / r["requests"] * 1e6,
            "total_cpu_us": (r["server_cpu"] + r["client_cpu"]) / r["requests"] * 1e6,
            "client_util": r["client_cpu"] / r["secs"]}


def main():
    rounds = int(os.environ.get("ROUNDS", "5"))
    size = int(os.environ.get("SIZE_MIB", "256")) << 20
    h2_n = int(os.environ.get("H2_LARGE_N", "2"))
    duration = os.environ.get("DURATION", "4s")
    sluice_bin = sluice_binary()
    if not os.access(sluice_bin, os.X_OK):
        sys.exit(f"no sluice binary at {sluice_bin} (cargo build --release -p sluice, or set SLUICE_BIN)")
    for tool, pkg in (("nginx", "nginx"), ("curl", "curl"), ("h2load", "nghttp2-client"),
                      ("openssl", "openssl"), ("taskset", "util-linux")):
        if not shutil.which(tool):
            sys.exit(f"missing {tool} (apt-get install {pkg})")
    started = datetime.datetime.now(datetime.timezone.utc)
    nofile = sf.raise_nofile(4096)
    os.sched_setaffinity(0, {sf.CLIENT_CPU})
    signal.signal(signal.SIGTERM, sf.on_signal)
    signal.signal(signal.SIGHUP, sf.on_signal)

    tmp = tempfile.mkdtemp(prefix="sluice-tls-")
    try:
        www = make_site(tmp, size)
        cert, key = make_cert(tmp)
        servers = start_servers(sluice_bin, www, tmp, cert, key, nofile)
        sf.log(f"servers: {', '.join(f'{s.name} :{s.port} pid {s.pid}' for s in servers)}")
        handshakes = {s.name: negotiated(s) for s in servers}
        uris = {}
        for s in servers:
            uris[s.name] = os.path.join(tmp, f"uris-{s.port}.txt")
            with open(uris[s.name], "w") as f:
                f.write("".join(https(s, f"4k/{i:02}.bin") + "\n" for i in range(SMALL_FILES)))
        small = [s for s in servers if s.name in ("sluice 256K", "nginx TLS")]
        cases = [("tls", 1, servers), ("tls", 4, servers), ("h2 large", 1, servers), ("h2 4k", 8, small)]

        def run(case, conns, s):
            if case == "tls":
                return tls_case(s, conns, size)
            if case == "h2 large":
                return h2_large_case(s, size, h2_n)
            return h2_small_case(s, uris[s.name], duration)

        for case, conns, group in cases:  # warm-up, not measured
            for s in group:
                run(case, conns, s)
        results = {}
        for r in range(rounds):
            for case, conns, group in cases:
                k = r % len(group)
                for s in group[k:] + group[:k]:
                    results.setdefault((case, conns, s.name), []).append(run(case, conns, s))
                    if s.proc.poll() is not None:
                        sys.exit(f"{s.name} died during {case}:\n{s.log_tail()}")
            sf.log(f"round {r + 1}/{rounds} done")
        for s in servers:
            s.stop()
        report(started, rounds, size, h2_n, duration, sluice_bin, servers, handshakes, cases, results)
    finally:
        sf.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def report(started, rounds, size, h2_n, duration, sluice_bin, servers, handshakes, cases, results):
    med, fmt = sf.med, sf.fmt

    def m(case, conns, name, key):
        return med([x[key] for x in results[(case, conns, name)]])

    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    h2load_v = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    curl_v = subprocess.run(["curl", "-V"], capture_output=True, text=True).stdout.split("\n")[0]
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ENV_KNOBS if k in os.environ)
    print(f"\n### The run ({started:%Y-%m-%d %H:%M} UTC)\n")
    print(f"```sh\n{env + ' ' if env else ''}python3 tests/bench/tls.py\n```\n")
    print(f"- {nginx_v}; {h2load_v}; {curl_v.split(' (')[0]} with {curl_v.split(') ')[1].split(' ')[0]}; "
          f"Linux {platform.release()}, {os.cpu_count()} CPUs; load average at the end {os.getloadavg()[0]:.2f}")
    print(f"- sluice: {sf.binary_id(sluice_bin)}")
    for s in servers:
        print(f"- {s.name}: curl {handshakes[s.name]}; h2load {s.h2load_tls}, ALPN h2")
    print(f"- servers pinned on CPU {sf.SERVER_CPU}, one worker each; clients on CPU {sf.CLIENT_CPU}; "
          f"{rounds} interleaved rounds, medians [min–max]; ratios are of this run's medians; MB = 10^6 bytes. "
          f"client CPU: the clients' CPU time / wall time (1.00 = CPU {sf.CLIENT_CPU} saturated).\n")

    print(f"**Large file over TLS, HTTP/1.1** ({size >> 20} MiB, `curl -k --http1.1 -o /dev/null`, 1 or 4 at once) "
          f"and **over HTTP/2, one stream** (`h2load -c1 -m1 -n{h2_n}`):\n")
    print("| case | server | MB/s | MB per server CPU-s | MB per server+client CPU-s | client CPU | MB/s ÷ nginx TLS | MB per CPU-s ÷ nginx TLS | MB/s ÷ nginx 256k bufs |")
    print("|---|---|---|---|---|---|---|---|---|")
    label = {("tls", 1): "TLS h1, 1 conn", ("tls", 4): "TLS h1, 4 conns", ("h2 large", 1): "h2, 1 stream"}
    for case, conns, group in cases[:3]:
        for s in group:
            v = results[(case, conns, s.name)]
            col = lambda k: [x[k] for x in v]  # noqa: E731
            print(f"| {label[(case, conns)]} | {s.name} | {fmt(col('mbps'))} | {fmt(col('mb_cpu'))} "
                  f"| {fmt(col('mb_total_cpu'))} | {fmt(col('client_util'), 2)} "
                  f"| {m(case, conns, s.name, 'mbps') / m(case, conns, 'nginx TLS', 'mbps'):.2f} "
                  f"| {m(case, conns, s.name, 'mb_cpu') / m(case, conns, 'nginx TLS', 'mb_cpu'):.2f} "
                  f"| {m(case, conns, s.name, 'mbps') / m(case, conns, 'nginx TLS 256k bufs', 'mbps'):.2f} |")
    case, conns, group = cases[3]
    print(f"\n**4 KiB files over HTTP/2** (`h2load -c8 -m32 -t1 -D{duration}`, {SMALL_FILES} distinct files):\n")
    print("| server | req/s | server CPU µs/req | server+client CPU µs/req | client CPU | req/s ÷ nginx TLS | CPU/req ÷ nginx TLS |")
    print("|---|---|---|---|---|---|---|")
    for s in group:
        v = results[(case, conns, s.name)]
        col = lambda k: [x[k] for x in v]  # noqa: E731
        print(f"| {s.name} | {fmt(col('rps'))} | {fmt(col('cpu_us'), 1)} | {fmt(col('total_cpu_us'), 1)} "
              f"| {fmt(col('client_util'), 2)} | {m(case, conns, s.name, 'rps') / m(case, conns, 'nginx TLS', 'rps'):.2f} "
              f"| {m(case, conns, s.name, 'cpu_us') / m(case, conns, 'nginx TLS', 'cpu_us'):.2f} |")

    print("\nTargets (ratios of this run's medians; sluice ≥ 1.0x nginx TLS on every row, 256K/16K ≥ 1.6x):")

    def target(what, r, want):
        print(f"- {what}: {r:.2f} {'MET' if r >= want else 'MISSED'}")

    for case, conns, _ in cases[:3]:
        for name in SLUICE_CHUNKS:
            for key, unit in (("mbps", "MB/s"), ("mb_cpu", "MB per server CPU-s")):
                target(f"{label[(case, conns)]}, {name} / nginx TLS, {unit}",
                       m(case, conns, name, key) / m(case, conns, "nginx TLS", key), 1.0)
    target("h2 4 KiB c8 m32, sluice 256K / nginx TLS, req/s",
           m("h2 4k", 8, "sluice 256K", "rps") / m("h2 4k", 8, "nginx TLS", "rps"), 1.0)
    target("h2 4 KiB c8 m32, nginx TLS / sluice 256K, server CPU per request",
           m("h2 4k", 8, "nginx TLS", "cpu_us") / m("h2 4k", 8, "sluice 256K", "cpu_us"), 1.0)
    for conns in (1, 4):
        for key, unit in (("mbps", "MB/s"), ("mb_cpu", "MB per server CPU-s")):
            target(f"TLS h1 {conns} conn(s), sluice 256K / sluice 16K, {unit} (≥ 1.6)",
                   m("tls", conns, "sluice 256K", key) / m("tls", conns, "sluice 16K", key), 1.6)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sf.stop_all()
        sys.exit(130)
