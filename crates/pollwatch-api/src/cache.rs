//! Answers shared between requests. The aggregate questions (coverage, results, findings, the
//! incident summary, discrepancies) cost a pass over the store; fifty people watching one
//! dashboard ask them over and over, and none needs a fresher answer than a second ago. So each
//! distinct question is computed by one request at a time, and its answer served to everyone
//! until it is [`FRESH_FOR`] old; then the next request starts a recomputation in the background
//! and is answered with the previous answer meanwhile. An answer is therefore at most
//! `FRESH_FOR` plus one computation old. The first request for a question waits for it (the
//! others asking meanwhile wait for the same computation), and a failed computation is never
//! kept: its error goes to the request that ran it, and the old answer, if any, stays.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;

use crate::problem::Problem;

/// How long an answer is served without being recomputed.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// Most questions kept; every cached endpoint's parameters are bounded by the mission (kinds,
/// regions, contests), so this is never reached by honest use.
const MAX_QUESTIONS: usize = 4_096;

#[derive(Debug, Default)]
struct Entry {
    answer: Option<(Instant, Bytes)>,
    refreshing: bool,
    /// For [`Answers::as_of`]: the version of the store the answer was computed at.
    version: u64,
}

/// The shared answers, by question. An answer is `Bytes`: every request that is served it
/// shares one copy.
#[derive(Debug, Clone)]
pub struct Answers {
    entries: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>>,
    fresh_for: Duration,
}

impl Default for Answers {
    fn default() -> Self {
        Self::fresh_for(FRESH_FOR)
    }
}

impl Answers {
    /// Answers served for `fresh_for` before they are recomputed.
    pub fn fresh_for(fresh_for: Duration) -> Self {
        Self { entries: Arc::default(), fresh_for }
    }

    fn entry(&self, question: String) -> Arc<tokio::sync::Mutex<Entry>> {
        let mut entries = self.entries.lock().expect("not poisoned");
        if entries.len() >= MAX_QUESTIONS && !entries.contains_key(&question) {
            entries.clear();
        }
        Arc::clone(entries.entry(question).or_default())
    }

    /// The answer to `question` as of `version` of the store (`events::Feed::version`), for
    /// views that say which version they hold (the dashboard's): the first request computes it
    /// while those asking meanwhile wait; after that, everyone is served the answer there is at
    /// once, and the first request to come after the store has moved on starts one computation
    /// of a new answer in the background. So a question is computed at most once a change of
    /// the store however many ask, no request waits for more than the first computation, and
    /// an answer is at most one computation behind the latest change a request has seen. An
    /// answer that depends on the time too (who has been silent for an hour) is also computed
    /// again once it is older than `fresh_for`, the same way.
    pub async fn as_of<F>(
        &self,
        question: String,
        version: u64,
        fresh_for: Option<Duration>,
        compute: impl FnOnce() -> F + Send + 'static,
    ) -> Result<Bytes, Problem>
    where
        F: Future<Output = Result<Vec<u8>, Problem>> + Send + 'static,
    {
        let entry = self.entry(question);
        let mut guard = entry.lock().await;
        let Some((at, answer)) = &guard.answer else {
            let answer = Bytes::from(off_the_runtime(compute()).await?);
            guard.answer = Some((Instant::now(), answer.clone()));
            guard.version = version;
            return Ok(answer);
        };
        let old = fresh_for.is_some_and(|fresh_for| at.elapsed() >= fresh_for);
        let answer = answer.clone();
        if guard.version < version || old {
            refresh_in_background(&entry, &mut guard, version, compute);
        }
        Ok(answer)
    }

    /// The answer to `question`, from `compute` if there is none yet.
    pub async fn get<F>(
        &self,
        question: String,
        compute: impl Fn() -> F + Send + 'static,
    ) -> Result<Bytes, Problem>
    where
        F: Future<Output = Result<Vec<u8>, Problem>> + Send + 'static,
    {
        let entry = self.entry(question);
        let mut guard = entry.lock().await;
        match &guard.answer {
            Some((at, answer)) if at.elapsed() < self.fresh_for => Ok(answer.clone()),
            Some((_, answer)) => {
                let stale = answer.clone();
                refresh_in_background(&entry, &mut guard, 0, compute);
                Ok(stale)
            }
            None => {
                // The first request computes while holding the entry, so that those asking the
                // same meanwhile wait for its answer instead of computing it again.
                let answer = Bytes::from(off_the_runtime(compute()).await?);
                guard.answer = Some((Instant::now(), answer.clone()));
                Ok(answer)
            }
        }
    }
}

