//! OTLP traces: each finished container start becomes one trace (a root span
//! `container.start` and one child `container.start.<phase>` per phase
//! observation), exported by a thread of its own through a bounded queue, so
//! a slow or absent collector never holds up event processing.
//!
//! Spans are built directly as `SpanData` from the `StartupRecord` (the same
//! record that `trace` prints and the metrics observe), with the kernel's
//! boot-clock times converted to wall-clock time: nothing reads the current
//! time. docs/traces.md describes the settings, the attributes and the
//! trace-id rule.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::resource::{Resource, TelemetryResourceDetector};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanExporter, SpanLinks};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::clock;
use crate::config::{OtlpConfig, OtlpProtocol};
use crate::http::Shared;
use crate::internal::InternalEvent;
use crate::metrics::{SPAN_DROP_EXPORT_FAILED, SPAN_DROP_QUEUE_FULL};
use crate::record::{Outcome, Span, StartupRecord};

/// Name of the root span of a start.
pub const ROOT_SPAN_NAME: &str = "container.start";
/// Prefix of the attributes that have no semantic convention.
pub const ATTR_PREFIX: &str = "container_startup.";
/// Hashed in front of a container id that is not hex (docs/traces.md).
pub const TRACE_ID_HASH_PREFIX: &str = "container-startup-exporter:";
/// Most spans sent in one export request.
const MAX_BATCH: usize = 512;
/// How often the export thread takes what is queued.
pub const EXPORT_INTERVAL: Duration = Duration::from_millis(200);
/// How long shutdown waits for queued spans to be exported.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318/v1/traces";
const HTTP_TRACES_PATH: &str = "v1/traces";

