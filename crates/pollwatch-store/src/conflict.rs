//! Conflicts decided by a reviewer: of the versions of one revision (the same report id and
//! revision, other content), which one counts. The version received first is in force until a
//! reviewer picks; every version stays stored whichever is picked. A version picked is judged
//! again against the mission as it stands, with the sender and time it arrived with, and stored
//! as another row of the revision (`variant`, migration 0007) that the report then points at,
//! with its own flags and protocols. Like every review action, a pick is optimistic: it names
//! the version the reviewer saw in force, and is refused if another is by now.

use pollwatch_model::{Context, Mission};

use crate::audit;
use crate::db::{Sql, Tx};
use crate::ingest::{self, Delivery, Incoming};
use crate::queries::micros;
use crate::review::{NewAction, current, log};
use crate::{Backend, Decided, ReviewError, ReviewState, Store, StoreError};

/// Which version of a report's current revision counts.
#[derive(Debug, Clone)]
pub struct Pick<'a> {
    pub report_id: &'a str,
    /// The revision decided about; refused if another is current by now.
    pub revision: i64,
    /// The content hash of the version to count.
    pub keep: &'a str,
    /// The content hash of the version the reviewer saw in force; refused if another is by now.
    pub expected: &'a str,
    pub reviewer: &'a str,
    pub reason: &'a str,
}

/// Whether `text` can be a content hash: 64 lower-case hexadecimal digits.
pub fn is_content_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A version of a revision as received: from `conflicts`, or a row of `report_revisions`.
struct Version {
    payload: String,
    sender: Option<String>,
    received_at_us: i64,
}

impl Store {
    /// Makes `pick.keep` the version of the report's current revision that counts. Keeping the
    /// version in force records the decision and changes nothing else; picking another stores it
    /// in force, in the state its flags give (held if validation flags it now, else accepted).
    pub async fn pick(&self, mission: &Mission, pick: &Pick<'_>) -> Result<Decided, ReviewError> {
        if !is_content_hash(pick.keep) || !is_content_hash(pick.expected) {
            return Err(ReviewError::Invalid(
                "a version is named by its content hash: 64 lower-case hexadecimal digits".to_owned(),
            ));
        }
        let backend = self.backend;
        let mut tx = self.pool.begin().await?;
        let Some(current) = current(&mut tx, backend, &mission.id, pick.report_id).await? else {
            return Ok(Decided::NotFound);
        };
        if current.revision != pick.revision || current.content_hash != pick.expected {
            drop(tx);
            return Ok(self.stale(&mission.id, pick.report_id).await?);
        }
        let action = NewAction {
            chosen: Some(pick.keep),
            reviewer: pick.reviewer,
            reason: pick.reason,
            ..NewAction::on_report(&mission.id, "pick", pick.report_id, pick.revision)
        };
        let mut entries = Vec::new();
        if pick.keep == current.content_hash {
            // The version in force stays: the decision is on record, nothing else changes.
            let logged = log(&mut tx, backend, action, &mut entries).await?;
            audit::append(&mut tx, backend, entries).await?;
            tx.commit().await?;
            return Ok(Decided::Done(logged));
        }
        let Some(version) = version(&mut tx, backend, pick).await? else {
            return Err(ReviewError::Invalid(format!(
                "revision {} of report {} has no version {}",
                pick.revision, pick.report_id, pick.keep
            )));
        };
        let received_at = micros(version.received_at_us)?;
        let context = Context { mission, now: received_at, sender: version.sender.as_deref() };
        let checked = pollwatch_model::check(version.payload.as_bytes(), &context).map_err(|rejection| {
            ReviewError::Invalid(format!(
                "that version is turned away against the mission as it stands now ({})",
                rejection.code.as_str()
            ))
        })?;
        let (claimed, kind) = (&checked.report.observer, checked.report.kind().as_str());
        if *claimed != current.observer || kind != current.kind || checked.report.mission != mission.id {
            return Err(ReviewError::Invalid(format!(
                "that version is a {kind} report from observer {claimed}, and report {} is a {} report from \
                 observer {}: a report keeps its observer and kind, so it cannot count for it",
                pick.report_id, current.kind, current.observer
            )));
        }
        let state = if checked.flags.is_empty() { ReviewState::Accepted } else { ReviewState::Held };
        let delivery = Delivery { sender: version.sender, redelivered: false, received_at };
        let incoming = Incoming::new(checked.report, checked.flags, version.payload, delivery);
        if incoming.content_hash() != pick.keep {
            return Err(StoreError::Permanent(format!(
                "version {} of report {} no longer gives its content hash",
                pick.keep, pick.report_id
            ))
            .into());
        }
        let variant = next_variant(&mut tx, backend, pick).await?;
        let action = NewAction { from_state: Some(current.state), to_state: Some(state), ..action };
        let logged = log(&mut tx, backend, action, &mut entries).await?;
        let decided = (state, logged.id);
        let Some(entry) =
            ingest::put_in_force(&mut tx, backend, &incoming, variant, current.seq, decided).await?
        else {
            // Another reviewer, or a new revision, got there first.
            drop(tx);
            return Ok(self.stale(&mission.id, pick.report_id).await?);
        };
        // The revision stored first, then the decision that put it in force.
        entries.insert(0, entry);
        audit::append(&mut tx, backend, entries).await?;
        tx.commit().await?;
        Ok(Decided::Done(logged))
    }
}

