//! Aggregator throughput on replayed events: the real `docker run` sequences
//! of the fixtures, rewritten into distinct starts (fresh pids and ids) so
//! every iteration does the work of a new container.

use std::hint::black_box;

use criterion::{criterion_group, Criterion, Throughput};
use cse::aggregator::{Aggregator, Output, Settings};
use cse::event::Event;

const FIXTURE: &str = include_str!("../tests/fixtures/docker-exec-stop-parallel.jsonl");

fn load() -> Vec<Event> {
    FIXTURE.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Container ids in the fixture (their first 8 hex digits).
const IDS: [&str; 4] = ["dd6338c8", "1d7b1f3f", "0c471117", "579e059e"];

fn retag(s: &mut String, n: u32) {
    for (k, id) in IDS.iter().enumerate() {
        if s.contains(id) {
            *s = s.replace(id, &format!("{:07x}{k}", n & 0x0fff_ffff));
        }
    }
}

/// The fixture as start number `n`: pids shifted, container ids made unique,
/// times shifted so that starts follow each other.
fn variant(base: &[Event], n: u32, span_ns: u64) -> Vec<Event> {
    let shift = u64::from(n) * span_ns;
    let pid_shift = n.wrapping_mul(1000);
    let mut evs = base.to_vec();
    for ev in &mut evs {
        let m = match ev {
            Event::Exec { meta, args, .. } => {
                args.iter_mut().for_each(|a| retag(a, n));
                meta
            }
            Event::Cgroup { meta, path, .. } => {
                retag(path, n);
                meta
            }
            Event::Mount { meta, source, target, .. } => {
                retag(source, n);
                retag(target, n);
                meta
            }
            Event::ExecFail { meta, .. }
            | Event::Exit { meta, .. }
            | Event::Namespace { meta, .. }
            | Event::PivotRoot { meta, .. }
            | Event::Netlink { meta, .. } => meta,
            Event::Fork { meta, child_pid, .. } => {
                *child_pid = child_pid.wrapping_add(pid_shift);
                meta
            }
        };
        m.ts += shift;
        if m.start_ts != 0 {
            m.start_ts += shift;
        }
        m.pid = m.pid.wrapping_add(pid_shift);
    }
    evs
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// 100 000 replayed fixtures (400 000 starts): the tables must end empty and
/// resident memory must not grow after warm-up.
fn memory_flat() {
    let base = load();
    let span = span_of(&base);
    let mut agg = Aggregator::new(Settings::default());
    let mut out: Vec<Output> = Vec::new();
    let mut completed = 0u64;
    let mut rss_after_warmup = 0;
    for n in 0..100_000u32 {
        for ev in variant(&base, n, span) {
            agg.handle(&ev, &mut out);
        }
        agg.tick(base.last().map(|e| e.meta().ts).unwrap_or(0) + u64::from(n) * span, &mut out);
        completed += out.iter().filter(|o| matches!(o, Output::Completed(_))).count() as u64;
        out.clear();
        if n == 1_000 {
            rss_after_warmup = rss_kib();
        }
    }
    let rss_end = rss_kib();
    println!(
        "memory_flat: {completed} starts completed; in_progress={} processes={}; VmRSS after 1k replays {rss_after_warmup} KiB, after 100k {rss_end} KiB",
        agg.in_progress(),
        agg.tracked_processes()
    );
    assert_eq!(completed, 400_000);
    assert_eq!((agg.in_progress(), agg.tracked_processes()), (0, 0));
    assert!(rss_end <= rss_after_warmup + 1024, "resident memory grew by more than 1 MiB");
}

fn span_of(base: &[Event]) -> u64 {
    base.last().map(|e| e.meta().ts).unwrap_or(0) - base.first().map(|e| e.meta().ts).unwrap_or(0) + 1
}

fn bench(c: &mut Criterion) {
    let base = load();
    let span = span_of(&base);
    let copies: Vec<Vec<Event>> = (0..64).map(|n| variant(&base, n, span)).collect();
    let per_copy = base.len() as u64;

    let mut g = c.benchmark_group("aggregator");
    g.throughput(Throughput::Elements(per_copy));
    g.bench_function("replay_docker_fixture", |b| {
        let mut agg = Aggregator::new(Settings::default());
        let mut out: Vec<Output> = Vec::new();
        let mut i = 0usize;
        b.iter(|| {
            for ev in &copies[i % copies.len()] {
                agg.handle(black_box(ev), &mut out);
            }
            i += 1;
            out.clear();
        });
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    memory_flat();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
