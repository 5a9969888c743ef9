//! Path patterns (`/news/:year/*`), shared by `_redirects` and `_headers`,
//! and the index that finds the rules a request path may match without
//! trying them all (a trie of literal segments).
//!
//! Matching follows Netlify's: literal segments compare ASCII
//! case-insensitively (Netlify serves a case-insensitive site, and on a
//! case-insensitive file system `/ADMIN/x` is the same file as `/admin/x`, so
//! a header rule for the one must cover the other); non-ASCII letters compare
//! exactly. A trailing `/` is optional on both the pattern and the path
//! (`/blog` and `/blog/` are one rule), and a final `*` also matches nothing
//! (`/news/*` matches `/news`). Patterns are decoded text: they are matched
//! against the decoded, normalized path the host hands over, which has no
//! empty, `.` or `..` segments, so patterns with those are refused (they
//! could never match).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::{MAX_PLACEHOLDERS, MAX_SEGMENTS};

/// Where `*` may appear in a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Star {
    /// `_redirects`: only as the whole last segment (the splat).
    LastSegment,
    /// `_headers`: once, anywhere in the last segment (`/*.js`, `/app*`).
    InLastSegment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// Compared ASCII case-insensitively.
    Literal(Box<str>),
    /// `:name`: any one non-empty segment, captured.
    Placeholder,
}

/// What may follow the segments.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tail {
    /// Nothing (but an optional trailing `/`).
    End,
    /// `PREFIX*SUFFIX` in the last segment: the rest of the path, `/`
    /// included, starts with PREFIX and ends with SUFFIX. `*` alone is the
    /// splat, which also matches an empty rest.
    Star { prefix: Box<str>, suffix: Box<str> },
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    segs: Box<[Seg]>,
    tail: Tail,
    /// Placeholder names in order; a capture's slot is its index here.
    names: Box<[Box<str>]>,
}

/// A request path split once for matching against many patterns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Path<'p> {
    /// The path without its leading `/`.
    body: &'p str,
    /// `body` without one trailing `/`: the segments.
    trimmed: &'p str,
}

impl<'p> Path<'p> {
    pub(crate) fn new(path: &'p str) -> Self {
        let body = path.strip_prefix('/').unwrap_or(path);
        let trimmed = body.strip_suffix('/').unwrap_or(body);
        Path { body, trimmed }
    }
}

/// What a match captured: placeholder values by slot, and the splat. Slices
/// of the request path: matching allocates nothing.
#[derive(Debug, Clone)]
pub(crate) struct Captures<'p> {
    pub(crate) values: [&'p str; MAX_PLACEHOLDERS],
    /// The rest matched by a final `*`, with the path's trailing `/` if it had
    /// one (so `/old/*` → `/new/:splat` keeps `/old/dir/` a directory).
    pub(crate) splat: &'p str,
}

impl Captures<'_> {
    pub(crate) fn new() -> Self {
        Captures {
            values: [""; MAX_PLACEHOLDERS],
            splat: "",
        }
    }
}

