#!/usr/bin/env python3
"""A real browser against sluice over HTTPS and HTTP/2 (issue 9, item 6).

Headless Chromium from the system packages, driven through the DevTools
protocol by Playwright for Python (pointed at the system binary: Playwright's
own browsers are never downloaded), loads pages from the release `sluice`
binary serving a generated site over TLS:

- a page referencing 50 assets (PNG images, stylesheets, scripts): every one
  must answer 200 over h2 and finish loading, and the page must show that
  each arrived whole (images decode at their size, each script checks its own
  length before it registers, each stylesheet's rule applies);
- a page with a `<video>` on a multi-megabyte WebM made by ffmpeg: it must
  play (currentTime advances), seek far into the file (`seeked` fires at the
  target and playback goes on from there), and the browser must have fetched
  it with range requests answered 206 over h2, the seek's one starting where
  the browser asked.

The video check is also run against a sluice with ranges disabled
(`max-ranges = 0`) and must fail there: the check can catch broken ranges.

The 50-asset page is also loaded over HTTP/3 (issue 20), from a sluice with
`[http3] enabled`: Chromium forced onto QUIC for the origin, the certificate
trusted by its SPKI hash, and the page's own Resource Timing must show every
asset (and the page) fetched over h3. (Without the forcing flag Chromium
stays on h2 and the check fails.) The same video check runs there too, every
range response required over h3.

Usage: python3 tests/browser/test_browser.py [-v]   (tests/run runs it)
Needs: chromium and ffmpeg (Debian: apt-get install chromium ffmpeg),
       playwright (pip install playwright; no `playwright install`), openssl,
       and a release build (cargo build --release -p sluice). The binary is
       $SLUICE_BIN, else $CARGO_TARGET_DIR/release/sluice, else
       target/release/sluice; the browser is $CHROMIUM, else `chromium` on PATH.
"""

import base64
import hashlib
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import zlib

from playwright.sync_api import sync_playwright

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from sluice_test import make_cert, sluice_binary  # noqa: E402

ASSETS = 50
VIDEO_SECONDS = 24
# Chromium loads a file this large in several ranges, and a seek to 20 s of
# 24 lands far beyond what it fetched first.
VIDEO_MIN_BYTES = 4 << 20
SEEK_TO = 20.0
WAIT_MS = 20_000


def chromium_binary():
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


# ---------------------------------------------------------------- the site


def png(width, height, seed):
    """An RGB PNG of random pixels (incompressible, so its size is known)."""
    rng = random.Random(seed)
    rows = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 0)) + chunk(b"IEND", b"")


