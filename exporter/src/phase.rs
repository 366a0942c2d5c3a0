//! The phases of a container start: the one place where they are named.
//!
//! These names are a contract: the `phase` label of the metrics, the span
//! names of traces, the dashboard and the README all use them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Enter → return of each overlay mount (mount(2), or fsopen → move_mount)
    /// whose target later becomes the container's rootfs; summed over mounts.
    OverlayMount,
    /// Exec of `containerd-shim* … -id <id> start` → exec of the OCI runtime
    /// (`runc create`) for that id.
    ShimStart,
    /// Exec of `runc … create … <id>` → exit of that process.
    RuncCreate,
    /// First cgroup mkdir for the container → last cgroup attach for it seen
    /// before the start completes.
    CgroupSetup,
    /// Enter → return of the runtime's unshare/clone with CLONE_NEW* flags.
    NamespaceCreate,
    /// First mount by the container's init → return of its pivot_root.
    RootfsSetup,
    /// Enter → return of the rtnetlink RTM_NEWLINK request of kind veth whose
    /// peer is then moved into the container's network namespace.
    VethCreate,
    /// Exec of `runc init` → enter of the entrypoint's execve by that init.
    RuncInit,
    /// Enter of the entrypoint's execve → the new image running
    /// (sched_process_exec), or the execve's failure.
    Exec,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::OverlayMount,
        Phase::ShimStart,
        Phase::RuncCreate,
        Phase::CgroupSetup,
        Phase::NamespaceCreate,
        Phase::RootfsSetup,
        Phase::VethCreate,
        Phase::RuncInit,
        Phase::Exec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::OverlayMount => "overlay_mount",
            Phase::ShimStart => "shim_start",
            Phase::RuncCreate => "runc_create",
            Phase::CgroupSetup => "cgroup_setup",
            Phase::NamespaceCreate => "namespace_create",
            Phase::RootfsSetup => "rootfs_setup",
            Phase::VethCreate => "veth_create",
            Phase::RuncInit => "runc_init",
            Phase::Exec => "exec",
        }
    }
}

impl Phase {
    /// The OTLP span name of one observation: `container.start.<phase>`
    /// (static, so building a span allocates no name).
    pub fn span_name(self) -> &'static str {
        match self {
            Phase::OverlayMount => "container.start.overlay_mount",
            Phase::ShimStart => "container.start.shim_start",
            Phase::RuncCreate => "container.start.runc_create",
            Phase::CgroupSetup => "container.start.cgroup_setup",
            Phase::NamespaceCreate => "container.start.namespace_create",
            Phase::RootfsSetup => "container.start.rootfs_setup",
            Phase::VethCreate => "container.start.veth_create",
            Phase::RuncInit => "container.start.runc_init",
            Phase::Exec => "container.start.exec",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde_and_contract() {
        let contract = include_str!("../../docs/contract.md");
        for p in Phase::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert!(contract.contains(&format!("| `{}` |", p.as_str())), "{p} missing from docs/contract.md");
            assert_eq!(p.span_name(), format!("container.start.{p}"));
        }
    }
}
