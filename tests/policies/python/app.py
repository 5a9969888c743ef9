"""A sluice policy in Python: serve files, with Cache-Control chosen by extension.

Implements the world `policy` of `sluice:policy@0.3.0` (wit/policy.wit):

* GET and HEAD only (405 with `Allow` otherwise);
* 404 for anything missing and for directories without an `index.html`;
  `/dir` redirects to `/dir/` (301) when the directory has one;
* 200 with the whole file, `Content-Type` and `Cache-Control` by extension,
  a strong `ETag` (inode-mtime-size) and `Last-Modified`;
* 304 when `If-None-Match` matches the ETag;
* with the `fallback` setting, a single-page app's fallback: a navigation
  (`Accept` lists `text/html`) to a missing path whose last segment has no
  file extension (`/app/settings/42`) is answered with the fallback file,
  status 200, by a `rewrite` outcome (see `decide`); a missing `/assets/x.js`
  or a `fetch()` for JSON keeps its real 404.

Every decision is a pure function of `decide`'s arguments (no clocks, no
randomness, no state changed between calls), so `configure` declares it
reusable and the host may answer repeated requests from its cache.

Settings (the `[policy]` table of the server configuration):

* `cache-default` (text): `Cache-Control` for extensions not in the table
  below; default `max-age=3600`.
* `fallback` (text): the file a missing navigation is answered with, as on
  disk, absolute, e.g. `"/index.html"`; absent or `""` (the default): off.

Build with `build.sh`; see README.md.
"""

import re
import time
from urllib.parse import quote

from componentize_py_types import Err
from wit_world import WitWorld as Base
from wit_world.imports.types import (
    Body_Empty,
    Body_Full,
    Body_Inline,
    Capabilities,
    Decision,
    Entry,
    Entry_Directory,
    Entry_File,
    Entry_Missing,
    FullBody,
    Header,
    HostLimits,
    Outcome,
    Outcome_Respond,
    Outcome_Rewrite,
    Request,
    Rewrite,
    Setting,
    SettingValue_Text,
    Source_Original,
)

# Content-Type by extension (lower case, without the dot).
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "htm": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "ico": "image/x-icon",
    "woff2": "font/woff2",
    "wasm": "application/wasm",
    "pdf": "application/pdf",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# Cache-Control by extension; anything else gets the `cache-default` setting.
CACHE_CONTROL = {
    "html": "no-cache",
    "htm": "no-cache",
    "css": "max-age=86400",
    "js": "max-age=86400",
    "png": "max-age=86400",
    "jpg": "max-age=86400",
    "jpeg": "max-age=86400",
    "gif": "max-age=86400",
    "webp": "max-age=86400",
    "svg": "max-age=86400",
    "woff2": "max-age=86400",
}
CACHE_DEFAULT = "max-age=3600"

INDEX_NAMES = ["index.html"]

# The `reason` this policy gives its fallback rewrite. The host hands it back
# untouched in `req.hop.reason` on the next call: a policy keeps no state
# between calls (instances are shared, decisions cached), so what the next
# call must know travels there.
FALLBACK_REASON = "fallback"

# An Accept weight (RFC 9110 12.4.2): 0 to 1, at most three decimals.
QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")

