//! Query strings, judged strictly: a parameter the endpoint does not describe, one given twice,
//! or a value that does not parse is a 400 naming it — never ignored, never a default.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pollwatch_model::{Contest, IncidentCategory, Mission, ReportKind, Severity};

use crate::problem::Problem;

/// Longest query string read; a longer one is refused before it is parsed.
const MAX_QUERY_BYTES: usize = 4_096;

/// The largest page an endpoint returns, and the page size when `limit` is not given.
pub const MAX_LIMIT: u32 = 1_000;
pub const DEFAULT_LIMIT: u32 = 100;

/// The parameters of one request, each taken at most once.
#[derive(Debug)]
pub struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// Parses `query`, refusing names outside `allowed` and names given twice.
    pub fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Self, Problem> {
        let query = query.unwrap_or("");
        if query.len() > MAX_QUERY_BYTES {
            return Err(Problem::invalid_value(
                "query",
                &query[..query.floor_char_boundary(64)],
                &format!("a query string of at most {MAX_QUERY_BYTES} bytes"),
                None,
            ));
        }
        let mut values = BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if !allowed.contains(&name.as_ref()) {
                return Err(Problem::unknown_parameter(&name, allowed));
            }
            if values.insert(name.to_string(), value.into_owned()).is_some() {
                return Err(Problem::repeated_parameter(&name));
            }
        }
        Ok(Self { values })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A report kind (`phase`, `kind`).
    pub fn kind(&self, name: &str) -> Result<Option<ReportKind>, Problem> {
        self.get(name)
            .map(|value| {
                ReportKind::parse(value)
                    .ok_or_else(|| Problem::invalid_value(name, value, "a report kind", Some(kind_names())))
            })
            .transpose()
    }

    pub fn required_kind(&self, name: &str) -> Result<ReportKind, Problem> {
        self.kind(name)?.ok_or_else(|| Problem::missing_parameter(name, Some(kind_names())))
    }

    /// A region code of the mission: 404 for one it does not have.
    pub fn region(&self, mission: &Mission) -> Result<Option<String>, Problem> {
        self.get("region")
            .map(|value| match mission.region(value) {
                Some(region) => Ok(region.code.clone()),
                None => Err(Problem::not_found("region", "region", value, Some(region_codes(mission)))),
            })
            .transpose()
    }

    /// One of a fixed set of values.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, Problem> {
        self.get(name)
            .map(|value| {
                if allowed.contains(&value) {
                    Ok(value.to_owned())
                } else {
                    let allowed = allowed.iter().map(|a| (*a).to_owned()).collect();
                    Err(Problem::invalid_value(name, value, "one of the allowed values", Some(allowed)))
                }
            })
            .transpose()
    }

    /// An incident severity.
    pub fn severity(&self, name: &str) -> Result<Option<String>, Problem> {
        self.one_of(name, &Severity::ALL.map(Severity::as_str))
    }

    /// An incident category.
    pub fn category(&self, name: &str) -> Result<Option<String>, Problem> {
        let all: Vec<&str> = IncidentCategory::ALL.iter().map(|c| c.as_str()).collect();
        self.one_of(name, &all)
    }

    /// Free text of at most 64 characters (a station code, an observer id, a flag code).
    pub fn code(&self, name: &str) -> Result<Option<String>, Problem> {
        self.get(name)
            .map(|value| {
                if value.is_empty() || value.chars().count() > pollwatch_model::MAX_ID_LEN {
                    Err(Problem::invalid_value(name, value, "a code of 1 to 64 characters", None))
                } else {
                    Ok(value.to_owned())
                }
            })
            .transpose()
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, Problem> {
        self.get(name)
            .map(|value| match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Problem::invalid_value(
                    name,
                    value,
                    "true or false",
                    Some(vec!["true".into(), "false".into()]),
                )),
            })
            .transpose()
    }

    /// An RFC 3339 time with an offset.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, Problem> {
        self.get(name)
            .map(|value| {
                DateTime::parse_from_rfc3339(value).map(|t| t.to_utc()).map_err(|_| {
                    Problem::invalid_value(
                        name,
                        value,
                        "an RFC 3339 time such as 2021-01-10T08:00:00+06:00",
                        None,
                    )
                })
            })
            .transpose()
    }

    /// A duration such as `90s`, `60m` or `2h`, up to 31 days.
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, Problem> {
        self.get(name)
            .map(|value| {
                parse_duration(value).ok_or_else(|| {
                    Problem::invalid_value(
                        name,
                        value,
                        "a duration such as 90s, 60m or 2h (at most 31 days)",
                        None,
                    )
                })
            })
            .transpose()
    }

    /// A page cursor from a previous page's `next`.
    pub fn cursor(&self, name: &str) -> Result<Option<i64>, Problem> {
        self.get(name)
            .map(|value| match value.parse::<i64>() {
                Ok(cursor) if cursor >= 0 && !value.starts_with('+') => Ok(cursor),
                _ => Err(Problem::invalid_value(name, value, "a cursor from a previous page's `next`", None)),
            })
            .transpose()
    }

    /// The page size, 1 to [`MAX_LIMIT`]; [`DEFAULT_LIMIT`] when not given.
    pub fn limit(&self) -> Result<u32, Problem> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(value) => match value.parse::<u32>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) && !value.starts_with('+') => Ok(limit),
                _ => Err(Problem::invalid_value(
                    "limit",
                    value,
                    &format!("a whole number from 1 to {MAX_LIMIT}"),
                    None,
                )),
            },
        }
    }
}

