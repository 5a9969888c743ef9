//! The application: every site (virtual host) with its root and policy,
//! and what they share host-wide.

mod site;

pub use site::{request_host, App, Loaded, Site, SiteSpec, Stores};