// The variables of the OpenTelemetry specification that we honour.
pub const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    /// An `OTEL_*` variable has a value that cannot be used.
    #[error("environment variable {var}: {reason}")]
    Env { var: &'static str, reason: String },
    /// A bad `otlp:` setting in a Config that did not come from a file
    /// (files are checked when loaded).
    #[error("otlp.{key}: {reason}")]
    Config { key: &'static str, reason: String },
    #[error("cannot build the OTLP exporter: {0}")]
    Build(#[source] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot start the trace export thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the trace export thread stopped while starting")]
    ThreadDied,
}

impl TracesError {
    /// A configuration mistake (exit code 2), not a broken environment.
    pub fn is_config(&self) -> bool {
        matches!(self, TracesError::Env { .. } | TracesError::Config { .. } | TracesError::Build(_))
    }
}

fn env_err(var: &'static str, reason: impl Into<String>) -> TracesError {
    TracesError::Env { var, reason: reason.into() }
}

/// The export settings after the `OTEL_*` variables were laid over the
/// `otlp:` section of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Full URL: for http/protobuf it includes the `/v1/traces` path.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub headers: BTreeMap<String, String>,
    /// Resource attributes, `service.name` included.
    pub resource: BTreeMap<String, String>,
    pub timeout: Duration,
    pub max_queue_size: usize,
    pub deterministic_trace_id: bool,
    /// How often the export thread takes what is queued: EXPORT_INTERVAL
    /// (not configurable; benchmarks shorten it).
    pub export_interval: Duration,
}

impl Settings {
    /// [`Settings::resolve`] with the process environment.
    pub fn from_env(cfg: &OtlpConfig) -> Result<Option<Settings>, TracesError> {
        // The specification treats an empty variable as unset.
        Settings::resolve(cfg, &|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// The settings, or `None` when tracing is off. `env` reads a variable
    /// (None when unset or empty). The variables win over the file, as the
    /// OpenTelemetry specification says; setting an endpoint variable turns
    /// tracing on, and `OTEL_TRACES_EXPORTER=none` turns it off whatever the
    /// file says.
    pub fn resolve(cfg: &OtlpConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Settings>, TracesError> {
        let traces_endpoint = env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
        let base_endpoint = env(OTEL_EXPORTER_OTLP_ENDPOINT);
        let enabled = match env(OTEL_TRACES_EXPORTER).as_deref().map(str::trim) {
            Some("none") => false,
            Some("otlp") => true,
            Some(other) => {
                return Err(env_err(OTEL_TRACES_EXPORTER, format!("{other:?} is not supported: use otlp or none")))
            }
            None => cfg.enabled || traces_endpoint.is_some() || base_endpoint.is_some(),
        };
        if !enabled {
            return Ok(None);
        }
        let protocol = match first_var(env, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL) {
            Some((var, v)) => match v.trim() {
                "grpc" => OtlpProtocol::Grpc,
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                other => return Err(env_err(var, format!("{other:?} is not supported: use grpc or http/protobuf"))),
            },
            None => cfg.protocol,
        };
        let http = protocol == OtlpProtocol::HttpProtobuf;
        let endpoint = if let Some(e) = traces_endpoint {
            // the signal's own URL is used as it is
            normalize_endpoint(&e).map_err(|r| env_err(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, r))?
        } else if let Some(e) = base_endpoint {
            // a base URL: OTLP/HTTP appends the signal's path to it
            let e = normalize_endpoint(&e).map_err(|r| env_err(OTEL_EXPORTER_OTLP_ENDPOINT, r))?;
            if http {
                append_path(&e, HTTP_TRACES_PATH)
            } else {
                e
            }
        } else if let Some(e) = &cfg.endpoint {
            // checked when the file was loaded; checked again for a Config
            // built in code
            let e = normalize_endpoint(e).map_err(|reason| TracesError::Config { key: "endpoint", reason })?;
            if http && !has_path(&e) {
                append_path(&e, HTTP_TRACES_PATH)
            } else {
                e
            }
        } else if http {
            DEFAULT_HTTP_ENDPOINT.to_string()
        } else {
            DEFAULT_GRPC_ENDPOINT.to_string()
        };

        // Per key: the file, then the generic variable, then the signal's.
        let mut headers = cfg.headers.clone();
        for var in [OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TRACES_HEADERS] {
            if let Some(v) = env(var) {
                for (k, v) in parse_kv_list(&v).map_err(|r| env_err(var, r))? {
                    if !is_header_name(&k) || !is_header_value(&v) {
                        return Err(env_err(var, format!("{k:?} is not a valid header")));
                    }
                    headers.insert(k, v);
                }
            }
        }

        let timeout = match first_var(env, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OTEL_EXPORTER_OTLP_TIMEOUT) {
            Some((var, v)) => match v.trim().parse::<u64>() {
                Ok(ms) if (1..=300_000).contains(&ms) => Duration::from_millis(ms),
                _ => return Err(env_err(var, format!("{v:?} is not a number of milliseconds from 1 to 300000"))),
            },
            None => cfg.timeout,
        };

        // Lowest first: our defaults, the file, then the variables.
        let mut resource = BTreeMap::new();
        resource.insert("service.version".to_string(), env!("CARGO_PKG_VERSION").to_string());
        resource.insert("host.name".to_string(), host_name());
        resource.extend(cfg.resource_attributes.clone());
        resource.insert("service.name".to_string(), cfg.service_name.clone());
        if let Some(v) = env(OTEL_RESOURCE_ATTRIBUTES) {
            resource.extend(parse_kv_list(&v).map_err(|r| env_err(OTEL_RESOURCE_ATTRIBUTES, r))?);
        }
        if let Some(v) = env(OTEL_SERVICE_NAME) {
            resource.insert("service.name".to_string(), v.trim().to_string());
        }

        Ok(Some(Settings {
            endpoint,
            protocol,
            headers,
            resource,
            timeout,
            max_queue_size: cfg.max_queue_size,
            deterministic_trace_id: cfg.deterministic_trace_id,
            export_interval: EXPORT_INTERVAL,
        }))
    }

    pub fn service_name(&self) -> &str {
        self.resource.get("service.name").map(String::as_str).unwrap_or_default()
    }

    fn otel_resource(&self) -> Resource {
        Resource::builder_empty()
            // telemetry.sdk.{name,language,version}
            .with_detector(Box::new(TelemetryResourceDetector))
            .with_attributes(self.resource.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())))
            .build()
    }

    /// The OTLP exporter these settings describe. Must run inside a tokio
    /// runtime: the gRPC channel spawns its connection task there.
    pub fn build_exporter(&self) -> Result<opentelemetry_otlp::SpanExporter, TracesError> {
        let mut exporter = match self.protocol {
            OtlpProtocol::Grpc => {
                let mut headers = http::HeaderMap::new();
                for (k, v) in &self.headers {
                    // already checked by is_header_name / is_header_value
                    if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(v))
                    {
                        headers.insert(k, v);
                    }
                }
                let metadata = opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers);
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(self.endpoint.clone())
                    .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                    .with_timeout(self.timeout)
                    .with_metadata(metadata)
                    .build()
            }
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(self.endpoint.clone())
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(self.timeout)
                .with_headers(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<HashMap<_, _>>())
                .build(),
        }
        .map_err(TracesError::Build)?;
        exporter.set_resource(&self.otel_resource());
        Ok(exporter)
    }
}

