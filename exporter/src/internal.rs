//! The exporter's own events: each thing that can happen is one variant, and
//! emitting it both logs and counts, so logs and self-metrics never disagree.

use crate::aggregator::Table;
use crate::event::DecodeError;
use crate::metrics::{Metrics, DROP_RINGBUF_FULL, DROP_UNDECODABLE, SPAN_DROP_EXPORT_FAILED};
use crate::probes::ProbeStatus;
use crate::record::{Identity, StartupRecord};

pub enum InternalEvent<'a> {
    /// A kernel event arrived (counted only: far too frequent to log).
    EventReceived {
        type_name: &'static str,
    },
    EventUndecodable {
        error: &'a DecodeError,
    },
    /// The kernel could not reserve ring-buffer space for this many events.
    RingBufferFull {
        lost: u64,
    },
    ProbeAttached {
        status: &'a ProbeStatus,
    },
    ProbeFailed {
        status: &'a ProbeStatus,
    },
    StartCompleted {
        record: &'a StartupRecord,
    },
    TableEvicted {
        table: Table,
    },
    StartAbandoned {
        container_id: &'a str,
        reason: &'static str,
    },
    IdentityMismatch {
        identity: &'a Identity,
    },
    /// Trace spans not exported: the queue was full (`queue_full`) or the
    /// collector failed or did not answer (`export_failed`). `first` marks
    /// the first drop after a success, the only one logged at warn: during an
    /// outage every start would log otherwise.
    SpansDropped {
        reason: &'static str,
        spans: usize,
        first: bool,
        error: Option<&'a str>,
    },
    /// An export succeeded after failures.
    SpanExportResumed,
    SpansExported {
        spans: usize,
    },
    /// Spans still queued when shutdown gave up waiting for the collector.
    SpansUnflushed {
        spans: usize,
        deadline: std::time::Duration,
    },
}

impl InternalEvent<'_> {
    pub fn emit(&self, m: &Metrics) {
        match self {
            InternalEvent::EventReceived { type_name } => m.events.with_label_values(&[type_name]).inc(),
            InternalEvent::EventUndecodable { error } => {
                tracing::warn!(%error, "undecodable kernel event dropped");
                m.dropped.with_label_values(&[DROP_UNDECODABLE]).inc();
            }
            InternalEvent::RingBufferFull { lost } => {
                tracing::warn!(lost, "ring buffer full: kernel events lost (raise ring_buffer.size_bytes)");
                m.dropped.with_label_values(&[DROP_RINGBUF_FULL]).inc_by(*lost);
            }
            InternalEvent::ProbeAttached { status } => {
                tracing::debug!(probe = status.program, target = %status.target, "probe attached");
                m.probe_attached.with_label_values(&[status.program, status.attach_type]).set(1);
            }
            InternalEvent::ProbeFailed { status } => {
                let phases: Vec<&str> = status.phases.iter().map(|p| p.as_str()).collect();
                tracing::warn!(
                    probe = status.program,
                    target = %status.target,
                    error = status.error.as_deref().unwrap_or(""),
                    degraded = %phases.join(","),
                    "probe not attached: its phases are degraded"
                );
                m.probe_attached.with_label_values(&[status.program, status.attach_type]).set(0);
                for p in phases {
                    m.phase_degraded.with_label_values(&[p]).set(1);
                }
            }
            InternalEvent::StartCompleted { record } => {
                tracing::debug!(
                    container_id = %record.container_id,
                    outcome = record.outcome.as_str(),
                    duration_ms = record.duration_seconds * 1e3,
                    "container start"
                );
                m.observe(record);
            }
            InternalEvent::TableEvicted { table } => {
                tracing::debug!(table = table.as_str(), "table full: oldest entry evicted");
                m.evictions.with_label_values(&[table.as_str()]).inc();
            }
            InternalEvent::StartAbandoned { container_id, reason } => {
                tracing::info!(%container_id, reason, "in-progress start abandoned");
                m.abandoned.with_label_values(&[reason]).inc();
            }
            InternalEvent::IdentityMismatch { identity } => {
                tracing::warn!(?identity, "container id sources disagree");
                m.identity_mismatches.inc();
            }
            InternalEvent::SpansDropped { reason, spans, first, error } => {
                let error = error.unwrap_or_default();
                if *first {
                    tracing::warn!(reason, spans, error, "trace spans dropped (more drops are logged at debug)");
                } else {
                    tracing::debug!(reason, spans, error, "trace spans dropped");
                }
                m.spans_dropped.with_label_values(&[reason]).inc_by(*spans as u64);
            }
            InternalEvent::SpanExportResumed => tracing::info!("trace export works again"),
            InternalEvent::SpansExported { spans } => tracing::trace!(spans, "trace spans exported"),
            InternalEvent::SpansUnflushed { spans, deadline } => {
                tracing::warn!(spans, ?deadline, "trace spans not exported before shutdown");
                m.spans_dropped.with_label_values(&[SPAN_DROP_EXPORT_FAILED]).inc_by(*spans as u64);
            }
        }
    }
}
