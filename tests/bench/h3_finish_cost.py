#!/usr/bin/env python3
"""What an HTTP/3 request costs the server in CPU (issue 20's drain).

Since the shutdown drain became precise, a request stream's task ends only
once the client has acknowledged its whole response (host/src/http3/
transport.rs): a quinn `stopped()` future per stream, boxed, and one more
wake-up of the task when the acknowledgement comes. This measures what a
request costs the server before and after.

(Instruction counts would resolve it better, but wasmtime's pooling
allocator reserves ~100 GB of address space at start, more than valgrind
lets a process map.)

Each build given in BINS ("label=path;label=path") serves 100 files of 4 KiB
over HTTP/3 (`--workers 1`, pinned on CPU 1); once it listens, CONNS
connections are made one after another by the aioquic client
(tests/h3/client.py, on CPU 0), each requesting the 100 files at once (100
streams). Per run: server CPU (utime+stime from /proc) per request,
connection set-up included, measured from before the first connection to
after the last. ROUNDS rounds, the builds' order alternating.

Environment: BINS, CONNS (20), ROUNDS (5).
"""

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "..", "h3", "client.py")


def site(tmp):
    root = os.path.join(tmp, "www")
    os.mkdir(root)
    for i in range(100):
        with open(os.path.join(root, f"f{i}.bin"), "wb") as f:
            f.write(os.urandom(4096))
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )
    return root, cert, key


def cpu_us(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e6 / os.sysconf("SC_CLK_TCK")


def run(binary, root, cert, key, tmp, port, conns):
    err = open(os.path.join(tmp, f"stderr.{port}"), "w+")
    server = subprocess.Popen(
        ["taskset", "-c", "1", binary, "serve", root, "--workers", "1",
         "--listen", f"127.0.0.1:{port + 1}", "--tls-cert", cert, "--tls-key", key,
         "--tls-listen", f"127.0.0.1:{port}", "--http3"],
        stdout=err, stderr=err,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            err.seek(0)
            if "listening" in err.read():
                break
            if server.poll() is not None or time.monotonic() > deadline:
                err.seek(0)
                raise SystemExit(f"{binary} did not start:\n{err.read()}")
            time.sleep(0.2)
        time.sleep(1)
        paths = [f"/f{i}.bin" for i in range(100)]
        before = cpu_us(server.pid)
        for _ in range(conns):
            r = subprocess.run(["taskset", "-c", "0", "python3", CLIENT, "get", *paths,
                                "--port", str(port)],
                               capture_output=True, text=True, timeout=600)
            if r.returncode != 0 or r.stdout.count('"status": 200') != 100:
                raise SystemExit(f"client failed: {r.stdout[-500:]} {r.stderr[-2000:]}")
        # The last connection's close and acknowledgements.
        time.sleep(0.5)
        after = cpu_us(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return (after - before) / (conns * 100)


def main():
    bins = [b.split("=", 1) for b in os.environ["BINS"].split(";")]
    conns = int(os.environ.get("CONNS", "20"))
    rounds = int(os.environ.get("ROUNDS", "5"))
    per = {label: [] for label, _ in bins}
    with tempfile.TemporaryDirectory() as tmp:
        root, cert, key = site(tmp)
        port = 24433
        for r in range(rounds):
            order = bins if r % 2 == 0 else list(reversed(bins))
            for label, binary in order:
                port += 2
                ir = run(binary, root, cert, key, tmp, port, conns)
                per[label].append(ir)
                print(f"round {r + 1} {label}: {ir:.1f} µs/request", flush=True)
    print(f"\n{conns} connections x 100 requests of 4 KiB per run, {rounds} runs per build")
    print(f"load average {os.getloadavg()}")
    print("| build | server CPU µs per request, median | min-max |")
    print("|---|---|---|")
    for label, _ in bins:
        v = per[label]
        print(f"| {label} | {statistics.median(v):.1f} | {min(v):.1f}-{max(v):.1f} |")


if __name__ == "__main__":
    sys.exit(main())
