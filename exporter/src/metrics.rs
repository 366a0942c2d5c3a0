//! Prometheus metrics. Names and labels are a contract (docs/contract.md):
//! the dashboard and the chart use them.
//!
//! No label takes unbounded values: `runtime` is one of the configured OCI
//! runtimes or `unknown`, `phase`/`outcome`/`type`/`reason`/`table` are fixed
//! sets and `program`/`probe` come from the embedded object.

use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::aggregator::Table;
use crate::config::Config;
use crate::event::TYPE_NAMES;
use crate::phase::Phase;
use crate::record::{Outcome, StartupRecord};

pub const STARTUP_DURATION: &str = "container_startup_duration_seconds";
pub const PHASE_DURATION: &str = "container_startup_phase_duration_seconds";
pub const STARTUPS: &str = "container_startups_total";
const SELF_PREFIX: &str = "container_startup_exporter";

/// Reasons of `events_dropped_total`.
pub const DROP_RINGBUF_FULL: &str = "ringbuf_full";
pub const DROP_UNDECODABLE: &str = "undecodable";
/// Reasons of `records_abandoned_total`.
pub const ABANDONED_REASONS: [&str; 2] = ["table_full", "shutdown"];
/// Reasons of `spans_dropped_total`.
pub const SPAN_DROP_QUEUE_FULL: &str = "queue_full";
pub const SPAN_DROP_EXPORT_FAILED: &str = "export_failed";
pub const SPAN_DROP_REASONS: [&str; 2] = [SPAN_DROP_QUEUE_FULL, SPAN_DROP_EXPORT_FAILED];

#[derive(Debug, thiserror::Error)]
#[error("metric registration failed: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

pub struct Metrics {
    registry: Registry,
    runtimes: Vec<String>,
    startup: HistogramVec,
    phase: HistogramVec,
    startups: IntCounterVec,
    pub events: IntCounterVec,
    pub dropped: IntCounterVec,
    pub abandoned: IntCounterVec,
    pub evictions: IntCounterVec,
    pub identity_mismatches: IntCounter,
    pub in_progress: IntGauge,
    pub probe_attached: IntGaugeVec,
    pub phase_degraded: IntGaugeVec,
    pub program_runs: IntCounterVec,
    pub program_run_seconds: CounterVec,
    pub spans_dropped: IntCounterVec,
}

fn self_name(name: &str) -> String {
    format!("{SELF_PREFIX}_{name}")
}

