//! Helper process for the crash test: ingests one large batch of sample reports into a store,
//! saying on standard output when it starts and when the batch has committed. The test kills it
//! in between and checks that the store holds all of the batch or none of it.
//!
//! Usage: pollwatch-ingest-child STORE_URL COUNT SEED

use std::io::Write as _;

use anyhow::Context as _;
use pollwatch_tests::fixtures;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, count, seed] = args.as_slice() else {
        anyhow::bail!("usage: pollwatch-ingest-child STORE_URL COUNT SEED");
    };
    let count: usize = count.parse().context("COUNT is a number")?;
    let seed: u64 = seed.parse().context("SEED is a number")?;
    let mission = fixtures::kg_2021();
    let batch: Vec<_> =
        fixtures::reports(&mission, count, seed).iter().map(|r| fixtures::incoming(&mission, r)).collect();
    let store = pollwatch_store::Store::open(url).await?;
    say("ingesting")?;
    store.ingest_batch(&batch).await?;
    say("committed")?;
    Ok(())
}

fn say(line: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}
