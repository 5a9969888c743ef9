#!/usr/bin/env python3
"""Many-tenants benchmark: start-up, idle memory per tenant and the first
request to a cold tenant, for a configuration of N virtual hosts (issue 10,
"ten thousand tenants").

What it builds (in a temporary directory)
  DISTINCT distinct policy components: the default guest, each with a custom
  section of its own appended (different bytes, identical behaviour, so each
  compiles separately). Tenant j (host tJ.example, its own root with an
  index.html) uses one of three shared components when j % 10 != 0, else one
  of the other DISTINCT-3 (all of them used once N >= 10 * (DISTINCT-3));
  one in 50 tenants also has settings of its own (max-ranges).

What it measures, for each N in TENANTS (one run each, in order)
  - cold start: an empty compile cache (`compile-cache` = a fresh directory);
    time from spawn until `GET /` on the listener answers 200;
  - warm start: the same, again, with the cache the cold start wrote;
  - resident memory (VmRSS, /proc/PID/status) of the warm-started server one
    second after it answered, idle; the per-tenant figure is the difference
    between the two largest N divided by the difference in tenants (both have
    the same DISTINCT components, so it is what one more tenant costs);
  - the server's own counters (/stats): components compiled, loaded from the
    disk cache, policies shared, instances made;
  - for the largest N (warm start): the first request to COLD_SAMPLES tenants
    never asked before, on an open keep-alive connection, against the second
    request to the same tenant: (a) tenants with a component of their own,
    and (b) tenants sharing a component another tenant has just used (each
    tenant has instances of its own, so both make one: instantiate +
    configure + decide). Medians;
  - for the largest N: what a warm tenant costs. Once the instances the
    cold-request samples made were reclaimed (10 s idle), WARM tenants never
    asked before get one request each; the growth of VmRSS divided by WARM
    is the resident memory of one tenant's warm instance (and its caches),
    beside the idle instances the server reports holding (/stats
    idle_instances, idle_instance_bytes); then again once those are
    reclaimed, which shows what a reclaimed instance leaves behind.

Environment: TENANTS ("0 1000 10000"), DISTINCT (100), COLD_SAMPLES (20), WARM (200),
SLUICE_BIN (target/release/sluice), GUEST_WASM (the default guest built by
host/build.rs, target/guest-build/wasm32-wasip2/release/sluice_guest.wasm).

Usage:  python3 tests/bench/tenants.py      (stdlib only; Linux)
Output: a markdown section for BENCHMARKS.md on stdout, progress on stderr.
The server it starts is killed on exit.
"""

import http.client
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from small_file import REPO, free_port, log

sys.path.insert(0, os.path.join(REPO, "tests", "support"))
from sluice_test import sluice_binary  # noqa: E402

TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
SLUICE = sluice_binary()
GUEST = os.environ.get(
    "GUEST_WASM",
    os.path.join(TARGET, "guest-build", "wasm32-wasip2", "release", "sluice_guest.wasm"),
)
TENANTS = [int(n) for n in os.environ.get("TENANTS", "0 1000 10000").split()]
DISTINCT = int(os.environ.get("DISTINCT", "100"))
COLD_SAMPLES = int(os.environ.get("COLD_SAMPLES", "20"))
WARM = int(os.environ.get("WARM", "200"))
# The server drops idle instances unused for 10 s, sweeping every second.
RECLAIMED_AFTER = 12.0
START_LIMIT = 120.0


