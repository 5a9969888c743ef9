#!/usr/bin/env python3
"""Where a 4 KiB request over HTTP/2 + TLS goes (issue 19's h2 row), per
server: `perf record -e cpu-clock` of the server during `h2load -c8 -m32 -t1
-n $REQUESTS` over 64 distinct 4 KiB files, samples grouped by what they are
in (the kernel, h2, rustls, ring's AES-GCM, tokio, malloc/free, memcpy, the
server's own code...) and given in µs of server CPU per request (samples x
the sampling period ÷ requests). The same servers as h2_small.py (sluice,
optionally a baseline, the h2 floor and its variants, nginx TLS), pinned on
CPU 1, h2load on CPU 0, one warm-up run each first.

Environment: REQUESTS (100000), TOP (25 symbols per server; 0 for none),
SLUICE_BIN, SLUICE_BASELINE_BIN, SLUICE_BASELINE_LABEL, FLOOR_BIN,
FLOOR_VARIANTS (as h2_small.py).
Usage:  python3 tests/bench/profile_h2.py
Needs: perf (kernel.perf_event_paranoid <= 1 or root), nginx, h2load.
"""

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile

import small_file as sf
import tls

sys.path.insert(0, os.path.join(sf.REPO, "tests", "support"))
from sluice_test import make_cert, sluice_binary  # noqa: E402

HZ = 4000  # perf's default cpu-clock frequency: 250 µs per sample

# First match wins; symbols are demangled Rust paths or C names.
GROUPS = [
    (r"aes_gcm|gcm_|aes_hw|aesni|ghash|ring_core|ring::|chacha|poly1305", "ring (AES-GCM)"),
    (r"rustls::|tokio_rustls::", "rustls"),
    (r"\bh2::", "h2"),
    (r"malloc|free|_int_|realloc|unlink_chunk|tcache|__rust_alloc|__rust_dealloc|calloc", "malloc/free"),
    (r"memcpy|memmove|memset", "memcpy/memset"),
    (r"tokio::|mio::|tokio_util::", "tokio"),
    (r"bytes::", "bytes"),
    (r"hyper::|hyper_util::", "hyper"),
    (r"\bhttp::", "http (types)"),
    (r"quick_cache::|slab::|hashbrown::", "caches, slabs, maps"),
    (r"\bsluice::|h2_floor::", "the server's own"),
    (r"\bcore::|\bstd::|\balloc::", "std/core"),
]


def group(dso, kind, sym):
    if kind == "k":
        return "kernel"
    if dso.startswith("nginx"):
        return "nginx"
    if dso.startswith(("libssl", "libcrypto")):
        return "OpenSSL"
    for pattern, name in GROUPS:
        if re.search(pattern, sym):
            return name
    return "libc, other" if dso.startswith("libc") else f"other ({dso})"


def profile(server, uris, n, tmp):
    data = os.path.join(tmp, f"perf-{server.port}.data")
    argv = ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(HZ), "-p", str(server.pid), "-o", data, "--",
            "taskset", "-c", str(sf.CLIENT_CPU), "h2load", "-c8", "-m32", "-t1", f"-n{n}", "-i", uris]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out.stdout)
    if out.returncode != 0 or not done or int(done.group(2)) != n:
        sys.exit(f"h2load against {server.name} failed:\n{out.stdout}{out.stderr}")
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio",
                          "-g", "none", "--percent-limit", "0"], capture_output=True, text=True).stdout
    samples = len(subprocess.run(["perf", "script", "-i", data, "-F", "ip"], capture_output=True,
                                 text=True).stdout.splitlines())
    us = samples * 1e6 / HZ / n
    groups, rows = collections.Counter(), []
    for line in rep.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
        if m:
            pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
            g = group(dso, kind, sym)
            groups[g] += pct
            rows.append((pct, g, sym))
    return us, groups, rows