impl Metrics {
    pub fn new(cfg: &Config) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let startup = HistogramVec::new(
            HistogramOpts::new(
                STARTUP_DURATION,
                "Container start, from the first kernel event attributed to the container to its entrypoint running.",
            )
            .buckets(cfg.metrics.startup_buckets.bounds()),
            &["runtime", "outcome"],
        )?;
        let phase = HistogramVec::new(
            HistogramOpts::new(PHASE_DURATION, "Duration of one phase of a container start (summed over its spans).")
                .buckets(cfg.metrics.phase_buckets.bounds()),
            &["phase", "runtime"],
        )?;
        let startups =
            IntCounterVec::new(Opts::new(STARTUPS, "Container starts seen, by outcome."), &["runtime", "outcome"])?;
        let events =
            IntCounterVec::new(Opts::new(self_name("events_total"), "Kernel events received, by type."), &["type"])?;
        let dropped = IntCounterVec::new(
            Opts::new(
                self_name("events_dropped_total"),
                "Kernel events lost: ring buffer full (counted in the kernel) or undecodable.",
            ),
            &["reason"],
        )?;
        let abandoned = IntCounterVec::new(
            Opts::new(self_name("records_abandoned_total"), "In-progress starts dropped without a result."),
            &["reason"],
        )?;
        let evictions = IntCounterVec::new(
            Opts::new(
                self_name("table_evictions_total"),
                "Entries evicted to keep an in-memory table within its bound.",
            ),
            &["table"],
        )?;
        let identity_mismatches = IntCounter::new(
            self_name("identity_mismatches_total"),
            "Starts whose container id differed between the runtime's arguments, bundle and cgroup path.",
        )?;
        let in_progress = IntGauge::new(self_name("in_progress_records"), "Container starts being followed now.")?;
        let probe_attached = IntGaugeVec::new(
            Opts::new(
                self_name("probe_attached"),
                "1 if the kernel probe is attached, 0 if it failed (its phases are degraded).",
            ),
            &["probe", "attach_type"],
        )?;
        let phase_degraded = IntGaugeVec::new(
            Opts::new(
                self_name("phase_degraded"),
                "1 if a probe this phase needs is not attached: the phase is missing from records.",
            ),
            &["phase"],
        )?;
        let program_runs = IntCounterVec::new(
            Opts::new(
                self_name("bpf_program_runs_total"),
                "Runs of each BPF program, from the kernel's statistics (only counted while kernel.bpf_stats_enabled is on).",
            ),
            &["program"],
        )?;
        let program_run_seconds = CounterVec::new(
            Opts::new(
                self_name("bpf_program_run_seconds_total"),
                "Time spent in each BPF program, from the kernel's statistics (only counted while kernel.bpf_stats_enabled is on).",
            ),
            &["program"],
        )?;
        let spans_dropped =
            IntCounterVec::new(Opts::new(self_name("spans_dropped_total"), "Trace spans not exported."), &["reason"])?;
        let build_info = IntGaugeVec::new(
            Opts::new(self_name("build_info"), "Build of the exporter; always 1."),
            &["version", "aya_version"],
        )?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), "0.14.0"]).set(1);

        registry.register(Box::new(startup.clone()))?;
        registry.register(Box::new(phase.clone()))?;
        registry.register(Box::new(startups.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(abandoned.clone()))?;
        registry.register(Box::new(evictions.clone()))?;
        registry.register(Box::new(identity_mismatches.clone()))?;
        registry.register(Box::new(in_progress.clone()))?;
        registry.register(Box::new(probe_attached.clone()))?;
        registry.register(Box::new(phase_degraded.clone()))?;
        registry.register(Box::new(program_runs.clone()))?;
        registry.register(Box::new(program_run_seconds.clone()))?;
        registry.register(Box::new(spans_dropped.clone()))?;
        registry.register(Box::new(build_info))?;

        let mut runtimes = cfg.tracking.oci_runtimes.clone();
        runtimes.push("unknown".into());
        // Series exist from the start, so rate() and increase() see the first one.
        for r in &runtimes {
            for o in Outcome::ALL {
                startups.with_label_values(&[r.as_str(), o.as_str()]);
            }
        }
        // Histograms too, for the configured runtimes: otherwise the first
        // start after a restart is invisible to rate() over the buckets.
        for r in &cfg.tracking.oci_runtimes {
            for o in Outcome::ALL {
                startup.with_label_values(&[r.as_str(), o.as_str()]);
            }
            for p in Phase::ALL {
                phase.with_label_values(&[p.as_str(), r.as_str()]);
            }
        }
        for p in Phase::ALL {
            phase_degraded.with_label_values(&[p.as_str()]).set(0);
        }
        for t in TYPE_NAMES {
            events.with_label_values(&[t]);
        }
        for r in [DROP_RINGBUF_FULL, DROP_UNDECODABLE] {
            dropped.with_label_values(&[r]);
        }
        for r in ABANDONED_REASONS {
            abandoned.with_label_values(&[r]);
        }
        for t in Table::ALL {
            evictions.with_label_values(&[t.as_str()]);
        }
        for r in SPAN_DROP_REASONS {
            spans_dropped.with_label_values(&[r]);
        }
        Ok(Metrics {
            registry,
            runtimes,
            startup,
            phase,
            startups,
            events,
            dropped,
            abandoned,
            evictions,
            identity_mismatches,
            in_progress,
            probe_attached,
            phase_degraded,
            program_runs,
            program_run_seconds,
            spans_dropped,
        })
    }

    /// Observes a finished start.
    pub fn observe(&self, r: &StartupRecord) {
        let runtime = if self.runtimes.contains(&r.runtime) { r.runtime.as_str() } else { "unknown" };
        let outcome = r.outcome.as_str();
        self.startups.with_label_values(&[runtime, outcome]).inc();
        self.startup.with_label_values(&[runtime, outcome]).observe(r.duration_seconds);
        for p in &r.phases {
            self.phase.with_label_values(&[p.phase.as_str(), runtime]).observe(p.duration_seconds);
        }
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::PhaseTotal;

    fn record(runtime: &str) -> StartupRecord {
        StartupRecord {
            container_id: "a".repeat(64),
            runtime: runtime.into(),
            outcome: Outcome::Success,
            failure_reason: None,
            start_ns: 0,
            end_ns: 200_000_000,
            duration_seconds: 0.2,
            phases: vec![PhaseTotal {
                phase: Phase::Exec,
                start_ns: 0,
                end_ns: 1_000_000,
                duration_seconds: 0.001,
                count: 1,
            }],
            spans: vec![],
            namespaces: None,
            identity: Default::default(),
            init_pid: None,
            entrypoint: None,
            rootfs: None,
            network: None,
        }
    }

    #[test]
    fn counts_and_bounds_labels() {
        let m = Metrics::new(&Config::default()).unwrap();
        m.observe(&record("runc"));
        m.observe(&record("something-odd"));
        let text = m.render();
        assert!(text.contains("container_startups_total{outcome=\"success\",runtime=\"runc\"} 1\n"), "{text}");
        assert!(text.contains("container_startups_total{outcome=\"success\",runtime=\"unknown\"} 1\n"));
        assert!(text.contains("container_startups_total{outcome=\"timeout\",runtime=\"crun\"} 0\n"));
        assert!(text.contains("container_startup_phase_duration_seconds_count{phase=\"exec\",runtime=\"runc\"} 1\n"));
        assert!(text.contains(
            "container_startup_duration_seconds_bucket{outcome=\"success\",runtime=\"runc\",le=\"0.0005\"} 0\n"
        ));
        assert!(text.contains("container_startup_exporter_build_info{aya_version=\"0.14.0\",version=\""));
        assert!(!text.contains(&"a".repeat(64)));
    }

    #[test]
    fn every_contract_metric_is_exported() {
        let m = Metrics::new(&Config::default()).unwrap();
        m.observe(&record("runc"));
        m.probe_attached.with_label_values(&["handle_exec", "tp_btf"]).set(1);
        m.program_runs.with_label_values(&["handle_exec"]).inc();
        m.program_run_seconds.with_label_values(&["handle_exec"]).inc();
        let text = m.render();
        let contract = include_str!("../../docs/contract.md");
        for line in contract.lines().filter(|l| l.starts_with("| `container_")) {
            let name = line.split('`').nth(1).unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} is in docs/contract.md but not exported");
        }
    }
}
