//! Loading a mission definition and its rosters into the store.

use std::collections::HashMap;

use pollwatch_model::Mission;

use crate::db::{Sql, Tx, rows_per_statement};
use crate::{Backend, Store, StoreError};

/// What an import changed, per roster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub regions: Changes,
    pub contests: Changes,
    pub choices: Changes,
    pub stations: Changes,
    pub observers: Changes,
    /// Reports held only for an unknown station or observer that the import's rosters now hold,
    /// judged again and accepted.
    pub freed: usize,
}

/// One roster table: its key columns, its other columns, and the mission's rows as text.
struct Roster<'a> {
    table: &'static str,
    keys: &'static [&'static str],
    columns: &'static [&'static str],
    rows: Vec<(Vec<String>, Vec<Value<'a>>)>,
}

/// Column values of the types the rosters use.
#[derive(Clone, PartialEq)]
enum Value<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptFloat(Option<f64>),
    Bool(bool),
}

impl Value<'_> {
    fn bind(&self, sql: &mut Sql) {
        match self {
            Value::Text(v) => sql.bind((*v).to_owned()),
            Value::OptText(v) => sql.bind(v.map(str::to_owned)),
            Value::Int(v) => sql.bind(*v),
            Value::OptFloat(v) => sql.bind(*v),
            Value::Bool(v) => sql.bind(*v),
        };
    }

    /// The value as the database returns it, for comparing with what is stored.
    fn text(&self) -> Option<String> {
        match self {
            Value::Text(v) => Some((*v).to_owned()),
            Value::OptText(v) => v.map(str::to_owned),
            Value::Int(v) => Some(v.to_string()),
            Value::OptFloat(v) => v.map(|f| f.to_string()),
            Value::Bool(v) => Some(v.to_string()),
        }
    }
}

impl Store {
    /// Loads `mission` into the store. Re-importing is idempotent: unchanged rows stay as they
    /// are, changed rows are updated, rows gone from the files are removed. One transaction.
    pub async fn import_mission(&self, mission: &Mission) -> Result<ImportSummary, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut sql = Sql::new(
            self.backend,
            "INSERT INTO missions (id, name, election_day, time_zone, polls_open, polls_close) VALUES (",
        );
        sql.bind(mission.id.clone()).push(", ").bind(mission.name.clone()).push(", ");
        sql.bind(mission.election_day.to_string()).push(", ").bind(mission.time_zone.name().to_owned());
        sql.push(", ").bind(mission.polls_open.format("%H:%M").to_string()).push(", ");
        sql.bind(mission.polls_close.format("%H:%M").to_string());
        sql.push(
            ") ON CONFLICT (id) DO UPDATE SET name = excluded.name, election_day = excluded.election_day, \
             time_zone = excluded.time_zone, polls_open = excluded.polls_open, polls_close = excluded.polls_close",
        );
        sql.execute_in(&mut tx).await?;

        let summary = ImportSummary {
            freed: 0,
            regions: sync(&mut tx, self.backend, &mission.id, regions(mission)).await?,
            contests: sync(&mut tx, self.backend, &mission.id, contests(mission)).await?,
            choices: sync(&mut tx, self.backend, &mission.id, choices(mission)).await?,
            stations: sync(&mut tx, self.backend, &mission.id, stations(mission)).await?,
            observers: sync(&mut tx, self.backend, &mission.id, observers(mission)).await?,
        };
        let (stations, observers) = (summary.stations, summary.observers);
        let rosters_changed =
            stations.added + stations.updated + stations.removed + observers.added + observers.updated > 0;
        let freed =
            if rosters_changed { crate::review::rejudge(&mut tx, self.backend, mission).await? } else { 0 };
        if self.backend == Backend::Sqlite
            && (stations.added + stations.updated + stations.removed > 0 || freed > 0)
        {
            crate::findings::recount(&mut tx, &mission.id).await?;
        }
        tx.commit().await?;
        Ok(ImportSummary { freed, ..summary })
    }
}

fn regions(mission: &Mission) -> Roster<'_> {
    Roster {
        table: "regions",
        keys: &["code"],
        columns: &["name", "position"],
        rows: mission
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| (vec![r.code.clone()], vec![Value::Text(&r.name), Value::Int(i as i64)]))
            .collect(),
    }
}

fn contests(mission: &Mission) -> Roster<'_> {
    Roster {
        table: "contests",
        keys: &["id"],
        columns: &["name", "kind"],
        rows: mission
            .contests
            .iter()
            .map(|c| {
                let kind = match c.kind {
                    pollwatch_model::ContestKind::Candidates => "candidates",
                    pollwatch_model::ContestKind::Options => "options",
                };
                (vec![c.id.clone()], vec![Value::Text(&c.name), Value::Text(kind)])
            })
            .collect(),
    }
}

fn choices(mission: &Mission) -> Roster<'_> {
    Roster {
        table: "choices",
        keys: &["contest", "code"],
        columns: &["name", "position"],
        rows: mission
            .contests
            .iter()
            .flat_map(|c| {
                c.choices.iter().enumerate().map(|(i, choice)| {
                    (
                        vec![c.id.clone(), choice.code.clone()],
                        vec![Value::Text(&choice.name), Value::Int(i as i64)],
                    )
                })
            })
            .collect(),
    }
}

