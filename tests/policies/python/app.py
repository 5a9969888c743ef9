"""A sluice policy in Python: serve files, with Cache-Control chosen by extension.

Implements the world `policy` of `sluice:policy@0.2.0` (wit/policy.wit):

* GET and HEAD only (405 with `Allow` otherwise);
* 404 for anything missing and for directories without an `index.html`;
  `/dir` redirects to `/dir/` (301) when the directory has one;
* 200 with the whole file, `Content-Type` and `Cache-Control` by extension,
  a strong `ETag` (inode-mtime-size) and `Last-Modified`;
* 304 when `If-None-Match` matches the ETag.

Every decision is a pure function of `decide`'s arguments (no clocks, no
randomness, no state changed between calls), so `configure` declares it
reusable and the host may answer repeated requests from its cache.

Settings (the `[policy]` table of the server configuration):

* `cache-default` (text): `Cache-Control` for extensions not in the table
  below; default `max-age=3600`.

Build with `build.sh`; see README.md.
"""

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
    FullBody,
    Header,
    HostLimits,
    Request,
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

# The settings in force: reset by every `configure`. A component invoked
# directly (`wasmtime run --invoke 'decide(...)'`) keeps these defaults, which is
# what `configure` with no settings gives.
settings = {"cache-default": CACHE_DEFAULT}

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class WitWorld(Base):
    def configure(self, settings_in: list[Setting], limits: HostLimits) -> Capabilities:
        new = {"cache-default": CACHE_DEFAULT}
        for s in settings_in:
            if s.name != "cache-default":
                raise Err(f"unknown setting {s.name!r} (this policy knows: cache-default)")
            if not isinstance(s.value, SettingValue_Text) or not is_field_value(s.value.value):
                raise Err("cache-default: expected text usable as a Cache-Control value, "
                          'e.g. "max-age=600"')
            new["cache-default"] = s.value.value
        settings.clear()
        settings.update(new)
        return Capabilities(
            index_names=INDEX_NAMES,
            siblings=[],
            request_headers=["if-none-match"],
            query=False,
            reusable=True,
            chunk_size=0,
            zero_copy=True,
        )

    def decide(self, req: Request, found: Entry) -> Decision:
        if req.method not in ("GET", "HEAD"):
            return text_page(405, "method not allowed\n", (Header("allow", "GET, HEAD"),))

        name = req.path.rsplit("/", 1)[-1]
        if isinstance(found, Entry_Directory):
            index = found.value.index
            if index is None:
                return text_page(404, "not found\n")
            if not req.path.endswith("/"):
                location = quote(req.path + "/", safe="/")
                return text_page(301, "moved to " + location + "\n", (Header("location", location),))
            name, file = index.name, index.file
        elif isinstance(found, Entry_File):
            file = found.value
        else:
            return text_page(404, "not found\n")

        meta = file.meta
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        etag = f'"{meta.inode:x}-{meta.mtime_ns:x}-{meta.size:x}"'
        headers = [
            Header("etag", etag),
            Header("cache-control", CACHE_CONTROL.get(ext, settings["cache-default"])),
        ]
        last_modified = http_date(meta.mtime_ns)
        if last_modified:
            headers.append(Header("last-modified", last_modified))

        if any(etag_matches(h.value, etag) for h in req.headers if h.name == "if-none-match"):
            return Decision(status=304, headers=headers, body=Body_Empty())

        headers.append(Header("content-type", CONTENT_TYPES.get(ext, DEFAULT_CONTENT_TYPE)))
        body = Body_Full(FullBody(source=Source_Original(), compress=None))
        return Decision(status=200, headers=headers, body=body)


def text_page(status: int, text: str, extra: tuple[Header, ...] = ()) -> Decision:
    """A small plain-text response made by the policy itself."""
    return Decision(
        status=status,
        headers=[*extra, Header("content-type", "text/plain; charset=utf-8")],
        body=Body_Inline(text.encode()),
    )


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
