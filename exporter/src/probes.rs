//! Loading the BPF object and attaching its programs.
//!
//! The process-tree programs are required: without them nothing can be
//! attributed. Every other program serves one or more phases; if it cannot
//! attach, those phases are missing from records (degraded) and the failure is
//! logged and exported, but the daemon keeps running.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::config::Config;
use crate::phase::Phase;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// `tracepoint/<category>/<name>` through perf events (needs tracefs).
    TracePoint(&'static str, &'static str),
    /// BTF-typed raw tracepoint.
    BtfTracePoint(&'static str),
}

impl Attach {
    pub fn kind(self) -> &'static str {
        match self {
            Attach::TracePoint(..) => "tracepoint",
            Attach::BtfTracePoint(_) => "tp_btf",
        }
    }

    pub fn target(self) -> String {
        match self {
            Attach::TracePoint(c, n) => format!("{c}:{n}"),
            Attach::BtfTracePoint(n) => n.to_string(),
        }
    }
}

pub struct ProbeSpec {
    /// Function name in probes.bpf.c.
    pub program: &'static str,
    pub attach: Attach,
    /// Without it the exporter cannot work at all.
    pub required: bool,
    /// Phases that go missing if it does not attach.
    pub phases: &'static [Phase],
}

use Attach::{BtfTracePoint as Btp, TracePoint as Tp};
use Phase::*;

const ALL_PHASES: &[Phase] = &Phase::ALL;
const MOUNTS: &[Phase] = &[OverlayMount, RootfsSetup];

pub const PROBES: &[ProbeSpec] = &[
    ProbeSpec { program: "handle_exec", attach: Btp("sched_process_exec"), required: true, phases: ALL_PHASES },
    ProbeSpec { program: "handle_fork", attach: Btp("sched_process_fork"), required: true, phases: ALL_PHASES },
    ProbeSpec { program: "handle_exit", attach: Btp("sched_process_exit"), required: true, phases: ALL_PHASES },
    ProbeSpec {
        program: "enter_execve",
        attach: Tp("syscalls", "sys_enter_execve"),
        required: false,
        phases: &[Exec, RuncInit],
    },
    ProbeSpec { program: "exit_execve", attach: Tp("syscalls", "sys_exit_execve"), required: false, phases: &[Exec] },
    ProbeSpec {
        program: "enter_execveat",
        attach: Tp("syscalls", "sys_enter_execveat"),
        required: false,
        phases: &[Exec, RuncInit],
    },
    ProbeSpec {
        program: "exit_execveat",
        attach: Tp("syscalls", "sys_exit_execveat"),
        required: false,
        phases: &[Exec],
    },
    ProbeSpec { program: "enter_mount", attach: Tp("syscalls", "sys_enter_mount"), required: false, phases: MOUNTS },
    ProbeSpec { program: "exit_mount", attach: Tp("syscalls", "sys_exit_mount"), required: false, phases: MOUNTS },
    ProbeSpec {
        program: "enter_fsopen",
        attach: Tp("syscalls", "sys_enter_fsopen"),
        required: false,
        phases: &[OverlayMount],
    },
    ProbeSpec {
        program: "exit_fsopen",
        attach: Tp("syscalls", "sys_exit_fsopen"),
        required: false,
        phases: &[OverlayMount],
    },
    ProbeSpec {
        program: "enter_fsmount",
        attach: Tp("syscalls", "sys_enter_fsmount"),
        required: false,
        phases: &[OverlayMount],
    },
    ProbeSpec {
        program: "exit_fsmount",
        attach: Tp("syscalls", "sys_exit_fsmount"),
        required: false,
        phases: &[OverlayMount],
    },
    ProbeSpec {
        program: "enter_move_mount",
        attach: Tp("syscalls", "sys_enter_move_mount"),
        required: false,
        phases: &[OverlayMount],
    },
    ProbeSpec {
        program: "exit_move_mount",
        attach: Tp("syscalls", "sys_exit_move_mount"),
        required: false,
        phases: &[OverlayMount],
    },
    ProbeSpec {
        program: "enter_pivot_root",
        attach: Tp("syscalls", "sys_enter_pivot_root"),
        required: false,
        phases: &[RootfsSetup],
    },
    ProbeSpec {
        program: "exit_pivot_root",
        attach: Tp("syscalls", "sys_exit_pivot_root"),
        required: false,
        phases: &[RootfsSetup],
    },
    ProbeSpec {
        program: "enter_unshare",
        attach: Tp("syscalls", "sys_enter_unshare"),
        required: false,
        phases: &[NamespaceCreate, VethCreate],
    },
    ProbeSpec {
        program: "exit_unshare",
        attach: Tp("syscalls", "sys_exit_unshare"),
        required: false,
        phases: &[NamespaceCreate, VethCreate],
    },
    ProbeSpec {
        program: "enter_clone",
        attach: Tp("syscalls", "sys_enter_clone"),
        required: false,
        phases: &[NamespaceCreate],
    },
    ProbeSpec {
        program: "exit_clone",
        attach: Tp("syscalls", "sys_exit_clone"),
        required: false,
        phases: &[NamespaceCreate],
    },
    ProbeSpec {
        program: "enter_clone3",
        attach: Tp("syscalls", "sys_enter_clone3"),
        required: false,
        phases: &[NamespaceCreate],
    },
    ProbeSpec {
        program: "exit_clone3",
        attach: Tp("syscalls", "sys_exit_clone3"),
        required: false,
        phases: &[NamespaceCreate],
    },
    ProbeSpec { program: "handle_cgroup_mkdir", attach: Btp("cgroup_mkdir"), required: false, phases: &[CgroupSetup] },
    ProbeSpec {
        program: "handle_cgroup_attach",
        attach: Btp("cgroup_attach_task"),
        required: false,
        phases: &[CgroupSetup],
    },
    ProbeSpec {
        program: "enter_sendto",
        attach: Tp("syscalls", "sys_enter_sendto"),
        required: false,
        phases: &[VethCreate],
    },
    ProbeSpec {
        program: "exit_sendto",
        attach: Tp("syscalls", "sys_exit_sendto"),
        required: false,
        phases: &[VethCreate],
    },
    ProbeSpec {
        program: "enter_sendmsg",
        attach: Tp("syscalls", "sys_enter_sendmsg"),
        required: false,
        phases: &[VethCreate],
    },
    ProbeSpec {
        program: "exit_sendmsg",
        attach: Tp("syscalls", "sys_exit_sendmsg"),
        required: false,
        phases: &[VethCreate],
    },
];

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read kernel BTF from /sys/kernel/btf/vmlinux: {0}")]
    Btf(#[source] aya::BtfError),
    #[error("the kernel refused the BPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("BPF object has no {kind} named {name}")]
    Missing { kind: &'static str, name: &'static str },
    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("required probe {program} ({target}) failed: {reason}")]
    Required { program: &'static str, target: String, reason: String },
}

