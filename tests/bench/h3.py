#!/usr/bin/env python3
"""HTTP/3 against HTTP/2 (issue 20): sluice's h3 beside its own h2 and
nginx's h2, one run, side by side. Reuses small_file.py's servers and report
helpers and tls.py's h2load runs; the HTTP/3 client is h3load
(`host/examples/h3load.rs`: Debian's h2load and curl have no HTTP/3, and
nginx 1.22 serves none, so nginx's h2 is the reference).

Servers (started at once, each pinned on CPU 1 with one worker, access logs
off, the same self-signed P-256 certificate, TLS 1.3):
  sluice      the release binary, `--workers 1 --http3`, the default policy
              (256 KiB chunks): h2 on its TLS listener, h3 on the UDP socket
              at the same address
  nginx TLS   tls.py's nginx (one worker, no master, open_file_cache,
              `listen ... ssl http2`, `ssl_protocols TLSv1.3`)

Cases (clients pinned on CPU 0; rounds interleaved, the order rotating every
round; page cache warm; one unmeasured warm-up of each first):
  large   one SIZE_MIB file, one request at a time on one connection,
          LARGE_N times: `h3load -c1 -m1 -nN` (sluice h3) and
          `h2load -c1 -m1 -nN` (sluice h2, nginx h2); the byte count checked.
          MB/s, MB per server CPU-second, the client's CPU use
  4k      64 distinct 4 KiB files at 8 connections x 32 streams for DURATION:
          `h3load -c8 -m32 -D` and `h2load -c8 -m32 -t1 -D`. req/s, server
          CPU µs per request, latency p50/p99 (h3load's own; h2load's from
          its --log-file), the client's CPU use
Both clients offer TLS 1.3 and negotiate TLS_AES_128_GCM_SHA256 (h3load
offers nothing else). Server CPU is the on-CPU time of all its threads
(schedstat) before and after each run; client CPU is getrusage of the
finished client.

Environment: ROUNDS (5), SIZE_MIB (128), LARGE_N (2), DURATION (4s),
SLUICE_BIN (default $CARGO_TARGET_DIR or target, /release/sluice),
H3LOAD_BIN (default the same directory's examples/h3load).
Usage:  python3 tests/bench/h3.py        (ROUNDS=1 DURATION=2s for a quick look)
Output: a markdown section for BENCHMARKS.md on stdout, progress on stderr.
Needs: nginx, h2load (apt-get install nginx nghttp2-client), openssl,
taskset, and release builds: cargo build --release -p sluice --bin sluice
--example h3load.
"""

import datetime
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

import small_file as sf
import tls
import transfer

sys.path.insert(0, os.path.join(sf.REPO, "tests", "support"))
from sluice_test import make_cert, sluice_binary  # noqa: E402

SMALL_FILES = tls.SMALL_FILES  # the site is tls.make_site's
ENV_KNOBS = ("ROUNDS", "SIZE_MIB", "LARGE_N", "DURATION", "SLUICE_BIN", "H3LOAD_BIN")
# (label, server, protocol) in row order
ROWS = [("sluice h3", "sluice", "h3"), ("sluice h2", "sluice", "h2"), ("nginx h2", "nginx TLS", "h2")]


def h3load_binary(sluice_bin):
    return os.environ.get("H3LOAD_BIN") or os.path.join(os.path.dirname(sluice_bin), "examples", "h3load")


def start_servers(sluice_bin, www, tmp, cert, key, nofile):
    port = sf.free_port()
    argv = [sluice_bin, "serve", www, "--listen", f"127.0.0.1:{sf.free_port()}",
            "--tls-cert", cert, "--tls-key", key, "--tls-listen", f"127.0.0.1:{port}",
            "--workers", "1", "--http3"]
    # warn, and the start-up lines saying what the UDP socket offers (GSO)
    env = dict(os.environ, SLUICE_LOG="warn,sluice::cli=info")
    servers = [sf.Server("sluice", argv, port, tmp, "sluice", env)]
    conf = tls.NGINX_TLS.format(cert=cert, key=key)
    servers.append(sf.start_nginx("nginx TLS", www, tmp, nofile, listen="ssl http2", server_conf=conf))
    for s in servers:
        s.wait_listening()
    return servers


def https(server, path):
    return f"https://127.0.0.1:{server.port}/{path}"


