#!/usr/bin/env python3
"""HTTP/2 + TLS, 4 KiB files (issue 19's h2 row): sluice against the floor of
its own stack and nginx, one run, side by side. tls.py's `h2 4k` case alone,
with more servers in it.

Servers (all started at once, each pinned on CPU 1, one worker, access logs
off, the same self-signed P-256 certificate):
  sluice          $SLUICE_BIN `serve --workers 1`, default policy (TLS listener)
  sluice before   $SLUICE_BASELINE_BIN the same way, if set (label
                  $SLUICE_BASELINE_LABEL)
  other builds    $SLUICE_OTHER_BINS: `label=path` pairs separated by `;`,
                  each the same way
  floor           $FLOOR_BIN (default target/release/examples/h2_floor:
                  `cargo build --release -p sluice --example h2_floor`): h2 over
                  tokio-rustls with sluice's h2 settings, a static 4 KiB body,
                  a task per stream; no file, policy, cache or timeouts
  floor +X        the floor with each of $FLOOR_VARIANTS' words as a flag
                  (e.g. "--coalesce --inline"), one row each
  nginx TLS       tls.py's nginx (`listen ... ssl http2`, TLS 1.3, one worker)

Case (h2load pinned on CPU 0, rounds interleaved with the server order
rotating every round, one unmeasured warm-up each): `h2load -c$CONNS -m$STREAMS
-t1 -D$DURATION` over 64 distinct 4 KiB files. Per row: req/s, server CPU
µs per request (schedstat of all its threads), server+client CPU µs per
request, h2load's mean time per request; medians [min-max].

Environment: ROUNDS (5), DURATION (4s), CONNS (8), STREAMS (32), SLUICE_BIN,
SLUICE_BASELINE_BIN, SLUICE_BASELINE_LABEL, SLUICE_OTHER_BINS, FLOOR_BIN,
FLOOR_VARIANTS.
Usage:  python3 tests/bench/h2_small.py
Output: a markdown table on stdout, progress on stderr.
Needs: nginx, h2load (apt-get install nginx nghttp2-client), openssl, taskset.
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
import tls

sys.path.insert(0, os.path.join(sf.REPO, "tests", "support"))
from sluice_test import make_cert, sluice_binary  # noqa: E402

ENV_KNOBS = ("ROUNDS", "DURATION", "CONNS", "STREAMS", "SLUICE_BIN", "SLUICE_BASELINE_BIN",
             "SLUICE_BASELINE_LABEL", "SLUICE_OTHER_BINS", "FLOOR_BIN", "FLOOR_VARIANTS")


def main():
    rounds = int(os.environ.get("ROUNDS", "5"))
    duration = os.environ.get("DURATION", "4s")
    conns, streams = int(os.environ.get("CONNS", "8")), int(os.environ.get("STREAMS", "32"))
    sluice_bin = sluice_binary()
    target = os.path.join(sf.REPO, os.environ.get("CARGO_TARGET_DIR", "target"))
    floor_bin = os.path.abspath(os.environ.get("FLOOR_BIN") or os.path.join(target, "release", "examples", "h2_floor"))
    baseline = os.environ.get("SLUICE_BASELINE_BIN")
    others = [tuple(x.split("=", 1)) for x in os.environ.get("SLUICE_OTHER_BINS", "").split(";") if x]
    for path in [sluice_bin, floor_bin] + ([baseline] if baseline else []) + [p for _, p in others]:
        if not os.access(path, os.X_OK):
            sys.exit(f"no binary at {path} (cargo build --release -p sluice --bins --example h2_floor)")
    for tool in ("nginx", "h2load", "openssl", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"missing {tool}")
    started = datetime.datetime.now(datetime.timezone.utc)
    nofile = sf.raise_nofile(4096)
    os.sched_setaffinity(0, {sf.CLIENT_CPU})
    signal.signal(signal.SIGTERM, sf.on_signal)
    signal.signal(signal.SIGHUP, sf.on_signal)
    tmp = tempfile.mkdtemp(prefix="sluice-h2small-")
    try:
        www = os.path.join(tmp, "www")
        os.makedirs(os.path.join(www, "4k"))
        for i in range(tls.SMALL_FILES):
            with open(os.path.join(www, "4k", f"{i:02}.bin"), "wb") as f:
                f.write(os.urandom(4096))
        cert, key = make_cert(tmp)
        env = dict(os.environ, SLUICE_LOG="warn")
        servers = []

        def sluice(name, binary):
            port = sf.free_port()
            argv = [binary, "serve", www, "--listen", f"127.0.0.1:{sf.free_port()}", "--tls-cert", cert,
                    "--tls-key", key, "--tls-listen", f"127.0.0.1:{port}", "--workers", "1"]
            servers.append(sf.Server(name, argv, port, tmp, "sluice", env))

        def floor(name, flags):
            port = sf.free_port()
            argv = [floor_bin, "--listen", f"127.0.0.1:{port}", "--cert", cert, "--key", key] + flags
            servers.append(sf.Server(name, argv, port, tmp, "floor", env))

        sluice("sluice", sluice_bin)
        if baseline:
            sluice(os.environ.get("SLUICE_BASELINE_LABEL", "sluice before"), os.path.abspath(baseline))
        for label, path in others:
            sluice(label, os.path.abspath(path))
        floor("floor", [])
        for flag in os.environ.get("FLOOR_VARIANTS", "").split():
            floor(f"floor {flag}", [flag])
        servers.append(sf.start_nginx("nginx TLS", www, tmp, nofile, listen="ssl http2",
                                      server_conf=tls.NGINX_TLS.format(cert=cert, key=key)))
        for s in servers:
            s.wait_listening()
        sf.log(f"servers: {', '.join(f'{s.name} :{s.port} pid {s.pid}' for s in servers)}")
        uris = {}
        for s in servers:
            uris[s.name] = os.path.join(tmp, f"uris-{s.port}.txt")
            with open(uris[s.name], "w") as f:
                f.write("".join(tls.https(s, f"4k/{i:02}.bin") + "\n" for i in range(tls.SMALL_FILES)))

        def run(s):
            r = tls.h2load(s, [f"-c{conns}", f"-m{streams}", "-t1", f"-D{duration}", "-i", uris[s.name]])
            return {"rps": r["requests"] / r["secs"], "cpu_us": r["server_cpu"] / r["requests"] * 1e6,
                    "total_cpu_us": (r["server_cpu"] + r["client_cpu"]) / r["requests"] * 1e6,
                    "mean_ms": r["mean_ms"]}

        for s in servers:  # warm-up, not measured
            run(s)
        results = {s.name: [] for s in servers}
        for r in range(rounds):
            k = r % len(servers)
            for s in servers[k:] + servers[:k]:
                results[s.name].append(run(s))
                if s.proc.poll() is not None:
                    sys.exit(f"{s.name} died:\n{s.log_tail()}")
            sf.log(f"round {r + 1}/{rounds} done, load average {os.getloadavg()[0]:.2f}")
        for s in servers:
            s.stop()
        report(started, rounds, duration, conns, streams, sluice_bin, floor_bin, servers, results)
    finally:
        sf.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def report(started, rounds, duration, conns, streams, sluice_bin, floor_bin, servers, results):
    med, fmt = sf.med, sf.fmt
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ENV_KNOBS if k in os.environ)
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    h2load_v = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"\n#### h2load -c{conns} -m{streams}, 4 KiB ({started:%Y-%m-%d %H:%M} UTC)\n")
    print(f"```sh\n{env + ' ' if env else ''}python3 tests/bench/h2_small.py\n```\n")
    print(f"- {nginx_v}; {h2load_v}; Linux {platform.release()}, {os.cpu_count()} CPUs; "
          f"load average at the end {os.getloadavg()[0]:.2f}")
    print(f"- sluice: {sf.binary_id(sluice_bin)}; floor: {sf.binary_id(floor_bin)}")
    print(f"- servers on CPU {sf.SERVER_CPU}, h2load on CPU {sf.CLIENT_CPU}; {rounds} interleaved rounds of "
          f"{duration}, medians [min–max]; every server {', '.join(sorted({s.h2load_tls for s in servers}))}\n")
    print("| server | req/s | server CPU µs/req | server+client CPU µs/req | mean ms/req | req/s ÷ nginx | CPU/req ÷ nginx |")
    print("|---|---|---|---|---|---|---|")
    n = {k: med([x[k] for x in results["nginx TLS"]]) for k in ("rps", "cpu_us")}
    for s in servers:
        v = results[s.name]
        col = lambda k: [x[k] for x in v]  # noqa: E731
        print(f"| {s.name} | {fmt(col('rps'))} | {fmt(col('cpu_us'), 1)} | {fmt(col('total_cpu_us'), 1)} "
              f"| {fmt(col('mean_ms'), 2)} | {med(col('rps')) / n['rps']:.2f} | {med(col('cpu_us')) / n['cpu_us']:.2f} |")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sf.stop_all()
        sys.exit(130)
