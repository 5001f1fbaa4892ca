//! The sample: the roster split into strata, the sample's size shared among them in proportion to
//! their registered voters (at least [`MIN_PER_STRATUM`] stations each), and the stations of each
//! stratum drawn at random from a seed, reproducibly.

use std::collections::BTreeMap;
use std::fmt;

use pollwatch_model::{Mission, Station};

use crate::rng::SplitMix64;

/// Every stratum gets at least this many sampled stations (or all it has, if fewer): a stratum's
/// variance needs two.
pub const MIN_PER_STRATUM: u32 = 2;

/// What the roster is split into strata by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrataBy {
    /// The station's region (the roster's `region` column).
    #[default]
    Region,
    /// The district (`district`; a station without one is in the stratum `-`).
    District,
    /// At home or abroad (`abroad`: `home` or `abroad`).
    Abroad,
    /// No strata: one stratum, `all`.
    None,
}

impl StrataBy {
    pub const NAMES: [&'static str; 4] = ["region", "district", "abroad", "none"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "region" => Some(Self::Region),
            "district" => Some(Self::District),
            "abroad" => Some(Self::Abroad),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Region => "region",
            Self::District => "district",
            Self::Abroad => "abroad",
            Self::None => "none",
        }
    }

    /// The stratum `station` is in.
    pub fn stratum_of(self, station: &Station) -> String {
        match self {
            Self::Region => station.region.clone(),
            Self::District => station.district.clone().unwrap_or_else(|| "-".to_owned()),
            Self::Abroad => if station.abroad { "abroad" } else { "home" }.to_owned(),
            Self::None => "all".to_owned(),
        }
    }
}

impl fmt::Display for StrataBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One stratum of the roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stratum {
    pub name: String,
    /// Its stations' codes, in roster order.
    pub stations: Vec<String>,
    pub registered_voters: u64,
}

/// The roster's strata, by name.
pub fn strata(mission: &Mission, by: StrataBy) -> BTreeMap<String, Stratum> {
    let mut strata: BTreeMap<String, Stratum> = BTreeMap::new();
    for station in &mission.stations {
        let name = by.stratum_of(station);
        let stratum = strata.entry(name.clone()).or_insert_with(|| Stratum {
            name,
            stations: Vec::new(),
            registered_voters: 0,
        });
        stratum.stations.push(station.code.clone());
        stratum.registered_voters += u64::from(station.registered_voters);
    }
    strata
}

/// Why a sample cannot be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    #[error("the roster has no stations")]
    EmptyRoster,
    #[error(
        "a sample of {size} cannot give each of the {strata} strata {MIN_PER_STRATUM} stations: ask for {needed} at least"
    )]
    TooSmall { size: u32, strata: usize, needed: u32 },
    #[error("a sample of {size} is more than the roster's {stations} stations")]
    TooLarge { size: u32, stations: usize },
}

/// How many stations each stratum gets: in proportion to its registered voters, at least
/// [`MIN_PER_STRATUM`] (or all it has) and at most all it has, adding up to `size`.
///
/// Strata held at their floor or their ceiling are set aside and the rest share what is left in
/// proportion, until none of the rest falls outside; their quotas are then rounded by largest
/// remainder (ties to the stratum first by name).
pub fn allocate(strata: &BTreeMap<String, Stratum>, size: u32) -> Result<BTreeMap<String, u32>, SampleError> {
    let stations: usize = strata.values().map(|s| s.stations.len()).sum();
    if stations == 0 {
        return Err(SampleError::EmptyRoster);
    }
    if size as usize > stations {
        return Err(SampleError::TooLarge { size, stations });
    }
    let floor = |s: &Stratum| (s.stations.len() as u32).min(MIN_PER_STRATUM);
    let needed: u32 = strata.values().map(floor).sum();
    if size < needed {
        return Err(SampleError::TooSmall { size, strata: strata.len(), needed });
    }
    let mut fixed: BTreeMap<&str, u32> = BTreeMap::new();
    loop {
        let left = size - fixed.values().sum::<u32>();
        let free: Vec<&Stratum> = strata.values().filter(|s| !fixed.contains_key(s.name.as_str())).collect();
        let voters: u64 = free.iter().map(|s| s.registered_voters).sum();
        let quota = |s: &Stratum| {
            if voters == 0 {
                f64::from(left) / free.len() as f64
            } else {
                f64::from(left) * s.registered_voters as f64 / voters as f64
            }
        };
        let outside: Vec<(&str, u32)> = free
            .iter()
            .filter_map(|s| {
                let q = quota(s);
                if q < f64::from(floor(s)) {
                    Some((s.name.as_str(), floor(s)))
                } else if q > s.stations.len() as f64 {
                    Some((s.name.as_str(), s.stations.len() as u32))
                } else {
                    None
                }
            })
            .collect();
        if outside.is_empty() {
            let mut shares: Vec<(&str, u32, f64)> = free
                .iter()
                .map(|s| {
                    let q = quota(s);
                    (s.name.as_str(), q.floor() as u32, q - q.floor())
                })
                .collect();
            let mut short = left - shares.iter().map(|s| s.1).sum::<u32>();
            let mut order: Vec<usize> = (0..shares.len()).collect();
            order.sort_by(|&a, &b| shares[b].2.total_cmp(&shares[a].2).then(shares[a].0.cmp(shares[b].0)));
            for i in order {
                if short == 0 {
                    break;
                }
                shares[i].1 += 1;
                short -= 1;
            }
            fixed.extend(shares.into_iter().map(|(name, n, _)| (name, n)));
            return Ok(fixed.into_iter().map(|(name, n)| (name.to_owned(), n)).collect());
        }
        fixed.extend(outside);
    }
}

