//! The binary's edge: CLI, logging, exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use cse::config::{Config, ConfigError};
use cse::daemon::{self, Sink};
use cse::event::Event;
use cse::http::Shared;
use cse::metrics::Metrics;
use cse::preflight::{self, PreflightError};
use cse::probes::Probes;
use cse::record::StartupRecord;
use cse::traces::{self, Traces, TracesError};
use cse::{procscan, timeline};

#[derive(Parser)]
#[command(
    name = "container-startup-exporter",
    version,
    about = "Where the time of each container start goes, from eBPF"
)]
struct Cli {
    /// YAML configuration (default: the embedded config/default.yaml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the exporter (the default).
    Run,
    /// Check a configuration file and exit: 0 if valid, 2 if not.
    CheckConfig { file: PathBuf },
    /// Print each container start as a timeline as it completes.
    Trace {
        /// One JSON record per line instead of the timeline.
        #[arg(long)]
        json: bool,
    },
    /// Write every decoded kernel event as a JSON line (for bug reports and
    /// test fixtures) until interrupted.
    Capture {
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
    },
}

const EXIT_CONFIG: u8 = 2;
const EXIT_ENVIRONMENT: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match Config::from_file(file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let cfg = match Config::load(cli.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&cfg);
    // The event pipeline runs on this thread (block_on); HTTP gets its own
    // worker, so a slow or busy client cannot hold up the ring-buffer drain.
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(cli.command, cfg)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let env = e.downcast_ref::<PreflightError>().is_some() || e.downcast_ref::<std::io::Error>().is_some();
            let bad_traces_config = e.downcast_ref::<TracesError>().is_some_and(TracesError::is_config);
            if e.downcast_ref::<ConfigError>().is_some() || bad_traces_config {
                ExitCode::from(EXIT_CONFIG)
            } else if env {
                ExitCode::from(EXIT_ENVIRONMENT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // the configured level for our own logs; libraries only warn
        let l = cfg.log.level.as_str();
        tracing_subscriber::EnvFilter::new(format!("warn,cse={l},container_startup_exporter={l}"))
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// Loads and attaches the probes and starts following running runtimes.
fn start_probes(cfg: &Config, shared: &Shared) -> Result<Probes> {
    preflight::check()?;
    let mut probes = Probes::load(cfg).context("loading the BPF programs")?;
    let pids = procscan::runtime_pids(Path::new("/proc"), &cfg.tracking.runtime_processes);
    let n = probes.track(&pids)?;
    tracing::info!(processes = n, "following running runtime processes");
    daemon::report_probes(&probes, shared);
    release_load_memory();
    Ok(probes)
}

/// Parsing the kernel's BTF and loading the programs peaks at ~40 MiB of heap
/// that is never needed again; hand it back to the kernel.
fn release_load_memory() {
    // SAFETY: malloc_trim only releases free heap pages; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

struct Quiet;
impl Sink for Quiet {
    fn record(&mut self, _: &StartupRecord) {}
}

struct Printer {
    json: bool,
}
impl Sink for Printer {
    fn record(&mut self, r: &StartupRecord) {
        let text = if self.json {
            serde_json::to_string(r).map(|s| s + "\n").unwrap_or_default()
        } else {
            timeline::render(r) + "\n"
        };
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// Another sink, plus the trace of every record when tracing is on: the
/// traces come from the same records as what `inner` shows.
struct WithTraces<'a, S> {
    inner: S,
    traces: Option<&'a mut Traces>,
}
impl<S: Sink> Sink for WithTraces<'_, S> {
    fn event(&mut self, ev: &Event) {
        self.inner.event(ev);
    }
    fn record(&mut self, r: &StartupRecord) {
        self.inner.record(r);
        if let Some(t) = self.traces.as_deref_mut() {
            t.record(r);
        }
    }
}

/// The trace exporter, when the config or the OTEL_* variables turn it on.
fn start_traces(cfg: &Config, shared: &Arc<Shared>) -> Result<Option<Traces>> {
    let Some(settings) = traces::Settings::from_env(&cfg.otlp)? else {
        return Ok(None);
    };
    Ok(Some(Traces::start(&settings, shared.clone())?))
}

/// Flushes pending spans, within traces::FLUSH_DEADLINE.
async fn stop_traces(traces: Option<Traces>) {
    if let Some(t) = traces {
        t.shutdown(traces::FLUSH_DEADLINE).await;
    }
}

struct Capture {
    out: std::io::BufWriter<std::fs::File>,
}
impl Sink for Capture {
    fn event(&mut self, ev: &Event) {
        if let Ok(line) = serde_json::to_string(ev) {
            let _ = writeln!(self.out, "{line}");
        }
    }
    fn record(&mut self, r: &StartupRecord) {
        let _ = self.out.flush();
        eprintln!("{}", timeline::render(r));
    }
}

async fn run(cmd: Option<Command>, cfg: Config) -> Result<()> {
    let metrics = Metrics::new(&cfg)?;
    let deadline = (cfg.ring_buffer.drain_interval * 20).max(std::time::Duration::from_secs(2));
    let shared = Arc::new(Shared::new(metrics, cfg.http.recent_records, deadline.as_nanos() as u64));
    match cmd {
        None | Some(Command::Run) => {
            // Bind first: a busy port must fail before anything is attached.
            let addr = cfg.http.listen_address;
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr}: {e}; set http.listen_address to a free address"),
                )
            })?;
            // Before the probes: a bad OTEL_* variable stops us before anything is attached.
            let mut traces = start_traces(&cfg, &shared)?;
            let probes = start_probes(&cfg, &shared)?;
            tracing::info!(%addr, "serving /metrics, /healthz, /readyz, /api/v1/startups");
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let server = axum::serve(listener, cse::http::router(shared.clone())).with_graceful_shutdown({
                let mut rx = stop_rx.clone();
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                }
            });
            let server = tokio::spawn(async move { server.await });
            let sink = WithTraces { inner: Quiet, traces: traces.as_mut() };
            let result = daemon::run(&cfg, probes, shared, sink, shutdown_signal()).await;
            let _ = stop_tx.send(true);
            stop_traces(traces).await;
            result?;
            server.await.context("HTTP server task")?.context("HTTP server")?;
        }
        Some(Command::Trace { json }) => {
            let mut traces = start_traces(&cfg, &shared)?;
            let probes = start_probes(&cfg, &shared)?;
            eprintln!("tracing container starts; Ctrl-C to stop");
            let sink = WithTraces { inner: Printer { json }, traces: traces.as_mut() };
            let result = daemon::run(&cfg, probes, shared, sink, shutdown_signal()).await;
            stop_traces(traces).await;
            result?;
        }
        Some(Command::Capture { output }) => {
            let file = std::fs::File::create(&output).with_context(|| format!("cannot create {}", output.display()))?;
            let probes = start_probes(&cfg, &shared)?;
            eprintln!("capturing events to {}; Ctrl-C to stop", output.display());
            let sink = Capture { out: std::io::BufWriter::new(file) };
            daemon::run(&cfg, probes, shared, sink, shutdown_signal()).await?;
        }
        Some(Command::CheckConfig { .. }) => unreachable!("handled before the runtime starts"),
    }
    Ok(())
}