/// The version `pick.keep` of the revision as it was received, if the store holds it.
async fn version(tx: &mut Tx, backend: Backend, pick: &Pick<'_>) -> Result<Option<Version>, StoreError> {
    let mut sql =
        Sql::new(backend, "SELECT payload, sender, received_at_us FROM conflicts WHERE report_id = ");
    sql.bind(pick.report_id.to_owned()).push(" AND revision = ").bind(pick.revision);
    sql.push(" AND content_hash = ").bind(pick.keep.to_owned());
    sql.push(" UNION ALL SELECT payload, sender, received_at_us FROM report_revisions WHERE report_id = ");
    sql.bind(pick.report_id.to_owned()).push(" AND revision = ").bind(pick.revision);
    sql.push(" AND content_hash = ").bind(pick.keep.to_owned());
    let Some(row) = sql.fetch_all_in(tx).await?.into_iter().next() else { return Ok(None) };
    Ok(Some(Version { payload: row.try_get(0)?, sender: row.try_get(1)?, received_at_us: row.try_get(2)? }))
}

/// The number of the next version of the revision stored.
async fn next_variant(tx: &mut Tx, backend: Backend, pick: &Pick<'_>) -> Result<i64, StoreError> {
    let mut sql = Sql::new(
        backend,
        "SELECT CAST(COALESCE(MAX(variant), 0) + 1 AS BIGINT) FROM report_revisions WHERE report_id = ",
    );
    sql.bind(pick.report_id.to_owned()).push(" AND revision = ").bind(pick.revision);
    Ok(sql.fetch_all_in(tx).await?[0].try_get(0)?)
}

#[cfg(test)]
mod tests {
    use pollwatch_model::{Content, ContestResults, Report, ReportKind, sample};

    use super::*;
    use crate::queries::tests::incoming;
    use crate::review::tests::store;
    use crate::{Outcome, ReportFilter};

    /// A valid counting report from the first station, and another version of the same
    /// revision: one vote moved from the first candidate to the second, so that it still adds up.
    fn two_versions(mission: &Mission) -> (Report, Report) {
        let mut rng = pollwatch_sim::generate::Rng::new(3);
        let station = &mission.stations[0];
        let observer = mission.observers[0].id.clone();
        let first =
            pollwatch_sim::generate::report(mission, station, &observer, ReportKind::Counting, &mut rng);
        let mut other = first.clone();
        let Content::Counting(body) = &mut other.content else { panic!("a counting report") };
        let votes = &mut body.protocols[0].votes;
        let mut codes = votes.keys().cloned();
        let (from, to) = (codes.next().expect("a choice"), codes.next().expect("another"));
        let from_votes = votes.get_mut(&from).expect("votes");
        assert!(*from_votes > 0, "a vote to move");
        *from_votes -= 1;
        *votes.get_mut(&to).expect("votes") += 1;
        (first, other)
    }

    fn pick<'a>(report_id: &'a str, keep: &'a str, expected: &'a str, reviewer: &'a str) -> Pick<'a> {
        Pick { report_id, revision: 1, keep, expected, reviewer, reason: "the photo of the protocol says so" }
    }

    async fn president(store: &Store, mission: &Mission) -> ContestResults {
        store.results(&mission.id, "president").await.expect("results")
    }

    fn tally(mission: &Mission, report: &Report) -> ContestResults {
        let president = mission.contest("president").expect("a contest");
        ContestResults::tally(mission, president, [report])
    }

