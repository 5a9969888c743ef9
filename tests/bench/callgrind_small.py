#!/usr/bin/env python3
"""Instructions per small request, by function: sluice against nginx under
callgrind (issue 19). Instruction counts do not depend on what else runs on the
machine, so this resolves per-request differences that wall time cannot.

What it measures
  Each server (sluice `serve DIR --workers 1`, default policy, and the optional
  builds in BINS; nginx with one worker, no master, sendfile, tcp_nopush,
  open_file_cache valid 30 s, access log off) runs under
  `valgrind --tool=callgrind`. For each case
    - 304: `GET /4k.bin` with `If-None-Match: <the server's own ETag>`,
    - 4k:  `GET /4k.bin` (a 4 KiB file, 200),
  CONNS keep-alive connections (one request outstanding on each, like
  `wrk -cCONNS`) make WARMUP requests, then the counters are zeroed
  (`callgrind_control -z`), exactly REQUESTS requests are made, and the counts
  are dumped (`callgrind_control -d`): everything every thread of the server did
  for those requests, start-up and warm-up excluded.
  Printed per server and case: instructions (Ir) per request in all, the calls
  per request to malloc, free and realloc (and the others named in COUNT), and
  the TOP functions by inclusive and by self cost, per request.

Valgrind 3.20 or later is needed (sluice opens files with `openat2`, which 3.19
does not know); VALGRIND names the command (e.g. a newer build unpacked beside
the system's, with its VALGRIND_LIB exported; the system's callgrind_control and
vgdb 3.19 drive a 3.24 valgrind). sluice runs under `no_prctl_auxv.c` (compiled here with cc: see there
why), pinned on one CPU (SERVER_CPU, 1) and with `[sandbox] instances = 2`, so
that wasmtime's pool fits in what valgrind can map; neither changes a cache hit.

Environment: CASES ("304 4k"), REQUESTS (4000), WARMUP (500), CONNS (32),
TOP (40), CALLERS (function names: also print, for each, its callers per
request, e.g. "__rust_alloc __memcpy_avx_unaligned_erms"), SLUICE_BIN, SLUICE_ARGS (extra `serve` words), CONFIG_EXTRA (TOML
lines added to sluice's config, `\\n` for a newline), BINS ("label=path;..."
more sluice builds, each a row), SLUICE (1; 0 skips the SLUICE_BIN row), NGINX (1; 0
skips nginx), KEEP (a directory
to keep the callgrind files in; else they are deleted).

Usage:  python3 tests/bench/callgrind_small.py > out.md
Needs:  valgrind (callgrind_control, callgrind_annotate), nginx, python3.
"""

import os
import re
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
from sluice_test import sluice_binary  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import syscalls  # noqa: E402
from small_file import free_port, log  # noqa: E402

CASES = os.environ.get("CASES", "304 4k").split()
REQUESTS = int(os.environ.get("REQUESTS", "4000"))
WARMUP = int(os.environ.get("WARMUP", "500"))
CONNS = int(os.environ.get("CONNS", "32"))
TOP = int(os.environ.get("TOP", "40"))
COUNT = ["malloc", "free", "realloc", "calloc", "clock_gettime", "__memcpy_avx_unaligned_erms",
         "__memmove_avx_unaligned_erms", "memcpy", "memmove"]
LIVE = []


def wait_listening(proc, port):
    # Under valgrind a server takes long to start.
    syscalls.wait_listening(proc, port, timeout=300, poll=0.2)


def valgrind(out):
    return shlex.split(os.environ.get("VALGRIND", "valgrind")) + [
        "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no", "--dump-line=yes",
        "--compress-strings=no", "--compress-pos=no", "--smc-check=all-non-file"]


def no_prctl_auxv(workdir):
    """tests/bench/no_prctl_auxv.c, compiled: see there why sluice needs it."""
    exe = os.path.join(workdir, "no_prctl_auxv")
    subprocess.run(["cc", "-O2", "-o", exe, os.path.join(REPO, "tests", "bench", "no_prctl_auxv.c")],
                   check=True)
    return exe


