//! From a request path to open files beneath the served root.
//!
//! `normalize` makes the path meaningful; `open` asks the kernel to resolve it
//! strictly beneath the root (`openat2` with `RESOLVE_BENEATH`), so neither
//! `..` nor a symbolic link can leave it, whatever the normalizer missed.
//! Everything is opened before the policy runs and the metadata it sees comes
//! from `fstat` on those very descriptors, so the bytes served are the bytes
//! the policy decided about, even if the path is replaced meanwhile. `cache`
//! keeps recent lookups' descriptors open (nginx's `open_file_cache`).

mod cache;
mod listing;
mod normalize;
mod open;

pub use cache::{open_files, sweep, FileCache, OpenFiles};
pub use normalize::{already_normal, normalize, NormalPath};
pub use open::{FileMeta, Found, FoundFile, NoDescriptors, OpenedFile, Root, RootError};
