//! The test-facing vocabulary of the fake's DDI side: what a test deploys (distribution
//! sets, chunks, artifacts, assignments), how it configures authentication and failures,
//! and what it reads back (actions, status history, device feedback, the request log).
//!
//! The vocabulary is kept in three files: `deployment.rs` (what a test deploys and how it
//! assigns it), `records.rs` (what it reads back: action states, status entries, feedback,
//! action snapshots and the request log) and `server.rs` (how the server is set up to
//! authenticate, link and misbehave). Everything is re-exported from here.

mod deployment;
mod records;
mod server;

pub use deployment::{
    ActionType, Artifact, Assignment, Chunk, Content, DistributionSet, Hashes, MaintenanceWindow,
};
pub use records::{
    ActionState, ActionView, AuthKind, Feedback, FeedbackChannel, RequestRecord, Route,
    StatusEntry, StatusKind,
};
pub use server::{
    DdiAuth, DownMode, DownloadFault, DownloadFaultKind, DownloadLinks, Fault, HeaderAuth,
};