/// Whether `name` can be a placeholder name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Pattern {
    /// Compiles a decoded pattern. Errors say what is wrong, for the caller to
    /// prefix with the line.
    pub(crate) fn parse(pattern: &str, star: Star) -> Result<Pattern, String> {
        let Some(body) = pattern.strip_prefix('/') else {
            return Err(format!("the path {pattern:?} does not start with /"));
        };
        if pattern.contains(['\\', '\0']) {
            return Err(format!(
                "the path {pattern:?} has a backslash or NUL, which request paths never have"
            ));
        }
        let trimmed = body.strip_suffix('/').unwrap_or(body);
        let parts: Vec<&str> = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed.split('/').collect()
        };
        if parts.len() > MAX_SEGMENTS {
            return Err(format!(
                "the path {pattern:?} has {} segments, more than the limit of {MAX_SEGMENTS}",
                parts.len()
            ));
        }
        let mut segs = Vec::with_capacity(parts.len());
        let mut names: Vec<Box<str>> = Vec::new();
        let mut tail = Tail::End;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if part.is_empty() || *part == "." || *part == ".." {
                return Err(format!(
                    "the path {pattern:?} has an empty, . or .. segment, which request paths never have"
                ));
            }
            if part.contains('*') {
                let whole = *part == "*";
                let allowed = last
                    && match star {
                        Star::LastSegment => whole,
                        Star::InLastSegment => part.matches('*').count() == 1,
                    };
                if !allowed {
                    return Err(match star {
                        Star::LastSegment => format!(
                            "* must be the whole last segment of the path (as in /news/*), in {pattern:?}"
                        ),
                        Star::InLastSegment => format!(
                            "* may appear once, in the last segment of the path (as in /assets/* or /*.js), in {pattern:?}"
                        ),
                    });
                }
                let (prefix, suffix) = part.split_once('*').unwrap_or((part, ""));
                tail = Tail::Star {
                    prefix: prefix.into(),
                    suffix: suffix.into(),
                };
            } else if let Some(name) = part.strip_prefix(':') {
                if !is_name(name) || name == "splat" {
                    return Err(format!(
                        "{part:?} is not a placeholder name (a letter or _, then letters, digits or _; not :splat)"
                    ));
                }
                if names.iter().any(|n| **n == *name) {
                    return Err(format!("placeholder :{name} appears twice"));
                }
                if names.len() == MAX_PLACEHOLDERS {
                    return Err(format!(
                        "more than {MAX_PLACEHOLDERS} placeholders (the limit)"
                    ));
                }
                names.push(name.into());
                segs.push(Seg::Placeholder);
            } else {
                segs.push(Seg::Literal((*part).into()));
            }
        }
        Ok(Pattern {
            segs: segs.into(),
            tail,
            names: names.into(),
        })
    }

    /// The placeholder names, in slot order.
    pub(crate) fn names(&self) -> &[Box<str>] {
        &self.names
    }

    /// Whether the pattern ends in the splat, `*` alone.
    pub(crate) fn has_splat(&self) -> bool {
        matches!(&self.tail, Tail::Star { prefix, suffix } if prefix.is_empty() && suffix.is_empty())
    }

    /// The pattern's segments as index edges: `Some(literal)`, or `None` for
    /// a placeholder.
    fn edges(&self) -> impl Iterator<Item = Option<&str>> {
        self.segs.iter().map(|s| match s {
            Seg::Literal(l) => Some(&**l),
            Seg::Placeholder => None,
        })
    }

    /// Whether the pattern matches paths longer than its segments (it ends
    /// in `*`).
    fn is_open(&self) -> bool {
        matches!(self.tail, Tail::Star { .. })
    }

    /// Whether `path` matches, filling `caps` (slots of this pattern's
    /// placeholders, and the splat). On a mismatch `caps` holds garbage.
    pub(crate) fn matches<'p>(&self, path: &Path<'p>, caps: &mut Captures<'p>) -> bool {
        let mut rest = path.trimmed;
        let mut slot = 0;
        for seg in self.segs.iter() {
            if rest.is_empty() {
                return false;
            }
            let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
            match seg {
                Seg::Literal(l) => {
                    if !head.eq_ignore_ascii_case(l) {
                        return false;
                    }
                }
                Seg::Placeholder => {
                    caps.values[slot] = head;
                    slot += 1;
                }
            }
            rest = tail;
        }
        match &self.tail {
            Tail::End => rest.is_empty(),
            Tail::Star { prefix, suffix } if prefix.is_empty() && suffix.is_empty() => {
                caps.splat = if rest.is_empty() {
                    ""
                } else {
                    &path.body[path.trimmed.len() - rest.len()..]
                };
                true
            }
            Tail::Star { prefix, suffix } => {
                let (r, p, s) = (rest.as_bytes(), prefix.as_bytes(), suffix.as_bytes());
                r.len() >= p.len() + s.len()
                    && r[..p.len()].eq_ignore_ascii_case(p)
                    && r[r.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

/// The rules by their patterns' segments: a trie whose edges are
/// case-folded literal segments or "any one segment" (a placeholder), each
/// node holding, in file order, the rules whose segments end there. The
/// rules a path may match are those on the nodes its segments lead to, along
/// literal and placeholder edges alike: exact rules (no `*`) where the path
/// ends, open ones (ending in `*`) anywhere on the way. So a rule for
/// `/blog/2019/post-1` is only tried for that path, `/blog/:slug` for paths
/// of two segments under `/blog`, `/:lang/legacy` for two-segment paths
/// ending in `legacy`, and `/*` for every path; what is left for
/// `Pattern::matches` is to confirm and capture.
///
/// Children are sorted tables (binary search, no hashing); a lookup walks
/// the trie depth-first (recursion at most `MAX_SEGMENTS` deep: patterns are
/// no deeper) and allocates nothing unless the path reaches more than
/// `INLINE_LISTS` nodes with rules, which takes a pathological rule set. The
/// walk visits each trie node at most once, so it never costs more than the
/// linear scan it replaces. (The first level alone is the first-segment
/// index; the deeper levels keep 1,000 redirects under `/blog/`, or 30
/// rules starting with `/:lang/`, from being tried for every path.)
#[derive(Debug, Clone)]
pub(crate) struct Index {
    /// `nodes[0]` is the root.
    nodes: Box<[Node]>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// (case-folded segment, node), sorted by segment.
    children: Box<[(Box<str>, u32)]>,
    /// The placeholder edge.
    any: Option<u32>,
    /// Rules without `*` ending here (ascending): candidates if the path ends
    /// here too.
    exact: Box<[u32]>,
    /// Rules ending in `*` here (ascending): candidates for every path
    /// through here.
    open: Box<[u32]>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            nodes: Box::new([Node::default()]),
        }
    }
}

/// Rule lists a lookup holds without allocating.
const INLINE_LISTS: usize = 32;

impl Index {
    /// Indexes `patterns`, rule `i` being the `i`-th.
    pub(crate) fn build<'a>(patterns: impl IntoIterator<Item = &'a Pattern>) -> Index {
        #[derive(Default)]
        struct Building {
            children: BTreeMap<Box<str>, usize>,
            any: Option<usize>,
            exact: Vec<u32>,
            open: Vec<u32>,
        }
        let mut nodes = vec![Building::default()];
        for (i, pattern) in patterns.into_iter().enumerate() {
            let mut node = 0;
            for edge in pattern.edges() {
                let next = nodes.len();
                node = match edge {
                    Some(literal) => *nodes[node]
                        .children
                        .entry(literal.to_ascii_lowercase().into())
                        .or_insert(next),
                    None => *nodes[node].any.get_or_insert(next),
                };
                if node == next {
                    nodes.push(Building::default());
                }
            }
            let i = u32::try_from(i).expect("rule tables are bounded by MAX_RULES");
            if pattern.is_open() {
                nodes[node].open.push(i);
            } else {
                nodes[node].exact.push(i);
            }
        }
        let id = |n: usize| u32::try_from(n).expect("nodes are bounded by rules x segments");
        let nodes = nodes
            .into_iter()
            .map(|b| Node {
                children: b.children.into_iter().map(|(k, v)| (k, id(v))).collect(),
                any: b.any.map(id),
                exact: b.exact.into(),
                open: b.open.into(),
            })
            .collect();
        Index { nodes }
    }

    /// The rules `path` may match, in file order.
    pub(crate) fn candidates(&self, path: &Path<'_>) -> Candidates<'_> {
        let mut c = Candidates {
            lists: [&[]; INLINE_LISTS],
            len: 0,
            more: Vec::new(),
        };
        self.walk(0, path.trimmed, &mut c);
        c
    }

    fn walk<'a>(&'a self, node: u32, rest: &str, c: &mut Candidates<'a>) {
        let node = &self.nodes[node as usize];
        c.push(&node.open);
        if rest.is_empty() {
            c.push(&node.exact);
            return;
        }
        let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if let Ok(i) = node
            .children
            .binary_search_by(|(key, _)| cmp_folded(key, head))
        {
            self.walk(node.children[i].1, tail, c);
        }
        if let Some(any) = node.any {
            self.walk(any, tail, c);
        }
    }
}

