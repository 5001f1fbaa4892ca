//! The quick count (parallel vote tabulation, PVT): observers at a random sample of stations
//! send the counting protocol, and the result is estimated from them with a margin of error, to
//! be set against the official result when it is announced.
//!
//! - [`sample`]: the roster's strata, the sample's size shared among them in proportion to their
//!   registered voters, and the stations drawn from a seed ([`rng`]), reproducibly;
//! - [`size`]: how large a sample a target margin needs (NDI's formula);
//! - [`estimate`]: the stratified (combined) ratio estimate of each choice's share and of
//!   turnout, with its standard error and margins;
//! - [`official`]: the announced result, and each figure of it set against the estimate.
//!
//! Pure computation on the model's types, no I/O: the store, the API and the command line call
//! it. docs/pvt.md states every formula with its source.

pub mod estimate;
pub mod official;
pub mod rng;
pub mod sample;
pub mod size;

pub use estimate::{
    CONFIDENCE_LEVELS, Completeness, Counted, Estimate, Ratio, ShareOf, StratumData, Z90, Z95, Z99, contest,
    ratio, z_for,
};
pub use official::{Comparison, OFFICIAL_FILE, Official, OfficialContest, OfficialError, compare};
pub use sample::{
    MIN_PER_STRATUM, SAMPLE_FILE, Sample, SampleError, SampleFileError, Sampled, StrataBy, Stratum, allocate,
    draw, strata,
};
pub use size::{SizeAdvice, SizeError, advise};
