#!/usr/bin/env python3
"""Small-file benchmark: sluice against nginx, per BENCH-METHOD.md (on the build
machines /work/shared/BENCH-METHOD.md). Replaces the former small_file.sh.

What it measures
  1. wrk (`wrk -t1 --latency`, pinned on CPU 0) against every server (pinned on
     CPU 1, one worker each, access logs off, page cache warm) for
       - a 4 KiB file, a 64 KiB file,
       - a 304: `If-None-Match` with the server's own ETag for the 4 KiB file
         (fetched first with curl, and checked to give a 304),
     each at `-c 32` and `-c 512` (CONNS). Rounds are interleaved: for every case
     the server order rotates each round (A B, B A, ... or A B C, B C A, ...).
     Per row: req/s, p50 and p99 latency, server CPU per request (utime+stime of
     all its threads, /proc/PID/stat, before/after each run), server+wrk CPU per
     request, server RSS (VmRSS) right after the run; medians with [min-max] over
     the rounds, and the ratio to nginx of the medians (req/s, p99).
  2. Idle keep-alive connections: on a fresh instance of each server, open
     IDLE_CONNS connections (asyncio client in this script, on CPU 0), each sends
     one complete keep-alive GET for the 4 KiB file and reads the full response,
     then stays idle; server RSS before and with them all open gives KiB per idle
     connection (user-space memory only: kernel socket buffers are not in RSS).
     Measured within seconds of opening them: sluice (keepalive-timeout-ms) and
     nginx (keepalive_timeout) close a keep-alive connection idle for 75 s; the server's
     open fds are counted to confirm every connection is still held.

Servers (all started at once, on 127.0.0.1 only)
  sluice    $SLUICE_BIN (default $CARGO_TARGET_DIR or target, /release/sluice)
            `serve DIR --listen 127.0.0.1:PORT --workers 1`, default policy
  nginx     worker_processes 1, master_process off, sendfile on, tcp_nopush on,
            open_file_cache max=1000 inactive=20s, open_file_cache_valid 1s,
            open_file_cache_errors on, access_log off, keepalive_requests 100000
            (as tests/bench/transfer.py), worker_connections > IDLE_CONNS
  optional  $SLUICE_EXTRA: another sluice row. Its words are added to the
            `serve` command line, e.g. SLUICE_EXTRA="--policy p.wasm --config p.toml";
            if the first word is not an option it is the binary to run instead of
            $SLUICE_BIN. Labelled $SLUICE_EXTRA_LABEL (default "sluice extra").
  optional  $SLUICE_BASELINE_BIN: an older sluice binary, default policy, labelled
            $SLUICE_BASELINE_LABEL (default "sluice baseline").

Environment: ROUNDS (5), DURATION (wrk -d, 4s), CONNS ("32 512"),
IDLE_CONNS (10000; 0 skips the idle measurement), IDLE_SETTLE_S (3: how long
the idle connections stay open before RSS is read; past sluice's default
`park-idle-ms`, 2 s).

Usage:  python3 tests/bench/small_file.py
        (ROUNDS=1 DURATION=2s IDLE_CONNS=2000 for a quick look)
Output: a markdown section ready for BENCHMARKS.md on stdout, progress on stderr.

Needs: Linux, python3 (stdlib only), nginx, wrk, curl, taskset
  (Debian/Ubuntu: apt-get install nginx wrk curl util-linux python3),
  and a release build: rustup target add wasm32-wasip2 && cargo build --release -p sluice
The open-files limit is raised in-script (to IDLE_CONNS + 1024; as root the hard
limit too). Everything it starts is killed on exit, Ctrl-C or SIGTERM.
"""

import asyncio
import datetime
import hashlib
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
from sluice_test import sluice_binary  # noqa: E402

SERVER_CPU = "1"
CLIENT_CPU = 0
CLK_TCK = os.sysconf("SC_CLK_TCK")
FILES = {"4k.bin": 4096, "64k.bin": 65536}
ENV_KNOBS = (
    "ROUNDS", "DURATION", "CONNS", "IDLE_CONNS", "SLUICE_BIN", "SLUICE_EXTRA",
    "SLUICE_EXTRA_LABEL", "SLUICE_BASELINE_BIN", "SLUICE_BASELINE_LABEL", "IDLE_SETTLE_S",
)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- servers


