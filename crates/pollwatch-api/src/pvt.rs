//! The quick count's estimate as the team reads it: from the store's counted protocols of the
//! sampled stations, each choice's share with its margins, turnout, and how far each stratum's
//! sample has come in (docs/pvt.md). The command line prints it; `/api/v1/pvt` serves it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use pollwatch_model::{Contest, Mission};
use pollwatch_pvt::{Counted, Ratio, Sample, ShareOf, Z95, Z99};
use pollwatch_store::{Store, StoreError};
use schemars::JsonSchema;
use serde::Serialize;

/// The share of each stratum's sampled stations that must be in before the API calls the
/// estimate publishable.
pub const THRESHOLD: f64 = 0.8;

/// The mission folder's sample, read against the roster, and a fingerprint of its text (so that a
/// sample drawn again is a new question for the answers kept).
pub(crate) async fn read_sample(api: &crate::Api) -> Result<(Sample, u64), crate::problem::Problem> {
    use std::hash::{Hash as _, Hasher as _};

    let Some(dir) = &api.mission_dir else { return Err(crate::problem::Problem::no_pvt_sample()) };
    let path = dir.join(pollwatch_pvt::SAMPLE_FILE);
    let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(path)).await;
    let text = match read.map_err(|e| crate::problem::Problem::invalid_pvt_sample(&e.to_string()))? {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(crate::problem::Problem::no_pvt_sample());
        }
        Err(e) => return Err(crate::problem::Problem::invalid_pvt_sample(&e.to_string())),
    };
    let sample = Sample::parse(&text, &api.mission)
        .map_err(|e| crate::problem::Problem::invalid_pvt_sample(&e.to_string()))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    Ok((sample, hasher.finish()))
}

/// The estimate for one contest.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PvtView {
    pub contest: String,
    /// What each share is a share of: `valid` (votes) or `ballots` (in the box).
    pub share_of: &'static str,
    /// The moment estimated for: protocols received after it are left out (RFC 3339; `null` for
    /// now).
    pub as_of: Option<String>,
    /// How the sample was drawn.
    pub strata_by: String,
    pub seed: u64,
    pub sampled: u64,
    /// Sampled stations whose counted protocol is in.
    pub reported: u64,
    pub choices: Vec<PvtChoiceView>,
    pub turnout: Option<PvtRatioView>,
    pub strata: Vec<PvtStratumView>,
    /// The share of each stratum's sampled stations that must be in before the estimate is
    /// published.
    pub threshold: f64,
    /// Whether every stratum is in at least as far as `threshold`.
    pub publishable: bool,
    /// Sampled stations left out because their teams' protocols disagree and no reviewer has
    /// settled which counts.
    pub disputed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PvtChoiceView {
    pub choice: String,
    pub name: String,
    #[serde(flatten)]
    pub ratio: PvtRatioView,
}

/// An estimated share with its standard error and margins (`null` until every stratum that
/// reported has two reports).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
pub struct PvtRatioView {
    pub estimate: f64,
    pub standard_error: Option<f64>,
    pub margin_95: Option<f64>,
    pub margin_99: Option<f64>,
}

impl From<Ratio> for PvtRatioView {
    fn from(ratio: Ratio) -> Self {
        Self {
            estimate: ratio.estimate,
            standard_error: ratio.standard_error,
            margin_95: ratio.margin(Z95),
            margin_99: ratio.margin(Z99),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PvtStratumView {
    pub stratum: String,
    /// The stratum's stations in the roster.
    pub stations: u64,
    pub sampled: u64,
    pub reported: u64,
}

/// The estimate for `contest` from `sample`: the counted protocol of each sampled station (as
/// the results count it: accepted, or as a reviewer settled it), received by `as_of` if given;
/// stations whose copies disagree with no settlement are left out until a reviewer decides.
pub async fn estimate(
    store: &Store,
    mission: &Mission,
    sample: &Sample,
    contest: &Contest,
    share_of: ShareOf,
    threshold: f64,
    as_of: Option<DateTime<Utc>>,
) -> Result<PvtView, StoreError> {
    let sampled: BTreeSet<&str> = sample.stations.iter().map(|s| s.station.as_str()).collect();
    let settled: BTreeSet<String> =
        store.settlements(&mission.id, &contest.id).await?.into_iter().map(|(station, ..)| station).collect();
    let disputed: BTreeSet<String> = store
        .disputed_stations(&mission.id, &contest.id)
        .await?
        .into_iter()
        .map(|(station, _)| station)
        .filter(|station| sampled.contains(station.as_str()) && !settled.contains(station))
        .collect();
    let results = store.station_results(&mission.id, &contest.id).await?;
    let mut counted: BTreeMap<&str, Counted> = BTreeMap::new();
    for result in &results {
        let Some(protocol) = &result.counted else { continue };
        let in_time = as_of.is_none_or(|t| protocol.received_at <= t);
        if sampled.contains(result.station.as_str()) && in_time && !disputed.contains(&result.station) {
            counted.insert(
                result.station.as_str(),
                Counted {
                    registered_voters: protocol.registered_voters.max(0) as u64,
                    ballots_in_box: protocol.ballots_in_box.max(0) as u64,
                    votes: protocol
                        .votes
                        .iter()
                        .map(|(code, n)| (code.clone(), (*n).max(0) as u64))
                        .collect(),
                },
            );
        }
    }
    let estimate = pollwatch_pvt::contest(mission, sample, contest, &counted, share_of);
    let choices = contest
        .choices
        .iter()
        .filter_map(|choice| {
            estimate.shares.get(&choice.code).map(|ratio| PvtChoiceView {
                choice: choice.code.clone(),
                name: choice.name.clone(),
                ratio: (*ratio).into(),
            })
        })
        .collect();
    Ok(PvtView {
        contest: contest.id.clone(),
        share_of: match share_of {
            ShareOf::Valid => "valid",
            ShareOf::Ballots => "ballots",
        },
        as_of: as_of.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        strata_by: sample.strata_by.to_string(),
        seed: sample.seed,
        sampled: sample.stations.len() as u64,
        reported: counted.len() as u64,
        choices,
        turnout: estimate.turnout.map(Into::into),
        publishable: estimate.complete(threshold),
        threshold,
        strata: estimate
            .strata
            .into_iter()
            .map(|s| PvtStratumView {
                stratum: s.stratum,
                stations: s.stations,
                sampled: s.sampled,
                reported: s.reported,
            })
            .collect(),
        disputed: disputed.into_iter().collect(),
    })
}
