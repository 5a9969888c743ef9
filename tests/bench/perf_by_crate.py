#!/usr/bin/env python3
"""Groups a `perf record --call-graph dwarf` profile of sluice by where the
time goes: kernel samples by the system call they are under (sendmsg,
recvmmsg, preadv2, ...), user samples by the crate of the innermost Rust
frame (quinn-proto, h3, ring, tokio, sluice, ...), with memcpy and malloc
leaves shown separately under the crate that called them.

Usage (BENCHMARKS.md, issue 20's profile):
    perf record -e cpu-clock --call-graph dwarf,16384 -F 999 -p PID -o FILE -- sleep 8
    python3 tests/bench/perf_by_crate.py FILE
Output: shares of all samples, largest first (rows under 0.5 % left out).
"""

import collections
import re
import subprocess
import sys

CRATES = {
    "ring": "ring (AES-GCM, header protection)", "ring_core": "ring (AES-GCM, header protection)",
    "quinn_proto": "quinn-proto", "quinn_udp": "quinn-udp", "quinn": "quinn", "h3": "h3", "h3_quinn": "h3-quinn",
    "sluice": "sluice", "tokio": "tokio", "tokio_util": "tokio", "bytes": "bytes", "http": "http",
    "rustls": "rustls", "h2": "h2", "hyper": "hyper", "wasmtime": "wasmtime",
}
SYSCALLS = ["sendmsg", "recvmmsg", "recvmsg", "preadv", "writev", "recvfrom", "epoll_wait", "futex", "fstat"]


def crate_of(sym):
    if sym.startswith("ring_core"):
        return CRATES["ring_core"]
    m = re.match(r"<?([a-z_0-9]+)::", sym)
    return CRATES.get(m.group(1)) if m else None


def main():
    out = subprocess.run(["perf", "script", "-i", sys.argv[1], "-F", "ip,sym,dso"],
                         capture_output=True, text=True, check=True).stdout
    rows, total = collections.Counter(), 0
    for block in out.split("\n\n"):
        frames = [ln.strip().split(None, 1) for ln in block.strip().split("\n") if ln.strip()]
        syms = [f[1] if len(f) > 1 else "?" for f in frames]
        if not syms:
            continue
        total += 1
        owner = next((c for c in map(crate_of, syms) if c), "other")
        if "[kernel" in syms[0]:
            chain = "\n".join(syms)
            call = next((s for s in SYSCALLS if re.search(r"\b(__x64_sys_|__sys_|__do_sys_|do_)?" + s, chain)), None)
            rows[f"kernel: {call or 'interrupts, scheduling'} (from {owner})"] += 1
        elif re.search(r"^(__)?mem(cpy|move|set)|_erms", syms[0]):
            rows[f"user: {owner}: memcpy/memmove"] += 1
        elif re.search(r"malloc|^(__libc_|c)?free|_int_|tcache|unlink_chunk|consolidate|realloc", syms[0]):
            rows[f"user: {owner}: malloc/free"] += 1
        else:
            rows[f"user: {owner}"] += 1
    print(f"{total} samples")
    for what, n in rows.most_common():
        if n * 200 >= total:
            print(f"{100 * n / total:5.1f} %  {what}")


if __name__ == "__main__":
    main()
