//! Configuration: YAML, with the defaults of `config/default.yaml` embedded.
//!
//! Every struct denies unknown keys, and values are checked after parsing, so a
//! typo or a bad value stops the exporter before anything is attached, with the
//! file, the key path and the reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The configuration used when no file is given.
pub const DEFAULT_YAML: &str = include_str!("../../config/default.yaml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {path}: {reason}")]
    Invalid { file: String, path: String, reason: String },
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub tracking: TrackingConfig,
    pub aggregator: AggregatorConfig,
    pub capture: CaptureConfig,
    pub metrics: MetricsConfig,
    pub ring_buffer: RingBufferConfig,
    pub log: LogConfig,
    pub otlp: OtlpConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of /metrics, /healthz, /readyz and /api/v1/startups.
    pub listen_address: SocketAddr,
    /// Completed records kept for /api/v1/startups.
    pub recent_records: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Process names (comm) followed in the kernel, with their descendants.
    pub runtime_processes: Vec<String>,
    /// Which of them are OCI runtimes (the `runtime` label).
    pub oci_runtimes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AggregatorConfig {
    /// A start not finished after this long is reported as `timeout`.
    #[serde(with = "humantime_serde")]
    pub record_timeout: Duration,
    pub max_in_progress: usize,
    pub max_processes: usize,
    pub max_pending_mounts: usize,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Keep the entrypoint's arguments in records (they can hold secrets).
    pub entrypoint_args: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub startup_buckets: Buckets,
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub phase_buckets: Buckets,
    /// Turn on the kernel's BPF run-time statistics (kernel.bpf_stats_enabled)
    /// while the exporter runs, for the bpf_program_* metrics. Costs ~20 ns per
    /// program run, system-wide.
    pub bpf_program_stats: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Buckets {
    Exponential { start: f64, factor: f64, max: f64 },
    Explicit(Vec<f64>),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RingBufferConfig {
    pub size_bytes: u32,
    pub wakeup_bytes: u32,
    #[serde(with = "humantime_serde")]
    pub drain_interval: Duration,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: LogLevel,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// OTLP trace export (docs/traces.md). The `OTEL_*` environment variables
/// override these settings (resolved in `traces::Settings::resolve`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Export one trace per container start.
    pub enabled: bool,
    /// Collector URL; none: the protocol's default (`http://localhost:4317`
    /// for grpc, `http://localhost:4318/v1/traces` for http/protobuf).
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    /// Sent with every export (gRPC metadata or HTTP headers).
    pub headers: BTreeMap<String, String>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// More resource attributes (`service.name` goes in `service_name`).
    pub resource_attributes: BTreeMap<String, String>,
    /// Longest one export may take before its spans count as failed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Spans waiting for export at most; a start whose spans do not fit is
    /// dropped whole and counted.
    pub max_queue_size: usize,
    /// Derive each trace id from the container id (docs/traces.md) instead of
    /// drawing it at random.
    pub deterministic_trace_id: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            enabled: false,
            endpoint: None,
            protocol: OtlpProtocol::Grpc,
            headers: BTreeMap::new(),
            service_name: "container-startup-exporter".into(),
            resource_attributes: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            max_queue_size: 2048,
            deterministic_trace_id: true,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen_address: SocketAddr::from(([0, 0, 0, 0], 9617)), recent_records: 256 }
    }
}

impl Default for TrackingConfig {
    fn default() -> Self {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        TrackingConfig {
            runtime_processes: names(&["dockerd", "containerd", "containerd-shim", "runc", "crun", "conmon"]),
            oci_runtimes: names(&["runc", "crun"]),
        }
    }
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            record_timeout: Duration::from_secs(30),
            max_in_progress: 1024,
            max_processes: 16384,
            max_pending_mounts: 4096,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        let b = Buckets::Exponential { start: 0.0005, factor: 1.5, max: 10.0 };
        MetricsConfig { startup_buckets: b.clone(), phase_buckets: b, bpf_program_stats: false }
    }
}

impl Default for RingBufferConfig {
    fn default() -> Self {
        RingBufferConfig {
            size_bytes: 4 * 1024 * 1024,
            wakeup_bytes: 64 * 1024,
            drain_interval: Duration::from_millis(10),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: LogLevel::Info }
    }
}