    #[tokio::test]
    async fn a_picked_version_counts_the_other_stays_and_the_chain_covers_both() {
        let mission = sample::kg_2021();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = store(&dir, &mission).await;
        let (first, other) = two_versions(&mission);
        let (a, b) = (incoming(&first, false), incoming(&other, false));
        let (hash_a, hash_b) = (a.content_hash().to_owned(), b.content_hash().to_owned());
        assert_eq!(store.ingest_batch(std::slice::from_ref(&a)).await.expect("commits"), [Outcome::Stored]);
        assert_eq!(store.ingest_batch(std::slice::from_ref(&b)).await.expect("commits"), [Outcome::Conflict]);
        assert_eq!(president(&store, &mission).await, tally(&mission, &first), "the first received counts");
        let id = first.report_id.to_string();
        let open = ReportFilter { conflicted: Some(true), ..ReportFilter::default() };
        let listed = store.list_reports(&mission.id, &open, None, 10).await.expect("a listing");
        assert_eq!(listed.reports.iter().map(|r| r.report_id.as_str()).collect::<Vec<_>>(), [id.as_str()]);

        let done = store.pick(&mission, &pick(&id, &hash_b, &hash_a, "ana")).await.expect("a pick");
        let Decided::Done(action) = done else { panic!("the pick is made: {done:?}") };
        assert_eq!((action.action.as_str(), action.chosen.as_deref()), ("pick", Some(hash_b.as_str())));
        assert_eq!(president(&store, &mission).await, tally(&mission, &other), "the version picked counts");
        let standing = store.standing(&mission.id, &id).await.expect("read").expect("a report");
        assert_eq!((standing.in_force.as_str(), standing.state), (hash_b.as_str(), ReviewState::Accepted));
        let history = store.report_history(&mission.id, &id).await.expect("read").expect("a report");
        let versions: Vec<(i64, &str)> =
            history.revisions.iter().map(|r| (r.variant, r.content_hash.as_str())).collect();
        assert_eq!(versions, [(0, hash_a.as_str()), (1, hash_b.as_str())], "both versions are kept");
        assert_eq!(history.conflicts.len(), 1);
        assert!(
            store.list_reports(&mission.id, &open, None, 10).await.expect("a listing").reports.is_empty()
        );

        // A second reviewer who saw the first version in force is refused, and told what is.
        let late = store.pick(&mission, &pick(&id, &hash_a, &hash_a, "bob")).await.expect("a pick");
        let Decided::Stale(standing) = late else { panic!("the stale pick is refused: {late:?}") };
        assert_eq!(standing.in_force, hash_b);
        assert_eq!(standing.set_by.map(|a| a.reviewer), Some("ana".to_owned()));
        // Either version coming again is a duplicate; a third content is another conflict.
        let again = store.ingest_batch(&[a.clone(), b.clone()]).await.expect("commits");
        assert_eq!(again, [Outcome::Duplicate, Outcome::Duplicate]);

        let back = store.pick(&mission, &pick(&id, &hash_a, &hash_b, "bob")).await.expect("a pick");
        assert!(matches!(back, Decided::Done(_)), "{back:?}");
        assert_eq!(president(&store, &mission).await, tally(&mission, &first), "the first counts again");
        let kept = store.pick(&mission, &pick(&id, &hash_a, &hash_a, "bob")).await.expect("a pick");
        let Decided::Done(kept) = kept else { panic!("keeping the version in force is a pick: {kept:?}") };
        assert_eq!((kept.from_state, kept.to_state), (None, None), "nothing changed");
        let verification = store.verify_audit(&()).await.expect("a verification");
        // Two revisions received, one conflict, a copy of each version picked, three picks.
        assert_eq!((verification.entries, verification.failure), (7, None));

        for (keep, why) in [("0".repeat(64), "has no version"), ("not a hash".to_owned(), "64 lower-case")] {
            let error = store.pick(&mission, &pick(&id, &keep, &hash_a, "bob")).await.expect_err(why);
            assert!(matches!(&error, ReviewError::Invalid(m) if m.contains(why)), "{error}");
        }
        let unknown = pick("00000000-0000-0000-0000-00000000ffff", &hash_a, &hash_a, "bob");
        assert_eq!(store.pick(&mission, &unknown).await.expect("a pick"), Decided::NotFound);

        // The version in force changed behind the store's back: verification names the report.
        let mut tx = store.pool.begin().await.expect("a transaction");
        Sql::new(
            Backend::Sqlite,
            "UPDATE reports SET revision_seq = (SELECT seq FROM report_revisions WHERE variant = 1)",
        )
        .execute_in(&mut tx)
        .await
        .expect("changed");
        tx.commit().await.expect("committed");
        let failure = store.verify_audit(&()).await.expect("a verification").failure.expect("a failure");
        assert!(failure.reason.contains(&id) && failure.reason.contains("last picked"), "{failure:?}");
    }

    #[tokio::test]
    async fn a_version_from_another_observer_cannot_count_for_the_report() {
        let mission = sample::kg_2021();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = store(&dir, &mission).await;
        let (first, mut other) = two_versions(&mission);
        other.observer = mission.observers[1].id.clone();
        let (a, b) = (incoming(&first, false), incoming(&other, false));
        let outcomes = store.ingest_batch(std::slice::from_ref(&a)).await.expect("commits");
        assert_eq!(outcomes, [Outcome::Stored]);
        assert_eq!(store.ingest_batch(std::slice::from_ref(&b)).await.expect("commits"), [Outcome::Conflict]);
        let id = first.report_id.to_string();
        let error = store
            .pick(&mission, &pick(&id, b.content_hash(), a.content_hash(), "ana"))
            .await
            .expect_err("refused");
        assert!(matches!(&error, ReviewError::Invalid(m) if m.contains("keeps its observer")), "{error}");
        assert_eq!(president(&store, &mission).await, tally(&mission, &first));
    }
}