fn first_var(env: &dyn Fn(&str) -> Option<String>, a: &'static str, b: &'static str) -> Option<(&'static str, String)> {
    env(a).map(|v| (a, v)).or_else(|| env(b).map(|v| (b, v)))
}

/// An endpoint as the exporter takes it: `http://` added when no scheme is
/// given. `https://` is refused because this build has no TLS.
pub fn normalize_endpoint(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_string(), s),
    };
    match scheme.as_str() {
        "http" => {}
        "https" => {
            return Err(format!(
                "{s:?}: https:// needs TLS, which this build does not include; \
                 send to a collector or agent on http:// (for example on the same node)"
            ))
        }
        other => return Err(format!("{s:?}: scheme {other}:// is not supported, use http://")),
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return Err(format!("{s:?} has no host[:port]"));
    }
    Ok(format!("http://{rest}"))
}

/// For config validation.
pub(crate) fn check_endpoint(raw: &str) -> Result<(), String> {
    normalize_endpoint(raw).map(|_| ())
}

/// The URL names a path beyond `/`.
fn has_path(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.find('/').is_some_and(|i| !rest[i..].trim_end_matches('/').is_empty())
}

fn append_path(url: &str, path: &str) -> String {
    format!("{}/{path}", url.trim_end_matches('/'))
}

/// RFC 7230 token characters, lower or upper case (gRPC metadata keys are
/// lowered by the library).
pub(crate) fn is_header_name(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(crate) fn is_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// `k1=v1,k2=v2` with percent-encoded values (W3C baggage form, as the
/// specification gives for OTEL_EXPORTER_OTLP_HEADERS and
/// OTEL_RESOURCE_ATTRIBUTES).
fn parse_kv_list(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (k, v) = item.split_once('=').ok_or_else(|| format!("{item:?} is not key=value"))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(format!("{item:?} has no key"));
            }
            let v =
                percent_decode(v.trim()).ok_or_else(|| format!("the value of {k:?} is not valid percent-encoding"))?;
            Ok((k.to_string(), v))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The trace id of a container start when `deterministic_trace_id` is on:
/// the first 32 characters of the container id when they are lowercase hex
/// (Docker, containerd, CRI-O and Podman ids are 64), so the trace id *is* the
/// id's first half; otherwise the first 16 bytes of
/// SHA-256(`container-startup-exporter:` + id).
pub fn trace_id_for(container_id: &str) -> TraceId {
    if let Some(head) = container_id.get(..32) {
        if head.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            match u128::from_str_radix(head, 16) {
                // all zeros is the invalid trace id: hash such an id instead
                Ok(0) | Err(_) => {}
                Ok(v) => return TraceId::from(v),
            }
        }
    }
    let digest = Sha256::new().chain_update(TRACE_ID_HASH_PREFIX).chain_update(container_id).finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    TraceId::from_bytes(id)
}

/// Turns records into spans. Pure but for the random span (and trace) ids.
pub struct SpanFactory {
    /// CLOCK_REALTIME − CLOCK_BOOTTIME.
    offset_ns: i128,
    deterministic: bool,
    ids: RandomIdGenerator,
    scope: InstrumentationScope,
}

impl SpanFactory {
    /// `offset_ns` converts boot-clock ns to wall-clock ns:
    /// `clock::boot_to_wall_offset_ns()` outside tests.
    pub fn new(offset_ns: i128, deterministic_trace_id: bool) -> SpanFactory {
        SpanFactory {
            offset_ns,
            deterministic: deterministic_trace_id,
            ids: RandomIdGenerator::default(),
            scope: InstrumentationScope::builder("container-startup-exporter")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        }
    }