def start_sluice(label, binary, www, workdir):
    port = free_port()
    out = os.path.join(workdir, f"{label}.cg")
    # Wasmtime's pool reserves ~8 GiB of address space per slot, and the
    # pool is raised to 6 slots per site per core: one core (taskset) keeps
    # it within what valgrind can map. A compile cache of the run's own keeps
    # the shared one untouched (this engine's configuration differs).
    config = os.path.join(workdir, f"{label}.toml")
    with open(config, "w") as f:
        f.write(f'compile-cache = "{workdir}/compiled"\n[sandbox]\ninstances = 2\n')
        f.write(os.environ.get("CONFIG_EXTRA", "").replace("\\n", "\n") + "\n")
    argv = ["taskset", "-c", os.environ.get("SERVER_CPU", "1"), no_prctl_auxv(workdir)] + valgrind(out)
    argv += [binary, "serve", www, "--listen", f"127.0.0.1:{port}", "--workers", "1", "--config", config]
    argv += shlex.split(os.environ.get("SLUICE_ARGS", ""))
    logf = open(os.path.join(workdir, f"{label}.log"), "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                         env=dict(os.environ, SLUICE_LOG="warn"))
    LIVE.append(p)
    wait_listening(p, port)
    return p, port, out


def start_nginx(www, workdir):
    port = free_port()
    d, conf = syscalls.nginx_conf(www, workdir, port, keepalive_requests=1000000)
    out = os.path.join(workdir, "nginx.cg")
    p = subprocess.Popen(["taskset", "-c", os.environ.get("SERVER_CPU", "1")] + valgrind(out) +
                         ["nginx", "-c", conf, "-p", d], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    LIVE.append(p)
    wait_listening(p, port)
    return p, port, out


class Conn:
    """One keep-alive connection, one request outstanding at a time."""

    def __init__(self, port, request):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.setblocking(False)
        self.request = request
        self.buf = b""
        self.want = None  # bytes of the response still expected after the head
        self.status = None

    def send(self):
        self.s.sendall(self.request)
        self.buf, self.want, self.status = b"", None, None

    def feed(self):
        """Reads what is there; the status once the response is whole."""
        chunk = self.s.recv(1 << 16)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += chunk
        if self.want is None:
            if b"\r\n\r\n" not in self.buf:
                return None
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.status = int(head.split(b" ", 2)[1])
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
            self.want = int(m.group(1)) if (m and self.status != 304) else 0
        if len(self.buf) >= self.want:
            if len(self.buf) > self.want:
                raise ConnectionError("more bytes than the response")
            return self.status
        return None


def run(port, request, total, expect):
    """Exactly `total` requests over CONNS connections; checks every status."""
    sel = selectors.DefaultSelector()
    conns = [Conn(port, request) for _ in range(min(CONNS, total))]
    sent = done = 0
    for c in conns:
        c.send()
        sent += 1
        sel.register(c.s, selectors.EVENT_READ, c)
    deadline = time.time() + 600
    while done < total:
        if time.time() > deadline:
            sys.exit("requests did not complete in 600 s")
        for key, _ in sel.select(timeout=5):
            c = key.data
            status = c.feed()
            if status is None:
                continue
            if status != expect:
                sys.exit(f"got {status}, expected {expect}")
            done += 1
            if sent < total:
                c.send()
                sent += 1
    for c in conns:
        c.s.close()


def etag(port):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(f"GET /4k.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = c.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    c.close()
    m = re.search(rb"\r\netag:\s*([^\r]+)", data, re.I)
    if not m:
        sys.exit("no ETag")
    return m.group(1).decode()


def control(flag, pid):
    out = subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, text=True)
    if out.returncode != 0 or "Error" in out.stdout + out.stderr:
        sys.exit(f"callgrind_control {flag} {pid}: {out.stdout}{out.stderr}")


def dumped(out, pid, before):
    """The dump file that appeared since `before` (callgrind numbers them)."""
    for _ in range(600):
        now = set(f for f in os.listdir(os.path.dirname(out)) if f.startswith(os.path.basename(out) + "."))
        new = sorted(now - before)
        if new:
            path = os.path.join(os.path.dirname(out), new[-1])
            time.sleep(0.5)
            return path
        time.sleep(0.1)
    sys.exit("no dump appeared")


def annotate(path, inclusive):
    argv = ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100", path]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


LINE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(?:\*\s+)?(.+?)\s*$")


def rows(text):
    """(Ir, function) rows of callgrind_annotate's function table."""
    out = []
    started = False
    for line in text.splitlines():
        if re.search(r"file:function", line):
            started = True
            continue
        if not started or not line.strip() or line.startswith("-"):
            continue
        m = LINE.match(line)
        if m:
            out.append((int(m.group(1).replace(",", "")), m.group(2)))
    return out


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    return 0


def calls(path, names):
    """Calls per function name (any object), from the dump's `calls=` lines."""
    counts = {n: 0 for n in names}
    fn_names = {}
    current_cfn = None
    with open(path) as f:
        for line in f:
            if line.startswith("cfn="):
                m = re.match(r"cfn=(?:\((\d+)\))?\s*(.*)", line.strip())
                ident, name = m.group(1), m.group(2)
                if name:
                    if ident:
                        fn_names[ident] = name
                else:
                    name = fn_names.get(ident, "")
                current_cfn = name
            elif line.startswith("fn="):
                m = re.match(r"fn=(?:\((\d+)\))?\s*(.*)", line.strip())
                if m.group(1) and m.group(2):
                    fn_names[m.group(1)] = m.group(2)
            elif line.startswith("calls=") and current_cfn is not None:
                n = int(line.split("=")[1].split()[0])
                base = current_cfn.split("'")[0]
                if base in counts:
                    counts[base] += n
    return counts


def callers(path, target):
    """{caller: (calls, inclusive Ir)} of every call to a function whose name
    starts with `target`, from the dump's `fn=`/`cfn=`/`calls=` lines."""
    names, out = {}, {}
    fn = cfn = None
    pending = False
    with open(path) as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                key, _, rest = line.strip().partition("=")
                m = re.match(r"(?:\((\d+)\))?\s*(.*)", rest)
                ident, name = m.group(1), m.group(2)
                if name and ident:
                    names[ident] = name
                name = name or names.get(ident, "")
                if key == "fn":
                    fn = name
                else:
                    cfn = name
            elif line.startswith("calls="):
                pending = cfn is not None and target in cfn
                calls_n = int(line.split("=")[1].split()[0])
            elif pending and line[:1].isdigit() or (pending and line[:1] in "+-*"):
                ir = int(line.split()[1])
                c, i = out.get(fn, (0, 0))
                out[fn] = (c + calls_n, i + ir)
                pending = False
    return out


def short(name, width=110):
    name = re.sub(r"/[^ :]*/(registry/src/[^/]+/|rustc/[0-9a-f]+/library/)", "", name)
    name = re.sub(r"^/work/[^/]+/", "", name)
    return name if len(name) <= width else name[: width - 1] + "…"


def report(label, case, path):
    total = total_ir(path)
    print(f"\n### {label}, {case}: {total / REQUESTS:,.0f} instructions per request "
          f"({total:,} for {REQUESTS} requests)\n")
    c = calls(path, COUNT)
    print("calls per request: " + ", ".join(f"{n} {v / REQUESTS:.2f}" for n, v in c.items() if v))
    for target in os.environ.get("CALLERS", "").split():
        print(f"\nCallers of `{target}*`, per request (calls, inclusive Ir):\n")
        print("| calls | Ir | caller |\n|---:|---:|---|")
        found = sorted(callers(path, target).items(), key=lambda kv: -kv[1][1])
        for fn, (n, ir) in found[:TOP]:
            if n >= REQUESTS / 100:
                print(f"| {n / REQUESTS:.2f} | {ir / REQUESTS:,.0f} | `{short(fn)}` |")
    for title, inclusive in (("inclusive", True), ("self", False)):
        print(f"\nTop {TOP} by {title} cost, instructions per request:\n")
        print("| Ir/req | % | function |\n|---:|---:|---|")
        listed = rows(annotate(path, inclusive))
        if not inclusive:
            # Frames entered before the counters were zeroed (`main`, a
            # thread's start) are listed with the whole total as their own
            # cost by a dump taken mid-run: not self cost.
            listed = [(ir, fn) for ir, fn in listed if ir < total * 0.9]
        for ir, fn in listed[:TOP]:
            print(f"| {ir / REQUESTS:,.0f} | {100 * ir / total:.1f} | `{short(fn)}` |")


def measure(label, proc, port, out):
    tag = etag(port)
    requests = {
        "304": (f"GET /4k.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nIf-None-Match: {tag}\r\n\r\n", 304),
        "4k": (f"GET /4k.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n", 200),
    }
    for case in CASES:
        request, expect = requests[case]
        log(f"{label} {case}: warm-up {WARMUP}")
        run(port, request.encode(), WARMUP, expect)
        time.sleep(0.5)
        before = set(f for f in os.listdir(os.path.dirname(out)) if f.startswith(os.path.basename(out) + "."))
        control("-z", proc.pid)
        log(f"{label} {case}: {REQUESTS} requests")
        run(port, request.encode(), REQUESTS, expect)
        time.sleep(0.5)
        control("-d", proc.pid)
        path = dumped(out, proc.pid, before)
        report(label, case, path)
        if os.environ.get("KEEP"):
            shutil.copy(path, os.path.join(os.environ["KEEP"], f"{label}-{case}.cg"))


def stop_all(*_):
    for p in LIVE:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in LIVE:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    workdir = tempfile.mkdtemp(prefix="callgrind-small-")
    try:
        www = os.path.join(workdir, "www")
        os.mkdir(www)
        with open(os.path.join(www, "4k.bin"), "wb") as f:
            f.write(os.urandom(4096))
        version = subprocess.run(shlex.split(os.environ.get("VALGRIND", "valgrind")) + ["--version"],
                                 capture_output=True, text=True).stdout.strip()
        print(f"`REQUESTS={REQUESTS} WARMUP={WARMUP} CONNS={CONNS} CASES=\"{' '.join(CASES)}\" "
              f"python3 tests/bench/callgrind_small.py` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{version})")
        builds = [("sluice", sluice_binary())] if os.environ.get("SLUICE", "1") != "0" else []
        for item in filter(None, os.environ.get("BINS", "").split(";")):
            name, _, path = item.partition("=")
            builds.append((name, path))
        for label, binary in builds:
            proc, port, out = start_sluice(label, binary, www, workdir)
            measure(label, proc, port, out)
            stop_all()
            LIVE.clear()
        if os.environ.get("NGINX", "1") != "0":
            proc, port, out = start_nginx(www, workdir)
            measure("nginx", proc, port, out)
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
