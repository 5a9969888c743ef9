#!/usr/bin/env python3
"""What each idle keep-alive connection holds in sluice's heap, by allocation
site (issue 19): sluice under heaptrack, IDLE_CONNS (2000) connections opened
with small_file.py's client (one keep-alive `GET /4k.bin` each, response read
whole, then idle; MODE=silent: connected, nothing sent), held 2 s, then the
server is stopped with them open. Prints heaptrack's peak consumers (one row
per allocation site, not merged) whose call count is at least half of
IDLE_CONNS: bytes per call = per connection.

Usage: SLUICE_BIN=target/release/sluice python3 tests/bench/idle_heap.py
Needs: heaptrack, heaptrack_print (apt-get install heaptrack).
"""

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import small_file as sf  # noqa: E402

N = int(os.environ.get("IDLE_CONNS", "2000"))
MODE = os.environ.get("MODE", "after-request")
# the allocator's own frames (std, RawVec, Box): the caller is what names a site
ALLOC = re.compile(r"^\s*(_R\w*(alloc|rdl_)\w*|alloc|realloc|malloc|calloc|grow\w*|finish_grow.*|do_reserve.*"
                   r"|allocate|try_allocate_in.*|with_capacity(_in)?<>|alloc_impl\w*|box_new_uninit|new_uninit.*"
                   r"|reserve<>|grow_one<>|push<>|push_mut<>|push_back.*|to_vec.*|new<>|pin<>)\s*$")


def main():
    sf.raise_nofile(N + 1024)
    tmp = tempfile.mkdtemp(prefix="sluice-heap-")
    os.makedirs(f"{tmp}/www")
    with open(f"{tmp}/www/4k.bin", "wb") as f:
        f.write(os.urandom(4096))
    port = sf.free_port()
    out = f"{tmp}/heaptrack.{MODE}"
    ht = subprocess.Popen(["heaptrack", "-o", out, sf.sluice_binary(), "serve", f"{tmp}/www",
                           "--listen", f"127.0.0.1:{port}", "--workers", "1"],
                          env=dict(os.environ, SLUICE_LOG="warn"), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            sf.socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    # the server: the process under heaptrack's wrapper that listens on `port`
    server = int(subprocess.run(["pgrep", "-n", "-P", str(ht.pid), "-f", f"127.0.0.1:{port}"],
                                capture_output=True, text=True).stdout.split()[0])
    for _ in range(20):
        sf.curl(["-o", "/dev/null", f"http://127.0.0.1:{port}/4k.bin"])

    async def hold():
        if MODE == "silent":
            streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(N)]
        else:
            streams, failures = await sf.open_idle(port, N)
            if failures:
                sf.log(f"failures: {failures}")
        await asyncio.sleep(2)
        os.kill(server, signal.SIGTERM)  # heaptrack's peak is with them all open
        ht.wait(180)
        return streams

    streams = asyncio.run(hold())
    report = subprocess.run(["heaptrack_print", "-f", out + ".zst", "--print-peaks", "1",
                             "--print-allocators", "0", "--print-temporary", "0", "--print-leaks", "0",
                             "--merge-backtraces", "0", "--peak-limit", "200", "-s", "0"],
                            capture_output=True, text=True).stdout
    print(f"{len(streams)} connections ({MODE}); sites with >= {N // 2} calls:")
    for block in re.split(r"\n(?=\S+ peak memory consumed)", report):
        m = re.match(r"(\S+) peak memory consumed over (\d+) calls", block)
        if not m or int(m.group(2)) < N // 2:
            continue
        frames = [ln.strip() for ln in block.splitlines()[1:]
                  if not ln.strip().startswith(("at ", "in ", "and ")) and not ALLOC.search(ln)]
        print(f"{m.group(1):>9} over {m.group(2):>5} calls | " + " <- ".join(frames[:12])[:300])
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
