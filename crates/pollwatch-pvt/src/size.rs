//! How large a sample a target margin of error needs: NDI's formula for the number of voters
//! (*The Quick Count and Election Observation*, 2002, ch. 5), turned into stations.
//!
//! ```text
//! n = p(1 − p) / (E²/z² + p(1 − p)/N)        voters, for a share p, margin E, population N
//! stations = ⌈n / (t · V̄)⌉                     t: expected turnout, V̄: mean registered voters
//! ```
//!
//! `N` is the roster's registered voters, `p = 0.5` the most demanding share. Fewer voters turn
//! out than are registered, so the votes a station gives are its registered voters times the
//! turnout. The formula treats voters as if drawn one by one; stations are clusters of voters,
//! so the real margin differs (the design effect: wider where stations differ much, narrower
//! where they differ little and the share is far from 50 %). The estimate's own margin is the
//! one to publish; docs/pvt.md compares the two on the simulated count.

/// Why no size can be advised.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SizeError {
    #[error("the margin must be above 0 and below 0.5, not {0}")]
    Margin(f64),
    #[error("the expected turnout must be above 0 and at most 1, not {0}")]
    Turnout(f64),
    #[error("the roster has no registered voters")]
    EmptyRoster,
}

/// A suggested sample size, with what it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeAdvice {
    /// Votes the sample must hold (`n`).
    pub votes: f64,
    /// The roster's mean registered voters per station (`V̄`).
    pub mean_station: f64,
    /// Stations, at most the roster's.
    pub stations: u32,
}

/// The sample size for a margin `margin` at `z` (e.g. [`crate::Z95`]) on a roster of
/// `registered` voters in `stations` stations, with turnout `turnout`, for a share `p`.
pub fn advise(
    registered: u64,
    stations: u32,
    margin: f64,
    z: f64,
    turnout: f64,
    p: f64,
) -> Result<SizeAdvice, SizeError> {
    if !(margin > 0.0 && margin < 0.5) {
        return Err(SizeError::Margin(margin));
    }
    if !(turnout > 0.0 && turnout <= 1.0) {
        return Err(SizeError::Turnout(turnout));
    }
    if registered == 0 || stations == 0 {
        return Err(SizeError::EmptyRoster);
    }
    let q = p * (1.0 - p);
    let votes = q / (margin * margin / (z * z) + q / registered as f64);
    let mean_station = registered as f64 / f64::from(stations);
    let needed = (votes / (turnout * mean_station)).ceil();
    Ok(SizeAdvice { votes, mean_station, stations: needed.min(f64::from(stations)) as u32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handbooks_example() {
        // Peru 2001: N = 14,570,774, p = 0.5, E = 0.32 %. The handbook's 163,185 voters come out
        // with z rounded to 2.6: 0.25 / (0.0032²/2.6² + 0.25/14,570,774)
        // = 0.25 / (1.514793e-6 + 1.715760e-8) = 0.25 / 1.531951e-6 = 163,191.
        let advice = advise(14_570_774, 91_067, 0.0032, 2.6, 1.0, 0.5).expect("advice");
        assert!((advice.votes - 163_191.0).abs() < 1.0, "{advice:?}");
        assert!((advice.votes - 163_185.0).abs() < 10.0, "{advice:?}");
        // In 91,067 stations, 160.0 voters each: ⌈163,191 / 160.0⌉ = 1,020 stations, the
        // handbook's "1,020 stations of 160 voters" when everyone votes.
        assert_eq!(advice.stations, 1_020);
        // At 70 % turnout a station gives 0.7 · 160.0 = 112.0 votes: ⌈163,191 / 112.0⌉ = 1,458.
        let at_70 = advise(14_570_774, 91_067, 0.0032, 2.6, 0.7, 0.5).expect("advice");
        assert_eq!(at_70.stations, 1_458);
    }

    #[test]
    fn nonsense_is_refused_and_the_roster_caps_the_size() {
        assert_eq!(advise(1_000, 10, 0.0, 1.96, 0.5, 0.5), Err(SizeError::Margin(0.0)));
        assert_eq!(advise(1_000, 10, 0.01, 1.96, 1.5, 0.5), Err(SizeError::Turnout(1.5)));
        assert_eq!(advise(0, 10, 0.01, 1.96, 0.5, 0.5), Err(SizeError::EmptyRoster));
        assert_eq!(advise(1_000, 10, 0.001, 1.96, 0.5, 0.5).expect("advice").stations, 10);
    }
}
