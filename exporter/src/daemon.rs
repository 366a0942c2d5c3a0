//! Wires probes, aggregator and outputs together: drains the ring buffer on
//! wakeups and on a short timer, feeds the aggregator, and hands finished
//! starts to the sinks.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::aggregator::{Aggregator, Output, Settings};
use crate::clock;
use crate::config::Config;
use crate::event::{self, Event};
use crate::http::Shared;
use crate::internal::InternalEvent;
use crate::probes::{KernelCounters, Probes};
use crate::record::StartupRecord;

/// Where decoded events and finished starts go besides the metrics.
pub trait Sink {
    fn event(&mut self, _ev: &Event) {}
    fn record(&mut self, r: &StartupRecord);
}

pub fn settings(cfg: &Config) -> Settings {
    Settings {
        record_timeout_ns: cfg.aggregator.record_timeout.as_nanos() as u64,
        max_in_progress: cfg.aggregator.max_in_progress,
        max_processes: cfg.aggregator.max_processes,
        max_pending_mounts: cfg.aggregator.max_pending_mounts,
        oci_runtimes: cfg.tracking.oci_runtimes.clone(),
        capture_args: cfg.capture.entrypoint_args,
    }
}

/// Reports the probes' state; the daemon is ready once this ran.
pub fn report_probes(probes: &Probes, shared: &Shared) {
    for s in &probes.status {
        if s.attached {
            InternalEvent::ProbeAttached { status: s }.emit(&shared.metrics);
        } else {
            InternalEvent::ProbeFailed { status: s }.emit(&shared.metrics);
        }
    }
    let attached = probes.status.iter().filter(|s| s.attached).count();
    tracing::info!(attached, total = probes.status.len(), "probes attached");
    shared.probes_ready.store(true, Ordering::Relaxed);
}

struct Pipeline<'a, S: Sink> {
    agg: Aggregator,
    shared: &'a Shared,
    sink: S,
    out: Vec<Output>,
}

/// Most records one drain takes before yielding to the HTTP tasks.
const DRAIN_BUDGET: usize = 16 * 1024;

impl<S: Sink> Pipeline<'_, S> {
    /// Returns whether the ring was emptied (not stopped by the budget).
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> bool {
        let mut n = 0;
        let mut emptied = false;
        while n < DRAIN_BUDGET {
            let Some(item) = ring.next() else {
                emptied = true;
                break;
            };
            n += 1;
            match event::decode(&item) {
                Ok(ev) => {
                    drop(item);
                    InternalEvent::EventReceived { type_name: ev.type_name() }.emit(&self.shared.metrics);
                    self.sink.event(&ev);
                    self.agg.handle(&ev, &mut self.out);
                }
                Err(error) => InternalEvent::EventUndecodable { error: &error }.emit(&self.shared.metrics),
            }
        }
        self.flush();
        self.shared.last_drain_ns.store(clock::boot_ns(), Ordering::Relaxed);
        emptied
    }

    fn flush(&mut self) {
        let m = &self.shared.metrics;
        for o in self.out.drain(..) {
            match o {
                Output::Completed(r) => {
                    InternalEvent::StartCompleted { record: &r }.emit(m);
                    self.sink.record(&r);
                    self.shared.push_record(*r);
                }
                Output::Evicted { table } => InternalEvent::TableEvicted { table }.emit(m),
                Output::Abandoned { container_id, reason } => {
                    InternalEvent::StartAbandoned { container_id: &container_id, reason }.emit(m)
                }
                Output::IdentityMismatch { identity } => {
                    InternalEvent::IdentityMismatch { identity: &identity }.emit(m)
                }
            }
        }
        m.in_progress.set(self.agg.in_progress() as i64);
    }
}

/// Kernel-side counters since the last poll.
struct CounterPoll {
    last: KernelCounters,
    last_runs: std::collections::HashMap<&'static str, (u64, u64)>,
}

impl CounterPoll {
    fn poll(&mut self, probes: &Probes, shared: &Shared) {
        match probes.counters() {
            Ok(c) => {
                let lost: u64 = c.ringbuf_full.iter().sum::<u64>() - self.last.ringbuf_full.iter().sum::<u64>();
                if lost > 0 {
                    InternalEvent::RingBufferFull { lost }.emit(&shared.metrics);
                }
                if c.tracked_full > self.last.tracked_full {
                    tracing::warn!(
                        "{} processes beyond the tracking bitmap (pid_max grew after start): restart the exporter",
                        c.tracked_full - self.last.tracked_full
                    );
                }
                self.last = c;
            }
            Err(e) => tracing::warn!(error = %e, "cannot read kernel counters"),
        }
        for s in probes.program_stats() {
            let (runs, ns) = self.last_runs.get(s.program).copied().unwrap_or((0, 0));
            let m = &shared.metrics;
            m.program_runs.with_label_values(&[s.program]).inc_by(s.run_count.saturating_sub(runs));
            m.program_run_seconds.with_label_values(&[s.program]).inc_by(s.run_time_ns.saturating_sub(ns) as f64 / 1e9);
            self.last_runs.insert(s.program, (s.run_count, s.run_time_ns));
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Probe(#[from] crate::probes::ProbeError),
    #[error("cannot poll the ring buffer: {0}")]
    Poll(#[source] std::io::Error),
}

/// Runs until `shutdown` resolves, then drains what is left.
pub async fn run<S: Sink>(
    cfg: &Config,
    mut probes: Probes,
    shared: Arc<Shared>,
    sink: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PipelineError> {
    let ring = probes.take_ring_buffer()?;
    // SAFETY: the RingBuf owns its map's fd and neither closes nor replaces it
    // while the AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| PipelineError::Poll(e.into()))?;
    let mut p = Pipeline { agg: Aggregator::new(settings(cfg)), shared: &shared, sink, out: Vec::new() };
    let mut counters = CounterPoll { last: KernelCounters::default(), last_runs: Default::default() };
    let mut drain_timer = tokio::time::interval(cfg.ring_buffer.drain_interval);
    drain_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut slow_timer = tokio::time::interval(Duration::from_secs(1));
    slow_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            guard = fd.readable_mut() => {
                let mut guard = guard.map_err(PipelineError::Poll)?;
                p.drain(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = drain_timer.tick() => {
                // expire only once every event up to now was seen: a start's
                // last event may still wait in a backlog
                if p.drain(fd.get_mut()) {
                    p.agg.tick(clock::boot_ns(), &mut p.out);
                    p.flush();
                }
            }
            _ = slow_timer.tick() => counters.poll(&probes, &shared),
        }
    }
    p.drain(fd.get_mut());
    p.agg.abandon_all(&mut p.out);
    p.flush();
    Ok(())
}
