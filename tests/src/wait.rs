//! Every wait of the tests, each with a deadline: for a step to finish ([`within`]), for a
//! condition to hold ([`eventually`], [`eventually_some`]), for a service to accept connections
//! (`retry_until`), and the two kinds of time a test spends on purpose ([`throughout`],
//! [`pause`]). The end-to-end tests call these instead of sleeping, which their tidy test checks.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(50);

/// A deadline for one step of a test: fails with `what` instead of hanging.
pub async fn within<T>(limit: Duration, what: &str, step: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(limit, step).await.with_context(|| format!("timed out after {limit:?}: {what}"))
}

/// Checks `condition` every 50 ms until it holds; fails naming `what` if it does not within
/// `limit`, and with the condition's own error if checking it fails.
pub async fn eventually(
    limit: Duration,
    what: &str,
    mut condition: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    eventually_some(limit, what, async || Ok(condition().await?.then_some(()))).await
}

/// What `attempt` returns as soon as it returns something, tried every 50 ms; fails naming
/// `what` if it has returned nothing within `limit`.
pub async fn eventually_some<T>(
    limit: Duration,
    what: &str,
    mut attempt: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    within(limit, what, async {
        loop {
            if let Some(value) = attempt().await? {
                return Ok(value);
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await?
}

/// Calls `observe` every `every` until `window` has passed: for what must stay true for a
/// while (nothing taken from a queue while the store is down), not for something to happen.
pub async fn throughout(
    window: Duration,
    every: Duration,
    mut observe: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < until {
        observe().await?;
        tokio::time::sleep(every).await;
    }
    Ok(())
}

/// Time a test chooses to let pass: when to kill a process, how long a service stays down, how
/// long a device waits before it tries again. Never a wait for something to happen: that is
/// [`eventually`].
pub async fn pause(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Repeats `attempt` every `every` until it succeeds, or fails with its last error once `limit`
/// has passed: how the harness waits for a service to accept connections.
pub(crate) async fn retry_until<T, F, Fut>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if std::time::Instant::now() >= deadline => {
                return Err(error.context(format!("{what} within {limit:?}")));
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