/// Compares a case-folded key with `s` as if `s` were case-folded too.
fn cmp_folded(key: &str, s: &str) -> Ordering {
    key.bytes().cmp(s.bytes().map(|b| b.to_ascii_lowercase()))
}

/// The rule lists of the nodes a path reaches, merged in file order as they
/// are iterated.
#[derive(Debug, Clone)]
pub(crate) struct Candidates<'a> {
    lists: [&'a [u32]; INLINE_LISTS],
    len: usize,
    /// Lists beyond `INLINE_LISTS`: stays empty (unallocated) in practice.
    more: Vec<&'a [u32]>,
}

impl<'a> Candidates<'a> {
    fn push(&mut self, rules: &'a [u32]) {
        if rules.is_empty() {
        } else if self.len < INLINE_LISTS {
            self.lists[self.len] = rules;
            self.len += 1;
        } else {
            self.more.push(rules);
        }
    }
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let lists = self.lists[..self.len]
            .iter_mut()
            .chain(self.more.iter_mut());
        let list = lists.filter(|l| !l.is_empty()).min_by_key(|l| l[0])?;
        let (first, rest) = list.split_first()?;
        *list = rest;
        Some(*first as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(p: &str) -> Pattern {
        Pattern::parse(p, Star::LastSegment).unwrap()
    }

    fn header(p: &str) -> Pattern {
        Pattern::parse(p, Star::InLastSegment).unwrap()
    }

    /// The captures of `pattern` on `path`, or `None`.
    fn captures(pattern: &Pattern, path: &str) -> Option<(Vec<String>, String)> {
        let mut caps = Captures::new();
        pattern.matches(&Path::new(path), &mut caps).then(|| {
            let n = pattern.names().len();
            (
                caps.values[..n].iter().map(|s| s.to_string()).collect(),
                caps.splat.to_owned(),
            )
        })
    }

    fn matches(pattern: &Pattern, path: &str) -> bool {
        captures(pattern, path).is_some()
    }

    #[test]
    fn literals_match_whole_paths_case_insensitively() {
        let p = redirect("/blog/Post");
        for path in ["/blog/post", "/BLOG/POST", "/blog/post/"] {
            assert!(matches(&p, path), "{path}");
        }
        for path in ["/blog", "/blog/post/x", "/blog/posts", "/", "/blog/pöst"] {
            assert!(!matches(&p, path), "{path}");
        }
        assert!(matches(&redirect("/blog/post/"), "/blog/post"));
        assert!(!matches(&redirect("/é"), "/É"), "only ASCII folds");
    }

    #[test]
    fn root_matches_root_only() {
        let p = redirect("/");
        assert!(matches(&p, "/"));
        assert!(!matches(&p, "/a"));
    }

    #[test]
    fn placeholders_take_one_non_empty_segment() {
        let p = redirect("/news/:year/:month/x");
        assert_eq!(
            captures(&p, "/news/2004/02/x"),
            Some((vec!["2004".into(), "02".into()], String::new()))
        );
        assert!(!matches(&p, "/news/2004/x"));
        assert!(!matches(&p, "/news/2004/02/03/x"));
        assert_eq!(
            captures(&redirect("/:a"), "/x y?#/"),
            Some((vec!["x y?#".into()], String::new()))
        );
        assert!(!matches(&redirect("/:a"), "/"));
    }

    #[test]
    fn the_splat_takes_the_rest_even_nothing() {
        let p = redirect("/news/*");
        for (path, splat) in [
            ("/news", ""),
            ("/news/", ""),
            ("/news/a", "a"),
            ("/news/a/b.html", "a/b.html"),
            ("/news/a/b/", "a/b/"),
            ("/NEWS/A", "A"),
        ] {
            assert_eq!(captures(&p, path), Some((vec![], splat.into())), "{path}");
        }
        assert!(!matches(&p, "/newsx"));
        assert!(!matches(&p, "/"));
        let all = redirect("/*");
        assert_eq!(captures(&all, "/"), Some((vec![], String::new())));
        assert_eq!(captures(&all, "/a/b"), Some((vec![], "a/b".into())));
        assert!(all.has_splat() && p.has_splat());
        assert!(!redirect("/a").has_splat());
    }

    #[test]
    fn headers_allow_a_star_inside_the_last_segment() {
        let js = header("/*.js");
        for path in ["/a.js", "/a/b.JS", "/.js", "/a.js/"] {
            assert!(matches(&js, path), "{path}");
        }
        for path in ["/", "/a.json", "/js"] {
            assert!(!matches(&js, path), "{path}");
        }
        let app = header("/assets/app*");
        assert!(matches(&app, "/assets/app"));
        assert!(matches(&app, "/assets/app.1.js"));
        assert!(matches(&app, "/assets/apps/x"));
        assert!(!matches(&app, "/assets/ap"));
        assert!(!matches(&app, "/assets"));
        let both = header("/a/b*c");
        assert!(matches(&both, "/a/bc"));
        assert!(matches(&both, "/a/b/x/c"));
        assert!(!matches(&both, "/a/bxc/d"));
        assert!(
            !matches(&header("/a/x*x"), "/a/x"),
            "prefix and suffix may not overlap"
        );
        assert!(!js.has_splat());
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for (p, star, why) in [
            ("news", Star::LastSegment, "does not start with /"),
            ("", Star::LastSegment, "does not start with /"),
            ("/a//b", Star::LastSegment, "empty, . or .."),
            ("//a", Star::LastSegment, "empty, . or .."),
            ("/a/../b", Star::LastSegment, "empty, . or .."),
            ("/./b", Star::LastSegment, "empty, . or .."),
            ("/a\\b", Star::LastSegment, "backslash"),
            ("/*/a", Star::LastSegment, "whole last segment"),
            ("/a*", Star::LastSegment, "whole last segment"),
            ("/*.js", Star::LastSegment, "whole last segment"),
            ("/*/a", Star::InLastSegment, "once, in the last segment"),
            ("/a**", Star::InLastSegment, "once, in the last segment"),
            ("/:", Star::LastSegment, "not a placeholder name"),
            ("/:1a", Star::LastSegment, "not a placeholder name"),
            ("/:a-b", Star::LastSegment, "not a placeholder name"),
            ("/:splat", Star::LastSegment, "not a placeholder name"),
            ("/:a/:a", Star::LastSegment, "appears twice"),
        ] {
            let err = Pattern::parse(p, star).unwrap_err();
            assert!(err.contains(why), "{p:?}: {err}");
        }
        // A colon inside a segment is a literal.
        assert!(matches(&redirect("/a:b"), "/a:b"));
    }

    #[test]
    fn patterns_are_bounded() {
        let deep = "/a".repeat(MAX_SEGMENTS);
        assert!(Pattern::parse(&deep, Star::LastSegment).is_ok());
        let err = Pattern::parse(&format!("{deep}/a"), Star::LastSegment).unwrap_err();
        assert!(
            err.contains("33 segments, more than the limit of 32"),
            "{err}"
        );
        let many: String = (0..MAX_PLACEHOLDERS).map(|i| format!("/:p{i}")).collect();
        assert!(Pattern::parse(&many, Star::LastSegment).is_ok());
        let err = Pattern::parse(&format!("{many}/:x"), Star::LastSegment).unwrap_err();
        assert!(err.contains("more than 16 placeholders"), "{err}");
    }

    #[test]
    fn index_edges() {
        fn edges(p: &Pattern) -> Vec<Option<&str>> {
            p.edges().collect()
        }
        assert_eq!(
            edges(&redirect("/Blog/2019/:x")),
            [Some("Blog"), Some("2019"), None]
        );
        assert_eq!(edges(&redirect("/:x/blog/*")), [None, Some("blog")]);
        assert_eq!(edges(&redirect("/*")), []);
        assert_eq!(edges(&redirect("/")), []);
        assert_eq!(edges(&header("/a/*.js")), [Some("a")]);
        assert!(redirect("/a/*").is_open() && header("/*.js").is_open());
        assert!(!redirect("/a/:b").is_open() && !redirect("/").is_open());
    }

    #[test]
    fn the_index_merges_in_file_order() {
        let patterns: Vec<Pattern> = ["/a/1", "/*", "/B/1", "/a/2", "/:x/3", "/", "/A"]
            .iter()
            .map(|p| redirect(p))
            .collect();
        let index = Index::build(&patterns);
        let got = |path: &str| index.candidates(&Path::new(path)).collect::<Vec<_>>();
        assert_eq!(got("/a/1"), vec![0, 1]);
        assert_eq!(got("/A/1/"), vec![0, 1]);
        assert_eq!(got("/A/1/deeper"), vec![1]);
        assert_eq!(got("/A"), vec![1, 6]);
        assert_eq!(got("/a/2/"), vec![1, 3]);
        assert_eq!(got("/a/3"), vec![1, 4]);
        assert_eq!(got("/b/x"), vec![1]);
        assert_eq!(got("/b/1"), vec![1, 2]);
        assert_eq!(got("/"), vec![1, 5]);
        assert_eq!(got("/zzz"), vec![1]);
        assert_eq!(got("/zzz/3"), vec![1, 4]);
        let empty = Index::default();
        assert_eq!(empty.candidates(&Path::new("/a")).count(), 0);
    }

    #[test]
    fn rules_are_only_tried_where_their_segments_lead() {
        let patterns: Vec<Pattern> = (0..1000)
            .map(|i| redirect(&format!("/blog/2019/post-{i}")))
            .chain([
                redirect("/blog/:slug"),
                redirect("/*"),
                redirect("/:lang/legacy"),
                redirect("/:lang/*"),
                redirect("/blog/:x/post-7"),
            ])
            .collect();
        let index = Index::build(&patterns);
        let got = |path: &str| index.candidates(&Path::new(path)).collect::<Vec<_>>();
        assert_eq!(got("/blog/2019/post-7"), vec![7, 1001, 1003, 1004]);
        assert_eq!(got("/blog/2019/post-7/x"), vec![1001, 1003]);
        assert_eq!(got("/blog/2019"), vec![1000, 1001, 1003]);
        assert_eq!(got("/en/legacy"), vec![1001, 1002, 1003]);
        assert_eq!(got("/about"), vec![1001, 1003]);
        assert_eq!(got("/"), vec![1001]);
    }

    #[test]
    fn deep_walks_stay_bounded() {
        // As deep as patterns go, and no deeper.
        let exact: String = (0..MAX_SEGMENTS).map(|i| format!("/s{i}")).collect();
        let open: String = (0..MAX_SEGMENTS - 1).map(|i| format!("/s{i}")).collect();
        let index = Index::build(&[redirect(&exact), redirect(&format!("{open}/*"))]);
        let longer = format!("{exact}/more/and/more");
        assert_eq!(
            index.candidates(&Path::new(&longer)).collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(
            index.candidates(&Path::new(&exact)).collect::<Vec<_>>(),
            vec![0, 1]
        );
        // More reached nodes with rules than fit inline: still every one, in
        // order. `/a/…/a/*` of every depth, and `/:p0/…/*` of every depth the
        // placeholder limit allows.
        let mut patterns = Vec::new();
        for d in 0..MAX_SEGMENTS {
            patterns.push(redirect(&format!("{}/*", "/a".repeat(d))));
            if d <= MAX_PLACEHOLDERS {
                let any: String = (0..d).map(|i| format!("/:p{i}")).collect();
                patterns.push(redirect(&format!("{any}/*")));
            }
        }
        let index = Index::build(&patterns);
        let path = "/a".repeat(MAX_SEGMENTS);
        let got: Vec<usize> = index.candidates(&Path::new(&path)).collect();
        assert!(!index.candidates(&Path::new(&path)).more.is_empty());
        assert_eq!(got, (0..patterns.len()).collect::<Vec<_>>());
    }
}
