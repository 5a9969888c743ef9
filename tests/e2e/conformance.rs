//! HTTP file semantics conformance (RFC 9110, RFC 9111, RFC 8246), over real
//! HTTP against the real server running the built-in default policy.
//!
//! Each case names the section it checks. Header values may use placeholders
//! filled from a plain GET of the same path first: `{etag}`, `{lm}` (its
//! Last-Modified), `{etag-weak}` (the ETag as a weak validator).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::harness::*;

const TEXT_LEN: usize = 5000;

/// What the body must be.
#[derive(Clone, Copy)]
enum Body {
    /// No body bytes.
    Empty,
    /// The whole file, as stored.
    Whole,
    /// Exactly these inclusive ranges of the file: one part with
    /// Content-Range, or multipart/byteranges with these parts in order.
    Ranges(&'static [(u64, u64)]),
    /// The whole file, compressed in the announced Content-Encoding.
    Decoded,
    /// The precompressed sibling matching the announced Content-Encoding.
    Sibling,
    /// Not checked.
    Any,
}

#[derive(Clone, Copy)]
enum Expect {
    Status(u16),
    StatusIn(&'static [u16]),
    Header(&'static str, &'static str),
    HeaderContains(&'static str, &'static str),
    HeaderIn(&'static str, &'static [&'static str]),
    NoHeader(&'static str),
    Body(Body),
}

use Expect::*;

struct Case {
    rfc: &'static str,
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: &'static [Expect],
}

const fn case(
    rfc: &'static str,
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: &'static [Expect],
) -> Case {
    Case {
        rfc,
        name,
        method,
        path,
        headers,
        expect,
    }
}

const OLD: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

#[rustfmt::skip]
const CASES: &[Case] = &[
    // ---- Range requests (RFC 9110 §14) ----
    case("§14.1.2", "first 100 bytes", "GET", "/a.txt", &[("range", "bytes=0-99")],
         &[Status(206), Header("content-range", "bytes 0-99/5000"), Header("content-length", "100"), Body(Body::Ranges(&[(0, 99)]))]),
    case("§14.1.2", "open-ended range", "GET", "/a.txt", &[("range", "bytes=100-")],
         &[Status(206), Header("content-range", "bytes 100-4999/5000"), Body(Body::Ranges(&[(100, 4999)]))]),
    case("§14.1.2", "suffix range", "GET", "/a.txt", &[("range", "bytes=-500")],
         &[Status(206), Header("content-range", "bytes 4500-4999/5000"), Body(Body::Ranges(&[(4500, 4999)]))]),
    case("§14.1.2", "suffix longer than the file is the whole file", "GET", "/a.txt", &[("range", "bytes=-9000")],
         &[Status(206), Header("content-range", "bytes 0-4999/5000"), Body(Body::Ranges(&[(0, 4999)]))]),
    case("§14.1.2", "last-pos past the end is clamped", "GET", "/a.txt", &[("range", "bytes=4990-6000")],
         &[Status(206), Header("content-range", "bytes 4990-4999/5000"), Body(Body::Ranges(&[(4990, 4999)]))]),
    case("§14.1.2", "single byte", "GET", "/a.txt", &[("range", "bytes=0-0")],
         &[Status(206), Header("content-length", "1"), Body(Body::Ranges(&[(0, 0)]))]),
    case("§14.1.2", "last byte", "GET", "/a.txt", &[("range", "bytes=4999-4999")],
         &[Status(206), Body(Body::Ranges(&[(4999, 4999)]))]),
    case("§14.1.2", "bytes=-0 is unsatisfiable", "GET", "/a.txt", &[("range", "bytes=-0")],
         &[Status(416), Header("content-range", "bytes */5000")]),
    case("§15.5.17", "first-pos at the end is unsatisfiable", "GET", "/a.txt", &[("range", "bytes=5000-")],
         &[Status(416), Header("content-range", "bytes */5000")]),
    case("§15.5.17", "range beyond the end is unsatisfiable", "GET", "/a.txt", &[("range", "bytes=6000-7000")],
         &[Status(416), Header("content-range", "bytes */5000")]),
    case("§15.5.17", "any range of an empty file is unsatisfiable", "GET", "/empty.txt", &[("range", "bytes=0-0")],
         &[Status(416), Header("content-range", "bytes */0")]),
    case("§14.6", "two ranges are multipart/byteranges", "GET", "/a.txt", &[("range", "bytes=0-9,20-29")],
         &[Status(206), HeaderContains("content-type", "multipart/byteranges; boundary="), Body(Body::Ranges(&[(0, 9), (20, 29)]))]),
    case("§14.6", "three ranges with spaces after commas", "GET", "/a.txt", &[("range", "bytes=0-9, 100-199, -10")],
         &[Status(206), Body(Body::Ranges(&[(0, 9), (100, 199), (4990, 4999)]))]),
    case("§14.1.2", "overlapping ranges are coalesced", "GET", "/a.txt", &[("range", "bytes=0-99,50-149")],
         &[Status(206), Body(Body::Ranges(&[(0, 149)]))]),
    case("§14.1.2", "adjacent ranges are coalesced", "GET", "/a.txt", &[("range", "bytes=0-9,10-19")],
         &[Status(206), Body(Body::Ranges(&[(0, 19)]))]),
    case("§14.1.2", "unordered ranges are sent ascending", "GET", "/a.txt", &[("range", "bytes=20-29,0-9")],
         &[Status(206), Body(Body::Ranges(&[(0, 9), (20, 29)]))]),
    case("§14.1.2", "satisfiable and unsatisfiable ranges: only the satisfiable part", "GET", "/a.txt", &[("range", "bytes=0-9,9000-9999")],
         &[Status(206), Body(Body::Ranges(&[(0, 9)]))]),
    case("§14.2", "malformed range is ignored", "GET", "/a.txt", &[("range", "bytes=abc")],
         &[Status(200), Body(Body::Whole)]),
    case("§14.2", "unknown range unit is ignored", "GET", "/a.txt", &[("range", "items=0-9")],
         &[Status(200), Body(Body::Whole)]),
    case("§14.1.1", "reversed range is invalid and ignored", "GET", "/a.txt", &[("range", "bytes=9-0")],
         &[Status(200), Body(Body::Whole)]),
    case("§14.1.1", "empty range set is ignored", "GET", "/a.txt", &[("range", "bytes=")],
         &[Status(200), Body(Body::Whole)]),
    case("§14.2", "too many ranges are ignored (Range DoS)", "GET", "/a.txt",
         &[("range", "bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,20-20,22-22,24-24,26-26,28-28,30-30,32-32,34-34,36-36,38-38")],
         &[Status(200), Body(Body::Whole)]),
    case("§14.2", "ranges summing past the length are ignored (CVE-2011-3192)", "GET", "/a.txt", &[("range", "bytes=0-4999,0-4999")],
         &[Status(200), Body(Body::Whole)]),
    case("§14.2", "Range is ignored for HEAD", "HEAD", "/a.txt", &[("range", "bytes=0-9")],
         &[Status(200), Header("content-length", "5000"), Body(Body::Empty)]),
    case("§14.3", "Accept-Ranges advertised", "GET", "/a.txt", &[],
         &[Status(200), Header("accept-ranges", "bytes")]),
    case("§14.2", "Range on a directory's index", "GET", "/dir/", &[("range", "bytes=0-4")],
         &[Status(206), Header("content-range", "bytes 0-4/24")]),
    case("§13.1.5", "If-Range with the current strong ETag: range", "GET", "/a.txt", &[("range", "bytes=0-9"), ("if-range", "{etag}")],
         &[Status(206), Body(Body::Ranges(&[(0, 9)]))]),
    case("§13.1.5", "If-Range with another ETag: whole file", "GET", "/a.txt", &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
         &[Status(200), Body(Body::Whole)]),
    case("§13.1.5", "If-Range with a weak ETag never matches", "GET", "/a.txt", &[("range", "bytes=0-9"), ("if-range", "{etag-weak}")],
         &[Status(200), Body(Body::Whole)]),
    case("§13.1.5", "If-Range with the exact Last-Modified: range", "GET", "/a.txt", &[("range", "bytes=0-9"), ("if-range", "{lm}")],
         &[Status(206), Body(Body::Ranges(&[(0, 9)]))]),
    case("§13.1.5", "If-Range with another date: whole file", "GET", "/a.txt", &[("range", "bytes=0-9"), ("if-range", OLD)],
         &[Status(200), Body(Body::Whole)]),
    case("§14.2", "ranges apply to the precompressed representation", "GET", "/pre.css", &[("range", "bytes=0-9"), ("accept-encoding", "gzip")],
         &[Status(206), Header("content-encoding", "gzip"), Body(Body::Any)]),
    case("§14.2", "a 206 is never compressed on the fly", "GET", "/a.txt", &[("range", "bytes=0-9"), ("accept-encoding", "gzip")],
         &[Status(206), NoHeader("content-encoding"), Body(Body::Ranges(&[(0, 9)]))]),
    case("§12.5.5", "206 carries Vary when the body could differ by encoding", "GET", "/a.txt", &[("range", "bytes=0-9")],
         &[Status(206), HeaderContains("vary", "ccept-")]),

    // ---- Conditional requests (RFC 9110 §13) ----
    case("§13.1.2", "If-None-Match with the current ETag: 304", "GET", "/a.txt", &[("if-none-match", "{etag}")],
         &[Status(304), Header("etag", "{etag}"), Body(Body::Empty), NoHeader("content-length")]),
    case("§13.1.2", "If-None-Match: * on an existing file: 304", "GET", "/a.txt", &[("if-none-match", "*")],
         &[Status(304)]),
    case("§13.1.2", "If-None-Match with another ETag: 200", "GET", "/a.txt", &[("if-none-match", "\"nope\"")],
         &[Status(200), Body(Body::Whole)]),
    case("§13.1.2", "If-None-Match uses weak comparison", "GET", "/a.txt", &[("if-none-match", "{etag-weak}")],
         &[Status(304)]),
    case("§13.1.2", "If-None-Match list containing the ETag", "GET", "/a.txt", &[("if-none-match", "\"x\", {etag}, \"y\"")],
         &[Status(304)]),
    case("§13.1.2", "If-None-Match on HEAD: 304", "HEAD", "/a.txt", &[("if-none-match", "{etag}")],
         &[Status(304)]),
    case("§13.1.3", "If-Modified-Since the Last-Modified: 304", "GET", "/a.txt", &[("if-modified-since", "{lm}")],
         &[Status(304), Header("last-modified", "{lm}")]),
    case("§13.1.3", "If-Modified-Since long ago: 200", "GET", "/a.txt", &[("if-modified-since", OLD)],
         &[Status(200), Body(Body::Whole)]),
    case("§13.1.3", "If-Modified-Since in RFC 850 form", "GET", "/a.txt", &[("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")],
         &[Status(200)]),
    case("§13.1.3", "If-Modified-Since in asctime form", "GET", "/a.txt", &[("if-modified-since", "Sun Nov  6 08:49:37 1994")],
         &[Status(200)]),
    case("§13.1.3", "invalid If-Modified-Since is ignored", "GET", "/a.txt", &[("if-modified-since", "yesterday")],
         &[Status(200), Body(Body::Whole)]),
    case("§13.2.2", "If-None-Match wins over If-Modified-Since", "GET", "/a.txt", &[("if-none-match", "\"nope\""), ("if-modified-since", "{lm}")],
         &[Status(200)]),
    case("§13.1.1", "If-Match with the current ETag: 200", "GET", "/a.txt", &[("if-match", "{etag}")],
         &[Status(200), Body(Body::Whole)]),
    case("§13.1.1", "If-Match with another ETag: 412", "GET", "/a.txt", &[("if-match", "\"nope\"")],
         &[Status(412)]),
    case("§13.1.1", "If-Match: * on an existing file: 200", "GET", "/a.txt", &[("if-match", "*")],
         &[Status(200)]),
    case("§13.1.1", "If-Match uses strong comparison (weak fails)", "GET", "/a.txt", &[("if-match", "{etag-weak}")],
         &[Status(412)]),
    case("§13.1.4", "If-Unmodified-Since long ago: 412", "GET", "/a.txt", &[("if-unmodified-since", OLD)],
         &[Status(412)]),
    case("§13.1.4", "If-Unmodified-Since the Last-Modified: 200", "GET", "/a.txt", &[("if-unmodified-since", "{lm}")],
         &[Status(200)]),
    case("§13.2.2", "If-Match is evaluated instead of If-Unmodified-Since", "GET", "/a.txt", &[("if-match", "{etag}"), ("if-unmodified-since", OLD)],
         &[Status(200)]),
    case("§13.2.2", "If-Match failure comes before If-None-Match", "GET", "/a.txt", &[("if-match", "\"nope\""), ("if-none-match", "{etag}")],
         &[Status(412)]),
    case("§13.2.2", "If-None-Match before If-Range", "GET", "/a.txt", &[("if-none-match", "{etag}"), ("range", "bytes=0-9"), ("if-range", "{etag}")],
         &[Status(304)]),
    case("§15.4.5", "304 keeps Cache-Control, Vary, ETag and Last-Modified", "GET", "/a.txt", &[("if-none-match", "{etag}")],
         &[Status(304), HeaderContains("cache-control", "max-age"), HeaderContains("vary", "ccept-"), Header("etag", "{etag}"), Header("last-modified", "{lm}")]),

    // ---- Content codings and negotiation (RFC 9110 §8.4, §12.5.3) ----
    case("§12.5.3", "gzip sibling for Accept-Encoding: gzip", "GET", "/pre.css", &[("accept-encoding", "gzip")],
         &[Status(200), Header("content-encoding", "gzip"), HeaderContains("vary", "ccept-"), Body(Body::Sibling)]),
    case("§12.5.3", "br sibling for Accept-Encoding: br", "GET", "/pre.css", &[("accept-encoding", "br")],
         &[Status(200), Header("content-encoding", "br"), Body(Body::Sibling)]),
    case("§12.5.3", "equal preference picks a sibling", "GET", "/pre.css", &[("accept-encoding", "gzip, br")],
         &[Status(200), HeaderIn("content-encoding", &["gzip", "br"]), Body(Body::Sibling)]),
    case("§12.5.3", "q-values order the codings", "GET", "/pre.css", &[("accept-encoding", "gzip;q=1, br;q=0.5")],
         &[Status(200), Header("content-encoding", "gzip"), Body(Body::Sibling)]),
    case("§12.5.3", "q=0 refuses a coding", "GET", "/pre.css", &[("accept-encoding", "br;q=0, gzip")],
         &[Status(200), Header("content-encoding", "gzip"), Body(Body::Sibling)]),
    case("§12.5.3", "wildcard accepts a stored coding", "GET", "/pre.css", &[("accept-encoding", "*")],
         &[Status(200), HeaderIn("content-encoding", &["gzip", "br"]), Body(Body::Sibling)]),
    case("§12.5.3", "identity only", "GET", "/pre.css", &[("accept-encoding", "identity")],
         &[Status(200), NoHeader("content-encoding"), Body(Body::Whole)]),
    case("§12.5.3", "no Accept-Encoding: identity", "GET", "/pre.css", &[],
         &[Status(200), NoHeader("content-encoding"), Body(Body::Whole), HeaderContains("vary", "ccept-")]),
    case("§12.5.3", "everything refused with q=0: identity", "GET", "/pre.css", &[("accept-encoding", "gzip;q=0, br;q=0")],
         &[Status(200), NoHeader("content-encoding"), Body(Body::Whole)]),
    case("§12.5.3", "coding names are case-insensitive", "GET", "/pre.css", &[("accept-encoding", "GZIP")],
         &[Status(200), Header("content-encoding", "gzip"), Body(Body::Sibling)]),
    case("§12.5.3", "whitespace around parameters", "GET", "/pre.css", &[("accept-encoding", " gzip ; q=0.8 , identity;q=0.1")],
         &[Status(200), Header("content-encoding", "gzip"), Body(Body::Sibling)]),
    case("§8.4", "gzip on the fly for a compressible type", "GET", "/a.txt", &[("accept-encoding", "gzip")],
         &[Status(200), Header("content-encoding", "gzip"), HeaderContains("vary", "ccept-"), NoHeader("content-length"), Body(Body::Decoded)]),
    case("§8.4", "br on the fly", "GET", "/a.txt", &[("accept-encoding", "br")],
         &[Status(200), Header("content-encoding", "br"), Body(Body::Decoded)]),
    case("§8.4", "zstd on the fly", "GET", "/a.txt", &[("accept-encoding", "zstd")],
         &[Status(200), Header("content-encoding", "zstd"), Body(Body::Decoded)]),
    case("§8.4", "no compression below the minimum size", "GET", "/small.txt", &[("accept-encoding", "gzip")],
         &[Status(200), NoHeader("content-encoding"), Body(Body::Whole)]),
    case("§8.4", "no compression for incompressible types", "GET", "/img.png", &[("accept-encoding", "gzip, br")],
         &[Status(200), NoHeader("content-encoding"), Body(Body::Whole)]),
    case("§8.4", "a stored .gz asked for directly is not encoded again", "GET", "/pre.css.gz", &[("accept-encoding", "gzip")],
         &[Status(200), NoHeader("content-encoding"), Body(Body::Whole)]),
    case("§9.3.2", "HEAD of a compressed response: same coding, no body", "HEAD", "/a.txt", &[("accept-encoding", "gzip")],
         &[Status(200), Header("content-encoding", "gzip"), Body(Body::Empty)]),
    case("§12.5.5", "Vary on an identity response of a compressible file", "GET", "/a.txt", &[],
         &[Status(200), HeaderContains("vary", "ccept-")]),
    case("§13.1.2", "If-None-Match with the gzip sibling's own ETag", "GET", "/pre.css", &[("accept-encoding", "gzip"), ("if-none-match", "{etag}")],
         &[Status(304), HeaderContains("vary", "ccept-")]),

    // ---- Metadata, caching, methods, directories ----
    case("§8.3.1", "text gets charset=utf-8", "GET", "/a.txt", &[],
         &[Header("content-type", "text/plain; charset=utf-8")]),
    case("§8.3.1", "HTML gets charset=utf-8", "GET", "/page.html", &[],
         &[Header("content-type", "text/html; charset=utf-8")]),
    case("§8.3", "CSS", "GET", "/pre.css", &[],
         &[HeaderContains("content-type", "text/css")]),
    case("§8.3", "images have no charset", "GET", "/img.png", &[],
         &[Header("content-type", "image/png")]),
    case("§8.3", "JavaScript", "GET", "/app.3f2a9c1b.js", &[],
         &[HeaderContains("content-type", "javascript")]),
    case("§8.3", "unknown extensions are octet-stream", "GET", "/data.qqq", &[],
         &[Header("content-type", "application/octet-stream")]),
    case("RFC 8246", "fingerprinted assets are immutable", "GET", "/app.3f2a9c1b.js", &[],
         &[HeaderContains("cache-control", "immutable"), HeaderContains("cache-control", "max-age=31536000")]),
    case("RFC 9111 §5.2.2", "HTML is revalidated", "GET", "/page.html", &[],
         &[HeaderIn("cache-control", &["no-cache", "public, no-cache", "no-cache, public", "public, max-age=0, must-revalidate", "max-age=0, must-revalidate"])]),
    case("RFC 9111 §5.2.2", "other files get a finite max-age", "GET", "/img.png", &[],
         &[HeaderContains("cache-control", "max-age=")]),
    case("§8.8.2", "Last-Modified is an IMF-fixdate", "GET", "/a.txt", &[],
         &[HeaderContains("last-modified", " GMT")]),
    case("§8.8.3", "ETag is strong", "GET", "/a.txt", &[],
         &[Header("etag", "{etag}")]),
    case("§6.6.1", "Date is sent", "GET", "/a.txt", &[],
         &[HeaderContains("date", " GMT")]),
    case("§8.6", "empty file", "GET", "/empty.txt", &[],
         &[Status(200), Header("content-length", "0"), Body(Body::Whole)]),
    case("§15.4", "directory without slash redirects", "GET", "/dir", &[],
         &[StatusIn(&[301, 308]), Header("location", "/dir/")]),
    case("§15.4", "redirect keeps the query", "GET", "/dir?x=1&y=2", &[],
         &[StatusIn(&[301, 308]), Header("location", "/dir/?x=1&y=2")]),
    case("§15.4", "redirect of an encoded name stays encoded", "GET", "/sp%20ace", &[],
         &[StatusIn(&[301, 308]), Header("location", "/sp%20ace/")]),
    case("§15.3.1", "directory with slash serves its index", "GET", "/dir/", &[],
         &[Status(200), Header("content-type", "text/html; charset=utf-8"), Header("content-length", "24")]),
    case("§15.5.5", "directory without index is 404 (no listing)", "GET", "/emptydir/", &[],
         &[StatusIn(&[403, 404])]),
    case("§15.5.5", "dotfiles are hidden", "GET", "/.secret", &[],
         &[Status(404)]),
    case("§15.5.5", "files under dot-directories are hidden", "GET", "/.git/config", &[],
         &[Status(404)]),
    case("§15.5.5", "missing file", "GET", "/missing.txt", &[],
         &[Status(404), HeaderContains("content-type", "text/plain")]),
    case("§9.3.7", "OPTIONS lists the methods", "OPTIONS", "/a.txt", &[],
         &[StatusIn(&[200, 204]), HeaderContains("allow", "GET"), HeaderContains("allow", "HEAD"), HeaderContains("allow", "OPTIONS")]),
    case("§15.5.6", "DELETE is 405 with Allow", "DELETE", "/a.txt", &[],
         &[Status(405), HeaderContains("allow", "GET")]),
    case("§15.5.6", "PUT is 405 with Allow", "PUT", "/a.txt", &[],
         &[Status(405), HeaderContains("allow", "HEAD")]),
    case("§9.3.2", "HEAD has GET's Content-Length and no body", "HEAD", "/img.png", &[],
         &[Status(200), Header("content-length", "3000"), Body(Body::Empty)]),
];

fn write_site(root: &Path) -> HashMap<&'static str, Vec<u8>> {
    let text: Vec<u8> = (0..TEXT_LEN)
        .map(|i| b"abcdefghij klmnopqrst\n"[i % 22])
        .collect();
    let css = b"body { color: #333; margin: 0 auto; }\n".repeat(60);
    let mut files: HashMap<&'static str, Vec<u8>> = HashMap::new();
    files.insert("a.txt", text);
    files.insert("small.txt", b"tiny text\n".to_vec());
    files.insert("img.png", pseudo_random(3000, 11));
    files.insert(
        "page.html",
        b"<!doctype html><title>t</title><p>page</p>\n".repeat(40),
    );
    files.insert(
        "app.3f2a9c1b.js",
        b"console.log('fingerprinted');\n".repeat(80),
    );
    files.insert("data.qqq", b"qqq".to_vec());
    files.insert("empty.txt", Vec::new());
    files.insert("pre.css", css.clone());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &css).unwrap();
    files.insert("pre.css.gz", gz.finish().unwrap());
    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 9, 22);
        std::io::Write::write_all(&mut w, &css).unwrap();
    }
    files.insert("pre.css.br", br);
    files.insert(".secret", b"hidden".to_vec());
    for (name, bytes) in &files {
        std::fs::write(root.join(name), bytes).unwrap();
    }
    std::fs::create_dir(root.join("dir")).unwrap();
    std::fs::write(root.join("dir/index.html"), b"<!doctype html><p>index\n").unwrap();
    std::fs::create_dir(root.join("emptydir")).unwrap();
    std::fs::create_dir(root.join("sp ace")).unwrap();
    std::fs::write(root.join("sp ace/index.html"), b"<p>space\n").unwrap();
    std::fs::create_dir(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/config"), b"[core]\n").unwrap();
    files
}

fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap(),
        "br" => brotli::Decompressor::new(bytes, 4096)
            .read_to_end(&mut out)
            .unwrap(),
        "zstd" => zstd::stream::read::Decoder::new(bytes)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap(),
        other => panic!("unknown coding {other}"),
    };
    out
}

