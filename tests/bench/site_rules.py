#!/usr/bin/env python3
"""What site rules cost a whole server (issue 18): sluice with 200 header rules
and 1,000 redirect rules configured against the same binary without them.

What it measures
  Two `sluice serve DIR --workers 1` with the default policy, the same binary:
    A  no rules,
    B  `[policy] redirects = { file = "_redirects" }` (1,000 rules) and
       `headers = { file = "_headers" }` (200 rules), none matching the
       measured requests (checked: B answers them exactly as A does, and a
       redirect rule and a header rule are checked to work elsewhere).
  For the 4 KiB file and its 304 (`If-None-Match` with the server's own ETag),
  HTTP/1.1 keep-alive, `wrk -t1 -c32 --latency` as small_file.py (its helpers:
  servers pinned on CPU 1, wrk on CPU 0). Runs are interleaved in pairs,
  A B, B A, A B, ... (ROUNDS pairs per case). Per row: req/s and p99, medians
  with [min-max]; B/A of the medians; the spread of the per-pair ratios; and the
  load average before and after (other work on the machine shows there).

Environment: ROUNDS (5 pairs), DURATION (wrk -d, 4s), CONNS (32), SLUICE_BIN
(as small_file.py).

Usage:  python3 tests/bench/site_rules.py
Output: a markdown section for BENCHMARKS.md on stdout, progress on stderr.
"""

import datetime
import os
import shutil
import signal
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import small_file as sf  # noqa: E402


def redirect_rules():
    """1,000 rules shaped like a real site's (as guest/src/rules/bench.rs)."""
    lines = ["# a site's redirects"]
    for i in range(700):
        year, month = 2015 + i // 100, 1 + i % 12
        lines.append(f"/blog/{year}/{month:02}/old-post-{i}  /posts/old-post-{i}  301")
    lines += [f"/docs/v{i}/*  /docs/:splat  301" for i in range(100)]
    lines += [f"/products/{i}/:slug  /shop/{i}/:slug  302" for i in range(100)]
    lines += [f"/team/member-{i}  /about/team#member-{i}  301" for i in range(50)]
    lines += [f"/:lang/legacy-{i}  /:lang/new-{i}  301" for i in range(30)]
    lines += [f"/store-{i} id=:id  /blog/:id  301" for i in range(20)]
    assert len(lines) == 1001
    return "\n".join(lines) + "\n"


def header_rules():
    """200 rules, none for `/4k.bin`."""
    text = "".join(f"/app/section-{i}/*\n  X-Section: {i}\n" for i in range(150))
    text += "".join(f"/api/v{i}/*\n  Access-Control-Allow-Origin: *\n"
                    f"  Access-Control-Allow-Methods: GET, HEAD\n" for i in range(50))
    return text


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def check_rules_apply(server):
    """B's rules are loaded: a redirect rule and a header rule answer."""
    head = sf.curl(["-o", "/dev/null", "-D", "-", server.url("blog/2015/01/old-post-0")])
    if not head.startswith("HTTP/1.1 301") or "/posts/old-post-0" not in head:
        sys.exit(f"{server.name}: the redirect rule did not answer:\n{head}")
    head = sf.curl(["-o", "/dev/null", "-D", "-", server.url("app/section-7/4k.bin")])
    if "x-section: 7" not in head.lower():
        sys.exit(f"{server.name}: the header rule did not answer:\n{head}")


def same_answer(a, b):
    """B answers the measured requests exactly as A does (headers but Date)."""
    def head(s, extra):
        text = sf.curl(["-o", "/dev/null", "-D", "-"] + extra + [s.url("4k.bin")])
        return [ln for ln in text.splitlines() if not ln.lower().startswith("date:")]
    for extra in ([], ["-H", f"If-None-Match: {a.etag}"]):
        if head(a, extra) != head(b, extra):
            sys.exit(f"the rules changed the response to /4k.bin {extra}:\n{head(a, extra)}\n{head(b, extra)}")


