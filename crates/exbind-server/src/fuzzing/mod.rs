//! The fuzz targets' checks (`fuzz/`, `cargo +nightly fuzz`), one function per target, each
//! taking the fuzzer's bytes and panicking on anything the server must never do. The same
//! functions replay the committed corpus on the stable toolchain (`tests/fuzz_corpus.rs`).
//!
//! Inputs are read with `arbitrary` into structured requests (seeded tenants, users, apps,
//! tokens and binding ids, the real routes), so the fuzzer gets past the 404s and the token
//! checks into the handlers. Targets that need the application share one, built once per
//! process the way `exbind serve` builds it, over a real store in a temporary data dir.

mod harness;
mod http;
mod pools;
mod pure;
mod valid;

pub use http::{http, Answer};
pub use pure::{binding_id, query, seed, token};
pub use valid::report as http_report;
