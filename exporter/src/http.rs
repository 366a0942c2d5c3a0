//! HTTP endpoints: /metrics, /healthz, /readyz and /api/v1/startups.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::clock;
use crate::metrics::Metrics;
use crate::record::StartupRecord;

/// State shared by the event pipeline and the HTTP handlers.
pub struct Shared {
    pub metrics: Metrics,
    recent: Mutex<VecDeque<StartupRecord>>,
    recent_cap: usize,
    /// Required probes attached.
    pub probes_ready: AtomicBool,
    /// Boot-clock ns of the last ring-buffer drain.
    pub last_drain_ns: AtomicU64,
    /// Longest gap between drains that still counts as ready.
    pub drain_deadline_ns: u64,
}

impl Shared {
    pub fn new(metrics: Metrics, recent_cap: usize, drain_deadline_ns: u64) -> Shared {
        Shared {
            metrics,
            recent: Mutex::new(VecDeque::with_capacity(recent_cap)),
            recent_cap,
            probes_ready: AtomicBool::new(false),
            last_drain_ns: AtomicU64::new(0),
            drain_deadline_ns,
        }
    }

    pub fn push_record(&self, r: StartupRecord) {
        let mut q = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.recent_cap {
            q.pop_front();
        }
        q.push_back(r);
    }

    fn ready(&self) -> Result<(), &'static str> {
        if !self.probes_ready.load(Ordering::Relaxed) {
            return Err("probes not attached");
        }
        let last = self.last_drain_ns.load(Ordering::Relaxed);
        if clock::boot_ns().saturating_sub(last) > self.drain_deadline_ns {
            return Err("ring buffer not drained recently");
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct StartupsQuery {
    limit: Option<usize>,
    container_id: Option<String>,
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render()).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match s.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn startups(State(s): State<Arc<Shared>>, Query(q): Query<StartupsQuery>) -> Json<Vec<StartupRecord>> {
    let recs = s.recent.lock().unwrap_or_else(|p| p.into_inner());
    let matching: Vec<StartupRecord> = recs
        .iter()
        .filter(|r| q.container_id.as_ref().is_none_or(|id| r.container_id.starts_with(id.as_str())))
        .cloned()
        .collect();
    let skip = matching.len().saturating_sub(q.limit.unwrap_or(usize::MAX));
    Json(matching.into_iter().skip(skip).collect())
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/startups", get(startups))
        .with_state(shared)
}
