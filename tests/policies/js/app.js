// A sluice policy in JavaScript: serve files, with Cache-Control chosen by
// extension. The same policy as tests/policies/python/app.py, line for line.
//
// Implements the world `policy` of `sluice:policy@0.3.0` (wit/policy.wit),
// built with ComponentizeJS (build.sh; see README.md):
//
// * GET and HEAD only (405 with `Allow` otherwise);
// * 404 for anything missing and for directories without an `index.html`;
//   `/dir` redirects to `/dir/` (301) when the directory has one;
// * 200 with the whole file, `Content-Type` and `Cache-Control` by extension,
//   a strong `ETag` (inode-mtime-size) and `Last-Modified`;
// * 304 when `If-None-Match` matches the ETag;
// * with the `fallback` setting, a single-page app's fallback: a navigation
//   (`Accept` lists `text/html`) to a missing path whose last segment has no
//   file extension (`/app/settings/42`) is answered with the fallback file,
//   status 200, by a `rewrite` outcome (see `decide`); a missing
//   `/assets/x.js` or a `fetch()` for JSON keeps its real 404.
//
// Every decision is a pure function of `decide`'s arguments (no clocks, no
// randomness, no state changed between calls), so `configure` declares it
// reusable and the host may answer repeated requests from its cache.
//
// Settings (the `[policy]` table of the server configuration):
//
// * `cache-default` (text): `Cache-Control` for extensions not in the table
//   below; default `max-age=3600`.
// * `fallback` (text): the file a missing navigation is answered with, as on
//   disk, absolute, e.g. `"/index.html"`; absent or `""` (the default): off.
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

// The `reason` this policy gives its fallback rewrite. The host hands it back
// untouched in `req.hop.reason` on the next call: a policy keeps no state
// between calls (instances are shared, decisions cached), so what the next
// call must know travels there.
const FALLBACK_REASON = "fallback";

// An Accept weight (RFC 9110 12.4.2): 0 to 1, at most three decimals.
const QVALUE = /^(0(\.[0-9]{0,3})?|1(\.0{0,3})?)$/;

// The settings in force: reset by every `configure`. A component invoked
// directly (`wasmtime run --invoke 'decide(...)'`) keeps these defaults, which
// is what `configure` with no settings gives.
let settings = { cacheDefault: CACHE_DEFAULT, fallback: null };

export function configure(settingsIn, _limits) {
  const next = { cacheDefault: CACHE_DEFAULT, fallback: null };
  for (const s of settingsIn) {
    if (s.name === "cache-default") {
      if (s.value.tag !== "text" || !isFieldValue(s.value.val)) {
        throw 'cache-default: expected text usable as a Cache-Control value, e.g. "max-age=600"';
      }
      next.cacheDefault = s.value.val;
    } else if (s.name === "fallback") {
      if (s.value.tag !== "text") {
        throw 'fallback: expected the path of a file as text, e.g. "/index.html"';
      }
      const path = s.value.val;
      if (path !== "" && !isFilePath(path)) {
        throw `fallback: ${JSON.stringify(path)} is not an absolute, normalized path of a file ` +
          '(e.g. "/index.html": no empty, "." or ".." segments, no trailing /)';
      }
      next.fallback = path === "" ? null : path;
    } else {
      throw `unknown setting ${JSON.stringify(s.name)} (this policy knows: cache-default, fallback)`;
    }
  }
  settings = next;
  return {
    indexNames: INDEX_NAMES,
    siblings: [],
    // `accept` is read only for the fallback: a field declared here is part
    // of every cache key, and browsers' Accept values vary.
    requestHeaders: next.fallback === null ? ["if-none-match"] : ["if-none-match", "accept"],
    query: false,
    reusable: true,
    chunkSize: 0,
    zeroCopy: true,
    listing: 0,
  };
}