    /// The root span first, then one child per `r.spans` entry, in order.
    pub fn spans(&self, r: &StartupRecord) -> Vec<SpanData> {
        let trace_id = if self.deterministic { trace_id_for(&r.container_id) } else { self.ids.new_trace_id() };
        let root_id = self.ids.new_span_id();
        let mut out = Vec::with_capacity(r.spans.len() + 1);
        out.push(self.span(
            trace_id,
            root_id,
            SpanId::INVALID,
            ROOT_SPAN_NAME,
            (r.start_ns, r.end_ns),
            root_attributes(r),
            root_status(r),
        ));
        for s in &r.spans {
            out.push(self.span(
                trace_id,
                self.ids.new_span_id(),
                root_id,
                s.phase.span_name(),
                (s.start_ns, s.end_ns),
                phase_attributes(s),
                phase_status(s),
            ));
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &self,
        trace_id: TraceId,
        span_id: SpanId,
        parent: SpanId,
        name: &'static str,
        (start_ns, end_ns): (u64, u64),
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> SpanData {
        SpanData {
            span_context: SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, false, TraceState::default()),
            parent_span_id: parent,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(name),
            start_time: clock::boot_to_system_time(start_ns, self.offset_ns),
            end_time: clock::boot_to_system_time(end_ns.max(start_ns), self.offset_ns),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }
}

fn ours(name: &'static str, v: impl Into<Value>) -> KeyValue {
    debug_assert!(name.starts_with(ATTR_PREFIX));
    KeyValue::new(name, v)
}

fn root_attributes(r: &StartupRecord) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(24);
    a.push(KeyValue::new("container.id", r.container_id.clone()));
    a.push(KeyValue::new("container.runtime", r.runtime.clone()));
    a.push(ours("container_startup.outcome", r.outcome.as_str()));
    if let Some(reason) = &r.failure_reason {
        a.push(ours("container_startup.failure_reason", reason.clone()));
    }
    if let Some(e) = &r.entrypoint {
        a.push(KeyValue::new("process.pid", i64::from(e.pid)));
        let name = e.filename.rsplit('/').next().unwrap_or(&e.filename);
        a.push(KeyValue::new("process.executable.name", name.to_string()));
        if e.filename.starts_with('/') {
            a.push(KeyValue::new("process.executable.path", e.filename.clone()));
        }
        // Only there when capture.entrypoint_args is on (the aggregator
        // leaves them out otherwise): arguments can carry secrets.
        if let Some(args) = &e.args {
            let args = args.iter().map(|s| StringValue::from(s.clone())).collect();
            a.push(KeyValue::new("process.command_args", Value::Array(Array::String(args))));
        }
    }
    if let Some(pid) = r.init_pid {
        a.push(ours("container_startup.init_pid", i64::from(pid)));
    }
    if let Some(rootfs) = &r.rootfs {
        a.push(ours("container_startup.rootfs", rootfs.clone()));
    }
    let id = &r.identity;
    if let Some(v) = &id.argv {
        a.push(ours("container_startup.identity.argv", v.clone()));
    }
    if let Some(v) = &id.bundle {
        a.push(ours("container_startup.identity.bundle", v.clone()));
    }
    if let Some(v) = &id.cgroup {
        a.push(ours("container_startup.identity.cgroup", v.clone()));
    }
    a.push(ours("container_startup.identity.consistent", id.consistent));
    if let Some(ns) = &r.namespaces {
        let created = ns.created.iter().map(|s| StringValue::from(s.clone())).collect();
        a.push(ours("container_startup.namespaces.created", Value::Array(Array::String(created))));
        for (name, inum) in [
            ("container_startup.namespaces.mnt", ns.mnt),
            ("container_startup.namespaces.uts", ns.uts),
            ("container_startup.namespaces.ipc", ns.ipc),
            ("container_startup.namespaces.pid", ns.pid),
            ("container_startup.namespaces.net", ns.net),
            ("container_startup.namespaces.cgroup", ns.cgroup),
            ("container_startup.namespaces.user", ns.user),
            ("container_startup.namespaces.time", ns.time),
        ] {
            // 0: not seen (the kernel never gives inode 0 to a namespace)
            if inum != 0 {
                a.push(ours(name, i64::from(inum)));
            }
        }
    }
    if let Some(n) = &r.network {
        a.push(ours("container_startup.network.veth_host", n.veth_host.clone()));
        a.push(ours("container_startup.network.veth_peer", n.veth_peer.clone()));
        if n.netns_inum != 0 {
            a.push(ours("container_startup.network.netns_inum", i64::from(n.netns_inum)));
        }
    }
    a
}

fn root_status(r: &StartupRecord) -> Status {
    match r.outcome {
        // Unset, not Ok: the specification leaves Ok to application code.
        Outcome::Success => Status::Unset,
        Outcome::Failure | Outcome::Timeout => {
            Status::error(r.failure_reason.clone().unwrap_or_else(|| r.outcome.as_str().to_string()))
        }
    }
}

fn phase_attributes(s: &Span) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(2 + s.facts.len());
    a.push(ours("container_startup.phase", s.phase.as_str()));
    a.push(KeyValue::new("process.pid", i64::from(s.pid)));
    for (k, v) in &s.facts {
        a.push(KeyValue::new(format!("{ATTR_PREFIX}{k}"), v.clone()));
    }
    a
}

