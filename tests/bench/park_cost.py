#!/usr/bin/env python3
"""What parking an idle HTTP/1 connection costs per request (issue 19).

sluice parks a plain-TCP HTTP/1 connection idle for `park-idle-ms`
(connection.rs `serve_http1`): hyper's state is dropped and a new hyper
connection is made when the next request comes. wrk cannot make a connection wait between
requests, so this client does: CONNS keep-alive connections (asyncio, on
CPU 0), each sending `GET /4k.bin`, reading the whole response, then
sleeping GAP seconds, for DURATION seconds. With `park-idle-ms = 500` and
GAP 0.7 every request after the first arrives on a parked connection; with
GAP 0.3, or `park-idle-ms = 2000`, none should.

Every server (sluice builds given as label=binary in BINS, `--workers 1`,
pinned on CPU 1, and nginx as small_file.py starts it) runs each GAP in
turn, the order rotating each round; per row: requests/s achieved and
server CPU µs per request (utime+stime from /proc, before/after), and for
sluice how many connections were parked during the run (`parked_connections`
at the admin endpoint, before/after).

Environment: BINS ("label=path;label=path key=value key=value", the
key=value pairs after the path written to a config file for that server,
e.g. "park-2s=target/release/sluice park-idle-ms=2000"), CONNS (1000), GAPS ("0.3 0.7"),
DURATION (10), ROUNDS (3).
"""

import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import small_file as sf  # noqa: E402


async def load(port, conns, gap, duration):
    """Returns (requests answered, errors)."""
    request = f"GET /4k.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    done = [0, 0]
    end = time.monotonic() + duration
    gate = asyncio.Semaphore(100)

    async def one(i):
        try:
            async with gate:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        except Exception:
            done[1] += 1
            return
        # spread the connections over the gap, so requests arrive evenly
        await asyncio.sleep(gap * i / conns)
        try:
            while time.monotonic() < end:
                w.write(request)
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
                await asyncio.wait_for(r.readexactly(int(m.group(1))), 10)
                if not head.startswith(b"HTTP/1.1 200"):
                    done[1] += 1
                done[0] += 1
                await asyncio.sleep(gap)
        except Exception:
            done[1] += 1
        finally:
            w.close()

    await asyncio.gather(*(one(i) for i in range(conns)))
    return done


def parked(server):
    """sluice's parked_connections counter (None for nginx)."""
    if not getattr(server, "admin", None):
        return None
    with urllib.request.urlopen(f"http://127.0.0.1:{server.admin}/stats", timeout=10) as r:
        m = re.search(rb"parked_connections\W+(\d+)", r.read())
    return int(m.group(1)) if m else None


def main():
    bins = [b.split("=", 1) for b in os.environ["BINS"].split(";")]
    conns = int(os.environ.get("CONNS", "1000"))
    gaps = [float(g) for g in os.environ.get("GAPS", "0.3 0.7").split()]
    duration = float(os.environ.get("DURATION", "10"))
    rounds = int(os.environ.get("ROUNDS", "3"))
    nofile = sf.raise_nofile(conns + 2048)
    os.sched_setaffinity(0, {sf.CLIENT_CPU})
    tmp = tempfile.mkdtemp(prefix="sluice-park-")
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    with open(os.path.join(www, "4k.bin"), "wb") as f:
        f.write(os.urandom(4096))
    env = dict(os.environ, SLUICE_LOG="warn")
    servers = []
    try:
        for label, spec in bins:
            binary, *keys = spec.split()
            port, admin = sf.free_port(), sf.free_port()
            argv = [os.path.abspath(binary), "serve", www, "--listen", f"127.0.0.1:{port}", "--workers", "1",
                    "--admin", f"127.0.0.1:{admin}"]
            if keys:
                config = os.path.join(tmp, f"{re.sub(r'[^A-Za-z0-9]+', '_', label)}.toml")
                with open(config, "w") as f:
                    for kv in keys:
                        k, v = kv.split("=", 1)
                        f.write(f"{k} = {v}\n")
                argv += ["--config", config]
            servers.append(sf.Server(label, argv, port, tmp, "sluice", env))
            servers[-1].admin = admin
        servers.append(sf.start_nginx("nginx", www, tmp, nofile))
        for s in servers:
            s.wait_listening()
        res = {}
        for r in range(rounds):
            for gap in gaps:
                k = (r + gaps.index(gap)) % len(servers)
                for s in servers[k:] + servers[:k]:
                    p0 = parked(s)
                    c0 = s.cpu()
                    t0 = time.monotonic()
                    n, errors = asyncio.run(load(s.port, conns, gap, duration))
                    t1 = time.monotonic()
                    c1 = s.cpu()
                    p1 = parked(s)
                    res.setdefault((s.name, gap), []).append(
                        {"rps": n / (t1 - t0), "cpu_us": (c1 - c0) / max(n, 1) * 1e6, "errors": errors,
                         "parked": None if p0 is None else p1 - p0, "requests": n})
                    time.sleep(1)  # let every connection close
            sf.log(f"round {r + 1}/{rounds}, load average {os.getloadavg()[0]:.1f}")
        print(f"{conns} connections, one GET /4k.bin each per gap, {duration:.0f} s x {rounds} rounds; "
              f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
        print("| server | gap s | req/s | server CPU µs/req | parked / requests | errors |")
        print("|---|---|---|---|---|---|")
        for s in servers:
            for gap in gaps:
                v = res[(s.name, gap)]
                cpu = [x["cpu_us"] for x in v]
                rps = [x["rps"] for x in v]
                park = "-" if v[0]["parked"] is None else \
                    f"{sum(x['parked'] for x in v):,} / {sum(x['requests'] for x in v):,}"
                print(f"| {s.name} | {gap} | {statistics.median(rps):,.0f} | {statistics.median(cpu):.1f} "
                      f"[{min(cpu):.1f}-{max(cpu):.1f}] | {park} | {sum(x['errors'] for x in v)} |")
    finally:
        sf.stop_all()


if __name__ == "__main__":
    main()
