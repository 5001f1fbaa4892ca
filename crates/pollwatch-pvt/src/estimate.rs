//! The estimate: the combined ratio estimator over a stratified sample of stations, its standard
//! error by linearisation with each stratum's finite-population correction, and its margins of
//! error (Cochran, *Sampling Techniques*, 3rd ed., 1977, §6.11: eq. 6.47 and the variance of
//! eq. 6.52 with the sample's own ratio). docs/pvt.md writes the formulas out.
//!
//! Within a stratum `h` of `N_h` stations, `k_h` of them reported, with the numerator `a_hi`
//! (votes for a choice, or ballots cast) and the denominator `m_hi` (the valid votes or ballots,
//! or registered voters) of each:
//!
//! ```text
//! R̂     = Σ_h N_h ā_h / Σ_h N_h m̄_h            (ā_h, m̄_h: the stratum's means)
//! d_hi   = a_hi − R̂ m_hi
//! v(R̂)  = Σ_h N_h² (1 − k_h/N_h) s²_dh / k_h  /  (Σ_h N_h m̄_h)²
//! ```
//!
//! with `s²_dh` the sample variance of the `d_hi` (divisor `k_h − 1`). This is each stratum's
//! ratio `Σa/Σm` combined with the stratum's weight `N_h m̄_h / Σ_g N_g m̄_g`, its estimated share
//! of the denominator. Strata without a report are left out of both sums (the estimate then
//! speaks for the others only: [`Estimate::complete`] says so); a stratum with one report has no
//! variance, and the estimate then has no standard error.

use std::collections::BTreeMap;

use pollwatch_model::{Contest, Mission, Protocol};

use crate::sample::{Sample, strata};

/// z for a two-sided 90 % interval.
pub const Z90: f64 = 1.644_853_626_951_472;
/// z for a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;
/// z for a two-sided 99 % interval.
pub const Z99: f64 = 2.575_829_303_548_901;

/// The confidence levels [`z_for`] knows.
pub const CONFIDENCE_LEVELS: [&str; 3] = ["0.90", "0.95", "0.99"];

/// z for a two-sided interval at `confidence` (0.90, 0.95 or 0.99).
pub fn z_for(confidence: f64) -> Option<f64> {
    [(0.90, Z90), (0.95, Z95), (0.99, Z99)]
        .into_iter()
        .find(|(c, _)| (c - confidence).abs() < 1e-9)
        .map(|(_, z)| z)
}

/// One stratum's part of an estimate: how many stations it has, and the `(numerator,
/// denominator)` of each that reported.
#[derive(Debug, Clone, PartialEq)]
pub struct StratumData {
    pub stations: u64,
    pub reported: Vec<(f64, f64)>,
}

/// A ratio estimated from a stratified sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    pub estimate: f64,
    /// `None` when a stratum that reported has a single report.
    pub standard_error: Option<f64>,
}

impl Ratio {
    /// The margin of error at `z` (e.g. [`Z95`]): z × the standard error.
    pub fn margin(&self, z: f64) -> Option<f64> {
        self.standard_error.map(|se| z * se)
    }

    /// Whether `value` lies within the interval at `z`.
    pub fn covers(&self, value: f64, z: f64) -> Option<bool> {
        self.margin(z).map(|m| (value - self.estimate).abs() <= m)
    }
}

/// The combined ratio estimate over `strata` (see the module's formulas); `None` if no stratum
/// reported or the reported denominators are all zero.
pub fn ratio<'a>(strata: impl IntoIterator<Item = &'a StratumData>) -> Option<Ratio> {
    // Per reporting stratum: N_h, k_h, ā_h, m̄_h and its reports.
    struct Part<'a> {
        n: f64,
        k: f64,
        mean_a: f64,
        mean_m: f64,
        reported: &'a [(f64, f64)],
    }
    let parts: Vec<Part<'_>> = strata
        .into_iter()
        .filter(|s| !s.reported.is_empty())
        .map(|s| {
            let k = s.reported.len() as f64;
            let mean_a = s.reported.iter().map(|r| r.0).sum::<f64>() / k;
            let mean_m = s.reported.iter().map(|r| r.1).sum::<f64>() / k;
            Part { n: s.stations as f64, k, mean_a, mean_m, reported: &s.reported }
        })
        .collect();
    let total_a: f64 = parts.iter().map(|p| p.n * p.mean_a).sum();
    let total_m: f64 = parts.iter().map(|p| p.n * p.mean_m).sum();
    if parts.is_empty() || total_m <= 0.0 {
        return None;
    }
    let estimate = total_a / total_m;
    let mut sum = 0.0;
    for Part { n, k, reported, .. } in &parts {
        if *k < 2.0 {
            return Some(Ratio { estimate, standard_error: None });
        }
        let d: Vec<f64> = reported.iter().map(|(a, m)| a - estimate * m).collect();
        let mean = d.iter().sum::<f64>() / k;
        let s2 = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0);
        // k ≤ N unless the sample holds stations the frame does not: then no correction.
        let fpc = (1.0 - k / n).max(0.0);
        sum += n * n * fpc * s2 / k;
    }
    Some(Ratio { estimate, standard_error: Some((sum / (total_m * total_m)).sqrt()) })
}

