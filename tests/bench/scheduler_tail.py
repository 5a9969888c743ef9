#!/usr/bin/env python3
"""The c512 tail against tokio's scheduler settings (issue 19).

Starts one sluice per variant (`--workers 1`, pinned on CPU 1, each with its
own config file giving the runtime keys) and nginx (small_file.py's), then
runs `wrk -t1 -c$CONNS -d$DURATION --latency` on CPU 0 against each, the
server order rotating every round; prints per variant the median [min-max]
of p50, p99, req/s and server CPU µs per request.

Environment: SLUICE_BIN, ROUNDS (5), DURATION (3s), CONNS (512), CASE
(4k.bin, or 304), VARIANTS: `label=key=value,key=value;label2=...`
(default: tokio's defaults and a few candidates).
"""

import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import small_file as sf  # noqa: E402

DEFAULT_VARIANTS = (
    "tokio defaults=;"
    "busy-io-events 16=busy-io-events=16;"
    "busy-io-events 64=busy-io-events=64;"
    "global-queue-interval 8=global-queue-interval=8;"
    "event-interval 7=event-interval=7"
)


def main():
    binary = os.path.abspath(sf.sluice_binary())
    rounds = int(os.environ.get("ROUNDS", "5"))
    duration = os.environ.get("DURATION", "3s")
    conns = int(os.environ.get("CONNS", "512"))
    case = os.environ.get("CASE", "4k.bin")
    variants = []
    for part in os.environ.get("VARIANTS", DEFAULT_VARIANTS).split(";"):
        label, _, keys = part.partition("=")
        kv = [k.split("=", 1) for k in keys.split(",") if k.strip()]
        variants.append((label.strip(), kv))
    nofile = sf.raise_nofile(4096)
    os.sched_setaffinity(0, {sf.CLIENT_CPU})
    tmp = tempfile.mkdtemp(prefix="sluice-tail-")
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    for name, size in sf.FILES.items():
        with open(os.path.join(www, name), "wb") as f:
            f.write(os.urandom(size))
    env = dict(os.environ, SLUICE_LOG="warn")
    servers = []
    try:
        for label, kv in variants:
            conf = os.path.join(tmp, f"v{len(servers)}.toml")
            with open(conf, "w") as f:
                for k, v in kv:
                    f.write(f"{k} = {v}\n")
            port = sf.free_port()
            argv = [binary, "serve", www, "--listen", f"127.0.0.1:{port}", "--workers", "1",
                    "--config", conf]
            servers.append(sf.Server(label, argv, port, tmp, "sluice", env))
        servers.append(sf.start_nginx("nginx", www, tmp, nofile))
        for s in servers:
            s.wait_listening()
            s.etag = sf.check_and_get_etag(s)
            sf.wrk(s, "4k.bin", 32, "1s")
        results = {s.name: [] for s in servers}
        for r in range(rounds):
            k = r % len(servers)
            for s in servers[k:] + servers[:k]:
                results[s.name].append(sf.wrk(s, case, conns, duration))
            sf.log(f"round {r + 1}/{rounds}, load average {os.getloadavg()[0]:.1f}")

        def cell(xs, fmt):
            return f"{fmt(statistics.median(xs))} [{fmt(min(xs))}-{fmt(max(xs))}]"

        ms = lambda v: f"{v / 1000:.1f}"  # noqa: E731
        print(f"{case} -c{conns}, {rounds} rounds x {duration}, load average at the end "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
        print("| server | p50 ms | p99 ms | req/s | server CPU µs/req |")
        print("|---|---|---|---|---|")
        for s in servers:
            v = results[s.name]
            print(f"| {s.name} | {cell([x['p50'] for x in v], ms)} | {cell([x['p99'] for x in v], ms)} | "
                  f"{cell([x['rps'] for x in v], lambda y: f'{y:,.0f}')} | "
                  f"{cell([x['cpu_us'] for x in v], lambda y: f'{y:.1f}')} |")
    finally:
        sf.stop_all()


if __name__ == "__main__":
    main()
