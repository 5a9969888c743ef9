#!/usr/bin/env python3
"""A single-page app's deep links in a real browser (issue 18): the default
policy's `fallback` rule, over HTTPS and HTTP/2.

Headless Chromium from the system packages, driven by Playwright for Python
exactly as test_browser.py does (its `Sluice`, `Network` and `launch`; no
`playwright install`), loads the app in tests/browser/spa/ (index.html, a
History-API router in /assets/app.js, /assets/app.css) from the release
`sluice` binary with the built-in default policy and `fallback = "/index.html"`:

- the deep link /app/settings/42 is answered 200 with index.html, the router
  renders "settings 42", and the script and stylesheet load (200 over h2, as
  JavaScript and CSS; the stylesheet's rule applies);
- a reload of the deep link renders it again in a new document;
- a client-side navigation (a click: pushState, no request) to /app/users/7,
  then a reload of that address, renders "user 7";
- a missing asset under /assets/ is a real 404 whose body is not the app,
  fetched from the page (and as a <script>, which fails to load) and from
  Python with a browser's navigation Accept.

The deep-link check is also run against a sluice without the `fallback`
setting and must fail there: it can tell a working fallback from none.

Usage: python3 tests/browser/test_spa.py [-v]   (tests/run runs it)
Needs: chromium, playwright (pip; no `playwright install`), openssl, and a
       release build; see test_browser.py for the binaries' paths.
"""

import os
import shutil
import ssl
import sys
import tempfile
import unittest
import urllib.error
import urllib.request

from playwright.sync_api import Error as PlaywrightError

sys.path.insert(0, os.path.dirname(__file__))
from test_browser import WAIT_MS, Network, Sluice, chromium_binary, launch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from sluice_test import make_cert, sluice_binary  # noqa: E402

SPA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spa")
FALLBACK = '[policy]\nfallback = "/index.html"\n'
# What Chromium sends when it navigates; Python sends it too, to ask for a
# missing asset as a browser's address bar would.
NAVIGATION_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,"
                     "image/avif,image/webp,image/apng,*/*;q=0.8")
ASSETS = {"/assets/app.js": "text/javascript", "/assets/app.css": "text/css"}


def view(page):
    return page.evaluate("document.getElementById('view') && document.getElementById('view').textContent")


def wait_for_view(page, text):
    """Waits (bounded) until the router has rendered `text`; an
    AssertionError naming what the page shows otherwise."""
    try:
        page.wait_for_function(
            "t => document.getElementById('view') && document.getElementById('view').textContent === t",
            arg=text, timeout=WAIT_MS)
    except PlaywrightError as e:
        body = page.evaluate("document.body ? document.body.innerText.slice(0, 200) : ''")
        raise AssertionError(f"the router did not render {text!r} at {page.url}: the page shows {body!r}") from e


def check_deep_link(browser, origin):
    """Opens the deep link, reloads it, navigates on the client and reloads
    again. Raises AssertionError naming what failed; returns a summary."""
    page = browser.new_page()  # a new context: nothing cached
    try:
        net = Network(page)
        res = page.goto(origin + "/app/settings/42", wait_until="load", timeout=WAIT_MS)
        assert res.status == 200, f"the deep link /app/settings/42 answered {res.status}: {res.text()[:200]!r}"
        assert res.headers["content-type"].startswith("text/html"), res.headers
        with open(os.path.join(SPA, "index.html"), "rb") as f:
            assert res.body() == f.read(), "the deep link's body is not index.html"
        wait_for_view(page, "settings 42")

        net.settle(page, {origin + p for p in ASSETS})
        for path, media in ASSETS.items():
            fetches = net.for_path(origin, path)
            assert len(fetches) == 1, f"{path}: requested {len(fetches)} times"
            r = fetches[0]["response"]
            assert r is not None, f"{path}: no response ({fetches[0]['done']})"
            assert r["status"] == 200, f"{path}: {r['status']}"
            assert r["protocol"] == "h2", f"{path} over {r['protocol']}"
            assert r["headers"]["content-type"].startswith(media), f"{path}: {r['headers']['content-type']}"
            assert fetches[0]["done"] == ["finished"], f"{path}: {fetches[0]['done']}"
        color = page.evaluate("getComputedStyle(document.getElementById('view')).color")
        assert color == "rgb(0, 128, 0)", f"/assets/app.css did not apply (color {color})"

        # A reload of the deep link: a new document, rendered again.
        page.evaluate("window.before_reload = true")
        res = page.reload(wait_until="load", timeout=WAIT_MS)
        # 200, or 304 when Chromium revalidated index.html with its ETag.
        assert res.status in (200, 304), f"reload of /app/settings/42 answered {res.status}"
        assert page.evaluate("window.before_reload === undefined"), "the reload kept the old document"
        wait_for_view(page, "settings 42")

        # A client-side navigation: no request, the router renders.
        documents = len(net.for_path(origin, "/app/users/7"))
        page.evaluate("window.before_click = true")
        page.click("a[href='/app/users/7']")
        wait_for_view(page, "user 7")
        assert page.evaluate("location.pathname") == "/app/users/7"
        assert page.evaluate("window.before_click === true"), "the click loaded a new document"
        assert len(net.for_path(origin, "/app/users/7")) == documents, "the click asked the server"
        # ... then a reload of that address asks the server for it.
        res = page.reload(wait_until="load", timeout=WAIT_MS)
        assert res.status in (200, 304), f"reload of /app/users/7 answered {res.status}"
        assert page.evaluate("window.before_click === undefined"), "the reload kept the old document"
        wait_for_view(page, "user 7")
        return (f"/app/settings/42: 200 with index.html over h2, rendered, {len(ASSETS)} assets 200; "
                "reload, client navigation to /app/users/7 and its reload rendered")
    finally:
        page.close()