def main():
    rounds = int(os.environ.get("ROUNDS", "5"))
    duration = os.environ.get("DURATION", "4s")
    conns = int(os.environ.get("CONNS", "32"))
    binary = os.path.abspath(sf.sluice_binary())
    started = datetime.datetime.now(datetime.timezone.utc)
    os.sched_setaffinity(0, {sf.CLIENT_CPU})
    signal.signal(signal.SIGTERM, sf.on_signal)
    tmp = tempfile.mkdtemp(prefix="sluice-rules-")
    www = os.path.join(tmp, "www")
    os.makedirs(os.path.join(www, "app", "section-7"))
    for path in ("4k.bin", "64k.bin", "app/section-7/4k.bin"):
        with open(os.path.join(www, path), "wb") as f:
            f.write(os.urandom(sf.FILES.get(os.path.basename(path), 4096)))
    with open(os.path.join(tmp, "_redirects"), "w") as f:
        f.write(redirect_rules())
    with open(os.path.join(tmp, "_headers"), "w") as f:
        f.write(header_rules())
    config = os.path.join(tmp, "rules.toml")
    with open(config, "w") as f:
        f.write('[policy]\nredirects = { file = "_redirects" }\nheaders = { file = "_headers" }\n')
    env = dict(os.environ, SLUICE_LOG="warn")
    results, pairs = {}, {}
    load_before = load()
    try:
        servers = []
        for name, extra in (("A: no rules", []), ("B: 200 header + 1,000 redirect rules", ["--config", config])):
            port = sf.free_port()
            argv = [binary, "serve", www, "--listen", f"127.0.0.1:{port}", "--workers", "1"] + extra
            servers.append(sf.Server(name, argv, port, tmp, "sluice", env))
        for s in servers:
            s.wait_listening()
            s.etag = sf.check_and_get_etag(s)
            sf.wrk(s, "4k.bin", conns, "1s")  # warm-up, not measured
        a, b = servers
        check_rules_apply(b)
        same_answer(a, b)
        cases = ["4k.bin", "304"]
        for r in range(rounds):
            for case in cases:
                order = servers if r % 2 == 0 else servers[::-1]
                got = {}
                for s in order:
                    got[s.name] = sf.wrk(s, case, conns, duration)
                    results.setdefault((s.name, case), []).append(got[s.name])
                    if s.proc.poll() is not None:
                        sys.exit(f"{s.name} died during {case}:\n{s.log_tail()}")
                pairs.setdefault(case, []).append(got[b.name]["rps"] / got[a.name]["rps"])
            sf.log(f"pair {r + 1}/{rounds} done (load {load()})")
        load_after = load()
        for s in servers:
            s.stop()
    finally:
        sf.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    out = []
    out.append(f"### Issue 18: what site rules cost, whole server ({started:%Y-%m-%d %H:%M} UTC)\n")
    out.append(f"`python3 tests/bench/site_rules.py` (ROUNDS={rounds} DURATION={duration} CONNS={conns}); "
               f"binary {sf.binary_id(binary)}; load average before {load_before}, after {load_after} "
               f"(2 CPUs).\n")
    out.append("| case | server | req/s | p99 µs | B/A req/s (medians) | B/A per pair [min-max] |")
    out.append("|---|---|---|---|---|---|")
    for case in cases:
        ra = [x["rps"] for x in results[(a.name, case)]]
        for s in servers:
            v = results[(s.name, case)]
            rps = [x["rps"] for x in v]
            ratio = pair = ""
            if s is b:
                ratio = f"{statistics.median(rps) / statistics.median(ra):.3f}"
                p = pairs[case]
                pair = f"{statistics.median(p):.3f} [{min(p):.3f}–{max(p):.3f}]"
            label = "304 (4 KiB)" if case == "304" else "4 KiB"
            out.append(f"| {label} -c{conns} | {s.name} | {sf.fmt(rps)} | {sf.fmt([x['p99'] for x in v])} "
                       f"| {ratio} | {pair} |")
    errs = sum(x["errors"] for v in results.values() for x in v)
    if errs:
        out.append(f"\nwrk counted {errs} socket errors / non-2xx-3xx responses.")
    print("\n".join(out))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sf.stop_all()
        sys.exit(130)
