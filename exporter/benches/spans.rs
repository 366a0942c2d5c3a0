//! Cost of the trace of one container start on the event pipeline's thread:
//! building its spans from the StartupRecord, and building + queueing them
//! for the export thread (what `Traces::record` does in the Sink), plus the
//! cost of dropping a start when the queue is full. bench/traces.md has the
//! method and the results.
//!
//! The record is a real one: a Docker start on the default bridge replayed
//! from the captured fixture through the aggregator (the start with the most
//! spans in it).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use cse::aggregator::{Aggregator, Output, Settings as AggSettings};
use cse::config::{Config, OtlpProtocol};
use cse::event::Event;
use cse::http::Shared;
use cse::metrics::Metrics;
use cse::record::StartupRecord;
use cse::traces::{SpanFactory, Traces, TracesError};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

const FIXTURE: &str = include_str!("../tests/fixtures/docker-none-bridge-failure.jsonl");

fn record() -> StartupRecord {
    let mut agg = Aggregator::new(AggSettings::default());
    let mut out = Vec::new();
    for line in FIXTURE.lines().filter(|l| !l.trim().is_empty()) {
        let ev: Event = serde_json::from_str(line).expect("fixture line");
        agg.handle(&ev, &mut out);
    }
    out.into_iter()
        .filter_map(|o| match o {
            Output::Completed(r) => Some(*r),
            _ => None,
        })
        .max_by_key(|r| r.spans.len())
        .expect("fixture has starts")
}

/// Drops what it is given (on the export thread), or never answers.
#[derive(Debug)]
struct Sink {
    hang: bool,
}

impl SpanExporter for Sink {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.hang {
            std::future::pending::<()>().await;
        }
        drop(batch);
        Ok(())
    }
}

fn settings(max_queue_size: usize) -> cse::traces::Settings {
    cse::traces::Settings {
        endpoint: "http://127.0.0.1:1".into(),
        protocol: OtlpProtocol::Grpc,
        headers: Default::default(),
        resource: Default::default(),
        timeout: Duration::from_secs(3600),
        max_queue_size,
        deterministic_trace_id: true,
        // The bench waits (untimed) for the queue to drain: 200 ms would make
        // it last hours. The producer's cost does not depend on this.
        export_interval: Duration::from_millis(1),
    }
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared::new(Metrics::new(&Config::default()).expect("metrics"), 16, 1))
}

fn bench(c: &mut Criterion) {
    let r = record();
    eprintln!(
        "record {}: {} spans + root, phases {:?}",
        &r.container_id[..12],
        r.spans.len(),
        r.phases.iter().map(|p| p.phase.as_str()).collect::<Vec<_>>()
    );

    let f = SpanFactory::new(cse::clock::boot_to_wall_offset_ns(), true);
    c.bench_function("spans/build", |b| b.iter(|| black_box(f.spans(black_box(&r)))));

    // Build + queue, timed call by call; between calls (untimed) the queue
    // is let drain whenever it holds more than 256 starts, so every timed
    // call takes the admit path, never the drop path.
    let sh = shared();
    let mut t = Traces::start_with(&settings(1 << 20), sh.clone(), || Ok::<_, TracesError>(Sink { hang: false }))
        .expect("traces");
    let per_start = r.spans.len() + 1;
    c.bench_function("spans/build_and_queue", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                while t.pending() > 256 * per_start {
                    std::thread::yield_now();
                }
                let t0 = Instant::now();
                t.record(black_box(&r));
                total += t0.elapsed();
            }
            total
        })
    });
    let full = sh.metrics.spans_dropped.with_label_values(&["queue_full"]).get();
    assert_eq!(full, 0, "build_and_queue must not have dropped");

    latency_distribution(&r);

    // The collector hangs and the queue is full: what a dropped start costs.
    let sh = shared();
    let mut t = Traces::start_with(&settings(16), sh, || Ok::<_, TracesError>(Sink { hang: true })).expect("traces");
    t.record(&r);
    c.bench_function("spans/drop_when_full", |b| b.iter(|| t.record(black_box(&r))));
}

/// Criterion gives means; this prints the spread of single `record` calls
/// with the production export interval (200 ms), the export thread asleep
/// between its rounds as in production. 4000 starts, and every 200 the queue
/// is let drain (untimed) so each call is admitted.
fn latency_distribution(r: &StartupRecord) {
    const N: usize = 4000;
    let mut s = settings(1 << 16);
    s.export_interval = cse::traces::EXPORT_INTERVAL;
    let mut t = Traces::start_with(&s, shared(), || Ok::<_, TracesError>(Sink { hang: false })).expect("traces");
    let mut ns = Vec::with_capacity(N);
    for i in 0..N {
        if i % 200 == 0 {
            while t.pending() > 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let t0 = Instant::now();
        t.record(black_box(r));
        ns.push(t0.elapsed().as_nanos() as f64 / 1e3);
    }
    ns.sort_by(f64::total_cmp);
    let mean = ns.iter().sum::<f64>() / N as f64;
    eprintln!(
        "spans/record with a {:?} export interval, {N} calls: mean {mean:.2} µs, p50 {:.2} µs, p90 {:.2} µs, p99 {:.2} µs, max {:.1} µs",
        cse::traces::EXPORT_INTERVAL,
        ns[N / 2],
        ns[N * 9 / 10],
        ns[N * 99 / 100],
        ns[N - 1]
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