/// One sampled station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sampled {
    pub station: String,
    pub stratum: String,
}

/// A drawn sample: how it was drawn, and its stations by stratum, in draw order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub strata_by: StrataBy,
    pub seed: u64,
    pub stations: Vec<Sampled>,
}

/// Draws a sample of `size` stations of `mission`, stratified `by`, from `seed`.
///
/// Per stratum, in name order: its stations in roster order are shuffled (Fisher–Yates with one
/// [`SplitMix64`] seeded with `seed`, shared by the strata in turn), and the first of the
/// stratum's allocation are taken. The same roster, size, strata and seed give the same sample.
pub fn draw(mission: &Mission, by: StrataBy, size: u32, seed: u64) -> Result<Sample, SampleError> {
    let strata = strata(mission, by);
    let allocation = allocate(&strata, size)?;
    let mut rng = SplitMix64::new(seed);
    let mut stations = Vec::with_capacity(size as usize);
    for (name, stratum) in &strata {
        let mut codes = stratum.stations.clone();
        rng.shuffle(&mut codes);
        let take = allocation[name] as usize;
        stations
            .extend(codes.into_iter().take(take).map(|station| Sampled { station, stratum: name.clone() }));
    }
    Ok(Sample { strata_by: by, seed, stations })
}

/// The name of the sample's file in a mission folder.
pub const SAMPLE_FILE: &str = "pvt-sample.csv";

/// How a sample file's first line begins.
const HEADER: &str = "# pollwatch pvt sample:";

/// Why a sample file cannot be read against a roster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SampleFileError(String);

/// A value read from a sample file, cut short for a message (the file may hold anything).
fn cut(value: &str) -> String {
    value.chars().take(pollwatch_model::MAX_ECHO_CHARS).collect()
}

impl Sample {
    /// The sample as `pvt-sample.csv`: a first line saying how it was drawn, then a row per
    /// station (code, stratum, name, registered voters) in draw order, for the team deploying
    /// observers.
    pub fn to_csv(&self, mission: &Mission) -> String {
        let mut out = format!(
            "{HEADER} strata={} seed={} size={} roster={}\n",
            self.strata_by,
            self.seed,
            self.stations.len(),
            mission.stations.len()
        );
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(["station", "stratum", "name", "registered_voters"]).expect("writing to memory");
        for sampled in &self.stations {
            let station = mission.stations.iter().find(|s| s.code == sampled.station);
            let (name, voters) = station.map_or((String::new(), String::new()), |s| {
                (s.name.clone(), s.registered_voters.to_string())
            });
            writer
                .write_record([sampled.station.as_str(), sampled.stratum.as_str(), &name, &voters])
                .expect("writing to memory");
        }
        out.push_str(
            &String::from_utf8(writer.into_inner().expect("writing to memory")).expect("UTF-8 in, UTF-8 out"),
        );
        out
    }