/// Starts computing a new answer for `entry` in the background, unless one is under way; it
/// replaces the kept answer if it succeeds (a failure is logged, and the old answer stays).
/// `version` is the version of the store it is computed at.
fn refresh_in_background<F>(
    entry: &Arc<tokio::sync::Mutex<Entry>>,
    guard: &mut Entry,
    version: u64,
    compute: impl FnOnce() -> F + Send + 'static,
) where
    F: Future<Output = Result<Vec<u8>, Problem>> + Send + 'static,
{
    // One at a time; and none from a request that read the store's version before the answer
    // kept now was computed (it would be labelled older than what it replaces).
    if guard.refreshing || version < guard.version {
        return;
    }
    guard.refreshing = true;
    let entry = Arc::clone(entry);
    tokio::spawn(async move {
        let computed = off_the_runtime(compute()).await;
        let mut guard = entry.lock().await;
        guard.refreshing = false;
        match computed {
            Ok(answer) => {
                guard.answer = Some((Instant::now(), Bytes::from(answer)));
                guard.version = guard.version.max(version);
            }
            Err(problem) => tracing::warn!(detail = %problem.detail, "recomputing a shared answer failed"),
        }
    });
}

/// Runs a computation on a thread of the blocking pool. A shared answer over a large store
/// spends long stretches in Rust between its queries (a contest's protocols, every station's
/// result): on the runtime's own threads (two, on a two-core machine) that would hold up every
/// request meanwhile, cached answers included.
async fn off_the_runtime<F>(computation: F) -> Result<Vec<u8>, Problem>
where
    F: Future<Output = Result<Vec<u8>, Problem>> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    match tokio::task::spawn_blocking(move || runtime.block_on(computation)).await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::error!(%error, "computing a shared answer panicked");
            Err(Problem::internal("computing the answer failed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counter(
        runs: &Arc<AtomicUsize>,
    ) -> impl Fn() -> std::future::Ready<Result<Vec<u8>, Problem>> + Clone + Send + 'static {
        let runs = Arc::clone(runs);
        move || {
            std::future::ready(Ok(vec![u8::try_from(runs.fetch_add(1, Ordering::SeqCst)).unwrap_or(u8::MAX)]))
        }
    }

    #[tokio::test]
    async fn one_computation_serves_everyone_while_it_is_fresh() {
        let (answers, runs) = (Answers::default(), Arc::new(AtomicUsize::new(0)));
        let (a, b) =
            tokio::join!(answers.get("q".into(), counter(&runs)), answers.get("q".into(), counter(&runs)));
        assert_eq!((a.unwrap()[0], b.unwrap()[0]), (0, 0));
        assert_eq!(answers.get("q".into(), counter(&runs)).await.unwrap()[0], 0);
        assert_eq!(runs.load(Ordering::SeqCst), 1, "computed once");
        assert_eq!(answers.get("other".into(), counter(&runs)).await.unwrap()[0], 1, "another question");
    }

    #[tokio::test]
    async fn a_stale_answer_is_served_while_it_is_recomputed_and_errors_are_not_kept() {
        let (answers, runs) = (Answers::fresh_for(Duration::ZERO), Arc::new(AtomicUsize::new(0)));
        assert_eq!(answers.get("q".into(), counter(&runs)).await.unwrap()[0], 0);
        assert_eq!(answers.get("q".into(), counter(&runs)).await.unwrap()[0], 0, "the stale answer at once");
        let mut seen = 0;
        for _ in 0..10_000 {
            seen = answers.get("q".into(), counter(&runs)).await.unwrap()[0];
            if seen > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(seen > 0, "the recomputed answer replaces it");

        let failing = || std::future::ready(Err(Problem::unauthorized("no")));
        assert_eq!(answers.get("e".into(), failing).await.unwrap_err().status, 401);
        assert!(answers.get("e".into(), failing).await.is_err(), "an error is not kept");
    }

    #[tokio::test]
    async fn an_answer_as_of_a_version_is_kept_until_the_store_moves_on_then_replaced_in_the_background() {
        let (answers, runs) = (Answers::default(), Arc::new(AtomicUsize::new(0)));
        let compute = counter(&runs);
        let ask = |version| answers.as_of("q".into(), version, None, compute.clone());
        assert_eq!(ask(3).await.unwrap()[0], 0, "the first answer is waited for");
        assert_eq!(ask(3).await.unwrap()[0], 0, "the same version: kept");
        assert_eq!(ask(2).await.unwrap()[0], 0, "an older version: kept");
        assert_eq!(ask(4).await.unwrap()[0], 0, "a newer version: the answer there is, at once");
        let mut seen = 0;
        for _ in 0..10_000 {
            seen = ask(4).await.unwrap()[0];
            if seen > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(seen, 1, "then the one computed in the background");
        assert_eq!(runs.load(Ordering::SeqCst), 2, "computed once for version 4");

        let failing = || std::future::ready(Err(Problem::unauthorized("no")));
        assert!(
            answers.as_of("e".into(), 1, None, failing).await.is_err(),
            "a first failure is the request's"
        );
        assert_eq!(answers.as_of("e".into(), 1, None, compute.clone()).await.unwrap()[0], 2);

        // An answer that ages: computed again once it is older than it may be.
        let aging = |version| answers.as_of("t".into(), version, Some(Duration::ZERO), compute.clone());
        assert_eq!(aging(1).await.unwrap()[0], 3);
        let mut seen = 0;
        for _ in 0..10_000 {
            seen = aging(1).await.unwrap()[0];
            if seen > 3 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(seen > 3, "the same version, computed again for its age");
    }
}
