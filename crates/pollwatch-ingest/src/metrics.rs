//! What the worker counts, shared with the HTTP endpoint, rendered in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pollwatch_model::RejectCode;
use pollwatch_model::wire::PUBLISHED_AT_HEADER;
use pollwatch_store::Outcome;

/// Upper bounds of the batch-size histogram's buckets.
const BATCH_BUCKETS: [u64; 8] = [1, 5, 10, 25, 50, 100, 250, 500];
/// Upper bounds of the commit-latency histogram's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 9] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

/// Upper bounds of the publish-to-commit histogram's buckets, in seconds: fine around the 25 ms
/// the worker aims for at a steady 2,000 reports a second.
const END_TO_END_BUCKETS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// Counters and gauges of one worker; cheap to update from the batch loop.
#[derive(Debug, Default)]
pub struct Metrics {
    broker_connected: AtomicBool,
    received: AtomicU64,
    in_flight: AtomicU64,
    reconnects: AtomicU64,
    /// Rejected messages handed to the broker's own dead-lettering because their letter failed.
    dead_letters_refused: AtomicU64,
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
    dead_letters: Mutex<BTreeMap<&'static str, u64>>,
    batch_sizes: Mutex<Histogram>,
    commit_seconds: Mutex<Histogram>,
    publish_to_commit: Mutex<Histogram>,
    /// The longest publish-to-commit time seen, in microseconds.
    publish_to_commit_max_us: AtomicU64,
}