/// How far one stratum's sample has come in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completeness {
    pub stratum: String,
    /// The stratum's stations in the roster.
    pub stations: u64,
    pub sampled: u64,
    /// Sampled stations with an accepted counting protocol.
    pub reported: u64,
}

impl Completeness {
    /// Reported over sampled (1 for a stratum with nothing sampled).
    pub fn share(&self) -> f64 {
        if self.sampled == 0 { 1.0 } else { self.reported as f64 / self.sampled as f64 }
    }
}

/// An estimate for one contest: each choice's share, turnout, and the sample's completeness.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub shares: BTreeMap<String, Ratio>,
    pub turnout: Option<Ratio>,
    pub strata: Vec<Completeness>,
}

impl Estimate {
    /// Whether every stratum has at least `threshold` (0 to 1) of its sampled stations in.
    pub fn complete(&self, threshold: f64) -> bool {
        self.strata.iter().all(|s| s.share() >= threshold)
    }
}

/// What a choice's share is a share of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShareOf {
    /// The valid votes (the sum of the protocol's votes).
    #[default]
    Valid,
    /// The ballots in the box, valid and invalid: "of those who took part", as some election
    /// commissions give their shares (Kyrgyzstan's among them).
    Ballots,
}

impl ShareOf {
    pub const ALL: [Self; 2] = [Self::Valid, Self::Ballots];

    /// `valid` or `ballots`, as the API's `share_of` and the command line's `--share-of` name it.
    pub fn code(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Ballots => "ballots",
        }
    }

    /// The share named `code`, if it names one.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// What the estimate reads of a station's counted protocol for a contest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counted {
    pub registered_voters: u64,
    pub ballots_in_box: u64,
    /// Valid votes per choice code.
    pub votes: BTreeMap<String, u64>,
}

impl Counted {
    fn valid(&self) -> u64 {
        self.votes.values().sum()
    }
}

impl From<&Protocol> for Counted {
    fn from(protocol: &Protocol) -> Self {
        Self {
            registered_voters: u64::from(protocol.registered_voters),
            ballots_in_box: u64::from(protocol.ballots_in_box),
            votes: protocol.votes.iter().map(|(code, &n)| (code.clone(), u64::from(n))).collect(),
        }
    }
}

impl ShareOf {
    fn of(self, counted: &Counted) -> f64 {
        match self {
            Self::Valid => counted.valid() as f64,
            Self::Ballots => counted.ballots_in_box as f64,
        }
    }
}