fn stations(mission: &Mission) -> Roster<'_> {
    Roster {
        table: "stations",
        keys: &["code"],
        columns: &["name", "region", "district", "registered_voters", "lat", "lon", "abroad"],
        rows: mission
            .stations
            .iter()
            .map(|s| {
                (
                    vec![s.code.clone()],
                    vec![
                        Value::Text(&s.name),
                        Value::Text(&s.region),
                        Value::OptText(s.district.as_deref()),
                        Value::Int(i64::from(s.registered_voters)),
                        Value::OptFloat(s.lat),
                        Value::OptFloat(s.lon),
                        Value::Bool(s.abroad),
                    ],
                )
            })
            .collect(),
    }
}

fn observers(mission: &Mission) -> Roster<'_> {
    Roster {
        table: "observers",
        keys: &["id"],
        columns: &["name", "team", "device_user"],
        rows: mission
            .observers
            .iter()
            .map(|o| {
                (
                    vec![o.id.clone()],
                    vec![Value::Text(&o.name), Value::Text(&o.team), Value::Text(&o.device_user)],
                )
            })
            .collect(),
    }
}

/// Makes the stored roster equal to `roster`, touching only rows that differ.
async fn sync(
    tx: &mut Tx,
    backend: Backend,
    mission_id: &str,
    roster: Roster<'_>,
) -> Result<Changes, StoreError> {
    let Roster { table, keys, columns, rows } = roster;
    // Read what is stored, every column as text so that both backends compare alike.
    let cast = |c: &str| format!("CAST({c} AS TEXT)");
    let select: Vec<String> = keys.iter().chain(columns).map(|c| cast(c)).collect();
    let mut sql =
        Sql::new(backend, &format!("SELECT {} FROM {table} WHERE mission_id = ", select.join(", ")));
    sql.bind(mission_id.to_owned());
    let mut stored: HashMap<Vec<String>, Vec<Option<String>>> = HashMap::new();
    for row in sql.fetch_all_in(tx).await? {
        let mut values: Vec<Option<String>> = Vec::with_capacity(keys.len() + columns.len());
        for i in 0..keys.len() + columns.len() {
            values.push(row.try_get(i)?);
        }
        let rest = values.split_off(keys.len());
        stored.insert(values.into_iter().map(Option::unwrap_or_default).collect(), rest);
    }

    let mut changes = Changes::default();
    let mut upserts = Vec::new();
    for (key, values) in &rows {
        match stored.remove(key) {
            None => {
                changes.added += 1;
                upserts.push((key, values));
            }
            Some(old) if !same(&old, values) => {
                changes.updated += 1;
                upserts.push((key, values));
            }
            Some(_) => changes.unchanged += 1,
        }
    }
    let names: Vec<&str> = ["mission_id"].iter().chain(keys).chain(columns).copied().collect();
    for chunk in upserts.chunks(rows_per_statement(names.len())) {
        let mut sql = Sql::new(backend, &format!("INSERT INTO {table} ({}) VALUES ", names.join(", ")));
        sql.values(chunk, |sql, (key, values)| {
            sql.bind(mission_id.to_owned());
            for k in key.iter() {
                sql.push(", ").bind(k.clone());
            }
            for v in values.iter() {
                sql.push(", ");
                v.bind(sql);
            }
        });
        let updates: Vec<String> = columns.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        sql.push(&format!(
            " ON CONFLICT (mission_id, {}) DO UPDATE SET {}",
            keys.join(", "),
            updates.join(", ")
        ));
        sql.execute_in(tx).await?;
    }
    for key in stored.keys() {
        let mut sql = Sql::new(backend, &format!("DELETE FROM {table} WHERE mission_id = "));
        sql.bind(mission_id.to_owned());
        for (column, value) in keys.iter().zip(key) {
            sql.push(&format!(" AND {column} = ")).bind(value.clone());
        }
        sql.execute_in(tx).await?;
        changes.removed += 1;
    }
    Ok(changes)
}

/// Compares stored text with new values; numbers compare by value (a database may print a float
/// or a boolean its own way).
fn same(stored: &[Option<String>], values: &[Value<'_>]) -> bool {
    stored.iter().zip(values).all(|(old, new)| match (old, new) {
        (Some(old), Value::OptFloat(Some(f))) => old.parse::<f64>().is_ok_and(|o| o == *f),
        (Some(old), Value::Bool(b)) => {
            matches!((old.as_str(), b), ("1" | "true" | "t", true) | ("0" | "false" | "f", false))
        }
        (old, new) => *old == new.text(),
    })
}

impl Store {
    /// Whether the mission has been imported.
    pub async fn has_mission(&self, id: &str) -> Result<bool, StoreError> {
        let mut sql = Sql::new(self.backend, "SELECT id FROM missions WHERE id = ");
        sql.bind(id.to_owned());
        Ok(!sql.fetch_all(&self.pool).await?.is_empty())
    }
}