# The settings in force: reset by every `configure`. A component invoked
# directly (`wasmtime run --invoke 'decide(...)'`) keeps these defaults, which is
# what `configure` with no settings gives.
settings = {"cache-default": CACHE_DEFAULT, "fallback": None}

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class WitWorld(Base):
    def configure(self, settings_in: list[Setting], limits: HostLimits) -> Capabilities:
        new = {"cache-default": CACHE_DEFAULT, "fallback": None}
        for s in settings_in:
            if s.name == "cache-default":
                if not isinstance(s.value, SettingValue_Text) or not is_field_value(s.value.value):
                    raise Err("cache-default: expected text usable as a Cache-Control value, "
                              'e.g. "max-age=600"')
                new["cache-default"] = s.value.value
            elif s.name == "fallback":
                if not isinstance(s.value, SettingValue_Text):
                    raise Err('fallback: expected the path of a file as text, e.g. "/index.html"')
                path = s.value.value
                if path and not is_file_path(path):
                    raise Err(f"fallback: {path!r} is not an absolute, normalized path of a file "
                              '(e.g. "/index.html": no empty, "." or ".." segments, no trailing /)')
                new["fallback"] = path or None
            else:
                raise Err(f"unknown setting {s.name!r} (this policy knows: cache-default, fallback)")
        settings.clear()
        settings.update(new)
        # `accept` is read only for the fallback: a field declared here is part
        # of every cache key, and browsers' Accept values vary.
        fields = ["if-none-match"] + (["accept"] if new["fallback"] else [])
        return Capabilities(
            index_names=INDEX_NAMES,
            siblings=[],
            request_headers=fields,
            query=False,
            reusable=True,
            chunk_size=0,
            zero_copy=True,
            listing=0,
        )

    def decide(self, req: Request, found: Entry) -> Outcome:
        if req.method not in ("GET", "HEAD"):
            return text_page(405, "method not allowed\n", (Header("allow", "GET, HEAD"),))

        fallback = settings["fallback"]
        # How a policy tells a hop from the client's own request: `req.hop` is
        # None on the first call; after a `rewrite` it says why (our reason,
        # given back), and `req.path` is the rewrite's path (the client's is
        # `req.hop.original_path`).
        is_fallback = req.hop is not None and req.hop.reason == FALLBACK_REASON
        # With a fallback, whether a missing path gets the app depends on
        # Accept: say so to caches on every answer that could have differed.
        vary = (Header("vary", "Accept"),) if fallback else ()

        name = req.path.rsplit("/", 1)[-1]
        if isinstance(found, Entry_Directory) and not is_fallback:
            index = found.value.index
            if index is None:
                return text_page(404, "not found\n", vary)
            if not req.path.endswith("/"):
                location = quote(req.path + "/", safe="/")
                return text_page(301, "moved to " + location + "\n", (Header("location", location),))
            name, file = index.name, index.file
        elif isinstance(found, Entry_File):
            file = found.value
        elif (isinstance(found, Entry_Missing) and fallback and req.hop is None
              and is_navigation(req.path, req.headers)):
            # Decide again for the app's file; the host resolves it beneath
            # the same root and calls `decide` with `hop` set. Only on the
            # first call, so this policy can never loop.
            return Outcome_Rewrite(Rewrite(path=fallback, reason=FALLBACK_REASON))
        else:
            # Missing, or the fallback file itself missing (or a directory)
            # on the hop: the client's real 404.
            return text_page(404, "not found\n", vary)

        meta = file.meta
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        etag = f'"{meta.inode:x}-{meta.mtime_ns:x}-{meta.size:x}"'
        headers = [
            Header("etag", etag),
            Header("cache-control", CACHE_CONTROL.get(ext, settings["cache-default"])),
        ]
        if is_fallback:
            headers.extend(vary)
        last_modified = http_date(meta.mtime_ns)
        if last_modified:
            headers.append(Header("last-modified", last_modified))

        # On the fallback's hop the ETag is the app file's: a reload of a deep
        # link revalidates it and gets its 304.
        if any(etag_matches(h.value, etag) for h in req.headers if h.name == "if-none-match"):
            return respond(304, headers, Body_Empty())

        headers.append(Header("content-type", CONTENT_TYPES.get(ext, DEFAULT_CONTENT_TYPE)))
        # Status 200 on the hop too: the status is the last call's choice.
        return respond(200, headers, Body_Full(FullBody(source=Source_Original(), compress=None)))


def respond(status: int, headers: list[Header], body) -> Outcome:
    """The response itself (as opposed to a `rewrite`)."""
    return Outcome_Respond(Decision(status=status, headers=headers, body=body))


def text_page(status: int, text: str, extra: tuple[Header, ...] = ()) -> Outcome:
    """A small plain-text response made by the policy itself."""
    return respond(status, [*extra, Header("content-type", "text/plain; charset=utf-8")],
                   Body_Inline(text.encode()))


def is_navigation(path: str, headers: list[Header]) -> bool:
    """Whether a request for the missing `path` is a browser navigation to a
    client-side route: its last segment has no file extension (`/app/settings/42`,
    not `/assets/x.js`) and its `Accept` lists `text/html` with a weight above 0
    (`*/*` alone is not one: every `fetch()` sends it)."""
    stem, dot, ext = path.rsplit("/", 1)[-1].rpartition(".")
    if dot and stem and ext:
        return False
    accept = ", ".join(h.value for h in headers if h.name == "accept")
    for element in accept.split(","):
        media, *params = element.split(";")
        if media.strip(" \t").lower() != "text/html":
            continue
        weight = "1"
        for param in params:
            key, _, value = param.partition("=")
            if key.strip(" \t").lower() == "q":
                weight = value.strip(" \t")
                break
        # RFC 9110 12.4.2 qvalue; a malformed one counts as not listed.
        if QVALUE.fullmatch(weight) and float(weight) > 0:
            return True
    return False


def is_file_path(path: str) -> bool:
    """An absolute, normalized path as the host checks a rewrite's (no empty,
    `.` or `..` segments, no NUL or backslash) that names a file (no trailing
    `/`)."""
    segments = path.split("/")
    return (path.startswith("/") and "\0" not in path and "\\" not in path
            and all(seg not in ("", ".", "..") for seg in segments[1:]))


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: `*`, or any listed tag equal under weak comparison."""
    if if_none_match.strip() == "*":
        return True
    tags = (t.strip() for t in if_none_match.split(","))
    return any(t.removeprefix("W/") == etag for t in tags)


def http_date(mtime_ns: int) -> str | None:
    """IMF-fixdate of a file time, or None before 1970 (then no Last-Modified).

    `time.gmtime` only converts a number; it does not read the clock."""
    if mtime_ns < 0:
        return None
    t = time.gmtime(mtime_ns // 1_000_000_000)
    return (f"{DAYS[t.tm_wday]}, {t.tm_mday:02d} {MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def is_field_value(value: str) -> bool:
    """Visible ASCII and inner spaces or tabs: safe to send as a header value."""
    return (value != "" and value == value.strip(" \t")
            and all(c == "\t" or " " <= c <= "~" for c in value))