/// How one probe fared.
#[derive(Debug, Clone)]
pub struct ProbeStatus {
    pub program: &'static str,
    pub attach_type: &'static str,
    pub target: String,
    pub attached: bool,
    pub error: Option<String>,
    /// Phases that go missing while it is not attached.
    pub phases: &'static [Phase],
}

pub struct Probes {
    ebpf: Ebpf,
    pub status: Vec<ProbeStatus>,
    /// Kept open while run-time statistics are wanted.
    _stats: Option<OwnedFd>,
}

/// Kernel-side counters, summed over CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Ring buffer reserve failures by event kind (index = kind).
    pub ringbuf_full: [u64; cse_common::EV_KIND_MAX as usize],
    pub tracked_full: u64,
}

/// A program's run-time statistics from the kernel (bpf_prog_info).
#[derive(Debug, Clone)]
pub struct ProgramStats {
    pub program: &'static str,
    pub run_count: u64,
    pub run_time_ns: u64,
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> ProbeError {
    move |source| ProbeError::Map { name, source }
}

impl Probes {
    /// Loads the object, fills the configuration maps and attaches every
    /// program; fails only if a required probe cannot attach.
    pub fn load(cfg: &Config) -> Result<Probes, ProbeError> {
        let btf = Btf::from_sys_fs().map_err(ProbeError::Btf)?;
        let wakeup = cfg.ring_buffer.wakeup_bytes;
        let capture = u32::from(cfg.capture.entrypoint_args);
        // one bit per possible tgid
        let words = pid_max().div_ceil(64);
        let mut first = [0u64; 4];
        for c in cfg.kernel_comms() {
            first[usize::from(c[0] >> 6)] |= 1u64 << (c[0] & 63);
        }
        let ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("cfg_wakeup_bytes", &wakeup, true)
            .override_global("cfg_capture_args", &capture, true)
            .override_global("cfg_comm_first", &first, true)
            .override_global("cfg_host_mnt_ns", &host_mnt_ns(), true)
            .map_max_entries("events", cfg.ring_buffer.size_bytes)
            .map_max_entries("tracked", words)
            .map_max_entries("pivoted", words)
            .load(cse_ebpf::object())
            .map_err(ProbeError::Load)?;
        let stats = if cfg.metrics.bpf_program_stats {
            match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot enable BPF run-time statistics; bpf_program_* metrics stay at 0");
                    None
                }
            }
        } else {
            None
        };
        let mut probes = Probes { ebpf, status: Vec::new(), _stats: stats };
        probes.configure(cfg)?;
        for spec in PROBES {
            let target = spec.attach.target();
            let result = probes.attach(spec, &btf);
            if let Err(reason) = &result {
                if spec.required {
                    return Err(ProbeError::Required { program: spec.program, target, reason: reason.clone() });
                }
            }
            probes.status.push(ProbeStatus {
                program: spec.program,
                attach_type: spec.attach.kind(),
                target,
                attached: result.is_ok(),
                error: result.err(),
                phases: spec.phases,
            });
        }
        Ok(probes)
    }

    fn configure(&mut self, cfg: &Config) -> Result<(), ProbeError> {
        let map =
            self.ebpf.map_mut("runtime_comms").ok_or(ProbeError::Missing { kind: "map", name: "runtime_comms" })?;
        let mut comms: BpfHashMap<_, [u8; cse_common::COMM_LEN], u8> =
            BpfHashMap::try_from(map).map_err(map_err("runtime_comms"))?;
        for c in cfg.kernel_comms() {
            comms.insert(c, 1, 0).map_err(map_err("runtime_comms"))?;
        }
        Ok(())
    }

    fn attach(&mut self, spec: &ProbeSpec, btf: &Btf) -> Result<(), String> {
        let prog =
            self.ebpf.program_mut(spec.program).ok_or_else(|| format!("no program {} in the object", spec.program))?;
        match spec.attach {
            Attach::TracePoint(category, name) => {
                let p: &mut TracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
                p.load().map_err(|e| verifier_reason(&e))?;
                p.attach(category, name).map_err(|e| format!("attach: {e}"))?;
            }
            Attach::BtfTracePoint(name) => {
                let p: &mut BtfTracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
                p.load(name, btf).map_err(|e| verifier_reason(&e))?;
                p.attach().map_err(|e| format!("attach: {e}"))?;
            }
        }
        Ok(())
    }

    /// Follows these already-running processes (the runtimes started before us).
    pub fn track(&mut self, pids: &[u32]) -> Result<usize, ProbeError> {
        let map = self.ebpf.map_mut("tracked").ok_or(ProbeError::Missing { kind: "map", name: "tracked" })?;
        let mut tracked: Array<_, u64> = Array::try_from(map).map_err(map_err("tracked"))?;
        let mut words: BTreeMap<u32, (u64, usize)> = BTreeMap::new();
        for &pid in pids {
            let w = words.entry(pid / 64).or_default();
            w.0 |= 1u64 << (pid % 64);
            w.1 += 1;
        }
        let mut n = 0;
        for (idx, (bits, count)) in words {
            // a bit the kernel sets in this word between our get and set is
            // lost, which this one-off startup scan accepts
            let Ok(word) = tracked.get(&idx, 0) else { continue };
            if tracked.set(idx, word | bits, 0).is_ok() {
                n += count;
            }
        }
        Ok(n)
    }

    pub fn take_ring_buffer(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self.ebpf.take_map("events").ok_or(ProbeError::Missing { kind: "map", name: "events" })?;
        RingBuf::try_from(map).map_err(map_err("events"))
    }

    pub fn counters(&self) -> Result<KernelCounters, ProbeError> {
        let map = self.ebpf.map("counters").ok_or(ProbeError::Missing { kind: "map", name: "counters" })?;
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err("counters"))?;
        let sum = |i: u32| -> Result<u64, ProbeError> { Ok(arr.get(&i, 0).map_err(map_err("counters"))?.iter().sum()) };
        let mut c = KernelCounters::default();
        for kind in 1..cse_common::EV_KIND_MAX {
            c.ringbuf_full[kind as usize] = sum(kind)?;
        }
        c.tracked_full = sum(cse_common::CNT_TRACKED_FULL)?;
        Ok(c)
    }

    /// Run counts and times of the attached programs.
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        let mut out = Vec::new();
        for s in self.status.iter().filter(|s| s.attached) {
            let Some(prog) = self.ebpf.program(s.program) else { continue };
            let info = match prog {
                aya::programs::Program::TracePoint(p) => p.info(),
                aya::programs::Program::BtfTracePoint(p) => p.info(),
                _ => continue,
            };
            if let Ok(info) = info {
                out.push(ProgramStats {
                    program: s.program,
                    run_count: info.run_count(),
                    run_time_ns: info.run_time().as_nanos() as u64,
                });
            }
        }
        out
    }
}

/// Inode of the host's mount namespace: pid 1's (the exporter runs with the
/// host's pid namespace), 0 if unreadable, which turns the check off.
fn host_mnt_ns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/1/ns/mnt").map(|m| m.ino() as u32).unwrap_or(0)
}

/// Highest pid + 1 the kernel hands out.
fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(4_194_304)
}

/// The verifier's log is long; its last lines say what failed.
fn verifier_reason(e: &aya::programs::ProgramError) -> String {
    let s = format!("{e}");
    let tail: Vec<&str> = s.lines().rev().take(3).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
}
