// A sluice policy in JavaScript: serve files, with Cache-Control chosen by
// extension. The same policy as tests/policies/python/app.py, line for line.
//
// Implements the world `policy` of `sluice:policy@0.2.0` (wit/policy.wit),
// built with ComponentizeJS (build.sh; see README.md):
//
// * GET and HEAD only (405 with `Allow` otherwise);
// * 404 for anything missing and for directories without an `index.html`;
//   `/dir` redirects to `/dir/` (301) when the directory has one;
// * 200 with the whole file, `Content-Type` and `Cache-Control` by extension,
//   a strong `ETag` (inode-mtime-size) and `Last-Modified`;
// * 304 when `If-None-Match` matches the ETag.
//
// Every decision is a pure function of `decide`'s arguments (no clocks, no
// randomness, no state changed between calls), so `configure` declares it
// reusable and the host may answer repeated requests from its cache.
//
// Settings (the `[policy]` table of the server configuration):
//
// * `cache-default` (text): `Cache-Control` for extensions not in the table
//   below; default `max-age=3600`.
//
// How WIT types look in JavaScript (ComponentizeJS): records are objects with
// camelCase fields, variants `{ tag, val }`, enums strings, `u64`/`s64`
// BigInts, `list<u8>` a Uint8Array, `option<T>` the value or `undefined`; an
// `err` of a `result` is thrown.

// Content-Type by extension (lower case, without the dot).
const CONTENT_TYPES = {
  html: "text/html; charset=utf-8",
  htm: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  json: "application/json",
  txt: "text/plain; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  ico: "image/x-icon",
  woff2: "font/woff2",
  wasm: "application/wasm",
  pdf: "application/pdf",
};
const DEFAULT_CONTENT_TYPE = "application/octet-stream";

// Cache-Control by extension; anything else gets the `cache-default` setting.
const CACHE_CONTROL = {
  html: "no-cache",
  htm: "no-cache",
  css: "max-age=86400",
  js: "max-age=86400",
  png: "max-age=86400",
  jpg: "max-age=86400",
  jpeg: "max-age=86400",
  gif: "max-age=86400",
  webp: "max-age=86400",
  svg: "max-age=86400",
  woff2: "max-age=86400",
};
const CACHE_DEFAULT = "max-age=3600";

const INDEX_NAMES = ["index.html"];

// The settings in force: reset by every `configure`. A component invoked
// directly (`wasmtime run --invoke 'decide(...)'`) keeps these defaults, which
// is what `configure` with no settings gives.
let settings = { cacheDefault: CACHE_DEFAULT };

export function configure(settingsIn, _limits) {
  const next = { cacheDefault: CACHE_DEFAULT };
  for (const s of settingsIn) {
    if (s.name !== "cache-default") {
      throw `unknown setting ${JSON.stringify(s.name)} (this policy knows: cache-default)`;
    }
    if (s.value.tag !== "text" || !isFieldValue(s.value.val)) {
      throw 'cache-default: expected text usable as a Cache-Control value, e.g. "max-age=600"';
    }
    next.cacheDefault = s.value.val;
  }
  settings = next;
  return {
    indexNames: INDEX_NAMES,
    siblings: [],
    requestHeaders: ["if-none-match"],
    query: false,
    reusable: true,
    chunkSize: 0,
    zeroCopy: true,
  };
}

export function decide(req, found) {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return textPage(405, "method not allowed\n", [{ name: "allow", value: "GET, HEAD" }]);
  }

  let name = req.path.slice(req.path.lastIndexOf("/") + 1);
  let file;
  if (found.tag === "directory") {
    const index = found.val.index;
    if (index === undefined || index === null) {
      return textPage(404, "not found\n");
    }
    if (!req.path.endsWith("/")) {
      const location = percentEncode(req.path + "/");
      return textPage(301, `moved to ${location}\n`, [{ name: "location", value: location }]);
    }
    name = index.name;
    file = index.file;
  } else if (found.tag === "file") {
    file = found.val;
  } else {
    return textPage(404, "not found\n");
  }

  const meta = file.meta;
  const dot = name.lastIndexOf(".");
  const ext = dot >= 0 ? name.slice(dot + 1).toLowerCase() : "";
  const etag = `"${meta.inode.toString(16)}-${hex(meta.mtimeNs)}-${meta.size.toString(16)}"`;
  const headers = [
    { name: "etag", value: etag },
    { name: "cache-control", value: CACHE_CONTROL[ext] ?? settings.cacheDefault },
  ];
  const lastModified = httpDate(meta.mtimeNs);
  if (lastModified !== null) {
    headers.push({ name: "last-modified", value: lastModified });
  }

  if (req.headers.some((h) => h.name === "if-none-match" && etagMatches(h.value, etag))) {
    return { status: 304, headers, body: { tag: "empty" } };
  }

  headers.push({ name: "content-type", value: CONTENT_TYPES[ext] ?? DEFAULT_CONTENT_TYPE });
  return {
    status: 200,
    headers,
    body: { tag: "full", val: { source: { tag: "original" }, compress: undefined } },
  };
}

// A small plain-text response made by the policy itself.
function textPage(status, text, extra = []) {
  return {
    status,
    headers: [...extra, { name: "content-type", value: "text/plain; charset=utf-8" }],
    body: { tag: "inline", val: new TextEncoder().encode(text) },
  };
}

// RFC 9110 13.1.2: `*`, or any listed tag equal under weak comparison.
function etagMatches(ifNoneMatch, etag) {
  if (ifNoneMatch.trim() === "*") {
    return true;
  }
  return ifNoneMatch
    .split(",")
    .map((t) => t.trim())
    .some((t) => (t.startsWith("W/") ? t.slice(2) : t) === etag);
}

// A signed 64-bit BigInt in hexadecimal, as Python's `format(n, "x")` writes it.
function hex(n) {
  return n < 0n ? `-${(-n).toString(16)}` : n.toString(16);
}

// IMF-fixdate of a file time, or null before 1970 (then no Last-Modified).
// `toUTCString` writes exactly that format; it only converts the number given,
// it does not read the clock.
function httpDate(mtimeNs) {
  if (mtimeNs < 0n) {
    return null;
  }
  return new Date(Number(mtimeNs / 1000000n)).toUTCString();
}

// Percent-encodes everything but unreserved characters and `/` (Python's
// `quote(path, safe="/")`).
function percentEncode(path) {
  let out = "";
  for (const byte of new TextEncoder().encode(path)) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_.~\/-]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

// Visible ASCII and inner spaces or tabs: safe to send as a header value.
function isFieldValue(value) {
  return (
    value !== "" &&
    value === value.replace(/^[ \t]+|[ \t]+$/g, "") &&
    /^[\t\x20-\x7e]*$/.test(value)
  );
}