class Server:
    """A server pinned on SERVER_CPU; `taskset` execs it, so pid is the server's."""

    def __init__(self, name, argv, port, workdir, kind, env=None):
        self.name, self.port, self.kind = name, port, kind
        self.argv = argv
        self.log_path = os.path.join(workdir, f"{re.sub(r'[^A-Za-z0-9]+', '_', name)}-{port}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU] + argv,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        self.pid = self.proc.pid
        LIVE.append(self)

    def wait_listening(self, timeout=120):
        end = time.time() + timeout  # a big policy component can take a while to compile
        while time.time() < end:
            if self.proc.poll() is not None:
                sys.exit(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit(f"{self.name} did not listen on {self.port} within {timeout}s")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/{path}"

    def cpu(self):
        """utime+stime of the whole process (every thread, live or exited), seconds."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of stat(5)

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def log_tail(self):
        """The server's output: its start and its end, if long (backtraces)."""
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            lines = f.readlines()
        if len(lines) > 20:
            lines = lines[:12] + ["  ...\n"] + lines[-6:]
        return "".join(lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self in LIVE:
            LIVE.remove(self)


LIVE = []


def stop_all():
    for s in list(LIVE):
        try:
            s.stop()
        except Exception:  # keep killing the others
            pass


def on_signal(signum, _frame):
    raise SystemExit(f"killed by signal {signum}")


def start_servers(cfg, www, workdir, nofile):
    """Starts every server (unwaited); returns them in row order."""
    servers = []
    env = dict(os.environ, SLUICE_LOG="warn")

    def sluice(name, binary, extra):
        port = free_port()
        argv = [binary, "serve", www, "--listen", f"127.0.0.1:{port}", "--workers", "1"] + extra
        servers.append(Server(name, argv, port, workdir, "sluice", env))
        servers[-1].extra = extra

    sluice("sluice", cfg["sluice_bin"], [])
    if cfg["baseline_bin"]:
        sluice(cfg["baseline_label"], cfg["baseline_bin"], [])
    if cfg["has_extra"]:
        sluice(cfg["extra_label"], cfg["extra_bin"], cfg["extra"])

    servers.append(start_nginx("nginx", www, workdir, nofile))
    for s in servers:
        s.wait_listening()
    return servers


def start_nginx(name, www, workdir, nofile, listen="", server_conf=""):
    """nginx with one worker and no master (so its pid is the worker's),
    sendfile on + tcp_nopush, open_file_cache, access log off; `listen` is
    added to the listen directive (`ssl http2`), `server_conf` to the server
    block. Unwaited."""
    port = free_port()
    d = tempfile.mkdtemp(prefix=f"nginx-{port}-", dir=workdir)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections {nofile - 64}; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  default_type application/octet-stream;
  sendfile on; tcp_nopush on;
  open_file_cache max=1000 inactive=20s;
  open_file_cache_valid 1s;
  open_file_cache_errors on;
  keepalive_requests 100000;
  server {{ listen 127.0.0.1:{port} {listen}; root {www}; {server_conf} }}
}}
""")
    s = Server(name, ["nginx", "-c", conf, "-p", d], port, workdir, "nginx")
    s.error_log = os.path.join(d, "error.log")
    return s


# ---------------------------------------------------------------- wrk rows


def curl(args):
    out = subprocess.run(["taskset", "-c", str(CLIENT_CPU), "curl", "-sS", "--max-time", "10"] + args,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"curl {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def check_and_get_etag(server):
    """Checks both files come back whole, and that the 4 KiB file's own ETag
    gives a 304; returns that ETag."""
    for name, size in FILES.items():
        got = curl(["-o", "/dev/null", "-w", "%{http_code} %{size_download}", server.url(name)])
        if got != f"200 {size}":
            sys.exit(f"{server.name}: GET /{name} gave {got!r}, expected '200 {size}'")
    head = curl(["-o", "/dev/null", "-D", "-", server.url("4k.bin")])
    m = re.search(r"^etag:\s*(.+?)\s*$", head, re.I | re.M)
    if not m:
        sys.exit(f"{server.name}: no ETag on /4k.bin:\n{head}")
    etag = m.group(1)
    code = curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", f"If-None-Match: {etag}", server.url("4k.bin")])
    if code != "304":
        sys.exit(f"{server.name}: If-None-Match {etag} gave {code}, expected 304")
    return etag


UNITS = {"us": 1, "ms": 1e3, "s": 1e6}
BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_wrk(out):
    def lat(pct):
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * UNITS[m.group(2)]

    reqs = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)([KMGT]?B) read", out, re.M)
    rps = re.search(r"^Requests/sec:\s*([\d.]+)", out, re.M)
    if not (reqs and rps):
        raise ValueError(f"cannot parse wrk output:\n{out}")
    n = int(reqs.group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(map(int, m.groups()))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return {
        "rps": float(rps.group(1)),
        "p50": lat(50),
        "p99": lat(99),
        "requests": n,
        "bytes_per_req": float(reqs.group(4)) * BYTES[reqs.group(5)] / max(n, 1),
        "errors": errors,
    }


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wrk(server, case, conns, duration):
    argv = ["taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", f"-c{conns}", f"-d{duration}", "--latency"]
    if case == "304":
        argv += ["-H", f"If-None-Match: {server.etag}"]
    argv.append(server.url("4k.bin" if case == "304" else case))
    c0, s0 = children_cpu(), server.cpu()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    s1, c1 = server.cpu(), children_cpu()
    if out.returncode != 0:
        sys.exit(f"wrk failed against {server.name}: {out.stderr}")
    r = parse_wrk(out.stdout)
    n = max(r["requests"], 1)
    r["cpu_us"] = (s1 - s0) / n * 1e6
    r["total_cpu_us"] = (s1 - s0 + c1 - c0) / n * 1e6
    r["rss_kib"] = server.rss_kib()
    return r


# ---------------------------------------------------------------- idle connections


async def open_idle(port, n, deadline_s=180, parallel=200):
    """Opens n keep-alive connections, each sends one GET /4k.bin and reads the
    whole response, then stays open. Returns (streams, failures by kind)."""
    request = f"GET /4k.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    gate = asyncio.Semaphore(parallel)
    streams, failures = [], {}

    async def one():
        async with gate:
            w = None
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
                w.write(request)
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                if not head.startswith(b"HTTP/1.1 200"):
                    raise ValueError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
                if not m or b"connection: close" in head.lower():
                    raise ValueError("not a keep-alive response with a length")
                await asyncio.wait_for(r.readexactly(int(m.group(1))), 10)
                streams.append((r, w))
            except Exception as e:
                kind = type(e).__name__
                failures[kind] = failures.get(kind, 0) + 1
                if w is not None:
                    w.close()

    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for t in pending:
        t.cancel()
    if pending:
        failures["deadline"] = len(pending)
        await asyncio.gather(*pending, return_exceptions=True)
    return streams, failures


async def close_all(streams):
    for _, w in streams:
        w.close()
    await asyncio.wait_for(asyncio.gather(*(w.wait_closed() for _, w in streams), return_exceptions=True), 60)


IDLE_SETTLE_S = float(os.environ.get("IDLE_SETTLE_S", "3"))


def idle_measurement(server, n):
    for _ in range(20):  # warm: policy instance, page cache, allocator
        curl(["-o", "/dev/null", server.url("4k.bin")])
    time.sleep(0.5)
    rss0, fds0 = server.rss_kib(), server.fds()

    async def run():
        t0 = time.perf_counter()
        streams, failures = await open_idle(server.port, n)
        opened_s = time.perf_counter() - t0
        try:
            # Let the server settle: past `park-idle-ms` (2 s by default:
            # idle connections are parked by then) and any lazy frees.
            await asyncio.sleep(IDLE_SETTLE_S)
            rss1, fds1 = server.rss_kib(), server.fds()
            alive = server.proc.poll() is None
        finally:
            await close_all(streams)
        await asyncio.sleep(1)
        rss2 = server.rss_kib()
        return len(streams), failures, opened_s, rss1, fds1, rss2, alive

    ok, failures, opened_s, rss1, fds1, rss2, alive = asyncio.run(run())
    return {
        "ok": ok, "failures": failures, "opened_s": opened_s, "alive": alive,
        "rss0": rss0, "rss1": rss1, "rss2": rss2, "fds0": fds0, "fds1": fds1,
        "kib_per_conn": (rss1 - rss0) / ok if ok else float("nan"),
    }


# ---------------------------------------------------------------- report


def med(values):
    return statistics.median(values)


def fmt(values, digits=0):
    f = f"{{:,.{digits}f}}"
    return f"{f.format(med(values))} [{f.format(min(values))}–{f.format(max(values))}]"


def tool_versions():
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    w = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wrk_v = (w.stdout + w.stderr).splitlines()[0].split(" Copyright")[0].strip()
    return nginx, wrk_v


def binary_id(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    mtime = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
    return f"`{path}` (sha256 {h.hexdigest()[:12]}, built {mtime:%Y-%m-%d %H:%M} UTC)"


def command_line():
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ENV_KNOBS if k in os.environ)
    cmd = " ".join(shlex.quote(a) for a in ["python3", os.path.relpath(__file__, REPO)] + sys.argv[1:])
    return f"{env} {cmd}".strip()


def report(cfg, servers, cases, results, idle, started, notes):
    nginx_v, wrk_v = tool_versions()
    cpu_model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    print(f"\n## Small files: sluice vs nginx ({started:%Y-%m-%d %H:%M} UTC)\n")
    print("```sh")
    print(command_line())
    print("```\n")
    print(f"- {nginx_v}; {wrk_v}; Linux {platform.release()}, {os.cpu_count()} × {cpu_model}")
    for s in servers:
        if s.kind == "sluice":
            args = " ".join(["serve DIR --listen 127.0.0.1:PORT --workers 1"] + [shlex.quote(a) for a in s.extra])
            print(f"- {s.name}: {binary_id(s.argv[0])} `{args}`")
    print(f"- servers pinned on CPU {SERVER_CPU} with one worker each, `wrk -t1 -d{cfg['duration']} --latency` on CPU {CLIENT_CPU}; "
          f"{cfg['rounds']} interleaved rounds, medians [min–max]; ratios are of this run's medians. "
          "CPU µs/req: server utime+stime per request (and server+wrk); RSS: server VmRSS right after the run.\n")
    print("| case | conns | server | req/s | p50 µs | p99 µs | server CPU µs/req | server+wrk CPU µs/req "
          "| RSS MiB after | req/s ÷ nginx | p99 ÷ nginx |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    label = {"4k.bin": "4 KiB", "64k.bin": "64 KiB", "304": "304 (4 KiB, If-None-Match)"}
    for case, conns in cases:
        ref = results[("nginx", case, conns)]
        for s in servers:
            v = results[(s.name, case, conns)]
            col = lambda k: [x[k] for x in v]  # noqa: E731
            if s.name == "nginx":
                rr = rp = "1"
            else:
                rr = f"{med(col('rps')) / med([x['rps'] for x in ref]):.2f}"
                rp = f"{med(col('p99')) / med([x['p99'] for x in ref]):.2f}"
            print(f"| {label[case]} | {conns} | {s.name} | {fmt(col('rps'))} | {fmt(col('p50'))} | {fmt(col('p99'))} "
                  f"| {fmt(col('cpu_us'), 1)} | {fmt(col('total_cpu_us'), 1)} "
                  f"| {fmt([x / 1024 for x in col('rss_kib')], 1)} | {rr} | {rp} |")
    if idle:
        n = cfg["idle_conns"]
        print(f"\nIdle keep-alive connections: {n:,} connections to a fresh instance of each server, each "
              "sent one keep-alive `GET /4k.bin` and read the whole response, then stayed idle; "
              f"server VmRSS before, with them all open ({IDLE_SETTLE_S:g} s after the last: sluice parks idle connections after 2 s by default), and 1 s after closing them. "
              "User-space memory only: kernel socket buffers are not in RSS.\n")
        print("| server | connections open | RSS before MiB | RSS with them MiB | KiB per idle connection "
              "| RSS after closing MiB | server fds before → with |")
        print("|---|---|---|---|---|---|---|")
        for s in servers:
            r = idle.get(s.name)
            if not r:
                continue
            print(f"| {s.name} | {r['ok']:,} | {r['rss0'] / 1024:,.1f} | {r['rss1'] / 1024:,.1f} "
                  f"| {r['kib_per_conn']:.1f} | {r['rss2'] / 1024:,.1f} | {r['fds0']:,} → {r['fds1']:,} |")
    print("\nRatios to nginx (medians of this run):")
    for s in servers:
        if s.name == "nginx":
            continue
        parts = []
        for case, conns in cases:
            a = med([x["rps"] for x in results[(s.name, case, conns)]])
            b = med([x["rps"] for x in results[("nginx", case, conns)]])
            parts.append(f"{label[case].split(' (')[0]} c{conns} {a / b:.2f}")
        line = f"- {s.name} req/s: " + ", ".join(parts)
        # issue 19's "done when": the tail at the highest concurrency and
        # what an idle connection costs, beside nginx's, in this output
        top = max(cfg["conns"])
        tails = []
        for case in ("4k.bin", "64k.bin", "304"):
            a = med([x["p99"] for x in results[(s.name, case, top)]])
            b = med([x["p99"] for x in results[("nginx", case, top)]])
            tails.append(f"{label[case].split(' (')[0]} {a / 1000:,.1f} ms ({a / b:.2f}x nginx's {b / 1000:,.1f})")
        line += f"; p99 at c{top}: " + ", ".join(tails)
        if idle.get(s.name) and idle.get("nginx") and idle["nginx"]["kib_per_conn"] > 0:
            line += (f"; idle keep-alive connection {idle[s.name]['kib_per_conn']:.1f} KiB RSS "
                     f"({idle[s.name]['kib_per_conn'] / idle['nginx']['kib_per_conn']:.1f}x nginx's "
                     f"{idle['nginx']['kib_per_conn']:.1f})")
        print(line)
    if notes:
        print("\nNotes:")
        for n in notes:
            print(f"- {n}")


# ---------------------------------------------------------------- main


def config():
    def label(var, default):
        return os.environ.get(var) or default

    sluice_bin = sluice_binary()
    extra = shlex.split(os.environ.get("SLUICE_EXTRA", ""))
    extra_bin = sluice_bin
    if extra and not extra[0].startswith("-"):
        extra_bin, extra = extra[0], extra[1:]
    cfg = {
        "rounds": int(os.environ.get("ROUNDS", "5")),
        "duration": os.environ.get("DURATION", "4s"),
        "conns": [int(c) for c in os.environ.get("CONNS", "32 512").split()],
        "idle_conns": int(os.environ.get("IDLE_CONNS", "10000")),
        "sluice_bin": os.path.abspath(sluice_bin),
        "baseline_bin": os.environ.get("SLUICE_BASELINE_BIN"),
        "baseline_label": label("SLUICE_BASELINE_LABEL", "sluice baseline"),
        "has_extra": bool(os.environ.get("SLUICE_EXTRA", "").strip()),
        "extra": extra,
        "extra_bin": os.path.abspath(extra_bin),
        "extra_label": label("SLUICE_EXTRA_LABEL", "sluice extra"),
    }
    if cfg["baseline_bin"]:
        cfg["baseline_bin"] = os.path.abspath(cfg["baseline_bin"])
    for b in (cfg["sluice_bin"], cfg["baseline_bin"], cfg["extra_bin"] if cfg["has_extra"] else None):
        if b and not os.access(b, os.X_OK):
            sys.exit(f"no sluice binary at {b} (cargo build --release -p sluice, or set SLUICE_BIN)")
    for tool, pkg in (("nginx", "nginx"), ("wrk", "wrk"), ("curl", "curl"), ("taskset", "util-linux")):
        if not shutil.which(tool):
            sys.exit(f"missing {tool} (apt-get install {pkg})")
    if os.cpu_count() < 2:
        sys.exit("needs two CPUs (server on CPU 1, client on CPU 0)")
    return cfg


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):  # not root: the hard limit is the ceiling
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main():
    cfg = config()
    started = datetime.datetime.now(datetime.timezone.utc)
    notes = []
    nofile = raise_nofile(max(cfg["idle_conns"], 1024) + 1024)
    if cfg["idle_conns"] + 512 > nofile:
        notes.append(f"open-files limit is {nofile}: idle connections reduced from {cfg['idle_conns']}")
        cfg["idle_conns"] = nofile - 512
    os.sched_setaffinity(0, {CLIENT_CPU})  # this script, curl and the idle client; servers override
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    tmp = tempfile.mkdtemp(prefix="sluice-small-")
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    for name, size in FILES.items():
        with open(os.path.join(www, name), "wb") as f:
            f.write(os.urandom(size))
        with open(os.path.join(www, name), "rb") as f:  # warm the page cache
            f.read()
    cases = [(case, c) for case in ("4k.bin", "64k.bin", "304") for c in cfg["conns"]]
    results, idle, fresh = {}, {}, []
    try:
        servers = start_servers(cfg, www, tmp, nofile)
        for s in servers:
            s.etag = check_and_get_etag(s)
            for name in FILES:  # warm-up, not measured
                wrk(s, name, 32, "1s")
        log(f"servers: {', '.join(f'{s.name} :{s.port} pid {s.pid}' for s in servers)}")
        for r in range(cfg["rounds"]):
            for case, conns in cases:
                k = r % len(servers)
                for s in servers[k:] + servers[:k]:
                    res = wrk(s, case, conns, cfg["duration"])
                    results.setdefault((s.name, case, conns), []).append(res)
                    if s.proc.poll() is not None:
                        sys.exit(f"{s.name} died during {case} -c{conns}:\n{s.log_tail()}")
            log(f"round {r + 1}/{cfg['rounds']} done")
        for s in servers:
            s.stop()

        if cfg["idle_conns"] > 0:
            fresh = start_servers(cfg, www, tmp, nofile)
            for s in fresh:
                log(f"idle: {cfg['idle_conns']} connections to {s.name}")
                idle[s.name] = r = idle_measurement(s, cfg["idle_conns"])
                log(f"  {r['ok']} open in {r['opened_s']:.1f}s, RSS {r['rss0']} -> {r['rss1']} KiB")
                if r["failures"]:
                    notes.append(f"idle connections to {s.name}: {r['ok']:,} opened, failures {r['failures']}")
                if not r["alive"]:
                    notes.append(f"{s.name} exited during the idle-connection measurement")
                if r["fds1"] - r["fds0"] < r["ok"]:
                    notes.append(f"{s.name} held only {r['fds1'] - r['fds0']:,} more fds than before with "
                                 f"{r['ok']:,} idle connections open (it closed some)")
                s.stop()

        # Sanity and oddities, reported under the tables.
        for (name, case, conns), v in results.items():
            errs = sum(x["errors"] for x in v)
            if errs:
                notes.append(f"{name}, {case} -c{conns}: wrk counted {errs:,} socket errors / non-2xx-3xx "
                             f"responses over {len(v)} runs")
            bpr = med([x["bytes_per_req"] for x in v])
            if (case == "304" and bpr > 1024) or (case in FILES and bpr < FILES[case]):
                notes.append(f"{name}, {case} -c{conns}: {bpr:,.0f} bytes read per response (wrong status?)")
        for s in servers + fresh:
            lines = [ln for ln in open(s.log_path, errors="replace").read().splitlines()
                     if ln.strip() and "listening on" not in ln]
            if s.kind == "nginx" and os.path.exists(s.error_log):
                lines += [ln for ln in open(s.error_log, errors="replace").read().splitlines() if ln.strip()]
            if lines:
                notes.append(f"{s.name} (pid {s.pid}) logged {len(lines)} line(s), e.g. `{lines[0][:200]}`")
        report(cfg, servers, cases, results, idle, started, notes)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