/// A phase whose syscall failed (`error` fact) or whose process exited
/// non-zero (`exit` fact) is an error too, so the failing step stands out.
fn phase_status(s: &Span) -> Status {
    if let Some(e) = s.facts.get("error") {
        return Status::error(e.clone());
    }
    match s.facts.get("exit") {
        Some(exit) if exit != "exited with status 0" => Status::error(exit.clone()),
        _ => Status::Unset,
    }
}

/// The trace pipeline: builds the spans of each record on the caller's
/// thread and queues them for the export thread.
///
/// The queue is bounded by a span count, not by the channel: `pending` counts
/// the spans queued or being exported, a start is admitted only whole and
/// only when it fits, so memory stays bounded however long the collector is
/// away, and the caller never waits.
///
/// Queueing never wakes the export thread: it looks at the queue every
/// `export_interval` instead. Waking a parked thread costs a futex call (on a
/// VM also an inter-processor interrupt), measured at 10+ µs here: more than
/// building the spans (bench/traces.md).
pub struct Traces {
    factory: SpanFactory,
    tx: mpsc::UnboundedSender<Vec<SpanData>>,
    pending: Arc<AtomicUsize>,
    max_pending: usize,
    shared: Arc<Shared>,
    /// The previous start was dropped too (so only the first drop of a run
    /// is logged at warn).
    dropping: bool,
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<()>,
}

impl Traces {
    /// Starts the export thread with the OTLP exporter of `settings`.
    pub fn start(settings: &Settings, shared: Arc<Shared>) -> Result<Traces, TracesError> {
        let s = settings.clone();
        let traces = Traces::start_with(settings, shared, move || s.build_exporter())?;
        tracing::info!(
            endpoint = %settings.endpoint,
            protocol = settings.protocol.as_str(),
            service_name = settings.service_name(),
            "exporting one OTLP trace per container start"
        );
        Ok(traces)
    }

