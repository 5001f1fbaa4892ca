//! pollwatch's domain: what a mission is, what an observer report is, and which reports are
//! accepted.
//!
//! This crate does no I/O. Missions parse from the text of their files (`Mission::parse`,
//! feature `mission-files`), reports from payload bytes ([`decode`], [`check`]); the caller
//! reads files and brokers.
//! [`judge`] decides what becomes of a message off the wire, from its body and properties (an
//! [`Envelope`]): an [`Accepted`] report or a [`Rejection`].
//! [`json_text`] is the JSON text of a payload as the worker stores it (without a leading
//! byte-order mark); a rejection or flag is short whatever the input ([`MAX_DETAIL_BYTES`],
//! [`echo`]). [`wire`] is the contract on the broker: routing keys, the content type and the
//! headers pollwatch writes.

mod codes;
mod decode;
mod detail;
mod envelope;
mod json;
mod mission;
mod report;
// Also in this crate's own tests, which judge the sample mission's example reports.
#[cfg(any(test, feature = "sample"))]
pub mod sample;
mod schema;
mod tally;
#[cfg(test)]
mod test_support;
mod validate;
pub mod wire;

pub use codes::{Flag, FlagCode, RejectCode, Rejection, codes_markdown};
pub use decode::decode;
pub use detail::{MAX_DETAIL_BYTES, MAX_ECHO_CHARS, MAX_PATH_BYTES, bounded, echo};
pub use envelope::{Accepted, Envelope, Rules, judge};
pub use json::json_text;
pub use mission::*;
pub use report::*;
pub use schema::report_schema;
pub use tally::{ContestResults, Precedence, station_result};
pub use validate::{CLOCK_TOLERANCE, Checked, Context, check, validate};