impl Buckets {
    /// Upper bounds in seconds, strictly increasing.
    pub fn bounds(&self) -> Vec<f64> {
        match self {
            Buckets::Explicit(v) => v.clone(),
            Buckets::Exponential { start, factor, max } => {
                let mut v = Vec::new();
                let mut b = *start;
                while b < *max * (1.0 - 1e-9) && v.len() < 200 {
                    v.push(round_sig(b));
                    b *= factor;
                }
                v.push(*max);
                v
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        match self {
            Buckets::Exponential { start, factor, max } => {
                if !(start.is_finite() && *start > 0.0) {
                    return Err(format!("start must be a positive number of seconds, got {start}"));
                }
                if !(factor.is_finite() && *factor > 1.0) {
                    return Err(format!("factor must be greater than 1, got {factor}"));
                }
                if !(max.is_finite() && max > start) {
                    return Err(format!("max must be greater than start ({start}), got {max}"));
                }
                let n = ((max / start).ln() / factor.ln()).ceil() + 1.0;
                if n > 100.0 {
                    return Err(format!("{n} buckets is too many (at most 100): raise factor"));
                }
                // bounds are rounded to 4 significant digits: they must stay distinct
                if self.bounds().windows(2).any(|w| w[0] >= w[1]) {
                    return Err(format!("factor {factor} is too small for bounds rounded to 4 significant digits"));
                }
                Ok(())
            }
            Buckets::Explicit(v) => {
                if v.is_empty() || v.len() > 100 {
                    return Err(format!("needs 1 to 100 bounds, got {}", v.len()));
                }
                if v.iter().any(|b| !b.is_finite() || *b <= 0.0) {
                    return Err("bounds must be positive numbers of seconds".into());
                }
                if v.windows(2).any(|w| w[0] >= w[1]) {
                    return Err("bounds must be strictly increasing".into());
                }
                Ok(())
            }
        }
    }
}

impl OtlpConfig {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(e) = &self.endpoint {
            crate::traces::check_endpoint(e).map_err(|r| ("otlp.endpoint", r))?;
        }
        if let Some(bad) = self.headers.keys().find(|k| !crate::traces::is_header_name(k)) {
            return Err(("otlp.headers", format!("{bad:?} is not a valid header name")));
        }
        if let Some((k, _)) = self.headers.iter().find(|(_, v)| !crate::traces::is_header_value(v)) {
            return Err(("otlp.headers", format!("the value of {k:?} has control characters")));
        }
        if self.service_name.trim().is_empty() {
            return Err(("otlp.service_name", "must not be empty".into()));
        }
        if self.resource_attributes.contains_key("service.name") {
            return Err(("otlp.resource_attributes", "set service.name with otlp.service_name".into()));
        }
        if let Some(bad) = self.resource_attributes.keys().find(|k| k.trim().is_empty()) {
            return Err(("otlp.resource_attributes", format!("{bad:?} is not an attribute name")));
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(300) {
            return Err(("otlp.timeout", format!("must be between 100ms and 5m, got {:?}", self.timeout)));
        }
        if !(16..=1_000_000).contains(&self.max_queue_size) {
            return Err((
                "otlp.max_queue_size",
                format!("must be between 16 and 1000000, got {}", self.max_queue_size),
            ));
        }
        Ok(())
    }
}

/// Four significant digits keep `le` labels readable.
fn round_sig(x: f64) -> f64 {
    let mag = 10f64.powf(x.log10().floor() - 3.0);
    (x / mag).round() * mag
}

impl Config {
    /// Parses YAML text; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<Config, ConfigError> {
        let invalid = |path: String, reason: String| ConfigError::Invalid { file: file.to_string(), path, reason };
        // An empty file means "all defaults".
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let de = serde_yaml::Deserializer::from_str(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = match e.path().to_string() {
                p if p == "." => "(top level)".to_string(),
                p => p,
            };
            invalid(path.clone(), reason_text(&path, &e.inner().to_string()))
        })?;
        cfg.validate().map_err(|(p, r)| invalid(p.to_string(), r))?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        Config::from_yaml(&text, &file)
    }

