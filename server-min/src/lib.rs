//! `nexa-server`: the Nexa bridge.
//!
//! See ARCHITECTURE.md at the repository root for the map of modules and the enrollment flow.

pub mod admin;
pub mod auth;
pub mod ca;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connect;
pub mod csr;
pub mod datadir;
pub mod db;
pub mod decommission;
pub mod enroll;
pub mod hawkbit;
pub mod http;
pub mod init;
pub mod renew;
pub mod sdnotify;
pub mod serve;
pub mod tls;
pub mod wg;

/// An error and all its sources, `outer: inner: innermost`, for logs and messages.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut chain = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    chain
}