def python_get(origin, path, cafile, accept):
    """(status, content-type, body) of a GET from Python, over TLS verified
    against the test's certificate."""
    req = urllib.request.Request(origin + path, headers={"Accept": accept})
    ctx = ssl.create_default_context(cafile=cafile)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=WAIT_MS / 1000) as res:
            return res.status, res.headers["content-type"], res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["content-type"], e.read()


class SpaDeepLinks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for what, path in (("sluice", sluice_binary()), ("chromium", chromium_binary())):
            if not path or not os.access(path, os.X_OK):
                raise RuntimeError(f"no {what} binary ({path}): see test_browser.py's docstring")
        cls.tmp = tempfile.mkdtemp(prefix="sluice-spa-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.cert, cls.key = make_cert(cls.tmp)
        cls.logs = os.path.join(cls.tmp, "logs")
        os.makedirs(cls.logs)
        cls.sluice = Sluice(SPA, cls.cert, cls.key, cls.logs, config=FALLBACK)
        cls.addClassCleanup(cls.sluice.stop)
        from playwright.sync_api import sync_playwright
        cls.pw = sync_playwright().start()
        cls.addClassCleanup(cls.pw.stop)
        cls.browser = launch(cls.pw)
        cls.addClassCleanup(cls.browser.close)
        with open(os.path.join(SPA, "index.html"), "rb") as f:
            cls.index = f.read()

    def test_deep_link_renders_reloads_and_navigates(self):
        print("\n  " + check_deep_link(self.browser, self.sluice.origin))

    def test_a_missing_asset_is_a_real_404(self):
        origin = self.sluice.origin
        page = self.browser.new_page()
        try:
            page.goto(origin + "/", wait_until="load", timeout=WAIT_MS)
            wait_for_view(page, "home")
            for accept in ("*/*", NAVIGATION_ACCEPT):
                status, _, body = page.evaluate(
                    """async accept => {
                        const r = await fetch('/assets/missing.js', {headers: {accept}});
                        return [r.status, r.headers.get('content-type'), await r.text()];
                    }""", accept)
                self.assertEqual(status, 404, f"fetch /assets/missing.js (Accept {accept})")
                self.assertNotIn('id="view"', body, "the 404's body is the app")
            # A fetch() of a missing API route is not a navigation either.
            status = page.evaluate(
                "fetch('/api/items', {headers: {accept: 'application/json'}}).then(r => r.status)")
            self.assertEqual(status, 404, "fetch /api/items (Accept: application/json)")
            # As a <script>: the browser refuses to run a 404 (with HTML it
            # would try to run the app's markup as JavaScript).
            loaded = page.evaluate(
                """() => new Promise(done => {
                    const s = document.createElement('script');
                    s.src = '/assets/missing.js';
                    s.onload = () => done('load');
                    s.onerror = () => done('error');
                    document.head.appendChild(s);
                })""")
            self.assertEqual(loaded, "error", "a missing script loaded")
        finally:
            page.close()
        # From Python, asking as a browser's address bar would: still a 404.
        status, content_type, body = python_get(origin, "/assets/missing.js", self.cert, NAVIGATION_ACCEPT)
        self.assertEqual(status, 404)
        self.assertNotEqual(body, self.index)
        self.assertNotIn(b'id="view"', body)
        # ... while the deep link, asked the same way, is the app.
        status, content_type, body = python_get(origin, "/app/settings/42", self.cert, NAVIGATION_ACCEPT)
        self.assertEqual((status, body), (200, self.index))
        self.assertTrue(content_type.startswith("text/html"), content_type)
        print("\n  /assets/missing.js: a real 404, not the app, from the page (fetch, <script>) and from Python")

    def test_the_check_fails_without_the_fallback(self):
        # The same site served without `fallback`: the deep link is the real
        # 404, and the check must say so.
        plain = Sluice(SPA, self.cert, self.key, self.logs)
        try:
            with self.assertRaises(AssertionError) as caught:
                check_deep_link(self.browser, plain.origin)
            print(f"\n  without the fallback the check fails: {caught.exception}")
        finally:
            plain.stop()


if __name__ == "__main__":
    unittest.main()