    /// Reads a `pvt-sample.csv` against `mission`'s roster: every station must be in it, once,
    /// in the stratum the roster puts it in now (a roster changed since the draw shows here).
    pub fn parse(text: &str, mission: &Mission) -> Result<Self, SampleFileError> {
        let fail = |what: String| Err(SampleFileError(what));
        let Some((first, rows)) = text.split_once('\n') else { return fail("the file is empty".to_owned()) };
        let Some(fields) = first.trim_end().strip_prefix(HEADER) else {
            return fail(format!("its first line does not begin with {HEADER:?}"));
        };
        let field = |name: &str| {
            fields.split_whitespace().find_map(|f| f.strip_prefix(name).and_then(|f| f.strip_prefix('=')))
        };
        let Some(strata_by) = field("strata").and_then(StrataBy::parse) else {
            return fail(format!("its first line names no strata= of {}", StrataBy::NAMES.join(", ")));
        };
        let Some(seed) = field("seed").and_then(|s| s.parse().ok()) else {
            return fail("its first line has no seed= number".to_owned());
        };
        let roster: BTreeMap<&str, &Station> =
            mission.stations.iter().map(|s| (s.code.as_str(), s)).collect();
        let mut reader = csv::Reader::from_reader(rows.as_bytes());
        let mut stations = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (line, record) in reader.records().enumerate() {
            let line = line + 3;
            let record = record.map_err(|e| SampleFileError(format!("line {line}: {e}")))?;
            let (Some(code), Some(stratum)) = (record.get(0), record.get(1)) else {
                return fail(format!("line {line}: a station and its stratum are needed"));
            };
            let Some(station) = roster.get(code) else {
                return fail(format!("line {line}: station {:?} is not in the roster", cut(code)));
            };
            let now = strata_by.stratum_of(station);
            if now != stratum {
                return fail(format!(
                    "line {line}: station {code} was drawn in stratum {:?}, the roster puts it in {now:?}",
                    cut(stratum)
                ));
            }
            if !seen.insert(code.to_owned()) {
                return fail(format!("line {line}: station {code} is in the sample twice"));
            }
            stations.push(Sampled { station: code.to_owned(), stratum: stratum.to_owned() });
        }
        Ok(Self { strata_by, seed, stations })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stratum(name: &str, stations: usize, voters: u64) -> (String, Stratum) {
        let stations = (0..stations).map(|i| format!("{name}-{i}")).collect();
        (name.to_owned(), Stratum { name: name.to_owned(), stations, registered_voters: voters })
    }

    #[test]
    fn the_size_is_shared_in_proportion_to_voters_with_a_floor_and_a_ceiling() {
        // Quotas of 10: a 6.0, b 3.0, c 0.9 (held at the floor of 2), d 0.1 (its one station).
        // a and b share the 10 - 2 - 1 = 7 left as 600:300, 4.67 and 2.33: 4 and 2, and the one
        // left over goes to the larger remainder, a's 0.67. So a 5, b 2, c 2, d 1.
        let strata: BTreeMap<_, _> =
            [stratum("a", 100, 600), stratum("b", 50, 300), stratum("c", 40, 90), stratum("d", 1, 10)]
                .into_iter()
                .collect();
        let allocation = allocate(&strata, 10).expect("an allocation");
        let got: Vec<(&str, u32)> = allocation.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, vec![("a", 5), ("b", 2), ("c", 2), ("d", 1)]);
        assert_eq!(allocation.values().sum::<u32>(), 10);
    }

    #[test]
    fn a_sample_too_small_or_too_large_for_the_roster_is_refused() {
        let strata: BTreeMap<_, _> = [stratum("a", 3, 10), stratum("b", 3, 10)].into_iter().collect();
        assert_eq!(allocate(&strata, 3), Err(SampleError::TooSmall { size: 3, strata: 2, needed: 4 }));
        assert_eq!(allocate(&strata, 7), Err(SampleError::TooLarge { size: 7, stations: 6 }));
        assert_eq!(allocate(&strata, 6).expect("all of it").values().sum::<u32>(), 6);
    }

    #[test]
    fn a_seed_draws_the_same_sample_and_another_seed_another() {
        let mission = pollwatch_model::sample::kg_2021();
        let one = draw(&mission, StrataBy::Region, 300, 7).expect("a sample");
        assert_eq!(one, draw(&mission, StrataBy::Region, 300, 7).expect("a sample"));
        assert_ne!(one.stations, draw(&mission, StrataBy::Region, 300, 8).expect("a sample").stations);
        assert_eq!(one.stations.len(), 300);
        let mut codes: Vec<&str> = one.stations.iter().map(|s| s.station.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 300, "no station twice");
        let strata = strata(&mission, StrataBy::Region);
        let allocation = allocate(&strata, 300).expect("an allocation");
        for (name, n) in &allocation {
            let drawn = one.stations.iter().filter(|s| &s.stratum == name).count();
            assert_eq!(drawn as u32, *n, "{name}");
            assert!(*n >= MIN_PER_STRATUM, "{name}");
        }
    }

    #[test]
    fn a_sample_file_reads_back_and_one_that_does_not_fit_the_roster_is_refused() {
        let mission = pollwatch_model::sample::kg_2021();
        let sample = draw(&mission, StrataBy::Region, 30, 3).expect("a sample");
        let text = sample.to_csv(&mission);
        assert!(text.starts_with("# pollwatch pvt sample: strata=region seed=3 size=30 roster=2476\nstation,stratum,name,registered_voters\n"), "{text}");
        assert_eq!(Sample::parse(&text, &mission), Ok(sample.clone()));

        let first = &sample.stations[0];
        let moved = text.replacen(
            &format!("{},{}", first.station, first.stratum),
            &format!("{},osh", first.station),
            1,
        );
        let error = Sample::parse(&moved, &mission).expect_err("a station in another stratum");
        assert!(
            error.0.contains(&format!("station {} was drawn in stratum \"osh\"", first.station)),
            "{error}"
        );
        let twice = format!("{text}{},{},x,1\n", first.station, first.stratum);
        assert!(Sample::parse(&twice, &mission).expect_err("twice").0.contains("twice"));
        let stranger = format!("{text}99999,{},x,1\n", first.stratum);
        assert!(Sample::parse(&stranger, &mission).expect_err("a stranger").0.contains("not in the roster"));
        assert!(Sample::parse("station,stratum\n", &mission).is_err(), "no first line");
        let huge = format!("{text}{},{}\n", "9".repeat(100_000), first.stratum);
        let error = Sample::parse(&huge, &mission).expect_err("a stranger").to_string();
        assert!(error.len() < 1_000, "a message of {} bytes", error.len());
    }
}