def make_site(www, video):
    """index.html with ASSETS assets, video.html with `video`; returns the
    assets as {path: what the page checks}."""
    assets = {}
    body = []
    head = ['<meta charset="utf-8">', '<link rel="icon" href="data:,">']
    scripts = []
    for i in range(ASSETS):
        kind = ("img", "css", "js")[i % 3]
        name = f"/assets/{kind}-{i:02}.{'png' if kind == 'img' else kind}"
        path = os.path.join(www, name.lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Sizes from a few hundred bytes to ~100 KB: many streams at once,
        # some spanning many DATA frames and flow-control windows.
        if kind == "img":
            w, h = 8 + 4 * i, 4 + 3 * i
            data = png(w, h, seed=i)
            body.append(f'<img id="a{i}" src="{name}" width="{w}" height="{h}">')
            assets[name] = ("img", f"a{i}", (w, h))
        elif kind == "css":
            pad = "x" * (1000 * i)
            data = f"/* {pad} */\n#a{i} {{ width: {100 + i}px; height: 1px; }}\n".encode()
            head.append(f'<link rel="stylesheet" href="{name}">')
            body.append(f'<div id="a{i}"></div>')
            assets[name] = ("css", f"a{i}", 100 + i)
        else:
            pad = "y" * (2000 * i)
            # The script registers itself only if it arrived whole.
            data = (f'const pad{i} = "{pad}";\n'
                    f'if (pad{i}.length === {len(pad)}) (window.loaded = window.loaded || []).push("a{i}");\n').encode()
            scripts.append(f'<script src="{name}"></script>')
            assets[name] = ("js", f"a{i}", None)
        with open(path, "wb") as f:
            f.write(data)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("<!doctype html><html><head>" + "".join(head) + "</head><body>"
                + "".join(body) + "".join(scripts) + "</body></html>\n")
    os.makedirs(os.path.join(www, "media"))
    shutil.copy(video, os.path.join(www, "media", "clip.webm"))
    with open(os.path.join(www, "video.html"), "w") as f:
        f.write('<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body>'
                '<video id="v" src="/media/clip.webm" preload="metadata" muted playsinline></video></body></html>\n')
    return assets


def make_video(path):
    """A VP8 WebM of VIDEO_SECONDS, a keyframe every second; the noise keeps
    it a few megabytes (realtime encoding: a couple of seconds)."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-t", str(VIDEO_SECONDS),
         "-vf", "noise=alls=60:allf=t", "-c:v", "libvpx", "-b:v", "3M", "-minrate", "2M",
         "-deadline", "realtime", "-cpu-used", "16", "-g", "25", "-an", path],
        check=True, timeout=120,
    )
    size = os.path.getsize(path)
    assert size >= VIDEO_MIN_BYTES, f"ffmpeg made a {size}-byte video, want >= {VIDEO_MIN_BYTES}"
    return size




# ---------------------------------------------------------------- sluice


class Sluice:
    """`sluice serve` with a TLS listener on a free port; killed by stop()."""

    def __init__(self, www, cert, key, workdir, config=""):
        argv = [sluice_binary(), "serve", www, "--listen", "127.0.0.1:0",
                "--tls-cert", cert, "--tls-key", key, "--tls-listen", "127.0.0.1:0", "--workers", "2"]
        if config:
            fd, path = tempfile.mkstemp(prefix="sluice-", suffix=".toml", dir=workdir)
            with os.fdopen(fd, "w") as f:
                f.write(config)
            argv += ["--config", path]
        fd, self.log_path = tempfile.mkstemp(prefix="sluice-", suffix=".log", dir=workdir)
        self.log = os.fdopen(fd, "wb")
        # Unbuffered: select() must see every line still unread.
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, bufsize=0,
                                     env=dict(os.environ, SLUICE_LOG="sluice=info"))
        self.origin = None
        self.h3_port = None
        h3 = "[http3]" in config
        deadline = time.monotonic() + 60
        while self.origin is None or (h3 and self.h3_port is None):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            line = self.proc.stdout.readline() if ready else b""
            if not line:  # timed out or exited
                self.stop()
                raise RuntimeError(f"sluice did not start ({' '.join(argv)}):\n{self.logs()}")
            text = line.decode().strip()
            if text.startswith("sluice: listening on https://"):
                # 127.0.0.1:PORT, which the certificate names.
                self.origin = "https://" + text.removeprefix("sluice: listening on https://")
            elif text.startswith("sluice: listening on h3://"):
                self.h3_port = int(text.rsplit(":", 1)[1])

    def logs(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, errors="replace") as f:
            text = f.read()
        # The error is at the start, a backtrace may follow.
        return text if len(text) < 4000 else text[:3000] + "\n  ...\n" + text[-1000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


# ---------------------------------------------------------------- the browser


class Network:
    """What the browser's network stack did, from DevTools `Network` events
    (media requests included, which page-level APIs do not all show)."""

    def __init__(self, page):
        self.requests = {}
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", self._request)
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.loadingFinished", lambda e: self._get(e)["done"].append("finished"))
        cdp.on("Network.loadingFailed",
               lambda e: self._get(e)["done"].append("canceled" if e.get("canceled") else e["errorText"]))
        cdp.send("Network.enable")
        self.cdp = cdp

    def _get(self, e):
        return self.requests.setdefault(e["requestId"], {"url": None, "range": None, "response": None, "done": []})

    def _request(self, e):
        r = self._get(e)
        r["url"] = e["request"]["url"]
        headers = {k.lower(): v for k, v in e["request"]["headers"].items()}
        r["range"] = headers.get("range")

    def _response(self, e):
        res = e["response"]
        self._get(e)["response"] = {
            "status": res["status"],
            "protocol": res.get("protocol"),
            "headers": {k.lower(): v for k, v in res["headers"].items()},
        }

    def for_path(self, origin, path):
        return [r for r in self.requests.values() if r["url"] == origin + path]

    def settle(self, page, urls, limit_s=10):
        """Waits (bounded) until every request for `urls` has finished or
        failed: DevTools events may trail the page's `load` a little, and
        Playwright delivers them only while it is called."""
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            pending = [r for r in self.requests.values() if r["url"] in urls and not r["done"]]
            if not pending:
                return
            page.wait_for_timeout(50)


def launch(pw):
    return pw.chromium.launch(
        executable_path=chromium_binary(),
        # The sandbox needs user namespaces a CI container may not grant, and
        # a container's /dev/shm is often too small for Chromium; the
        # certificate is self-signed; a muted video may autoplay anyway, but
        # say so rather than depend on the heuristics.
        args=["--no-sandbox", "--disable-dev-shm-usage", "--ignore-certificate-errors",
              "--autoplay-policy=no-user-gesture-required"],
        timeout=60_000,
    )


def check_video(browser, origin, size, protocol="h2"):
    """Loads video.html: the video plays, seeks to SEEK_TO and plays on from
    there, fetched by 206 range responses over `protocol` (as DevTools names
    the protocol of each response: "h2", "h3"). Raises AssertionError naming
    what failed; returns a summary line."""
    page = browser.new_page()
    try:
        net = Network(page)
        page.goto(origin + "/video.html", timeout=WAIT_MS)
        v = "document.getElementById('v')"
        page.wait_for_function(f"{v}.readyState >= 1", timeout=WAIT_MS)  # HAVE_METADATA
        duration = page.evaluate(f"{v}.duration")
        assert abs(duration - VIDEO_SECONDS) < 1, f"video duration {duration}, want ~{VIDEO_SECONDS}"
        page.evaluate(f"{v}.play()")
        page.wait_for_function(f"{v}.currentTime > 1 && !{v}.paused", timeout=WAIT_MS)
        err = page.evaluate(f"{v}.error && {v}.error.message")
        assert not err, f"video error while playing: {err}"
        landed = page.evaluate(
            f"""new Promise(done => {{
                {v}.addEventListener('seeked', () => done({v}.currentTime), {{once: true}});
                {v}.currentTime = {SEEK_TO};
            }})"""
        )
        assert abs(landed - SEEK_TO) < 1, (
            f"seek to {SEEK_TO}s landed at {landed:.2f}s (seekable: "
            f"{page.evaluate(f'Array.from({{length: {v}.seekable.length}}, (_, i) => [{v}.seekable.start(i), {v}.seekable.end(i)])')})"
        )
        page.wait_for_function(f"{v}.currentTime > {SEEK_TO + 0.5}", timeout=WAIT_MS)
        err = page.evaluate(f"{v}.error && {v}.error.message")
        assert not err, f"video error after the seek: {err}"

        fetches = net.for_path(origin, "/media/clip.webm")
        assert fetches, "the browser never requested /media/clip.webm"
        ranges = []
        for r in fetches:
            res = r["response"]
            if res is None:  # a request the player canceled before any answer
                continue
            assert res["protocol"] == protocol, f"video fetched over {res['protocol']}, want {protocol}"
            assert res["status"] == 206, (
                f"video request (Range: {r['range']}) answered {res['status']}, want 206; "
                f"headers {res['headers']}"
            )
            assert r["range"], f"a video request without a Range header answered {res['status']}"
            want = int(r["range"].removeprefix("bytes=").split("-")[0])
            got = res["headers"].get("content-range", "")
            assert got.startswith(f"bytes {want}-") and got.endswith(f"/{size}"), (
                f"Range: {r['range']} answered Content-Range {got!r}, file size {size}"
            )
            ranges.append(want)
        far = [start for start in ranges if start > size // 2]
        assert far, f"no 206 response for a range beyond half the file after the seek; ranges served: {ranges}"
        return f"video: {size:,} bytes, played, seeked to {landed:.1f}s; 206 ranges from {sorted(ranges)} over {protocol}"
    finally:
        page.close()


class BrowserOverH2(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for what, path in (("sluice", sluice_binary()), ("chromium", chromium_binary())):
            if not path or not os.access(path, os.X_OK):
                raise RuntimeError(f"no {what} binary ({path}): see this file's docstring")
        cls.tmp = tempfile.mkdtemp(prefix="sluice-browser-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        www = os.path.join(cls.tmp, "www")
        os.makedirs(www)
        video = os.path.join(cls.tmp, "clip.webm")
        cls.video_size = make_video(video)
        cls.assets = make_site(www, video)
        cls.www = www
        cls.cert, cls.key = make_cert(cls.tmp)
        cls.logs = os.path.join(cls.tmp, "logs")
        os.makedirs(cls.logs)
        cls.sluice = Sluice(www, cls.cert, cls.key, cls.logs)
        cls.addClassCleanup(cls.sluice.stop)
        cls.pw = sync_playwright().start()
        cls.addClassCleanup(cls.pw.stop)
        cls.browser = launch(cls.pw)
        cls.addClassCleanup(cls.browser.close)

    def test_page_with_50_assets_loads_every_one_over_h2(self):
        origin = self.sluice.origin
        page = self.browser.new_page()
        try:
            net = Network(page)
            page.goto(origin + "/", wait_until="load", timeout=WAIT_MS)
            net.settle(page, {origin + p for p in self.assets})
            for path, (kind, element, expect) in sorted(self.assets.items()):
                fetches = net.for_path(origin, path)
                self.assertEqual(len(fetches), 1, f"{path}: requested {len(fetches)} times")
                r = fetches[0]
                self.assertIsNotNone(r["response"], f"{path}: no response ({r['done']})")
                self.assertEqual(r["response"]["status"], 200, path)
                self.assertEqual(r["response"]["protocol"], "h2", path)
                self.assertEqual(r["done"], ["finished"], f"{path}: did not finish loading")
                if kind == "img":
                    size = page.evaluate(f"(e => [e.complete, e.naturalWidth, e.naturalHeight])(document.getElementById('{element}'))")
                    self.assertEqual(size, [True, *expect], f"{path}: image did not decode at its size")
                elif kind == "css":
                    width = page.evaluate(f"document.getElementById('{element}').offsetWidth")
                    self.assertEqual(width, expect, f"{path}: its rule did not apply")
            ran = page.evaluate("window.loaded || []")
            scripts = sorted(e for k, e, _ in self.assets.values() if k == "js")
            self.assertEqual(sorted(ran), scripts, "scripts that ran whole")
            # The page-side view agrees: Resource Timing saw every asset over h2.
            timing = page.evaluate(
                "performance.getEntriesByType('resource').map(e => [new URL(e.name).pathname, e.nextHopProtocol, e.responseStatus])"
            )
            self.assertEqual(sorted(timing), sorted([p, "h2", 200] for p in self.assets))
            print(f"\n  index.html: {len(self.assets)} assets, all 200 over h2, "
                  f"{sum(os.path.getsize(os.path.join(self.www, p.lstrip('/'))) for p in self.assets):,} bytes")
        finally:
            page.close()

    def test_video_plays_and_seeks_with_range_requests(self):
        print("\n  " + check_video(self.browser, self.sluice.origin, self.video_size))

    def test_the_video_check_fails_on_a_server_without_ranges(self):
        # The same check against a sluice whose policy refuses ranges
        # (200 for every request, `Accept-Ranges: none`) must fail: it can
        # tell working ranges from broken ones.
        broken = Sluice(self.www, self.cert, self.key, self.logs, config="[policy]\nmax-ranges = 0\n")
        try:
            with self.assertRaises(AssertionError) as caught:
                check_video(self.browser, broken.origin, self.video_size)
            print(f"\n  without ranges the check fails: {caught.exception}")
        finally:
            broken.stop()


def spki_hash(cert):
    """base64 SHA-256 of the certificate's public key, as Chromium's
    --ignore-certificate-errors-spki-list takes it."""
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         check=True, capture_output=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


class BrowserOverH3(unittest.TestCase):
    """The same page of 50 assets over HTTP/3: sluice with [http3] enabled,
    Chromium forced onto QUIC for the origin (there is no Alt-Svc round trip
    to wait for) and trusting the test certificate by its SPKI hash (QUIC
    ignores --ignore-certificate-errors)."""

    @classmethod
    def setUpClass(cls):
        for what, path in (("sluice", sluice_binary()), ("chromium", chromium_binary())):
            if not path or not os.access(path, os.X_OK):
                raise RuntimeError(f"no {what} binary ({path}): see this file's docstring")
        cls.tmp = tempfile.mkdtemp(prefix="sluice-browser-h3-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        www = os.path.join(cls.tmp, "www")
        os.makedirs(www)
        video = os.path.join(cls.tmp, "clip.webm")
        cls.video_size = make_video(video)
        cls.assets = make_site(www, video)
        cls.cert, cls.key = make_cert(cls.tmp)
        logs = os.path.join(cls.tmp, "logs")
        os.makedirs(logs)
        cls.sluice = Sluice(www, cls.cert, cls.key, logs, config="[http3]\nenabled = true\n")
        cls.addClassCleanup(cls.sluice.stop)
        port = cls.sluice.h3_port
        cls.origin = f"https://localhost:{port}"
        cls.pw = sync_playwright().start()
        cls.addClassCleanup(cls.pw.stop)
        cls.browser = cls.pw.chromium.launch(
            executable_path=chromium_binary(),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--enable-quic",
                  f"--origin-to-force-quic-on=localhost:{port}",
                  f"--ignore-certificate-errors-spki-list={spki_hash(cls.cert)}",
                  "--host-resolver-rules=MAP localhost 127.0.0.1"],
            timeout=60_000,
        )
        cls.addClassCleanup(cls.browser.close)

    def test_page_with_50_assets_loads_every_one_over_h3(self):
        page = self.browser.new_page()
        try:
            net = Network(page)
            page.goto(self.origin + "/", wait_until="load", timeout=WAIT_MS)
            net.settle(page, {self.origin + p for p in self.assets})
            nav = page.evaluate("performance.getEntriesByType('navigation').map(e => e.nextHopProtocol)")
            self.assertEqual(nav, ["h3"], "the page itself over h3")
            timing = page.evaluate(
                "performance.getEntriesByType('resource').map(e => [new URL(e.name).pathname, e.nextHopProtocol, e.responseStatus])"
            )
            self.assertEqual(sorted(timing), sorted([p, "h3", 200] for p in self.assets))
            ran = page.evaluate("window.loaded || []")
            scripts = sorted(e for k, e, _ in self.assets.values() if k == "js")
            self.assertEqual(sorted(ran), scripts, "scripts that ran whole")
            print(f"\n  index.html over h3: {len(self.assets)} assets, all 200 over h3")
        finally:
            page.close()

    def test_video_plays_and_seeks_with_range_requests_over_h3(self):
        print("\n  " + check_video(self.browser, self.origin, self.video_size, protocol="h3"))


if __name__ == "__main__":
    unittest.main()