    /// Starts the export thread with the exporter `make` builds there (tests
    /// and benchmarks pass their own).
    pub fn start_with<E, F>(settings: &Settings, shared: Arc<Shared>, make: F) -> Result<Traces, TracesError>
    where
        E: SpanExporter + 'static,
        F: FnOnce() -> Result<E, TracesError> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (stop, stop_rx) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            rx,
            pending: pending.clone(),
            shared: shared.clone(),
            timeout: settings.timeout,
            interval: settings.export_interval,
            failing: false,
        };
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                // A runtime of its own: exports never compete with the event
                // pipeline's runtime, and a hung collector only stalls here.
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(TracesError::Thread(e)));
                        return;
                    }
                };
                let exporter = match rt.block_on(async { make() }) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                rt.block_on(worker.run(exporter, stop_rx));
                let _ = done_tx.send(());
            })
            .map_err(TracesError::Thread)?;
        // Building does no I/O (the gRPC channel connects lazily): this
        // returns at once.
        ready_rx.recv().map_err(|_| TracesError::ThreadDied)??;
        Ok(Traces {
            factory: SpanFactory::new(clock::boot_to_wall_offset_ns(), settings.deterministic_trace_id),
            tx,
            pending,
            max_pending: settings.max_queue_size,
            shared,
            dropping: false,
            stop,
            done,
        })
    }

    /// Queues the trace of one start, or drops it whole (counted) when the
    /// queue has no room for all its spans. Never blocks, makes no syscall.
    pub fn record(&mut self, r: &StartupRecord) {
        let n = r.spans.len() + 1;
        // Room is taken before the spans are built, so a start that will be
        // dropped costs no allocation.
        let before = self.pending.fetch_add(n, Ordering::AcqRel);
        if before + n > self.max_pending {
            self.pending.fetch_sub(n, Ordering::AcqRel);
            InternalEvent::SpansDropped { reason: SPAN_DROP_QUEUE_FULL, spans: n, first: !self.dropping, error: None }
                .emit(&self.shared.metrics);
            self.dropping = true;
            return;
        }
        self.dropping = false;
        if self.tx.send(self.factory.spans(r)).is_err() {
            // Only after the export thread ended (it never stops first).
            self.pending.fetch_sub(n, Ordering::AcqRel);
            InternalEvent::SpansDropped {
                reason: SPAN_DROP_EXPORT_FAILED,
                spans: n,
                first: true,
                error: Some("the export thread has stopped"),
            }
            .emit(&self.shared.metrics);
        }
    }

    /// Spans queued or being exported.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Exports what is queued and stops the export thread, waiting at most
    /// `deadline`; what is still pending then is counted as failed.
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(deadline, self.done).await.is_ok() {
            tracing::debug!("trace export stopped");
            return;
        }
        let spans = self.pending.load(Ordering::Acquire);
        InternalEvent::SpansUnflushed { spans, deadline }.emit(&self.shared.metrics);
    }
}

/// The export thread's side.
struct Worker {
    rx: mpsc::UnboundedReceiver<Vec<SpanData>>,
    pending: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    timeout: Duration,
    interval: Duration,
    /// The last export failed (log the first failure and the recovery).
    failing: bool,
}

impl Worker {
    /// Every `interval`, and once more when told to stop, exports all that
    /// is queued.
    async fn run<E: SpanExporter>(mut self, exporter: E, mut stop: oneshot::Receiver<()>) {
        let mut tick = tokio::time::interval(self.interval);
        // After a slow export, wait a full interval rather than catch up.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A dropped sender (Traces dropped without shutdown) stops too.
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = &mut stop => true,
            };
            let closed = self.export_queued(&exporter).await;
            if stopping || closed {
                break;
            }
        }
        if let Err(e) = exporter.shutdown() {
            tracing::debug!(error = %e, "OTLP exporter shutdown");
        }
    }

    /// Exports what is queued now, in requests of up to MAX_BATCH spans
    /// (starts come in bursts: one request per start would be wasteful).
    /// True when every sender is gone.
    async fn export_queued<E: SpanExporter>(&mut self, exporter: &E) -> bool {
        loop {
            let mut batch: Vec<SpanData> = Vec::new();
            let mut closed = false;
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(spans) if batch.is_empty() => batch = spans,
                    Ok(spans) => batch.extend(spans),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                self.export(exporter, batch).await;
            }
            if closed || self.rx.is_empty() {
                return closed;
            }
        }
    }

    async fn export<E: SpanExporter>(&mut self, exporter: &E, batch: Vec<SpanData>) {
        let n = batch.len();
        // The exporter has its own timeout; this one also bounds a
        // connection that neither answers nor fails.
        let result = match tokio::time::timeout(self.timeout, exporter.export(batch)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        self.pending.fetch_sub(n, Ordering::AcqRel);
        let m = &self.shared.metrics;
        match result {
            Ok(()) => {
                if self.failing {
                    InternalEvent::SpanExportResumed.emit(m);
                }
                self.failing = false;
                InternalEvent::SpansExported { spans: n }.emit(m);
            }
            Err(error) => {
                InternalEvent::SpansDropped {
                    reason: SPAN_DROP_EXPORT_FAILED,
                    spans: n,
                    first: !self.failing,
                    error: Some(&error),
                }
                .emit(m);
                self.failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests;
