//! Who may enroll and who may administer: site enrollment keys, field-tech users, their
//! tokens, and the enrollment rate limiter.
//!
//! Two kinds of secret, two kinds of hash (decision recorded in ARCHITECTURE.md):
//! - machine-made secrets (enrollment keys `cek_…`, access and refresh tokens) carry 256 bits
//!   from the OS CSPRNG, so a fast keyed hash (HMAC-SHA-256) compared in constant time is
//!   the right tool; a slow hash would only cost every enrollment CPU time;
//! - passwords people choose are guessable, so they get Argon2id.

pub mod limiter;
pub mod password;
pub mod principal;
pub mod secret;
pub mod site_cache;
pub mod site_key;
pub mod tokens;

pub use principal::{Principal, Role};
pub use secret::{Pepper, RandomError};
pub use site_key::{KeyHasher, SiteKey};