/// `90s`, `60m`, `2h`, `1d` or a plain number of seconds; at most 31 days.
/// The contest of `mission` that `id` names (from `parameter`): a 404 listing the mission's
/// contests for one it lacks.
pub fn contest<'m>(mission: &'m Mission, parameter: &str, id: &str) -> Result<&'m Contest, Problem> {
    mission.contest(id).ok_or_else(|| {
        let allowed = mission.contests.iter().map(|c| c.id.clone()).collect();
        Problem::not_found(parameter, "contest", id, Some(allowed))
    })
}

/// A report id from a path: any UUID, written as the store keeps ids (lower-case, hyphenated,
/// as the wire format's serialiser writes them); a 400 naming `report_id` otherwise.
/// `?share_of=`: `valid` (the default) or `ballots`.
pub fn share_of(params: &Params) -> Result<pollwatch_pvt::ShareOf, Problem> {
    let codes = pollwatch_pvt::ShareOf::ALL.map(pollwatch_pvt::ShareOf::code);
    let asked = params.one_of("share_of", &codes)?;
    Ok(asked.and_then(|code| pollwatch_pvt::ShareOf::from_code(&code)).unwrap_or_default())
}

pub fn report_id(value: &str) -> Result<String, Problem> {
    uuid::Uuid::try_parse(value)
        .map(|uuid| uuid.hyphenated().to_string())
        .map_err(|_| Problem::invalid_value("report_id", value, "a report id (a UUID)", None))
}

pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "" | "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3_600),
        "d" => number.checked_mul(86_400),
        _ => None,
    }?;
    (seconds <= 31 * 86_400).then(|| Duration::from_secs(seconds))
}

pub fn kind_names() -> Vec<String> {
    ReportKind::ALL.iter().map(|k| k.as_str().to_owned()).collect()
}

pub fn region_codes(mission: &Mission) -> Vec<String> {
    mission.regions.iter().map(|r| r.code.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_repeated_parameters_are_refused_by_name() {
        let unknown = Params::parse(Some("phase=opening&colour=red"), &["phase"]).unwrap_err();
        assert_eq!((unknown.status, unknown.parameter.as_deref()), (400, Some("colour")));
        assert_eq!(unknown.allowed, Some(vec!["phase".to_owned()]));
        let repeated = Params::parse(Some("phase=opening&phase=closing"), &["phase"]).unwrap_err();
        assert_eq!((repeated.status, repeated.parameter.as_deref()), (400, Some("phase")));
        assert!(Params::parse(None, &["phase"]).is_ok());
        let long = "a".repeat(MAX_QUERY_BYTES + 1);
        assert_eq!(Params::parse(Some(&long), &["a"]).unwrap_err().status, 400);
    }

    #[test]
    fn values_are_parsed_or_refused_never_defaulted() {
        let params = Params::parse(
            Some("phase=voting&limit=0&after=-3&since=yesterday&held=yes"),
            &["phase", "limit", "after", "since", "held"],
        )
        .expect("known names");
        assert_eq!(params.required_kind("phase").expect("a kind"), ReportKind::Voting);
        assert_eq!(params.limit().unwrap_err().parameter.as_deref(), Some("limit"));
        assert_eq!(params.cursor("after").unwrap_err().parameter.as_deref(), Some("after"));
        assert_eq!(params.time("since").unwrap_err().parameter.as_deref(), Some("since"));
        assert_eq!(params.bool("held").unwrap_err().parameter.as_deref(), Some("held"));
        let none = Params::parse(None, &["phase"]).expect("no parameters");
        assert_eq!(none.required_kind("phase").unwrap_err().detail, "`phase` is required");
        assert_eq!(none.limit().expect("the default"), DEFAULT_LIMIT);
    }

    #[test]
    fn durations_read_with_their_units_up_to_a_month() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("60m"), Some(Duration::from_secs(3_600)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("32d"), None);
        assert_eq!(parse_duration("1.5h"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }
}
