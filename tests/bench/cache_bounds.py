#!/usr/bin/env python3
"""The two rows of issue 16 about caches, as outside testing ran them, against
one or two sluice binaries (the second, e.g. a build of main, for before/after).

  decisions   64 tenants with distinct policy settings (so 64 policies), every
              request a new If-None-Match (a new decision-cache key each time),
              wrk -t2 -c64 for DURATION: server RSS before (after a warm-up
              with repeated keys) and after. Also run with `[cache] decisions =
              0`, for what the rest of the server grows by.
  descriptors RLIMIT_NOFILE 4096 (prlimit), 12 tenants x 1,500 distinct files,
              wrk -t2 -c64 for DURATION, every (tenant, file) in turn: failed
              requests (non-2xx/3xx, socket errors) and the most descriptors
              the server held (/proc/PID/fd, sampled every 50 ms).

Environment: SLUICE_BIN (default: the release build), SLUICE_BASELINE_BIN
(optional), DURATION (wrk -d, default 25s). Needs wrk, prlimit, curl.
Usage: python3 tests/bench/cache_bounds.py   (a markdown table on stdout)
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
from sluice_test import sluice_binary  # noqa: E402

UNIQUE_LUA = """
local counter = 1
function setup(thread) thread:set("tid", counter); counter = counter + 1 end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/a.txt", {["Host"] = "t" .. (n % 64) .. ".example",
    ["If-None-Match"] = '"' .. tid .. "-" .. n .. '"'})
end
"""

WARM_LUA = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/a.txt", {["Host"] = "t" .. (n % 64) .. ".example"})
end
"""

FILES_LUA = """
local counter = 1
function setup(thread) thread:set("tid", counter); counter = counter + 1 end
local n = 0
request = function()
  n = n + 1
  local f = (math.floor(n / 12) * 7 + tid * 311) % 1500
  return wrk.format("GET", "/f" .. f .. ".txt", {["Host"] = "t" .. ((n + tid) % 12) .. ".example"})
end
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


class Server:
    def __init__(self, binary, root, config, nofile=None):
        self.port, self.admin = free_port(), free_port()
        argv = [binary, "serve", root, "--listen", f"127.0.0.1:{self.port}",
                "--admin", f"127.0.0.1:{self.admin}", "--config", config, "--workers", "2"]
        if nofile:
            argv = ["prlimit", f"--nofile={nofile}:{nofile}"] + argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, SLUICE_LOG="error"))
        end = time.time() + 120
        while time.time() < end:
            try:
                socket.create_connection(("127.0.0.1", self.admin), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        sys.exit(f"{binary} did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(port, lua, duration, conns=64):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{duration}", "-s", f.name,
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    os.unlink(f.name)
    requests = int(out.split(" requests in")[0].split()[-1])
    failed = 0
    for line in out.splitlines():
        if "Non-2xx or 3xx responses:" in line:
            failed += int(line.split(":")[1])
        if "Socket errors:" in line:
            failed += sum(int(p.split()[1]) for p in line.split(":", 1)[1].split(","))
    return requests, failed


def decisions(binary, work, duration, off):
    root = os.path.join(work, "dec")
    if not os.path.exists(root):
        lines = ['compile-cache = "off"']
        for j in range(64):
            os.makedirs(f"{root}/t{j}")
            with open(f"{root}/t{j}/a.txt", "w") as f:
                f.write("x" * 4096)
            lines.append(f'[[vhost]]\nhost = "t{j}.example"\nroot = "{root}/t{j}"\n'
                         f'[vhost.policy]\ncache-default = "max-age={j + 1}"')
        os.makedirs(f"{root}/default")
        for name, extra in (("on", ""), ("off", "[cache]\ndecisions = 0\n")):
            with open(f"{root}/{name}.toml", "w") as f:
                f.write(lines[0] + "\n" + extra + "\n".join(lines[1:]) + "\n")
    s = Server(binary, f"{root}/default", f"{root}/{'off' if off else 'on'}.toml")
    try:
        wrk(s.port, WARM_LUA, "3s", conns=32)
        time.sleep(1)
        rss0 = status_kib(s.proc.pid, "VmRSS:")
        requests, failed = wrk(s.port, UNIQUE_LUA, duration)
        rss1 = status_kib(s.proc.pid, "VmRSS:")
        return requests, failed, rss0, rss1
    finally:
        s.stop()


def descriptors(binary, work, duration):
    root = os.path.join(work, "fds")
    if not os.path.exists(root):
        lines = ['compile-cache = "off"']
        for j in range(12):
            os.makedirs(f"{root}/t{j}")
            for i in range(1500):
                with open(f"{root}/t{j}/f{i}.txt", "w") as f:
                    f.write(f"t{j} f{i}\n")
            lines.append(f'[[vhost]]\nhost = "t{j}.example"\nroot = "{root}/t{j}"')
        os.makedirs(f"{root}/default")
        with open(f"{root}/12.toml", "w") as f:
            f.write("\n".join(lines) + "\n")
    s = Server(binary, f"{root}/default", f"{root}/12.toml", nofile=4096)
    most, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            try:
                most[0] = max(most[0], len(os.listdir(f"/proc/{s.proc.pid}/fd")))
            except OSError:
                pass
            time.sleep(0.05)

    t = threading.Thread(target=sample)
    t.start()
    try:
        requests, failed = wrk(s.port, FILES_LUA, duration)
        return requests, failed, most[0]
    finally:
        done.set()
        t.join()
        s.stop()


def main():
    for tool in ("wrk", "prlimit", "curl"):
        if not shutil.which(tool):
            sys.exit(f"missing {tool}")
    duration = os.environ.get("DURATION", "25s")
    binaries = [("sluice", sluice_binary())]
    if os.environ.get("SLUICE_BASELINE_BIN"):
        binaries.append(("baseline", os.path.abspath(os.environ["SLUICE_BASELINE_BIN"])))
    work = tempfile.mkdtemp(prefix="sluice-cache-bounds-")
    try:
        print(f"DURATION={duration}; wrk -t2 -c64; server --workers 2\n")
        print("| binary | row | requests | failed | RSS before → after MiB (growth) | most fds |")
        print("|---|---|---|---|---|---|")
        for label, binary in binaries:
            for off in (False, True):
                n, failed, rss0, rss1 = decisions(binary, work, duration, off)
                row = "decisions = 0" if off else "64 tenants, new keys"
                print(f"| {label} `{binary}` | {row} | {n:,} | {failed:,} | "
                      f"{rss0 / 1024:.0f} → {rss1 / 1024:.0f} (+{(rss1 - rss0) / 1024:.0f}) | |",
                      flush=True)
            n, failed, most = descriptors(binary, work, duration)
            print(f"| {label} `{binary}` | nofile 4096, 12 x 1,500 files | {n:,} | {failed:,} | | "
                  f"{most:,} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
