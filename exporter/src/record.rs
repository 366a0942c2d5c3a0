//! A finished container start, as served on /api/v1/startups, printed by
//! `trace` and turned into metrics (and traces).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::phase::Phase;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Timeout,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Timeout];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Timeout => "timeout",
        }
    }
}

/// One observation of a phase (several mounts give several spans).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub phase: Phase,
    /// Kernel boot-clock ns.
    pub start_ns: u64,
    pub end_ns: u64,
    pub pid: u32,
    /// What the kernel showed about it (paths, flags, names, errors).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
}

impl Span {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// A phase summed over its spans.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseTotal {
    pub phase: Phase,
    pub start_ns: u64,
    pub end_ns: u64,
    pub duration_seconds: f64,
    pub count: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NamespaceFacts {
    /// CLONE_NEW* names of the namespaces created.
    pub created: Vec<String>,
    pub mnt: u32,
    pub uts: u32,
    pub ipc: u32,
    pub pid: u32,
    pub net: u32,
    pub cgroup: u32,
    pub user: u32,
    pub time: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Id from the runtime's command line (`runc create … <id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<String>,
    /// Id as the last component of `--bundle`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// Id found in the container's cgroup path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Every source that was seen names the same id.
    pub consistent: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Entrypoint {
    pub pid: u32,
    pub filename: String,
    /// Only when `capture.entrypoint_args` is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkFacts {
    pub veth_host: String,
    pub veth_peer: String,
    pub netns_inum: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartupRecord {
    pub container_id: String,
    /// Process name of the OCI runtime, or `unknown`.
    pub runtime: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// First event attributed to the container (boot-clock ns).
    pub start_ns: u64,
    /// The entrypoint running, or the failure / timeout.
    pub end_ns: u64,
    pub duration_seconds: f64,
    pub phases: Vec<PhaseTotal>,
    pub spans: Vec<Span>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<NamespaceFacts>,
    pub identity: Identity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Entrypoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkFacts>,
}

impl StartupRecord {
    pub fn phase(&self, p: Phase) -> Option<&PhaseTotal> {
        self.phases.iter().find(|t| t.phase == p)
    }
}

/// Sums spans per phase, in phase order.
pub fn totals(spans: &[Span]) -> Vec<PhaseTotal> {
    Phase::ALL
        .iter()
        .filter_map(|&phase| {
            let mut it = spans.iter().filter(|s| s.phase == phase);
            let first = it.next()?;
            let mut t =
                PhaseTotal { phase, start_ns: first.start_ns, end_ns: first.end_ns, duration_seconds: 0.0, count: 1 };
            let mut sum = first.duration_ns();
            for s in it {
                t.start_ns = t.start_ns.min(s.start_ns);
                t.end_ns = t.end_ns.max(s.end_ns);
                t.count += 1;
                sum += s.duration_ns();
            }
            t.duration_seconds = sum as f64 / 1e9;
            Some(t)
        })
        .collect()
}