def percentile(values, p):
    v = sorted(values)
    return v[max(1, min(len(v), -(-len(v) * p // 100))) - 1] if v else float("nan")


def h2load(server, argv, log_file=None):
    """tls.py's h2load (pinned on CPU 0, every request checked 2xx over h2),
    with latency percentiles from h2load's --log-file when one is given."""
    if log_file:
        argv = [f"--log-file={log_file}", *argv]
    r = tls.h2load(server, argv)
    if log_file:
        lat = []
        with open(log_file) as f:
            for line in f:  # start (µs since the epoch), status, duration (µs)
                parts = line.split()
                if len(parts) >= 3:
                    lat.append(int(parts[2]))
        os.unlink(log_file)
        r["p50"], r["p99"] = percentile(lat, 50), percentile(lat, 99)
    return r


def h3load(h3load_bin, server, argv):
    """Runs h3load (pinned on CPU 0) against `server`'s UDP port; returns its
    summary with the server's and the client's CPU seconds."""
    c0, s0 = sf.children_cpu(), transfer.cpu_seconds(server.pid)[0]
    out = subprocess.run(["taskset", "-c", str(sf.CLIENT_CPU), h3load_bin, "-k", *argv],
                         capture_output=True, text=True, timeout=600)
    s1, c1 = transfer.cpu_seconds(server.pid)[0], sf.children_cpu()
    text = out.stdout + out.stderr
    done = re.search(r"finished in ([\d.]+)s,", text)
    reqs = re.search(r"requests: (\d+) total, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    data = re.search(r"traffic: (\d+) bytes", text)
    lat = re.search(r"latency us: p50 (\d+), p99 (\d+)", text)
    alpn = re.search(r"ALPN (\S+),", text)
    quic = re.search(r"quic: (\d+) datagrams sent, (\d+) received, (\d+) packets lost, (\d+) congestion", text)
    if out.returncode != 0 or not (done and reqs and status and data and lat and alpn and quic):
        sys.exit(f"h3load {' '.join(argv)} against {server.name} failed:\n{text}")
    ok = int(reqs.group(3))
    if alpn.group(1) != "h3" or int(reqs.group(4)) or int(reqs.group(5)) or int(status.group(1)) != ok or not ok:
        sys.exit(f"h3load against {server.name}: not all requests succeeded over h3:\n{text}")
    return {"secs": float(done.group(1)), "requests": ok, "data": int(data.group(1)),
            "server_cpu": s1 - s0, "client_cpu": c1 - c0, "p50": int(lat.group(1)), "p99": int(lat.group(2)),
            "lost": int(quic.group(3)), "datagrams_rx": int(quic.group(2))}


def large_case(run_client, size, n):
    r = run_client(["-c1", "-m1", f"-n{n}"], "big.bin")
    if r["data"] != n * size:
        sys.exit(f"{r['data']} body bytes, expected {n * size}")
    mb = n * size / 1e6
    return {"mbps": mb / r["secs"], "mb_cpu": mb / r["server_cpu"],
            "client_util": r["client_cpu"] / r["secs"], "lost": r.get("lost", 0)}


def small_case(run_client, duration):
    r = run_client(["-c8", "-m32", f"-D{duration}"], None)
    return {"rps": r["requests"] / r["secs"], "cpu_us": r["server_cpu"] / r["requests"] * 1e6,
            "client_util": r["client_cpu"] / r["secs"], "p50": r["p50"], "p99": r["p99"],
            "lost": r.get("lost", 0)}


def main():
    rounds = int(os.environ.get("ROUNDS", "5"))
    size = int(os.environ.get("SIZE_MIB", "128")) << 20
    large_n = int(os.environ.get("LARGE_N", "2"))
    duration = os.environ.get("DURATION", "4s")
    sluice_bin = sluice_binary()
    h3load_bin = h3load_binary(sluice_bin)
    for what, path in (("sluice", sluice_bin), ("h3load", h3load_bin)):
        if not os.access(path, os.X_OK):
            sys.exit(f"no {what} binary at {path} (cargo build --release -p sluice --bin sluice --example h3load, "
                     "or set SLUICE_BIN / H3LOAD_BIN)")
    for tool, pkg in (("nginx", "nginx"), ("h2load", "nghttp2-client"), ("openssl", "openssl"),
                      ("taskset", "util-linux")):
        if not shutil.which(tool):
            sys.exit(f"missing {tool} (apt-get install {pkg})")
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    nofile = sf.raise_nofile(4096)
    os.sched_setaffinity(0, {sf.CLIENT_CPU})
    signal.signal(signal.SIGTERM, sf.on_signal)
    signal.signal(signal.SIGHUP, sf.on_signal)

    tmp = tempfile.mkdtemp(prefix="sluice-h3-")
    try:
        www = tls.make_site(tmp, size)
        cert, key = make_cert(tmp)
        servers = start_servers(sluice_bin, www, tmp, cert, key, nofile)
        by_name = {s.name: s for s in servers}
        sf.log(f"servers: {', '.join(f'{s.name} :{s.port} pid {s.pid}' for s in servers)}")
        uris = {}
        for s in servers:
            uris[s.name] = os.path.join(tmp, f"uris-{s.port}.txt")
            with open(uris[s.name], "w") as f:
                f.write("".join(https(s, f"4k/{i:02}.bin") + "\n" for i in range(SMALL_FILES)))

        def client(row):
            _, name, proto = row
            s = by_name[name]

            def run_client(argv, path):
                target = [https(s, path)] if path else ["-i", uris[name]]
                if proto == "h3":
                    return h3load(h3load_bin, s, [*argv, *target])
                log_file = None if path else os.path.join(tmp, "h2load.log")
                return h2load(s, [*argv, "-t1", *target], log_file)

            return run_client

        def run(case, row):
            if case == "large":
                return large_case(client(row), size, large_n)
            return small_case(client(row), duration)

        cases = ("large", "4k")
        for case in cases:  # warm-up, not measured
            for row in ROWS:
                run(case, row)
        results = {}
        for r in range(rounds):
            for case in cases:
                k = r % len(ROWS)
                for row in ROWS[k:] + ROWS[:k]:
                    results.setdefault((case, row[0]), []).append(run(case, row))
                    s = by_name[row[1]]
                    if s.proc.poll() is not None:
                        sys.exit(f"{s.name} died during {case}:\n{s.log_tail()}")
            sf.log(f"round {r + 1}/{rounds} done")
        for s in servers:
            s.stop()
        offload = re.search(r"gso_segments=(\d+) gro_segments=(\d+)", open(by_name["sluice"].log_path).read())
        report(started, load_start, rounds, size, large_n, duration, sluice_bin, h3load_bin, offload, results)
    finally:
        sf.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def report(started, load_start, rounds, size, large_n, duration, sluice_bin, h3load_bin, offload, results):
    med, fmt = sf.med, sf.fmt

    def m(case, row, key):
        return med([x[key] for x in results[(case, row)]])

    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    h2load_v = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ENV_KNOBS if k in os.environ)
    load_end = os.getloadavg()
    print(f"\n### The run ({started:%Y-%m-%d %H:%M} UTC)\n")
    print(f"```sh\n{env + ' ' if env else ''}python3 tests/bench/h3.py\n```\n")
    print(f"- {nginx_v}; {h2load_v}; h3load {sf.binary_id(h3load_bin)}; Linux {platform.release()}, "
          f"{os.cpu_count()} CPUs; load average (1 min) {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end")
    print(f"- sluice: {sf.binary_id(sluice_bin)}, `--workers 1 --http3`; "
          + (f"UDP offload gso_segments={offload.group(1)} gro_segments={offload.group(2)}"
             if offload else "no UDP segmentation offload logged"))
    print(f"- servers pinned on CPU {sf.SERVER_CPU}, one worker each; clients on CPU {sf.CLIENT_CPU}; TLS 1.3 "
          f"TLS_AES_128_GCM_SHA256 for every client; {rounds} interleaved rounds, medians [min–max]; ratios are "
          "of this run's medians; MB = 10^6 bytes. client CPU: the client's CPU time / wall time "
          f"(1.00 = CPU {sf.CLIENT_CPU} saturated).\n")

    print(f"**One {size >> 20} MiB file on one connection, one request at a time** "
          f"(`h3load -c1 -m1 -n{large_n}`, `h2load -c1 -m1 -t1 -n{large_n}`):\n")
    print("| server, protocol | MB/s | MB per server CPU-s | client CPU | QUIC packets lost | MB/s ÷ nginx h2 "
          "| MB per CPU-s ÷ nginx h2 | MB per CPU-s ÷ sluice h2 |")
    print("|---|---|---|---|---|---|---|---|")
    for label, _, proto in ROWS:
        v = results[("large", label)]
        col = lambda k: [x[k] for x in v]  # noqa: E731
        lost = fmt(col("lost")) if proto == "h3" else "–"
        print(f"| {label} | {fmt(col('mbps'))} | {fmt(col('mb_cpu'))} | {fmt(col('client_util'), 2)} | {lost} "
              f"| {m('large', label, 'mbps') / m('large', 'nginx h2', 'mbps'):.2f} "
              f"| {m('large', label, 'mb_cpu') / m('large', 'nginx h2', 'mb_cpu'):.2f} "
              f"| {m('large', label, 'mb_cpu') / m('large', 'sluice h2', 'mb_cpu'):.2f} |")

    print(f"\n**4 KiB files, 8 connections x 32 streams** (`h3load -c8 -m32 -D{duration}`, "
          f"`h2load -c8 -m32 -t1 -D{duration}`, {SMALL_FILES} distinct files):\n")
    print("| server, protocol | req/s | server CPU µs/req | p50 µs | p99 µs | client CPU | req/s ÷ nginx h2 "
          "| CPU/req ÷ nginx h2 | CPU/req ÷ sluice h2 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, _, _ in ROWS:
        v = results[("4k", label)]
        col = lambda k: [x[k] for x in v]  # noqa: E731
        print(f"| {label} | {fmt(col('rps'))} | {fmt(col('cpu_us'), 1)} | {fmt(col('p50'))} | {fmt(col('p99'))} "
              f"| {fmt(col('client_util'), 2)} | {m('4k', label, 'rps') / m('4k', 'nginx h2', 'rps'):.2f} "
              f"| {m('4k', label, 'cpu_us') / m('4k', 'nginx h2', 'cpu_us'):.2f} "
              f"| {m('4k', label, 'cpu_us') / m('4k', 'sluice h2', 'cpu_us'):.2f} |")
    lost = [x["lost"] for x in results[("4k", "sluice h3")]]
    print(f"\nQUIC packets lost (h3load's count, 4 KiB case): median {statistics.median(lost):,.0f} "
          f"[{min(lost):,}–{max(lost):,}] per run.")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sf.stop_all()
        sys.exit(130)
