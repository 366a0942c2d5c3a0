//! Records from the captured fixtures turned into spans, the settings'
//! precedence, and the queue's bounds with exporters that fail or hang.

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};

use super::*;
use crate::aggregator::{self, Aggregator, Output};
use crate::config::Config;
use crate::event::Event;
use crate::metrics::Metrics;
use crate::phase::Phase;

const NONE_BRIDGE_FAILURE: &str = include_str!("../../tests/fixtures/docker-none-bridge-failure.jsonl");
const EXEC_STOP_PARALLEL: &str = include_str!("../../tests/fixtures/docker-exec-stop-parallel.jsonl");

fn records(fixture: &str, capture_args: bool) -> Vec<StartupRecord> {
    let mut agg = Aggregator::new(aggregator::Settings { capture_args, ..Default::default() });
    let mut out = Vec::new();
    let mut last = 0;
    for line in fixture.lines().filter(|l| !l.trim().is_empty()) {
        let ev: Event = serde_json::from_str(line).unwrap();
        last = ev.meta().ts;
        agg.handle(&ev, &mut out);
    }
    agg.tick(last, &mut out);
    out.into_iter()
        .filter_map(|o| match o {
            Output::Completed(r) => Some(*r),
            _ => None,
        })
        .collect()
}

fn all_records() -> Vec<StartupRecord> {
    let mut v = records(NONE_BRIDGE_FAILURE, false);
    v.extend(records(EXEC_STOP_PARALLEL, false));
    assert!(v.len() >= 5);
    v
}

fn ns(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos()
}

fn attr<'a>(s: &'a SpanData, key: &str) -> Option<&'a Value> {
    s.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
}

const OFFSET: i128 = 1_700_000_000_000_000_000;

#[test]
fn spans_are_the_records_spans() {
    let f = SpanFactory::new(OFFSET, true);
    for r in all_records() {
        let spans = f.spans(&r);
        assert_eq!(spans.len(), r.spans.len() + 1);
        let root = &spans[0];
        assert_eq!(root.name, ROOT_SPAN_NAME);
        assert_eq!(root.parent_span_id, SpanId::INVALID);
        assert_eq!(ns(root.start_time), (r.start_ns as i128 + OFFSET) as u128);
        assert_eq!(ns(root.end_time) - ns(root.start_time), u128::from(r.end_ns - r.start_ns));
        let root_ctx = &root.span_context;
        assert!(root_ctx.is_valid() && root_ctx.is_sampled());
        for (child, s) in spans[1..].iter().zip(&r.spans) {
            assert_eq!(child.name, s.phase.span_name());
            assert_eq!(child.parent_span_id, root_ctx.span_id());
            assert_eq!(child.span_context.trace_id(), root_ctx.trace_id());
            assert_ne!(child.span_context.span_id(), root_ctx.span_id());
            // the same nanoseconds as the record, hence as `trace`
            assert_eq!(ns(child.end_time) - ns(child.start_time), u128::from(s.duration_ns()));
            assert_eq!(ns(child.start_time), (s.start_ns as i128 + OFFSET) as u128);
            assert!(child.start_time >= root.start_time && child.end_time <= root.end_time, "{}", child.name);
            assert_eq!(attr(child, "container_startup.phase"), Some(&Value::from(s.phase.as_str())));
            assert_eq!(attr(child, "process.pid"), Some(&Value::I64(i64::from(s.pid))));
        }
        // Per phase, the children add up to the record's totals (the numbers
        // the `trace` timeline and the metrics show).
        for total in &r.phases {
            let (count, sum) = spans[1..]
                .iter()
                .filter(|c| c.name == total.phase.span_name())
                .fold((0, 0u128), |(n, t), c| (n + 1, t + ns(c.end_time) - ns(c.start_time)));
            assert_eq!(count, total.count, "{}", total.phase);
            assert_eq!(sum as f64 / 1e9, total.duration_seconds, "{}", total.phase);
        }
        assert_eq!(attr(root, "container.id"), Some(&Value::from(r.container_id.clone())));
        assert_eq!(attr(root, "container.runtime"), Some(&Value::from(r.runtime.clone())));
        assert_eq!(attr(root, "container_startup.outcome"), Some(&Value::from(r.outcome.as_str())));
        assert!(attr(root, "process.command_args").is_none(), "args only when captured");
        for kv in &root.attributes {
            let k = kv.key.as_str();
            assert!(
                k.starts_with(ATTR_PREFIX) || k.starts_with("container.") || k.starts_with("process."),
                "{k} has neither a semantic-convention name nor our prefix"
            );
        }
    }
}