export function decide(req, found) {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return textPage(405, "method not allowed\n", [{ name: "allow", value: "GET, HEAD" }]);
  }

  const fallback = settings.fallback;
  // How a policy tells a hop from the client's own request: `req.hop` is
  // undefined on the first call; after a `rewrite` it says why (our reason,
  // given back), and `req.path` is the rewrite's path (the client's is
  // `req.hop.originalPath`).
  const isFallback = req.hop !== undefined && req.hop !== null && req.hop.reason === FALLBACK_REASON;
  const isFirst = req.hop === undefined || req.hop === null;
  // With a fallback, whether a missing path gets the app depends on Accept:
  // say so to caches on every answer that could have differed.
  const vary = fallback === null ? [] : [{ name: "vary", value: "Accept" }];

  let name = req.path.slice(req.path.lastIndexOf("/") + 1);
  let file;
  if (found.tag === "directory" && !isFallback) {
    const index = found.val.index;
    if (index === undefined || index === null) {
      return textPage(404, "not found\n", vary);
    }
    if (!req.path.endsWith("/")) {
      const location = percentEncode(req.path + "/");
      return textPage(301, `moved to ${location}\n`, [{ name: "location", value: location }]);
    }
    name = index.name;
    file = index.file;
  } else if (found.tag === "file") {
    file = found.val;
  } else if (found.tag === "missing" && fallback !== null && isFirst && isNavigation(req.path, req.headers)) {
    // Decide again for the app's file; the host resolves it beneath the same
    // root and calls `decide` with `hop` set. Only on the first call, so
    // this policy can never loop.
    return { tag: "rewrite", val: { path: fallback, reason: FALLBACK_REASON } };
  } else {
    // Missing, or the fallback file itself missing (or a directory) on the
    // hop: the client's real 404.
    return textPage(404, "not found\n", vary);
  }

  const meta = file.meta;
  const dot = name.lastIndexOf(".");
  const ext = dot >= 0 ? name.slice(dot + 1).toLowerCase() : "";
  const etag = `"${meta.inode.toString(16)}-${hex(meta.mtimeNs)}-${meta.size.toString(16)}"`;
  const headers = [
    { name: "etag", value: etag },
    { name: "cache-control", value: CACHE_CONTROL[ext] ?? settings.cacheDefault },
  ];
  if (isFallback) {
    headers.push(...vary);
  }
  const lastModified = httpDate(meta.mtimeNs);
  if (lastModified !== null) {
    headers.push({ name: "last-modified", value: lastModified });
  }

  // On the fallback's hop the ETag is the app file's: a reload of a deep link
  // revalidates it and gets its 304.
  if (req.headers.some((h) => h.name === "if-none-match" && etagMatches(h.value, etag))) {
    return respond(304, headers, { tag: "empty" });
  }

  headers.push({ name: "content-type", value: CONTENT_TYPES[ext] ?? DEFAULT_CONTENT_TYPE });
  // Status 200 on the hop too: the status is the last call's choice.
  return respond(200, headers, { tag: "full", val: { source: { tag: "original" }, compress: undefined } });
}

// The response itself (as opposed to a `rewrite`).
function respond(status, headers, body) {
  return { tag: "respond", val: { status, headers, body } };
}

// A small plain-text response made by the policy itself.
function textPage(status, text, extra = []) {
  return respond(status, [...extra, { name: "content-type", value: "text/plain; charset=utf-8" }], {
    tag: "inline",
    val: new TextEncoder().encode(text),
  });
}

// Whether a request for the missing `path` is a browser navigation to a
// client-side route: its last segment has no file extension
// (`/app/settings/42`, not `/assets/x.js`) and its `Accept` lists `text/html`
// with a weight above 0 (`*/*` alone is not one: every `fetch()` sends it).
function isNavigation(path, headers) {
  const last = path.slice(path.lastIndexOf("/") + 1);
  const dot = last.lastIndexOf(".");
  if (dot > 0 && dot < last.length - 1) {
    return false;
  }
  const accept = headers.filter((h) => h.name === "accept").map((h) => h.value).join(", ");
  return accept.split(",").some((element) => {
    const [media, ...params] = element.split(";");
    if (trimOws(media).toLowerCase() !== "text/html") {
      return false;
    }
    let weight = "1";
    for (const param of params) {
      const eq = param.indexOf("=");
      const key = eq < 0 ? param : param.slice(0, eq);
      if (trimOws(key).toLowerCase() === "q") {
        weight = eq < 0 ? "" : trimOws(param.slice(eq + 1));
        break;
      }
    }
    // A malformed weight counts as not listed.
    return QVALUE.test(weight) && Number(weight) > 0;
  });
}

// An absolute, normalized path as the host checks a rewrite's (no empty, `.`
// or `..` segments, no NUL or backslash) that names a file (no trailing `/`).
function isFilePath(path) {
  return (
    path.startsWith("/") &&
    !path.includes("\0") &&
    !path.includes("\\") &&
    path
      .split("/")
      .slice(1)
      .every((seg) => seg !== "" && seg !== "." && seg !== "..")
  );
}

function trimOws(text) {
  return text.replace(/^[ \t]+|[ \t]+$/g, "");
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
