//! container-startup-exporter: rebuilds container starts from eBPF events and
//! exports where their time goes.

pub mod aggregator;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod event;
pub mod http;
pub mod internal;
pub mod metrics;
pub mod phase;
pub mod preflight;
pub mod probes;
pub mod procscan;
pub mod record;
pub mod timeline;
pub mod traces;