def leb128(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def with_custom_section(component, payload):
    """The component with a custom section (id 0) appended: components, like
    core modules, allow custom sections anywhere."""
    name = b"sluice-bench"
    body = leb128(len(name)) + name + payload
    return component + b"\x00" + leb128(len(body)) + body


def component_of(j):
    if j % 10:
        return j % 3
    return 3 + (j // 10) % (DISTINCT - 3)


def build_layout(work, n):
    """Roots, components and the configuration for n tenants."""
    comps = os.path.join(work, "policies")
    if not os.path.isdir(comps):
        os.makedirs(comps)
        guest = open(GUEST, "rb").read()
        for i in range(DISTINCT):
            with open(os.path.join(comps, f"p{i}.wasm"), "wb") as f:
                f.write(with_custom_section(guest, f"component {i}".encode()))
    roots = os.path.join(work, "roots")
    os.makedirs(roots, exist_ok=True)
    default_root = os.path.join(roots, "default")
    os.makedirs(default_root, exist_ok=True)
    with open(os.path.join(default_root, "index.html"), "w") as f:
        f.write("default\n")
    lines = []
    for j in range(n):
        root = os.path.join(roots, f"t{j}")
        if not os.path.isdir(root):
            os.makedirs(root)
            with open(os.path.join(root, "index.html"), "w") as f:
                f.write(f"tenant {j}\n")
        lines += [
            "[[vhost]]",
            f'host = "t{j}.example"',
            f'root = "{root}"',
            f'policy-file = "{comps}/p{component_of(j)}.wasm"',
        ]
        if j % 50 == 25:
            lines += ["[vhost.policy]", f"max-ranges = {1 + j % 7}"]
    return default_root, "\n".join(lines) + "\n"


class Server:
    def __init__(self, work, n, cache_dir):
        self.port, self.admin = free_port(), free_port()
        root, vhosts = build_layout(work, n)
        cfg = os.path.join(work, f"tenants-{n}.toml")
        with open(cfg, "w") as f:
            f.write(f'compile-cache = "{cache_dir}"\n' + vhosts)
        argv = [
            SLUICE, "serve", root, "--config", cfg, "--workers", "2",
            "--listen", f"127.0.0.1:{self.port}", "--admin", f"127.0.0.1:{self.admin}",
        ]
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self):
        """Seconds from spawn until `GET /` answers 200."""
        deadline = self.t0 + START_LIMIT
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"sluice exited with {self.proc.returncode} during start-up")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return time.perf_counter() - self.t0
            except OSError:
                pass
            time.sleep(0.005)
        raise SystemExit(f"sluice did not answer within {START_LIMIT} s")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise SystemExit("no VmRSS")

    def stats(self):
        c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=5)
        c.request("GET", "/stats")
        text = c.getresponse().read().decode()
        c.close()
        return {k: int(v) for k, v in (l.split() for l in text.splitlines())}

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def timed_get(conn, host):
    t = time.perf_counter()
    conn.request("GET", "/", headers={"Host": host})
    r = conn.getresponse()
    body = r.read()
    took = time.perf_counter() - t
    if r.status != 200:
        raise SystemExit(f"{host}: status {r.status}")
    return took, body