    /// The embedded default, or the file given.
    pub fn load(path: Option<&PathBuf>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => Config::from_file(p),
            None => Config::from_yaml(DEFAULT_YAML, "<embedded config/default.yaml>"),
        }
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.http.recent_records == 0 || self.http.recent_records > 100_000 {
            return Err((
                "http.recent_records",
                format!("must be between 1 and 100000, got {}", self.http.recent_records),
            ));
        }
        let names = &self.tracking.runtime_processes;
        if names.is_empty() {
            return Err(("tracking.runtime_processes", "must name at least one process".into()));
        }
        if names.len() > 64 {
            return Err(("tracking.runtime_processes", "at most 64 names".into()));
        }
        if let Some(bad) = names.iter().find(|n| n.is_empty() || n.contains('/') || n.contains('*')) {
            return Err((
                "tracking.runtime_processes",
                format!("{bad:?} is not a process name (no paths or wildcards; names longer than 15 characters match on their first 15)"),
            ));
        }
        if let Some(bad) = self.tracking.oci_runtimes.iter().find(|r| r.len() > 15) {
            return Err((
                "tracking.oci_runtimes",
                format!("{bad:?} is longer than the 15 characters of a kernel comm, so it would never match"),
            ));
        }
        if let Some(bad) = self.tracking.oci_runtimes.iter().find(|r| !names.contains(r)) {
            return Err((
                "tracking.oci_runtimes",
                format!("{bad:?} is not in tracking.runtime_processes, so it would never be seen"),
            ));
        }
        let a = &self.aggregator;
        if a.record_timeout < Duration::from_millis(100) || a.record_timeout > Duration::from_secs(3600) {
            return Err((
                "aggregator.record_timeout",
                format!("must be between 100ms and 1h, got {:?}", a.record_timeout),
            ));
        }
        for (key, v) in [
            ("aggregator.max_in_progress", a.max_in_progress),
            ("aggregator.max_processes", a.max_processes),
            ("aggregator.max_pending_mounts", a.max_pending_mounts),
        ] {
            if !(16..=1_000_000).contains(&v) {
                return Err((key, format!("must be between 16 and 1000000, got {v}")));
            }
        }
        self.metrics.startup_buckets.check().map_err(|r| ("metrics.startup_buckets", r))?;
        self.metrics.phase_buckets.check().map_err(|r| ("metrics.phase_buckets", r))?;
        let rb = &self.ring_buffer;
        if !rb.size_bytes.is_power_of_two() || rb.size_bytes < 64 * 1024 || rb.size_bytes > 1 << 30 {
            return Err((
                "ring_buffer.size_bytes",
                format!("must be a power of two between 65536 and 1073741824, got {}", rb.size_bytes),
            ));
        }
        if rb.wakeup_bytes == 0 || rb.wakeup_bytes >= rb.size_bytes {
            return Err((
                "ring_buffer.wakeup_bytes",
                format!("must be between 1 and size_bytes ({}), got {}", rb.size_bytes, rb.wakeup_bytes),
            ));
        }
        if rb.drain_interval < Duration::from_millis(1) || rb.drain_interval > Duration::from_secs(1) {
            return Err((
                "ring_buffer.drain_interval",
                format!("must be between 1ms and 1s, got {:?}", rb.drain_interval),
            ));
        }
        self.otlp.check()?;
        Ok(())
    }

    /// Names as the kernel compares them: comm is at most 15 bytes.
    pub fn kernel_comms(&self) -> Vec<[u8; cse_common::COMM_LEN]> {
        self.tracking
            .runtime_processes
            .iter()
            .map(|n| {
                let mut c = [0u8; cse_common::COMM_LEN];
                let b = n.as_bytes();
                let len = b.len().min(cse_common::COMM_LEN - 1);
                c[..len].copy_from_slice(&b[..len]);
                c
            })
            .collect()
    }
}