#[test]
fn several_mounts_give_several_spans() {
    let r = all_records().into_iter().find(|r| r.phase(Phase::OverlayMount).is_some_and(|p| p.count > 1)).unwrap();
    let spans = SpanFactory::new(0, true).spans(&r);
    let mounts: Vec<_> = spans.iter().filter(|s| s.name == "container.start.overlay_mount").collect();
    assert!(mounts.len() > 1);
    assert!(mounts.iter().all(|m| attr(m, "container_startup.target").is_some()));
}

#[test]
fn failed_start_is_an_error() {
    let recs = all_records();
    let failed = recs.iter().find(|r| r.outcome == Outcome::Failure).expect("fixture has a failing start");
    let spans = SpanFactory::new(0, true).spans(failed);
    let reason = failed.failure_reason.clone().unwrap();
    assert_eq!(spans[0].status, Status::error(reason.clone()));
    assert_eq!(attr(&spans[0], "container_startup.failure_reason"), Some(&Value::from(reason)));
    let ok = recs.iter().find(|r| r.outcome == Outcome::Success).unwrap();
    let spans = SpanFactory::new(0, true).spans(ok);
    assert!(spans.iter().all(|s| s.status == Status::Unset));

    let mut timeout = ok.clone();
    timeout.outcome = Outcome::Timeout;
    timeout.failure_reason = None;
    assert_eq!(SpanFactory::new(0, true).spans(&timeout)[0].status, Status::error("timeout"));
}

#[test]
fn identity_namespaces_network_and_entrypoint() {
    let recs = records(NONE_BRIDGE_FAILURE, true);
    let bridged = recs.iter().find(|r| r.network.is_some()).expect("fixture has a bridged start");
    let root = &SpanFactory::new(0, true).spans(bridged)[0];
    let net = bridged.network.as_ref().unwrap();
    assert_eq!(attr(root, "container_startup.network.veth_host"), Some(&Value::from(net.veth_host.clone())));
    assert!(attr(root, "container_startup.namespaces.created").is_some());
    assert!(attr(root, "container_startup.namespaces.mnt").is_some());
    assert_eq!(attr(root, "container_startup.identity.consistent"), Some(&Value::Bool(bridged.identity.consistent)));
    let e = bridged.entrypoint.as_ref().unwrap();
    assert_eq!(attr(root, "process.pid"), Some(&Value::I64(i64::from(e.pid))));
    let args = e.args.as_ref().expect("captured");
    let want = Value::Array(Array::String(args.iter().map(|a| StringValue::from(a.clone())).collect()));
    assert_eq!(attr(root, "process.command_args"), Some(&want));
    let name = attr(root, "process.executable.name").unwrap().as_str();
    assert!(!name.contains('/') && e.filename.ends_with(name.as_ref()));
}

#[test]
fn trace_id_rule() {
    let id = "6e5f834a423c95453f55782eedac1802dedee78d85061ce71b36134d63f50aef";
    assert_eq!(trace_id_for(id).to_string(), "6e5f834a423c95453f55782eedac1802");
    // not hex, too short, upper case, all zeros: SHA-256, as docs/traces.md
    // shows (python3 -c 'import hashlib; print(hashlib.sha256(b"container-startup-exporter:exp1").hexdigest()[:32])')
    assert_eq!(trace_id_for("exp1").to_string(), "d80d19b5c1ff7e7ff1aca228a0b0c29f");
    assert_ne!(trace_id_for(&id.to_uppercase()).to_string(), id[..32]);
    assert_ne!(trace_id_for(&"0".repeat(64)), TraceId::INVALID);
    let f = SpanFactory::new(0, true);
    let r = &all_records()[0];
    assert_eq!(f.spans(r)[0].span_context.trace_id(), trace_id_for(&r.container_id));
    let random = SpanFactory::new(0, false);
    assert_ne!(random.spans(r)[0].span_context.trace_id(), random.spans(r)[0].span_context.trace_id());
}

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| m.get(k).cloned()
}

fn resolve(cfg: &OtlpConfig, vars: &[(&str, &str)]) -> Result<Option<Settings>, TracesError> {
    Settings::resolve(cfg, &env_of(vars))
}

fn on() -> OtlpConfig {
    OtlpConfig { enabled: true, ..OtlpConfig::default() }
}

