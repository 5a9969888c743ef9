//! Many tenants: thousands of virtual hosts sharing a few components, each
//! served with its own root and settings; identical bytes compiled once; the
//! compiled cache on disk used on the next start, and a damaged or foreign
//! cache file compiled again, never loaded.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::harness::{client, eventually, sluice_bin, Options, Server};

/// The default policy with a custom section appended: other bytes (compiled
/// separately), the same behaviour.
fn variant(dir: &Path, tag: u8) -> PathBuf {
    let mut bytes = sluice::policy::DEFAULT_POLICY.to_vec();
    bytes.extend_from_slice(&[0, 4, 3, b't', b'a', tag]);
    let path = dir.join(format!("p{tag}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn site(dir: &Path, name: &str, body: &str) -> PathBuf {
    let root = dir.join(name);
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("index.html"), body).unwrap();
    root
}

const TENANTS: usize = 2000;

#[test]
fn thousands_of_vhosts_share_three_components_and_keep_their_own_settings() {
    let dir = tempfile::tempdir().unwrap();
    let policies = [
        variant(dir.path(), 0),
        variant(dir.path(), 1),
        variant(dir.path(), 2),
    ];
    let default_root = site(dir.path(), "default", "default\n");
    // Every seventh tenant has a `Cache-Control` of its own for HTML.
    let own = |j: usize| j.is_multiple_of(7).then(|| format!("max-age={j}"));
    let mut config = String::from("compile-cache = \"off\"\n");
    for j in 0..TENANTS {
        let root = site(dir.path(), &format!("t{j}"), &format!("tenant {j}\n"));
        let _ = writeln!(
            config,
            "[[vhost]]\nhost = \"t{j}.example\"\nroot = \"{}\"\npolicy-file = \"{}\"",
            root.display(),
            policies[j % 3].display()
        );
        if let Some(cc) = own(j) {
            let _ = writeln!(config, "[vhost.policy]\ncache-html = \"{cc}\"");
        }
    }
    let server = Server::start_with(
        &default_root,
        Options {
            config: Some(&config),
            ..Options::default()
        },
    );
    let stats = server.stats();
    // The built-in default and the three files: four compiles for 2001 sites.
    assert_eq!(stats["policy_compiles"], 4, "{stats:?}");
    let distinct = 1 + 3 + (0..TENANTS).filter(|j| own(*j).is_some()).count() as u64;
    assert_eq!(
        stats["compiled_shared"],
        distinct - 4,
        "each distinct (component, settings) loaded once"
    );
    assert_eq!(stats["policies_shared"], 1 + TENANTS as u64 - distinct);
    // One instance per distinct policy, for its canary call, and not kept.
    assert_eq!(stats["policy_instances"], distinct);

    let http = client();
    for j in 0..TENANTS {
        let res = http
            .get(server.url("/"))
            .header("host", format!("t{j}.example"))
            .send()
            .unwrap();
        assert_eq!(res.status(), 200, "t{j}");
        let cc = res.headers()["cache-control"].to_str().unwrap().to_owned();
        assert_eq!(cc, own(j).unwrap_or_else(|| "no-cache".into()), "t{j}");
        assert_eq!(res.text().unwrap(), format!("tenant {j}\n"), "t{j}");
    }
    let res = http.get(server.url("/")).send().unwrap();
    assert_eq!(res.text().unwrap(), "default\n");
    // Every site made an instance of its own (none is shared, whatever the
    // policy), and the idle ones are bounded host-wide by their memory
    // (`idle-memory`, 512 MiB; ~1.1 MiB each here): the least recently used
    // were dropped, and every request was still answered.
    let stats = server.stats();
    assert_eq!(
        stats["policy_instances"],
        distinct + TENANTS as u64 + 1,
        "{stats:?}"
    );
    assert!(stats["idle_instance_bytes"] <= 512 << 20, "{stats:?}");
    assert!(stats["instances_evicted"] > 0, "{stats:?}");
    assert_eq!(
        stats["idle_instances"] + stats["instances_evicted"] + stats["instances_reclaimed"],
        TENANTS as u64 + 1,
        "{stats:?}"
    );
    assert_eq!(stats["policy_traps"], 0, "{stats:?}");

    // A reload configures each distinct policy again, compiles nothing, and
    // the tenants keep their settings.
    let (status, body) = server.reload();
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.stat("policy_compiles"), 4);
    for j in [0, 1, 7, TENANTS - 1] {
        let res = http
            .get(server.url("/"))
            .header("host", format!("t{j}.example"))
            .send()
            .unwrap();
        let cc = res.headers()["cache-control"].to_str().unwrap().to_owned();
        assert_eq!(cc, own(j).unwrap_or_else(|| "no-cache".into()), "t{j}");
    }
    // Those requests left an idle instance in each of their four sites;
    // quiet for 10 s, they are given back.
    assert!(
        eventually(Duration::from_secs(40), || server
            .stat("instances_reclaimed")
            >= 4),
        "{:?}",
        server.stats()
    );
}

