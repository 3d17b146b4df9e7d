//! asset-worker: reads customers' assets through delegated access and extracts metadata.
//!
//! # Layout
//!
//! - [`job`]: the wire types (data types, statuses, error kinds) shared by every part.
//! - [`extract`]: sniff a file's format from its bytes and read its metadata per data type;
//!   [`extract::sandbox`] runs that in a child process with time and memory limits.
//! - [`cli`]: the `extract` subcommand: files in, one JSON line per file out.

pub mod cli;
pub mod extract;
pub mod job;