def main():
    n = int(os.environ.get("REQUESTS", "100000"))
    top = int(os.environ.get("TOP", "25"))
    target = os.path.join(sf.REPO, os.environ.get("CARGO_TARGET_DIR", "target"))
    floor_bin = os.path.abspath(os.environ.get("FLOOR_BIN") or os.path.join(target, "release", "examples", "h2_floor"))
    baseline = os.environ.get("SLUICE_BASELINE_BIN")
    for tool in ("perf", "nginx", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"missing {tool}")
    nofile = sf.raise_nofile(4096)
    os.sched_setaffinity(0, {sf.CLIENT_CPU})
    tmp = tempfile.mkdtemp(prefix="sluice-profh2-")
    try:
        www = os.path.join(tmp, "www")
        os.makedirs(os.path.join(www, "4k"))
        for i in range(tls.SMALL_FILES):
            with open(os.path.join(www, "4k", f"{i:02}.bin"), "wb") as f:
                f.write(os.urandom(4096))
        cert, key = make_cert(tmp)
        env = dict(os.environ, SLUICE_LOG="warn")
        servers = []
        for name, binary in [("sluice", sluice_binary())] + ([(os.environ.get(
                "SLUICE_BASELINE_LABEL", "sluice before"), os.path.abspath(baseline))] if baseline else []):
            port = sf.free_port()
            servers.append(sf.Server(name, [binary, "serve", www, "--listen", f"127.0.0.1:{sf.free_port()}",
                                            "--tls-cert", cert, "--tls-key", key, "--tls-listen",
                                            f"127.0.0.1:{port}", "--workers", "1"], port, tmp, "sluice", env))
        for flag in [""] + os.environ.get("FLOOR_VARIANTS", "").split():
            port = sf.free_port()
            servers.append(sf.Server(f"floor {flag}".strip(), [floor_bin, "--listen", f"127.0.0.1:{port}", "--cert",
                                                             cert, "--key", key] + ([flag] if flag else []),
                                     port, tmp, "floor", env))
        servers.append(sf.start_nginx("nginx TLS", www, tmp, nofile, listen="ssl http2",
                                      server_conf=tls.NGINX_TLS.format(cert=cert, key=key)))
        for s in servers:
            s.wait_listening()
        print(f"h2load -c8 -m32 -t1 -n{n}, 4 KiB files over TLS 1.3; perf record -e cpu-clock -F {HZ} of the "
              f"server; load average {os.getloadavg()[0]:.2f} at the start\n")
        results = {}
        for s in servers:
            uris = os.path.join(tmp, f"uris-{s.port}.txt")
            with open(uris, "w") as f:
                f.write("".join(tls.https(s, f"4k/{i:02}.bin") + "\n" for i in range(tls.SMALL_FILES)))
            subprocess.run(["taskset", "-c", str(sf.CLIENT_CPU), "h2load", "-c8", "-m32", "-t1", "-n20000",
                            "-i", uris], capture_output=True, timeout=600)
            results[s.name] = profile(s, uris, n, tmp)
            sf.log(f"{s.name}: {results[s.name][0]:.1f} µs/request")
        names = [s.name for s in servers]
        cats = sorted({g for r in results.values() for g in r[1]},
                      key=lambda g: -max(r[0] * r[1].get(g, 0) for r in results.values()))
        print("| µs of server CPU per request | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        print("| **total** | " + " | ".join(f"**{results[x][0]:.2f}**" for x in names) + " |")
        for g in cats:
            print(f"| {g} | " + " | ".join(f"{results[x][0] * results[x][1].get(g, 0) / 100:.2f}" for x in names) + " |")
        if top:
            for x in names:
                print(f"\n{x}: top {top} symbols, µs per request (self)\n")
                for pct, g, sym in results[x][2][:top]:
                    print(f"    {results[x][0] * pct / 100:5.2f}  {g:20} {sym[:100]}")
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    finally:
        sf.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
