//! `GET /metrics` on the admin listener: Prometheus text format, scraped and
//! parsed as a Prometheus server would.

use std::collections::HashMap;

use crate::harness::*;

/// Parses the exposition format: every sample line is `name{labels} value`,
/// every family has `# HELP` and `# TYPE` before its samples.
fn scrape(server: &Server) -> HashMap<String, f64> {
    let res = client()
        .get(format!("http://{}/metrics", server.admin))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = res.text().unwrap();
    let mut typed = std::collections::HashSet::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no # TYPE before it");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[test]
fn metrics_count_requests_bytes_and_policy_calls() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
    std::fs::write(other.path().join("b.txt"), "other").unwrap();
    let config = format!(
        "[[vhost]]\nhost = \"other.test\"\nroot = {:?}\n",
        other.path().display().to_string()
    );
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some(&config),
            ..Options::default()
        },
    );
    let c = client();
    for _ in 0..5 {
        assert_eq!(c.get(server.url("/a.txt")).send().unwrap().status(), 200);
    }
    for _ in 0..3 {
        assert_eq!(c.get(server.url("/nope")).send().unwrap().status(), 404);
    }
    let res = c
        .get(server.url("/b.txt"))
        .header("host", "other.test")
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);

    let m = scrape(&server);
    assert_eq!(
        m[r#"sluice_requests_total{vhost="(default)",class="2xx"}"#],
        5.0
    );
    assert_eq!(
        m[r#"sluice_requests_total{vhost="(default)",class="4xx"}"#],
        3.0
    );
    assert_eq!(
        m[r#"sluice_requests_total{vhost="other.test",class="2xx"}"#],
        1.0
    );
    assert_eq!(
        m[r#"sluice_body_bytes_total{path="inline"}"#],
        5.0 * 5.0 + 5.0
    );
    // Every call is in the histogram; repeats came from the decision cache.
    let calls = m["sluice_policy_calls_total"];
    assert_eq!(m["sluice_policy_call_seconds_count"], calls);
    assert_eq!(m[r#"sluice_policy_call_seconds_bucket{le="+Inf"}"#], calls);
    assert!(m["sluice_decision_cache_hits_total"] >= 5.0);
    assert!(m["sluice_open_connections"] >= 0.0);
    assert_eq!(m[r#"sluice_policy_faults_total{kind="deadline"}"#], 0.0);
    assert!(m.contains_key(r#"sluice_reloads_total{result="ok"}"#));
}
