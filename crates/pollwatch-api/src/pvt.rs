//! The quick count's estimate as the team reads it: from the store's counted protocols of the
//! sampled stations, each choice's share with its margins, turnout, and how far each stratum's
//! sample has come in (docs/pvt.md). The command line prints it; `/api/v1/pvt` serves it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use pollwatch_model::{Contest, Mission};
use pollwatch_pvt::{Counted, Official, OfficialContest, Ratio, Sample, ShareOf, Z95, Z99};
use pollwatch_store::{Store, StoreError};
use schemars::JsonSchema;
use serde::Serialize;

use crate::problem::Problem;

/// The share of each stratum's sampled stations that must be in before the API calls the
/// estimate publishable, unless told otherwise ([`crate::Api::with_pvt_threshold`]).
pub const THRESHOLD: f64 = 0.8;

/// A quick-count file of the mission folder, if it is there.
async fn folder_file(api: &crate::Api, name: &'static str) -> Result<Option<String>, Problem> {
    let Some(dir) = &api.mission_dir else { return Ok(None) };
    let path = dir.join(name);
    let invalid = |reason: String| Problem::invalid_pvt_file(name, &reason);
    match tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
        .await
        .map_err(|e| invalid(e.to_string()))?
    {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// A fingerprint of a file's text, so that a file written again is a new question for the
/// answers kept.
fn fingerprint(text: &str) -> u64 {
    use std::hash::{Hash as _, Hasher as _};

    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// The mission folder's sample, read against the roster, and its fingerprint.
pub(crate) async fn read_sample(api: &crate::Api) -> Result<(Sample, u64), Problem> {
    sample_if_any(api).await?.ok_or_else(Problem::no_pvt_sample)
}

/// The mission folder's sample and its fingerprint, if it has one.
pub async fn sample_if_any(api: &crate::Api) -> Result<Option<(Sample, u64)>, Problem> {
    let Some(text) = folder_file(api, pollwatch_pvt::SAMPLE_FILE).await? else { return Ok(None) };
    let sample = Sample::parse(&text, &api.mission)
        .map_err(|e| Problem::invalid_pvt_file(pollwatch_pvt::SAMPLE_FILE, &e.to_string()))?;
    Ok(Some((sample, fingerprint(&text))))
}

/// The mission folder's official result, if it has one, and its fingerprint (0 for none).
pub async fn read_official(api: &crate::Api) -> Result<(Option<Official>, u64), Problem> {
    let Some(text) = folder_file(api, pollwatch_pvt::OFFICIAL_FILE).await? else { return Ok((None, 0)) };
    let official = Official::parse(&text, false, &api.mission)
        .map_err(|e| Problem::invalid_pvt_file(pollwatch_pvt::OFFICIAL_FILE, &e.to_string()))?;
    Ok((Some(official), fingerprint(&text)))
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
    /// Whether an official result is stored for the contest (`pollwatch pvt official`): each
    /// choice's and turnout's `official` then sets it against the estimate.
    pub official: bool,
    /// Sampled stations left out because their teams' protocols disagree and no reviewer has
    /// settled which counts.
    pub disputed: Vec<String>,
    /// How the estimate came in: at most 20 points, oldest first, each the estimate from the
    /// protocols received by then (their receive times), the last being the one above.
    pub history: Vec<PvtPointView>,
}

/// The estimate at one moment of the night.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PvtPointView {
    /// When the last protocol it counts arrived, rounded up to the millisecond (RFC 3339): the
    /// estimate replayed as of this time counts this point's protocols, and any that arrived
    /// in the same millisecond.
    pub at: String,
    pub reported: u64,
    /// Each choice's estimate, by choice code.
    pub choices: BTreeMap<String, PvtRatioView>,
    pub turnout: Option<PvtRatioView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PvtChoiceView {
    pub choice: String,
    pub name: String,
    #[serde(flatten)]
    pub ratio: PvtRatioView,
}

/// An estimated share with its standard error and margins (`null` until every stratum that
/// reported has two reports), and the official figure beside it once one is stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
pub struct PvtRatioView {
    pub estimate: f64,
    pub standard_error: Option<f64>,
    pub margin_95: Option<f64>,
    pub margin_99: Option<f64>,
    pub official: Option<PvtOfficialView>,
}

/// An official figure against the estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
pub struct PvtOfficialView {
    /// The official share (of the same thing as the estimate).
    pub share: f64,
    /// Official minus estimate.
    pub difference: f64,
    /// `consistent` when the official share lies within the estimate's 99 % interval, `outside
    /// the margin` when not; `null` while the estimate has no margin.
    pub verdict: Option<&'static str>,
}

impl PvtRatioView {
    fn of(ratio: Ratio, official: Option<f64>) -> Self {
        Self {
            estimate: ratio.estimate,
            standard_error: ratio.standard_error,
            margin_95: ratio.margin(Z95),
            margin_99: ratio.margin(Z99),
            official: official.map(|share| {
                let comparison = pollwatch_pvt::compare(&ratio, share);
                PvtOfficialView {
                    share,
                    difference: comparison.difference,
                    verdict: comparison.consistent.map(|c| if c { CONSISTENT } else { OUTSIDE }),
                }
            }),
        }
    }
}

/// The verdicts on an official figure.
pub const CONSISTENT: &str = "consistent";
pub const OUTSIDE: &str = "outside the margin";

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PvtStratumView {
    pub stratum: String,
    /// The stratum's stations in the roster.
    pub stations: u64,
    pub sampled: u64,
    pub reported: u64,
}

/// What an estimate is asked for, beyond the contest.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub share_of: ShareOf,
    /// The share of each stratum's sampled stations that must be in to publish.
    pub threshold: f64,
    /// Leave out protocols received after this.
    pub as_of: Option<DateTime<Utc>>,
    /// The contest's official figures, to set against the estimate.
    pub official: Option<&'a OfficialContest>,
}

/// The estimate for `contest` from `sample`: the counted protocol of each sampled station (as
/// the results count it: accepted, or as a reviewer settled it), received by `as_of` if given;
/// stations whose copies disagree with no settlement are left out until a reviewer decides.
pub async fn estimate(
    store: &Store,
    mission: &Mission,
    sample: &Sample,
    contest: &Contest,
    asked: &Asked<'_>,
) -> Result<PvtView, StoreError> {
    let Asked { share_of, threshold, as_of, official } = *asked;
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
    // Each sampled station that counts, with when its counted protocol arrived, in that order.
    let mut arrived: Vec<(DateTime<Utc>, &str, Counted)> = Vec::new();
    for result in &results {
        let Some(protocol) = &result.counted else { continue };
        let in_time = as_of.is_none_or(|t| protocol.received_at <= t);
        if sampled.contains(result.station.as_str()) && in_time && !disputed.contains(&result.station) {
            let counted = Counted {
                registered_voters: protocol.registered_voters.max(0) as u64,
                ballots_in_box: protocol.ballots_in_box.max(0) as u64,
                votes: protocol.votes.iter().map(|(code, n)| (code.clone(), (*n).max(0) as u64)).collect(),
            };
            arrived.push((protocol.received_at, result.station.as_str(), counted));
        }
    }
    arrived.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
    let history = history(mission, sample, contest, share_of, &arrived);
    let counted: BTreeMap<&str, Counted> = arrived.into_iter().map(|(_, station, c)| (station, c)).collect();
    let estimate = pollwatch_pvt::contest(mission, sample, contest, &counted, share_of);
    let choices = contest
        .choices
        .iter()
        .filter_map(|choice| {
            estimate.shares.get(&choice.code).map(|ratio| PvtChoiceView {
                choice: choice.code.clone(),
                name: choice.name.clone(),
                ratio: PvtRatioView::of(*ratio, official.and_then(|o| o.share(&choice.code, share_of))),
            })
        })
        .collect();
    Ok(PvtView {
        contest: contest.id.clone(),
        share_of: share_of.code(),
        as_of: as_of.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        strata_by: sample.strata_by.to_string(),
        seed: sample.seed,
        sampled: sample.stations.len() as u64,
        reported: counted.len() as u64,
        choices,
        turnout: estimate.turnout.map(|t| PvtRatioView::of(t, official.map(OfficialContest::turnout))),
        official: official.is_some(),
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
        history,
    })
}

/// `at` rounded up to a whole millisecond: the millisecond by which a protocol received at
/// `at` is in, so that an estimate replayed `as_of` a point's time counts that point's protocols.
fn by_millisecond(at: DateTime<Utc>) -> DateTime<Utc> {
    let whole = chrono::SubsecRound::trunc_subsecs(at, 3);
    if whole == at { at } else { whole + chrono::Duration::milliseconds(1) }
}

/// The points of [`PvtView::history`]: at most this many, evenly spread over the arrivals.
pub const HISTORY_POINTS: usize = 20;

/// The estimate as the sample came in: after every `k`-th arrival (`k` such that there are at
/// most [`HISTORY_POINTS`]), and after the last, each computed from the protocols that had
/// arrived by then.
fn history(
    mission: &Mission,
    sample: &Sample,
    contest: &Contest,
    share_of: ShareOf,
    arrived: &[(DateTime<Utc>, &str, Counted)],
) -> Vec<PvtPointView> {
    let step = arrived.len().div_ceil(HISTORY_POINTS).max(1);
    let mut points = Vec::new();
    let mut counted: BTreeMap<&str, Counted> = BTreeMap::new();
    for (i, (at, station, protocol)) in arrived.iter().enumerate() {
        counted.insert(station, protocol.clone());
        if (i + 1) % step != 0 && i + 1 != arrived.len() {
            continue;
        }
        let estimate = pollwatch_pvt::contest(mission, sample, contest, &counted, share_of);
        points.push(PvtPointView {
            at: by_millisecond(*at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            reported: counted.len() as u64,
            choices: contest
                .choices
                .iter()
                .filter_map(|c| {
                    estimate.shares.get(&c.code).map(|r| (c.code.clone(), PvtRatioView::of(*r, None)))
                })
                .collect(),
            turnout: estimate.turnout.map(|t| PvtRatioView::of(t, None)),
        });
    }
    points
}
