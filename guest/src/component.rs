//! The component's exports: `configure` parses the settings into a `Config`
//! and keeps it for the instance's `decide` calls, which run `policy::decide`
//! on the generated WIT types as they come. The `Guest` impl builds (and is
//! tested) natively; only `export!`, which emits the component's ABI, is
//! wasm-only.

use std::cell::RefCell;

use crate::bindings::Guest;
use crate::config::Config;
use crate::types::{Capabilities, Entry, HostLimits, Outcome, Request, Setting};

thread_local! {
    /// Set by `configure`; a component invoked directly (e.g. `wasmtime run
    /// --invoke`) runs with the defaults under the default host limits, as the
    /// WIT contract requires. The only state the policy keeps, and it never
    /// changes between `decide` calls.
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

/// The default policy.
pub struct Policy;

impl Guest for Policy {
    fn configure(settings: Vec<Setting>, limits: HostLimits) -> Result<Capabilities, String> {
        let config = Config::from_settings(&settings, limits)?;
        let caps = config.capabilities();
        CONFIG.with(|c| *c.borrow_mut() = Some(config));
        Ok(caps)
    }

    fn decide(req: Request, found: Entry) -> Outcome {
        CONFIG.with(|c| {
            let mut slot = c.borrow_mut();
            let config = slot.get_or_insert_with(Config::default);
            crate::policy::decide(config, &req, &found)
        })
    }
}

#[cfg(target_arch = "wasm32")]
crate::bindings::export!(Policy with_types_in crate::bindings);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_HOST_LIMITS;
    use crate::types::{HttpVersion, SettingValue};

    fn get(path: &str) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            raw_query: None,
            headers: vec![],
            tls: false,
            version: HttpVersion::Http11,
            hop: None,
        }
    }

    fn decision(outcome: Outcome) -> crate::types::Decision {
        match outcome {
            Outcome::Respond(d) => d,
            other => panic!("{other:?}"),
        }
    }

    // One test, because the configuration is per thread (per instance in
    // wasm) and the test harness reuses threads.
    #[test]
    fn decide_runs_with_the_defaults_until_configured() {
        CONFIG.with(|c| *c.borrow_mut() = None);
        let d = decision(Policy::decide(get("/nope"), Entry::Missing));
        assert_eq!(d.status, 404);
        assert!(matches!(d.body, crate::types::Body::Inline(_)));
        assert_eq!(
            CONFIG.with(|c| c.borrow().as_ref().map(|c| c.limits)),
            Some(DEFAULT_HOST_LIMITS)
        );

        let refused = Policy::configure(
            vec![Setting {
                name: "chunk-sise".into(),
                value: SettingValue::Integer(1),
            }],
            DEFAULT_HOST_LIMITS,
        );
        assert!(refused.unwrap_err().contains("chunk-sise"));

        let tiny = HostLimits {
            max_inline: 4,
            ..DEFAULT_HOST_LIMITS
        };
        let caps = Policy::configure(
            vec![Setting {
                name: "zero-copy".into(),
                value: SettingValue::Boolean(false),
            }],
            tiny,
        )
        .unwrap();
        assert!(!caps.zero_copy);
        // The 404 text no longer fits: status and headers, empty body.
        let d = decision(Policy::decide(get("/nope"), Entry::Missing));
        assert_eq!((d.status, d.body), (404, crate::types::Body::Empty));
        CONFIG.with(|c| *c.borrow_mut() = None);
    }
}