/// Splits a multipart/byteranges body into (first, last, bytes) parts.
fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut pos = find(text, delimiter.as_bytes(), 0).expect("first delimiter");
    loop {
        pos += delimiter.len();
        if text[pos..].starts_with(b"--") {
            break;
        }
        let head_end = find(text, b"\r\n\r\n", pos).expect("part head") + 4;
        let head = String::from_utf8_lossy(&text[pos..head_end]).to_ascii_lowercase();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("content-range: bytes "))
            .expect("part content-range");
        let (span, _) = range.split_once('/').unwrap();
        let (a, b) = span.split_once('-').unwrap();
        let (first, last): (u64, u64) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
        let data_end = head_end + (last - first + 1) as usize;
        parts.push((first, last, text[head_end..data_end].to_vec()));
        pos = find(text, delimiter.as_bytes(), data_end).expect("next delimiter");
        assert_eq!(
            &text[data_end..pos],
            b"\r\n",
            "part data followed by CRLF and the delimiter"
        );
    }
    parts
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[test]
fn rfc9110_conformance_suite() {
    assert!(
        CASES.len() >= 80,
        "the suite should cover at least 80 cases, has {}",
        CASES.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let files = write_site(dir.path());
    let server = Server::start(dir.path());
    let http = client();

    let mut failures = Vec::new();
    for c in CASES {
        // Validators of the representation this request would select.
        let mut base = http.get(server.url(c.path));
        if let Some((_, ae)) = c.headers.iter().find(|(n, _)| *n == "accept-encoding") {
            base = base.header("accept-encoding", *ae);
        }
        let base = base.send().unwrap();
        let hv = |n: &str| {
            base.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (etag, lm) = (hv("etag"), hv("last-modified"));
        let fill = |s: &str| {
            s.replace("{etag-weak}", &format!("W/{etag}"))
                .replace("{etag}", &etag)
                .replace("{lm}", &lm)
        };

        let mut req = http.request(c.method.parse().unwrap(), server.url(c.path));
        for (n, v) in c.headers {
            req = req.header(*n, fill(v));
        }
        let res = req.send().unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.bytes().unwrap().to_vec();
        let get = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
        let file = files.get(c.path.trim_start_matches('/'));

        let mut problems = Vec::new();
        for e in c.expect {
            match *e {
                Status(s) if status != s => problems.push(format!("status {status}, want {s}")),
                StatusIn(ss) if !ss.contains(&status) => {
                    problems.push(format!("status {status}, want one of {ss:?}"))
                }
                Header(n, v) if get(n).as_deref() != Some(fill(v).as_str()) => {
                    problems.push(format!("{n}: {:?}, want {:?}", get(n), fill(v)))
                }
                HeaderContains(n, v) if !get(n).is_some_and(|h| h.contains(v)) => {
                    problems.push(format!("{n}: {:?}, want it to contain {v:?}", get(n)))
                }
                HeaderIn(n, vs) if !get(n).is_some_and(|h| vs.contains(&h.as_str())) => {
                    problems.push(format!("{n}: {:?}, want one of {vs:?}", get(n)))
                }
                NoHeader(n) if get(n).is_some() => {
                    problems.push(format!("{n}: {:?}, want none", get(n)))
                }
                Body(spec) => {
                    let file = file.map(Vec::as_slice);
                    let ok = match spec {
                        self::Body::Empty => body.is_empty(),
                        self::Body::Any => true,
                        self::Body::Whole => Some(body.as_slice()) == file.or(Some(&[])),
                        self::Body::Decoded => get("content-encoding")
                            .is_some_and(|c| Some(decode(&c, &body).as_slice()) == file),
                        self::Body::Sibling => get("content-encoding").is_some_and(|enc| {
                            let suffix = match enc.as_str() {
                                "gzip" => ".gz",
                                "br" => ".br",
                                _ => ".zst",
                            };
                            let key = format!("{}{suffix}", c.path.trim_start_matches('/'));
                            let sibling = files.get(key.as_str());
                            sibling.is_some_and(|s| *s == body)
                        }),
                        self::Body::Ranges(want) => {
                            let Some(file) = file else { continue };
                            let parts: Vec<(u64, u64, Vec<u8>)> = match get("content-type") {
                                Some(ct) if ct.starts_with("multipart/byteranges") => {
                                    multipart_parts(&ct, &body)
                                }
                                _ => {
                                    let cr = get("content-range").unwrap_or_default();
                                    let span = cr
                                        .trim_start_matches("bytes ")
                                        .split('/')
                                        .next()
                                        .unwrap_or("")
                                        .to_owned();
                                    match span.split_once('-') {
                                        Some((a, b)) => vec![(
                                            a.parse().unwrap_or(0),
                                            b.parse().unwrap_or(0),
                                            body.clone(),
                                        )],
                                        None => vec![],
                                    }
                                }
                            };
                            parts.len() == want.len()
                                && parts
                                    .iter()
                                    .zip(want.iter())
                                    .all(|((f, l, bytes), (wf, wl))| {
                                        f == wf
                                            && l == wl
                                            && bytes.as_slice()
                                                == &file[*wf as usize..=*wl as usize]
                                    })
                        }
                    };
                    if !ok {
                        problems.push(format!(
                            "body {} bytes does not match {}",
                            body.len(),
                            describe(spec)
                        ));
                    }
                }
                _ => {}
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "[{}] {} — {} {} {:?}: {}",
                c.rfc,
                c.name,
                c.method,
                c.path,
                c.headers,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

fn describe(b: Body) -> &'static str {
    match b {
        Body::Empty => "empty",
        Body::Whole => "the whole file",
        Body::Ranges(_) => "the requested ranges",
        Body::Decoded => "the file after decoding",
        Body::Sibling => "the precompressed sibling",
        Body::Any => "anything",
    }
}