#[test]
fn off_unless_configured() {
    assert_eq!(resolve(&OtlpConfig::default(), &[]).unwrap(), None);
    assert_eq!(resolve(&on(), &[("OTEL_TRACES_EXPORTER", "none")]).unwrap(), None);
    let s = resolve(&OtlpConfig::default(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]).unwrap().unwrap();
    assert_eq!(s.endpoint, "http://c:4317");
    assert!(resolve(&OtlpConfig::default(), &[("OTEL_TRACES_EXPORTER", "otlp")]).unwrap().is_some());
    let e = resolve(&on(), &[("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
    assert!(e.is_config());
    assert!(e.to_string().starts_with("environment variable OTEL_TRACES_EXPORTER: \"zipkin\""), "{e}");
}

#[test]
fn defaults() {
    let s = resolve(&on(), &[]).unwrap().unwrap();
    assert_eq!(s.endpoint, "http://localhost:4317");
    assert_eq!(s.protocol, OtlpProtocol::Grpc);
    assert_eq!(s.timeout, Duration::from_secs(10));
    assert_eq!(s.max_queue_size, 2048);
    assert!(s.deterministic_trace_id);
    assert_eq!(s.service_name(), "container-startup-exporter");
    assert_eq!(s.resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert!(!s.resource["host.name"].is_empty());
    let http = OtlpConfig { protocol: OtlpProtocol::HttpProtobuf, ..on() };
    assert_eq!(resolve(&http, &[]).unwrap().unwrap().endpoint, "http://localhost:4318/v1/traces");
}

#[test]
fn endpoints() {
    let file = OtlpConfig { endpoint: Some("127.0.0.1:14317".into()), ..on() };
    assert_eq!(resolve(&file, &[]).unwrap().unwrap().endpoint, "http://127.0.0.1:14317");
    let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318/")];
    assert_eq!(resolve(&file, &vars).unwrap().unwrap().endpoint, "http://base:4318/", "grpc: as it is");
    let http = [vars[0], ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")];
    let s = resolve(&file, &http).unwrap().unwrap();
    assert_eq!((s.protocol, s.endpoint.as_str()), (OtlpProtocol::HttpProtobuf, "http://base:4318/v1/traces"));
    let signal = [http[0], http[1], ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9/custom")];
    assert_eq!(resolve(&file, &signal).unwrap().unwrap().endpoint, "http://t:9/custom");
    let file_http = OtlpConfig { protocol: OtlpProtocol::HttpProtobuf, endpoint: Some("http://c:4318".into()), ..on() };
    assert_eq!(resolve(&file_http, &[]).unwrap().unwrap().endpoint, "http://c:4318/v1/traces");
    let file_path = OtlpConfig { endpoint: Some("http://c:4318/otlp/v1/traces".into()), ..file_http };
    assert_eq!(resolve(&file_path, &[]).unwrap().unwrap().endpoint, "http://c:4318/otlp/v1/traces");
    let e = resolve(&on(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4317")]).unwrap_err().to_string();
    assert!(e.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && e.contains("TLS"), "{e}");
    assert!(resolve(&on(), &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http:///x")]).is_err());
}

#[test]
fn protocol_headers_timeout() {
    let vars = [("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")];
    assert_eq!(resolve(&on(), &vars).unwrap().unwrap().protocol, OtlpProtocol::HttpProtobuf);
    let e = resolve(&on(), &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err().to_string();
    assert!(e.contains("OTEL_EXPORTER_OTLP_PROTOCOL: \"http/json\" is not supported"), "{e}");

    let mut file = on();
    file.headers.insert("a".into(), "file".into());
    file.headers.insert("b".into(), "file".into());
    let vars = [("OTEL_EXPORTER_OTLP_HEADERS", "b=env, c=x%20y"), ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "c=traces")];
    let h = resolve(&file, &vars).unwrap().unwrap().headers;
    assert_eq!(
        h.into_iter().collect::<Vec<_>>(),
        [("a", "file"), ("b", "env"), ("c", "traces")].map(|(k, v)| (k.to_string(), v.to_string()))
    );
    let h = resolve(&on(), &[("OTEL_EXPORTER_OTLP_HEADERS", "k=x%20y")]).unwrap().unwrap().headers;
    assert_eq!(h["k"], "x y");
    assert!(resolve(&on(), &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]).is_err());
    assert!(resolve(&on(), &[("OTEL_EXPORTER_OTLP_HEADERS", "k=%zz")]).is_err());

    let t = [("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"), ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700")];
    assert_eq!(resolve(&on(), &t).unwrap().unwrap().timeout, Duration::from_millis(700));
    assert!(resolve(&on(), &[("OTEL_EXPORTER_OTLP_TIMEOUT", "5s")]).is_err());
}

#[test]
fn resource_precedence() {
    let mut file = OtlpConfig { service_name: "from-file".into(), ..on() };
    file.resource_attributes.insert("deployment.environment.name".into(), "file".into());
    file.resource_attributes.insert("k8s.cluster.name".into(), "file".into());
    let s = resolve(&file, &[]).unwrap().unwrap();
    assert_eq!(s.service_name(), "from-file");
    let vars = [("OTEL_RESOURCE_ATTRIBUTES", "service.name=attrs,k8s.cluster.name=env,host.name=node-1")];
    let s = resolve(&file, &vars).unwrap().unwrap();
    assert_eq!(s.service_name(), "attrs");
    assert_eq!(s.resource["k8s.cluster.name"], "env");
    assert_eq!(s.resource["deployment.environment.name"], "file");
    assert_eq!(s.resource["host.name"], "node-1");
    let vars = [vars[0], ("OTEL_SERVICE_NAME", "svc")];
    assert_eq!(resolve(&file, &vars).unwrap().unwrap().service_name(), "svc");
    let res = s.otel_resource();
    assert_eq!(res.get(&opentelemetry::Key::from_static_str("telemetry.sdk.language")), Some(Value::from("rust")));
}

#[test]
fn builds_both_exporters() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _g = rt.enter();
    let mut s = resolve(&on(), &[("OTEL_EXPORTER_OTLP_HEADERS", "x-token=abc")]).unwrap().unwrap();
    s.build_exporter().unwrap();
    s.protocol = OtlpProtocol::HttpProtobuf;
    s.endpoint = DEFAULT_HTTP_ENDPOINT.into();
    s.build_exporter().unwrap();
}

/// Collects what it is sent; can be told to fail, or to wait for permits.
#[derive(Debug, Clone, Default)]
struct TestExporter {
    got: Arc<Mutex<Vec<SpanData>>>,
    fail: Arc<AtomicBool>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl SpanExporter for TestExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if let Some(gate) = &self.gate {
            gate.acquire().await.map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?.forget();
        }
        if self.fail.load(Ordering::Relaxed) {
            return Err(OTelSdkError::InternalFailure("collector down".into()));
        }
        self.got.lock().unwrap().extend(batch);
        Ok(())
    }
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared::new(Metrics::new(&Config::default()).unwrap(), 16, 1))
}

fn dropped(s: &Shared, reason: &str) -> u64 {
    s.metrics.spans_dropped.with_label_values(&[reason]).get()
}

fn settings(max_queue_size: usize) -> Settings {
    Settings { max_queue_size, timeout: Duration::from_secs(5), ..resolve(&on(), &[]).unwrap().unwrap() }
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn queue_is_bounded_and_recovers() {
    let recs = all_records();
    let r = recs.iter().find(|r| r.spans.len() >= 8).unwrap();
    let n = r.spans.len() + 1;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let exp = TestExporter { gate: Some(gate.clone()), ..Default::default() };
    let sh = shared();
    let e2 = exp.clone();
    let mut t = Traces::start_with(&settings(2 * n), sh.clone(), move || Ok(e2)).unwrap();
    // the collector hangs: two starts fit, the next ones are dropped whole
    for _ in 0..5 {
        t.record(r);
    }
    assert_eq!(t.pending(), 2 * n);
    assert_eq!(dropped(&sh, "queue_full"), 3 * n as u64);
    // it answers again: what was queued goes out, new starts are admitted
    gate.add_permits(1000);
    wait_until("the queue to drain", || t.pending() == 0).await;
    t.record(r);
    wait_until("the new start", || exp.got.lock().unwrap().len() == 3 * n).await;
    t.shutdown(FLUSH_DEADLINE).await;
    assert_eq!(dropped(&sh, "export_failed"), 0);
}

#[tokio::test]
async fn failed_exports_are_counted_and_shutdown_flushes() {
    let recs = all_records();
    let exp = TestExporter::default();
    exp.fail.store(true, Ordering::Relaxed);
    let sh = shared();
    let e2 = exp.clone();
    let mut t = Traces::start_with(&settings(2048), sh.clone(), move || Ok(e2)).unwrap();
    t.record(&recs[0]);
    wait_until("the failure", || t.pending() == 0).await;
    assert_eq!(dropped(&sh, "export_failed"), recs[0].spans.len() as u64 + 1);
    exp.fail.store(false, Ordering::Relaxed);
    for r in &recs {
        t.record(r);
    }
    // shutdown right away: everything queued is still exported
    t.shutdown(FLUSH_DEADLINE).await;
    let want: usize = recs.iter().map(|r| r.spans.len() + 1).sum();
    assert_eq!(exp.got.lock().unwrap().len(), want);
    assert_eq!(dropped(&sh, "queue_full"), 0);
}

#[tokio::test]
async fn shutdown_is_bounded_when_the_collector_hangs() {
    let r = &all_records()[0];
    let exp = TestExporter { gate: Some(Arc::new(tokio::sync::Semaphore::new(0))), ..Default::default() };
    let sh = shared();
    let mut t = Traces::start_with(&settings(2048), sh.clone(), move || Ok(exp)).unwrap();
    t.record(r);
    t.record(r);
    let t0 = Instant::now();
    t.shutdown(Duration::from_millis(200)).await;
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(dropped(&sh, "export_failed"), 2 * (r.spans.len() as u64 + 1));
}

#[test]
fn build_errors_reach_the_caller() {
    let e = Traces::start_with(&settings(64), shared(), || -> Result<TestExporter, TracesError> {
        Err(env_err("X", "bad"))
    });
    assert!(matches!(e, Err(TracesError::Env { var: "X", .. })));
}
