//! The WIT types the policy works on, re-exported from the generated
//! `bindings`, and the few helpers it adds to them (inherent impls: the types
//! are local to this crate). `ContentCoding`'s helpers live with the codings
//! table in `coding`.

pub use crate::bindings::sluice::policy::types::*;

use std::borrow::Cow;

use crate::fields::Field;

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl Request {
    /// Values of every field named `field` (case-insensitive), in order.
    pub fn header_values(&self, field: Field) -> impl Iterator<Item = &str> + '_ {
        let name = field.name();
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The value of a field that may appear once; `None` if absent. Repeated
    /// fields are joined with ", " as RFC 9110 §5.3 allows for list fields;
    /// a field sent once (the usual case) is borrowed, not copied.
    pub fn header(&self, field: Field) -> Option<Cow<'_, str>> {
        let mut values = self.header_values(field);
        let first = values.next()?;
        match values.next() {
            None => Some(Cow::Borrowed(first)),
            Some(second) => {
                let mut joined = [first, second].join(", ");
                for more in values {
                    joined.push_str(", ");
                    joined.push_str(more);
                }
                Some(Cow::Owned(joined))
            }
        }
    }
}

impl Decision {
    /// The value of the response field `name`, if the decision sets it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}