def cold_requests(server, n):
    """First vs second request to tenants never asked before."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    timed_get(conn, "default.example")  # the connection is warm
    own = [j for j in range(n) if j % 10 == 0 and j % 50 != 25]
    shared = [j for j in range(n) if j % 10 and j % 50 != 25]
    out = {}
    for label, tenants in (("own component", own), ("shared component", shared)):
        firsts, seconds = [], []
        picks = tenants[len(tenants) // 2:][:COLD_SAMPLES]
        for j in picks:
            if label == "shared component":
                # Another tenant of the same component was just served.
                timed_get(conn, f"t{j - 3 if j >= 3 else j + 3}.example")
            first, body = timed_get(conn, f"t{j}.example")
            if body != f"tenant {j}\n".encode():
                raise SystemExit(f"t{j}: wrong body {body!r}")
            second, _ = timed_get(conn, f"t{j}.example")
            firsts.append(first)
            seconds.append(second)
        out[label] = (statistics.median(firsts), statistics.median(seconds), len(picks))
    conn.close()
    return out


def warm_tenants(server, n):
    """RSS and idle instances before, while WARM unseen tenants are warm, and
    after their instances are reclaimed."""
    time.sleep(RECLAIMED_AFTER)
    before, idle_before = server.rss_kib(), server.stats()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    # Tenants cold_requests did not touch (it samples the upper half).
    picks = [j for j in range(n) if j % 50 != 25][:WARM]
    t = time.perf_counter()
    for j in picks:
        timed_get(conn, f"t{j}.example")
    took = time.perf_counter() - t
    conn.close()
    warm, idle_warm = server.rss_kib(), server.stats()
    time.sleep(RECLAIMED_AFTER)
    after, idle_after = server.rss_kib(), server.stats()
    return {
        "tenants": len(picks), "seconds": took,
        "rss_kib": (before, warm, after),
        "idle": [(s["idle_instances"], s["idle_instance_bytes"]) for s in (idle_before, idle_warm, idle_after)],
        "evicted": idle_warm["instances_evicted"] - idle_before["instances_evicted"],
    }


def main():
    for path in (SLUICE, GUEST):
        if not os.path.exists(path):
            raise SystemExit(f"missing {path}: cargo build --release -p sluice first")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="sluice-tenants-")
    rows = []
    cold = None
    warm = None
    server = None
    try:
        for n in TENANTS:
            cache = os.path.join(work, f"cache-{n}")
            log(f"N={n}: cold start")
            server = Server(work, n, cache)
            t_cold = server.wait_ready()
            cold_stats = server.stats()
            server.stop()
            log(f"N={n}: warm start")
            server = Server(work, n, cache)
            t_warm = server.wait_ready()
            time.sleep(1.0)
            rss = server.rss_kib()
            warm_stats = server.stats()
            if n == max(TENANTS):
                cold = cold_requests(server, n)
                log(f"N={n}: {WARM} warm tenants")
                warm = warm_tenants(server, n)
            server.stop()
            server = None
            rows.append((n, t_cold, t_warm, rss, cold_stats, warm_stats))
            log(f"N={n}: cold {t_cold:.2f} s, warm {t_warm:.2f} s, RSS {rss} KiB")
    finally:
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"## Tenants ({time.strftime('%Y-%m-%d')}, `python3 tests/bench/tenants.py`)\n")
    print(f"TENANTS={' '.join(map(str, TENANTS))} DISTINCT={DISTINCT}, "
          f"{os.cpu_count()} cores, one run. `--workers 2`.\n")
    print("| tenants | start, cold cache | start, warm cache | idle RSS (warm) | compiled (cold / warm) | loaded from disk (warm) | policies shared | instances made (canaries + first requests) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, tc, tw, rss, cs, ws in rows:
        print(f"| {n} | {tc:.2f} s | {tw:.2f} s | {rss / 1024:.1f} MiB | "
              f"{cs['policy_compiles']} / {ws['policy_compiles']} | {ws['compiled_cache_loads']} | "
              f"{ws['policies_shared']} | {ws['policy_instances']} |")
    if len(rows) >= 2:
        (n1, _, _, r1, _, _), (n2, _, _, r2, _, _) = rows[-2], rows[-1]
        per = (r2 - r1) * 1024 / max(n2 - n1, 1)
        print(f"\nResident memory per additional idle tenant ({n1} → {n2}): "
              f"**{per / 1024:.1f} KiB** (target ≤ 64 KiB).")
    if cold:
        print(f"\nFirst request to a cold tenant (N={max(TENANTS)}, keep-alive connection, "
              "client-side time, median):\n")
        print("| tenant | samples | first request | second request | first − second |")
        print("|---|---:|---:|---:|---:|")
        for label, (first, second, k) in cold.items():
            print(f"| {label} | {k} | {first * 1e6:.0f} µs | {second * 1e6:.0f} µs | "
                  f"{(first - second) * 1e6:.0f} µs |")
    if warm:
        (r0, r1, r2), k = warm["rss_kib"], warm["tenants"]
        (i0, b0), (i1, b1), (i2, b2) = warm["idle"]
        print(f"\nWarm tenants (N={max(TENANTS)}): {k} tenants never asked before, one request "
              f"each ({warm['seconds']:.2f} s), each on an instance of its own:\n")
        print("| | VmRSS | idle instances | their linear memory |")
        print("|---|---:|---:|---:|")
        print(f"| before (all reclaimed) | {r0 / 1024:.1f} MiB | {i0} | {b0 / 2**20:.1f} MiB |")
        print(f"| {k} tenants warm | {r1 / 1024:.1f} MiB | {i1} | {b1 / 2**20:.1f} MiB |")
        print(f"| 12 s later (reclaimed) | {r2 / 1024:.1f} MiB | {i2} | {b2 / 2**20:.1f} MiB |")
        print(f"\nResident memory per warm tenant: **{(r1 - r0) / k:.0f} KiB**; "
              f"left per tenant after its instance was reclaimed: {(r2 - r0) / k:.0f} KiB; "
              f"instances evicted meanwhile: {warm['evicted']}.")
    print("\n```json")
    print(json.dumps([{"tenants": n, "start_cold_s": tc, "start_warm_s": tw, "rss_kib": rss}
                      for n, tc, tw, rss, _, _ in rows]))
    print("```")


if __name__ == "__main__":
    main()
