#!/usr/bin/env python3
"""Idle keep-alive connections: what each costs the server (issue 19).

Opens IDLE_CONNS (2000) connections to a fresh instance of each server, with
small_file.py's client and method (each sends one keep-alive `GET /4k.bin`,
reads the whole response, stays idle; VmRSS before and 1 s after the last is
open), for:
  - nginx (small_file.py's configuration),
  - sluice default (`serve DIR --workers 1`),
  - sluice with each of SLUICE_VARIANTS: `label=words for serve;label2=...`
    (e.g. "inline0=--config /tmp/inline0.toml"),
and the same connections opened but with NOTHING sent (`silent`: the
connection before its first request, for sluice and nginx), so the cost of a
connection is split into "accepted" and "after one request".

Usage: IDLE_CONNS=2000 python3 tests/bench/idle_conns.py
Output: a markdown table on stdout.
"""

import asyncio
import os
import shlex
import sys
import tempfile
import shutil
import time

sys.path.insert(0, os.path.dirname(__file__))
import small_file as sf  # noqa: E402

N = int(os.environ.get("IDLE_CONNS", "2000"))


async def open_silent(port, n):
    streams = []
    for _ in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        streams.append((r, w))
    return streams


def silent_measurement(server, n):
    for _ in range(20):
        sf.curl(["-o", "/dev/null", server.url("4k.bin")])
    time.sleep(0.5)
    rss0, fds0 = server.rss_kib(), server.fds()

    async def run():
        streams = await open_silent(server.port, n)
        try:
            await asyncio.sleep(1)
            return len(streams), server.rss_kib(), server.fds()
        finally:
            await sf.close_all(streams)

    ok, rss1, fds1 = asyncio.run(run())
    return {"ok": ok, "rss0": rss0, "rss1": rss1, "fds0": fds0, "fds1": fds1,
            "kib_per_conn": (rss1 - rss0) / ok}


def main():
    nofile = sf.raise_nofile(N + 1024)
    tmp = tempfile.mkdtemp(prefix="sluice-idle-")
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    with open(os.path.join(www, "4k.bin"), "wb") as f:
        f.write(os.urandom(4096))
    binary = sf.sluice_binary()
    env = dict(os.environ, SLUICE_LOG="warn")
    variants = [("sluice", [])]
    for v in filter(None, os.environ.get("SLUICE_VARIANTS", "").split(";")):
        label, words = v.split("=", 1)
        variants.append((label, shlex.split(words)))
    rows = []
    try:
        for mode in ("after one request", "silent"):
            servers = []
            for label, extra in variants:
                port = sf.free_port()
                argv = [binary, "serve", www, "--listen", f"127.0.0.1:{port}", "--workers", "1"] + extra
                servers.append(sf.Server(label, argv, port, tmp, "sluice", env))
            servers.append(sf.start_nginx("nginx", www, tmp, nofile))
            for s in servers:
                s.wait_listening()
                r = sf.idle_measurement(s, N) if mode != "silent" else silent_measurement(s, N)
                rows.append((mode, s.name, r))
                sf.log(f"{mode} {s.name}: {r['kib_per_conn']:.1f} KiB/conn")
                s.stop()
    finally:
        sf.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print("| connections | server | open | RSS before MiB | RSS with them MiB | KiB per connection | fds before → with |")
    print("|---|---|---|---|---|---|---|")
    for mode, name, r in rows:
        print(f"| {mode} | {name} | {r['ok']:,} | {r['rss0'] / 1024:.1f} | {r['rss1'] / 1024:.1f} "
              f"| {r['kib_per_conn']:.1f} | {r['fds0']} → {r['fds1']} |")


if __name__ == "__main__":
    main()