fn start(root: &Path, config: &str) -> Server {
    Server::start_with(
        root,
        Options {
            config: Some(config),
            ..Options::default()
        },
    )
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    files.sort();
    files
}

fn serves(server: &Server, host: &str, body: &str) {
    let res = client()
        .get(server.url("/"))
        .header("host", host)
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().unwrap(), body);
}

#[test]
fn the_compiled_cache_is_used_on_the_next_start_and_bad_files_are_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let policy = variant(dir.path(), 7);
    let default_root = site(dir.path(), "default", "default\n");
    let tenant = site(dir.path(), "tenant", "tenant\n");
    let config = format!(
        "compile-cache = \"{}\"\n[[vhost]]\nhost = \"tenant.example\"\nroot = \"{}\"\npolicy-file = \"{}\"\n",
        cache.display(),
        tenant.display(),
        policy.display()
    );

    // First start: both components (built-in and the file) compiled and kept.
    {
        let server = start(&default_root, &config);
        assert_eq!(server.stat("policy_compiles"), 2);
        assert_eq!(server.stat("compiled_cache_loads"), 0);
        serves(&server, "tenant.example", "tenant\n");
    }
    let files = cache_files(&cache);
    assert_eq!(files.len(), 2, "{files:?}");

    // Second start: loaded, not compiled.
    {
        let server = start(&default_root, &config);
        assert_eq!(server.stat("policy_compiles"), 0);
        assert_eq!(server.stat("compiled_cache_loads"), 2);
        assert_eq!(server.stat("compiled_cache_rejects"), 0);
        serves(&server, "tenant.example", "tenant\n");
        serves(&server, "other.example", "default\n");
    }

    // One file damaged in its compiled code, the other claiming another
    // engine configuration: both refused, compiled again, and served.
    let mut damaged = std::fs::read(&files[0]).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(&files[0], damaged).unwrap();
    let mut foreign = std::fs::read(&files[1]).unwrap();
    foreign[8] ^= 1; // the engine compatibility hash follows the 8-byte magic
    std::fs::write(&files[1], foreign).unwrap();
    {
        let server = start(&default_root, &config);
        assert_eq!(server.stat("compiled_cache_loads"), 0);
        assert_eq!(server.stat("compiled_cache_rejects"), 2);
        assert_eq!(server.stat("policy_compiles"), 2);
        serves(&server, "tenant.example", "tenant\n");
        serves(&server, "other.example", "default\n");
        let logs = server.logs();
        assert!(logs.contains("do not match their hash"), "{logs}");
        assert!(logs.contains("another engine configuration"), "{logs}");
    }

    // They were rewritten: the next start loads them again.
    {
        let server = start(&default_root, &config);
        assert_eq!(server.stat("compiled_cache_loads"), 2);
        assert_eq!(server.stat("policy_compiles"), 0);
        serves(&server, "tenant.example", "tenant\n");
    }
}

#[test]
fn a_cache_directory_others_can_write_is_refused_by_name() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!("compile-cache = \"{}\"\n", cache.display()),
    )
    .unwrap();
    let out = std::process::Command::new(sluice_bin())
        .arg("serve")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`compile-cache`"), "{stderr}");
    assert!(
        stderr.contains("not writable by group or others"),
        "{stderr}"
    );
}
