//! The `Date` response field (RFC 9110 §6.6.1), formatted at most once a
//! second per thread. hyper adds it to HTTP/1 responses; the HTTP/2 server
//! ([`crate::http2`]) adds it with this.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use time::macros::format_description;
use time::OffsetDateTime;

thread_local! {
    static CACHED: RefCell<Option<(u64, HeaderValue)>> = const { RefCell::new(None) };
}

/// The current time as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn now() -> HeaderValue {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|cached| match cached {
        Some((at, value)) if *at == secs => value.clone(),
        _ => {
            let value = format(secs);
            *cached = Some((secs, value.clone()));
            value
        }
    })
}

fn format(secs: u64) -> HeaderValue {
    let at = i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let text = at
        .format(format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .expect("every date formats");
    HeaderValue::from_str(&text).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imf_fixdate() {
        assert_eq!(format(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(format(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(now().len(), 29);
    }
}