/// The estimate for `contest` from the `counted` protocols of sampled stations (by station code;
/// those of other stations are ignored): each choice's share of what `share_of` says, turnout
/// (ballots in the box over the protocol's registered voters), and each stratum's completeness.
pub fn contest(
    mission: &Mission,
    sample: &Sample,
    contest: &Contest,
    counted: &BTreeMap<&str, Counted>,
    share_of: ShareOf,
) -> Estimate {
    let frame = strata(mission, sample.strata_by);
    let mut sampled: BTreeMap<&str, Vec<&Counted>> = BTreeMap::new();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for station in &sample.stations {
        *counts.entry(station.stratum.as_str()).or_default() += 1;
        let reported = sampled.entry(station.stratum.as_str()).or_default();
        if let Some(station) = counted.get(station.station.as_str()) {
            reported.push(station);
        }
    }
    let data = |pair: &dyn Fn(&Counted) -> (f64, f64)| -> Vec<StratumData> {
        frame
            .iter()
            .map(|(name, stratum)| StratumData {
                stations: stratum.stations.len() as u64,
                reported: sampled.get(name.as_str()).into_iter().flatten().map(|p| pair(p)).collect(),
            })
            .collect()
    };
    let shares = contest
        .choices
        .iter()
        .filter_map(|choice| {
            let votes =
                |c: &Counted| (c.votes.get(&choice.code).copied().unwrap_or(0) as f64, share_of.of(c));
            ratio(&data(&votes)).map(|r| (choice.code.clone(), r))
        })
        .collect();
    let turnout = ratio(&data(&|c: &Counted| (c.ballots_in_box as f64, c.registered_voters as f64)));
    let strata = frame
        .iter()
        .map(|(name, stratum)| Completeness {
            stratum: name.clone(),
            stations: stratum.stations.len() as u64,
            sampled: counts.get(name.as_str()).copied().unwrap_or(0),
            reported: sampled.get(name.as_str()).map_or(0, |r| r.len() as u64),
        })
        .collect();
    Estimate { shares, turnout, strata }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_named_by_its_code_and_nothing_else() {
        for share_of in ShareOf::ALL {
            assert_eq!(ShareOf::from_code(share_of.code()), Some(share_of));
        }
        assert_eq!((ShareOf::Valid.code(), ShareOf::Ballots.code()), ("valid", "ballots"));
        assert_eq!(ShareOf::from_code("Ballots"), None);
        assert_eq!(ShareOf::from_code(""), None);
    }

    /// The example of docs/pvt.md, by hand.
    ///
    /// Stratum A: N = 10 stations, 3 reported, (a, m) = (30, 50), (20, 40), (40, 60).
    /// Stratum B: N = 5 stations, 2 reported, (a, m) = (10, 40), (15, 30).
    ///
    /// ā_A = 90/3 = 30, m̄_A = 150/3 = 50; ā_B = 25/2 = 12.5, m̄_B = 70/2 = 35.
    /// Ŷ = 10·30 + 5·12.5 = 362.5; X̂ = 10·50 + 5·35 = 675; R̂ = 362.5/675 = 29/54 = 0.537037….
    ///
    /// d_A = 30 − 50·29/54, 20 − 40·29/54, 40 − 60·29/54 = 170/54, −80/54, 420/54; their mean
    /// 170/54; deviations 0, −250/54, 250/54; s²_A = 2·250²/54² / 2 = 62,500/2,916.
    /// A's term: 10² · (1 − 3/10) / 3 · 62,500/2,916 = 4,375,000/8,748 = 500.1143….
    ///
    /// d_B = 10 − 40·29/54, 15 − 30·29/54 = −620/54, −60/54; their mean −340/54; deviations
    /// −280/54, 280/54; s²_B = 2·280²/54² / 1 = 156,800/2,916.
    /// B's term: 5² · (1 − 2/5) / 2 · 156,800/2,916 = 1,176,000/2,916 = 403.2922….
    ///
    /// v = (500.1143… + 403.2922…) / 675² = 903.4065… / 455,625 = 0.00198279…; se = 0.0445285….
    /// 95 % margin: 1.95996 · 0.0445285 = 0.087274…; 99 %: 2.57583 · 0.0445285 = 0.114698….
    #[test]
    fn the_worked_example() {
        let a = StratumData { stations: 10, reported: vec![(30.0, 50.0), (20.0, 40.0), (40.0, 60.0)] };
        let b = StratumData { stations: 5, reported: vec![(10.0, 40.0), (15.0, 30.0)] };
        let r = ratio([&a, &b]).expect("an estimate");
        assert!((r.estimate - 29.0 / 54.0).abs() < 1e-12, "{r:?}");
        let variance: f64 = (4_375_000.0 / 8_748.0 + 1_176_000.0 / 2_916.0) / 455_625.0;
        let se = r.standard_error.expect("a standard error");
        assert!((se - variance.sqrt()).abs() < 1e-12, "{se} against {}", variance.sqrt());
        assert!((se - 0.044_528_475_941).abs() < 1e-11, "{se}");
        assert!((r.margin(Z95).expect("a margin") - 0.087_274_6).abs() < 1e-6);
        assert!((r.margin(Z99).expect("a margin") - 0.114_697_9).abs() < 1e-6);
        assert_eq!(r.covers(0.6, Z95), Some(true));
        assert_eq!(r.covers(0.7, Z99), Some(false));
    }

    #[test]
    fn a_stratum_in_full_has_no_sampling_error_and_one_report_gives_no_margin() {
        // Every station of the only stratum reported: the estimate is the population's ratio.
        let all = StratumData { stations: 2, reported: vec![(1.0, 4.0), (3.0, 4.0)] };
        assert_eq!(ratio([&all]), Some(Ratio { estimate: 0.5, standard_error: Some(0.0) }));
        let one = StratumData { stations: 9, reported: vec![(1.0, 4.0)] };
        assert_eq!(ratio([&all, &one]).and_then(|r| r.standard_error), None);
        let none = StratumData { stations: 9, reported: vec![] };
        assert_eq!(ratio([&none]), None);
        assert_eq!(ratio([&all, &none]), ratio([&all]), "a stratum without reports is left out");
    }
}
