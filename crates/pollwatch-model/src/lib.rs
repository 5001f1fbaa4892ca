//! pollwatch's domain: what a mission is, what an observer report is, and which reports are
//! accepted.
//!
//! This crate does no I/O. Missions parse from the text of their files ([`Mission::parse`]),
//! reports from payload bytes ([`decode`], [`check`]); the caller reads files and brokers.

mod codes;
mod decode;
mod mission;
mod report;
#[cfg(feature = "sample")]
pub mod sample;
mod schema;
#[cfg(test)]
mod test_support;
mod validate;

pub use codes::{Flag, FlagCode, RejectCode, Rejection, codes_markdown};
pub use decode::decode;
pub use mission::*;
pub use report::*;
pub use schema::report_schema;
pub use validate::{CLOCK_TOLERANCE, Checked, Context, check, validate};