/// serde_yaml's message without its own (partial) path prefix, one line.
fn reason_text(path: &str, msg: &str) -> String {
    let line = msg.lines().next().unwrap_or_default();
    match line.split_once(": ") {
        Some((head, rest)) if path.starts_with(head) => rest.to_string(),
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> String {
        Config::from_yaml(yaml, "t.yaml").unwrap_err().to_string()
    }

    #[test]
    fn embedded_default_equals_code_defaults() {
        let c = Config::load(None).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::from_yaml("\n", "t").unwrap(), Config::default());
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = Config::from_yaml("http:\n  listen_address: 127.0.0.1:1234\n", "t").unwrap();
        assert_eq!(c.http.listen_address.port(), 1234);
        assert_eq!(c.http.recent_records, 256);
        assert_eq!(c.aggregator, AggregatorConfig::default());
    }

    #[test]
    fn unknown_key_names_its_path() {
        let e = err("aggregator:\n  record_timout: 5s\n");
        assert!(e.starts_with("t.yaml: aggregator.record_timout: unknown field `record_timout`"), "{e}");
    }

    #[test]
    fn unknown_top_level_key() {
        let e = err("htp: {}\n");
        assert!(e.starts_with("t.yaml: htp: unknown field `htp`"), "{e}");
    }

    #[test]
    fn bad_duration() {
        let e = err("aggregator:\n  record_timeout: soon\n");
        assert!(e.starts_with("t.yaml: aggregator.record_timeout: "), "{e}");
    }

    #[test]
    fn bad_address() {
        let e = err("http:\n  listen_address: localhost\n");
        assert!(e.starts_with("t.yaml: http.listen_address: "), "{e}");
    }

    #[test]
    fn out_of_range_values() {
        assert_eq!(
            err("ring_buffer:\n  size_bytes: 100000\n"),
            "t.yaml: ring_buffer.size_bytes: must be a power of two between 65536 and 1073741824, got 100000"
        );
        assert_eq!(
            err("aggregator:\n  record_timeout: 10ms\n"),
            "t.yaml: aggregator.record_timeout: must be between 100ms and 1h, got 10ms"
        );
        assert!(err("metrics:\n  phase_buckets: {explicit: [0.1, 0.05]}\n")
            .contains("metrics.phase_buckets: bounds must be strictly increasing"));
        assert!(err("metrics:\n  startup_buckets: {exponential: {start: 0.001, factor: 1, max: 1}}\n")
            .contains("factor must be greater than 1"));
        assert!(err("tracking:\n  oci_runtimes: [youki]\n").contains("tracking.oci_runtimes: \"youki\""));
        assert!(err("tracking:\n  runtime_processes: [\"containerd-shim*\"]\n").contains("wildcards"));
        assert!(err("metrics:\n  phase_buckets: {exponential: {start: 1, factor: 1.00001, max: 1.0001}}\n")
            .contains("too small for bounds rounded"));
        assert!(err(
            "tracking:\n  runtime_processes: [containerd-shim-runc-v2]\n  oci_runtimes: [containerd-shim-runc-v2]\n"
        )
        .contains("longer than the 15 characters"));
    }

    #[test]
    fn default_buckets_span_half_ms_to_ten_s() {
        let b = Config::default().metrics.startup_buckets.bounds();
        assert_eq!(b[0], 0.0005);
        assert_eq!(*b.last().unwrap(), 10.0);
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(b.len(), 26);
    }

    #[test]
    fn otlp_section() {
        assert!(!Config::default().otlp.enabled);
        let c = Config::from_yaml(
            "otlp:\n  enabled: true\n  endpoint: http://127.0.0.1:14318/v1/traces\n  protocol: http/protobuf\n  headers: {x-token: abc}\n  timeout: 2s\n",
            "t",
        )
        .unwrap();
        assert!(c.otlp.enabled);
        assert_eq!(c.otlp.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(c.otlp.headers["x-token"], "abc");
        assert_eq!(c.otlp.timeout, Duration::from_secs(2));
        assert_eq!(c.otlp.max_queue_size, 2048);
        assert!(err("otlp:\n  protocol: http/json\n").starts_with("t.yaml: otlp.protocol: unknown variant `http/json`"));
        assert!(err("otlp:\n  endpoint: ftp://x\n").contains("otlp.endpoint: "));
        assert!(err("otlp:\n  endpoint: https://collector:4317\n").contains("TLS"));
        assert!(err("otlp:\n  headers: {\"bad header\": x}\n").contains("otlp.headers: \"bad header\""));
        assert!(err("otlp:\n  resource_attributes: {service.name: x}\n").contains("otlp.service_name"));
        assert!(err("otlp:\n  max_queue_size: 1\n").contains("otlp.max_queue_size: must be between"));
        assert!(err("otlp:\n  timeout: 1ms\n").contains("otlp.timeout: must be between"));
        assert!(err("otlp:\n  enabeld: true\n").contains("otlp.enabeld: unknown field"));
    }

    #[test]
    fn comms_are_cut_to_15_bytes() {
        let mut c = Config::default();
        c.tracking.runtime_processes = vec!["containerd-shim-runc-v2".into()];
        assert_eq!(&c.kernel_comms()[0], b"containerd-shim\0");
    }
}