#[derive(Debug, Default)]
struct Histogram {
    /// Count per bucket (not cumulative), then the overflow.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len() + 1];
        }
        let index = bounds.iter().position(|bound| value <= *bound).unwrap_or(bounds.len());
        self.buckets[index] += 1;
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str, bounds: &[f64]) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in bounds.iter().enumerate() {
            cumulative += self.buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

impl Metrics {
    pub fn broker_connected(&self) -> bool {
        self.broker_connected.load(Ordering::Relaxed)
    }

    pub(crate) fn set_broker_connected(&self, connected: bool) {
        self.broker_connected.store(connected, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, deliveries: usize) {
        self.received.fetch_add(deliveries as u64, Ordering::Relaxed);
        self.in_flight.fetch_add(deliveries as u64, Ordering::Relaxed);
    }

    /// The deliveries not yet acknowledged go back to the queue with their connection.
    pub(crate) fn unacknowledged_returned(&self) {
        self.in_flight.store(0, Ordering::Relaxed);
    }

    pub(crate) fn batch_done(&self, size: usize, commit: Duration) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(size as u64)));
        let bounds = BATCH_BUCKETS.map(|b| b as f64);
        self.batch_sizes.lock().expect("metrics lock").observe(&bounds, size as f64);
        self.commit_seconds.lock().expect("metrics lock").observe(&LATENCY_BUCKETS, commit.as_secs_f64());
    }

    /// Time from a message's publication (its publisher's header) to the commit of its report.
    pub(crate) fn published_to_committed(&self, elapsed: Duration) {
        self.publish_to_commit
            .lock()
            .expect("metrics lock")
            .observe(&END_TO_END_BUCKETS, elapsed.as_secs_f64());
        self.publish_to_commit_max_us.fetch_max(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn outcome(&self, outcome: Outcome) {
        *self.outcomes.lock().expect("metrics lock").entry(outcome.as_str()).or_default() += 1;
    }

    pub(crate) fn dead_letter(&self, code: RejectCode) {
        *self.dead_letters.lock().expect("metrics lock").entry(code.as_str()).or_default() += 1;
    }

    pub(crate) fn dead_letter_refused(&self) {
        self.dead_letters_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut simple = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        simple(
            "pollwatch_broker_connected",
            "gauge",
            "1 while the worker is connected to the broker and consuming.",
            u64::from(self.broker_connected()),
        );
        simple(
            "pollwatch_deliveries_received_total",
            "counter",
            "Deliveries taken from the ingest queue.",
            self.received.load(Ordering::Relaxed),
        );
        simple(
            "pollwatch_deliveries_in_flight",
            "gauge",
            "Deliveries received and not yet acknowledged (every batch in hand: filling, committing, being acknowledged).",
            self.in_flight.load(Ordering::Relaxed),
        );
        simple(
            "pollwatch_broker_reconnects_total",
            "counter",
            "Connections to the broker after the first.",
            self.reconnects.load(Ordering::Relaxed),
        );
        simple(
            "pollwatch_dead_letters_refused_total",
            "counter",
            "Rejected messages whose dead letter failed twice or was refused, handed to the broker's own dead-lettering (x-death reason rejected).",
            self.dead_letters_refused.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP pollwatch_reports_total Reports committed, by outcome.\n# TYPE pollwatch_reports_total counter"
        );
        for (outcome, count) in self.outcomes.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "pollwatch_reports_total{{outcome=\"{outcome}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP pollwatch_dead_letters_total Messages dead-lettered, by code.\n# TYPE pollwatch_dead_letters_total counter"
        );
        for (code, count) in self.dead_letters.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "pollwatch_dead_letters_total{{code=\"{code}\"}} {count}");
        }
        let bounds = BATCH_BUCKETS.map(|b| b as f64);
        self.batch_sizes.lock().expect("metrics lock").render(
            &mut out,
            "pollwatch_batch_size",
            "Deliveries per batch.",
            &bounds,
        );
        self.commit_seconds.lock().expect("metrics lock").render(
            &mut out,
            "pollwatch_commit_seconds",
            "Time to commit a batch to the store, retries included.",
            &LATENCY_BUCKETS,
        );
        self.publish_to_commit.lock().expect("metrics lock").render(
            &mut out,
            "pollwatch_publish_to_commit_seconds",
            &format!("Time from publication (header {PUBLISHED_AT_HEADER}) to the commit of the report."),
            &END_TO_END_BUCKETS,
        );
        let max = self.publish_to_commit_max_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP pollwatch_publish_to_commit_max_seconds The longest publish-to-commit time seen.\n\
             # TYPE pollwatch_publish_to_commit_max_seconds gauge\npollwatch_publish_to_commit_max_seconds {max}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_to_commit_times_fill_their_buckets_and_the_maximum() {
        let metrics = Metrics::default();
        metrics.published_to_committed(Duration::from_millis(12));
        metrics.published_to_committed(Duration::from_millis(3));
        let text = metrics.render();
        for line in [
            "pollwatch_publish_to_commit_seconds_bucket{le=\"0.0025\"} 0",
            "pollwatch_publish_to_commit_seconds_bucket{le=\"0.005\"} 1",
            "pollwatch_publish_to_commit_seconds_bucket{le=\"0.01\"} 1",
            "pollwatch_publish_to_commit_seconds_bucket{le=\"0.015\"} 2",
            "pollwatch_publish_to_commit_seconds_count 2",
            "pollwatch_publish_to_commit_max_seconds 0.012",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.set_broker_connected(true);
        metrics.received(3);
        metrics.outcome(Outcome::Stored);
        metrics.outcome(Outcome::Stored);
        metrics.outcome(Outcome::Duplicate);
        metrics.dead_letter(RejectCode::MalformedJson);
        // A batch of 60 filling while the batch of 3 is committed.
        metrics.received(60);
        assert!(metrics.render().lines().any(|l| l == "pollwatch_deliveries_in_flight 63"));
        metrics.batch_done(3, Duration::from_millis(3));
        assert!(metrics.render().lines().any(|l| l == "pollwatch_deliveries_in_flight 60"));
        metrics.batch_done(60, Duration::from_millis(30));
        let text = metrics.render();
        for line in [
            "pollwatch_broker_connected 1",
            "pollwatch_deliveries_received_total 63",
            "pollwatch_deliveries_in_flight 0",
            "pollwatch_reports_total{outcome=\"stored\"} 2",
            "pollwatch_reports_total{outcome=\"duplicate\"} 1",
            "pollwatch_dead_letters_total{code=\"malformed_json\"} 1",
            "pollwatch_batch_size_bucket{le=\"5\"} 1",
            "pollwatch_batch_size_bucket{le=\"100\"} 2",
            "pollwatch_batch_size_count 2",
            "pollwatch_commit_seconds_bucket{le=\"0.005\"} 1",
            "pollwatch_commit_seconds_bucket{le=\"+Inf\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
