//! The closed-loop load driver every system shares: `concurrency` workers,
//! each issuing its next operation as soon as the last one completes, for a
//! fixed time after a warm-up whose operations are not counted.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// What one measured point produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Latencies of successful operations, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Successful operations in the measured window.
    pub ok: u64,
    /// Failed operations in the measured window.
    pub errors: u64,
    /// The first error seen, to show what failed.
    pub first_error: Option<String>,
    /// Payload bytes moved by the successful operations.
    pub bytes: u64,
    /// Length of the measured window.
    pub elapsed: Duration,
}

impl Outcome {
    fn empty() -> Self {
        Self {
            // Three significant digits from 1 µs to 10 min.
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)
                .expect("constant bounds are valid"),
            ok: 0,
            errors: 0,
            first_error: None,
            bytes: 0,
            elapsed: Duration::ZERO,
        }
    }

    fn merge(&mut self, other: Outcome) {
        let _ = self.latency_us.add(&other.latency_us);
        self.ok += other.ok;
        self.errors += other.errors;
        self.bytes += other.bytes;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Successful operations per second.
    pub fn ops_per_s(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency quantile in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Runs `op(worker, seq)` from `concurrency` workers for `warmup + measure`,
/// counting only operations that start after the warm-up. `op` returns the
/// payload bytes it moved, or an error text.
pub async fn closed_loop<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
    op: F,
) -> Outcome
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, String>> + Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut out = Outcome::empty();
                let mut seq = 0u64;
                loop {
                    let began = Instant::now();
                    if began >= end {
                        break;
                    }
                    let result = op(worker, seq).await;
                    seq += 1;
                    if began < measure_from {
                        continue;
                    }
                    match result {
                        Ok(bytes) => {
                            let us = began.elapsed().as_micros().max(1) as u64;
                            let _ = out.latency_us.record(us);
                            out.ok += 1;
                            out.bytes += bytes;
                        }
                        Err(e) => {
                            out.errors += 1;
                            out.first_error.get_or_insert(e);
                        }
                    }
                }
                out
            })
        })
        .collect();
    let mut total = Outcome::empty();
    for w in workers {
        if let Ok(out) = w.await {
            total.merge(out);
        }
    }
    // Operations in flight at the end finish after it; the window is the
    // time from the warm-up's end to the last completion.
    total.elapsed = measure_from.elapsed();
    total
}
