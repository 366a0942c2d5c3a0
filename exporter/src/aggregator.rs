//! Rebuilds container starts from kernel events.
//!
//! A pure state machine: it is fed decoded events and the current time (both
//! on the kernel's boot clock, ns) and emits [`Output`]s; it never reads a
//! clock, a file or the kernel, so recorded event sequences replay exactly.
//!
//! How a start is followed (Docker → containerd → shim → runc):
//! - `containerd-shim… -id <id> start` or `runc … create … <id>` opens a record;
//!   the processes that exec'd them, and everything they fork, are associated
//!   with it.
//! - Overlay mounts happen earlier, in dockerd, before the id appears anywhere:
//!   they wait in a table keyed by mount target until an associated process
//!   bind-mounts that path (the runtime's rootfs bind).
//! - A veth pair is created by dockerd for no container in particular; it is
//!   attributed when a link is moved into the network namespace that the
//!   record's namespace_create produced.
//! - The entrypoint's exec (flagged by the kernel) completes the record.
//!
//! Every table is bounded; what is evicted or expires is reported.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::event::{CgroupOp, Event, Meta, Namespaces, NetlinkOp, NsSyscall};
use crate::phase::Phase;
use crate::record::{self, Entrypoint, Identity, NamespaceFacts, NetworkFacts, Outcome, Span, StartupRecord};

#[derive(Debug, Clone)]
pub struct Settings {
    pub record_timeout_ns: u64,
    pub max_in_progress: usize,
    pub max_processes: usize,
    pub max_pending_mounts: usize,
    /// Names that are OCI runtimes (the `runtime` label); others are `unknown`.
    pub oci_runtimes: Vec<String>,
    pub capture_args: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            record_timeout_ns: 30_000_000_000,
            max_in_progress: 1024,
            max_processes: 16384,
            max_pending_mounts: 4096,
            oci_runtimes: vec!["runc".into(), "crun".into()],
            capture_args: false,
        }
    }
}

/// Bounded tables, for the evictions counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    InProgress,
    Processes,
    PendingMounts,
    PendingVeths,
}

impl Table {
    pub const ALL: [Table; 4] = [Table::InProgress, Table::Processes, Table::PendingMounts, Table::PendingVeths];

    pub fn as_str(self) -> &'static str {
        match self {
            Table::InProgress => "in_progress",
            Table::Processes => "processes",
            Table::PendingMounts => "pending_mounts",
            Table::PendingVeths => "pending_veths",
        }
    }
}

/// What the aggregator reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Completed(Box<StartupRecord>),
    /// An entry was dropped to keep a table within its bound.
    Evicted {
        table: Table,
    },
    /// An in-progress start was dropped without a result.
    Abandoned {
        container_id: String,
        reason: &'static str,
    },
    /// Sources of the container id disagree.
    IdentityMismatch {
        identity: Identity,
    },
}

const MAX_PENDING_VETHS: usize = 256;
/// How long before a start's first event its veth may have been created.
const VETH_SLACK_NS: u64 = 1_000_000_000;

#[derive(Debug, Clone)]
struct Proc {
    seq: u64,
    /// Insertion order, for eviction.
    order: u64,
    first_mount_ts: Option<u64>,
    child_ns: Option<Namespaces>,
}

#[derive(Debug, Clone)]
struct MountObs {
    start: u64,
    end: u64,
    pid: u32,
    new_api: bool,
    fstype: String,
    target: String,
}

#[derive(Debug, Clone)]
struct VethObs {
    start: u64,
    end: u64,
    pid: u32,
    host: String,
    peer: String,
}

#[derive(Debug)]
struct InProgress {
    id: String,
    created_ts: u64,
    last_ts: u64,
    runtime: Option<String>,
    spans: Vec<Span>,
    pids: Vec<u32>,
    shim_start: Option<(u64, u32)>,
    runc_create: Option<(u64, u32)>,
    runc_create_exited: bool,
    runc_init: Option<(u64, u32)>,
    cgroup_first: Option<u64>,
    cgroup_last: Option<u64>,
    cgroup_pid: u32,
    namespaces: Option<NamespaceFacts>,
    identity: Identity,
    init_pid: Option<u32>,
    rootfs: Option<String>,
    network: Option<NetworkFacts>,
    entrypoint: Option<Entrypoint>,
    failure: Option<String>,
}

impl InProgress {
    fn new(id: &str, ts: u64) -> Self {
        InProgress {
            id: id.to_string(),
            created_ts: ts,
            last_ts: ts,
            runtime: None,
            spans: Vec::new(),
            pids: Vec::new(),
            shim_start: None,
            runc_create: None,
            runc_create_exited: false,
            runc_init: None,
            cgroup_first: None,
            cgroup_last: None,
            cgroup_pid: 0,
            namespaces: None,
            identity: Identity::default(),
            init_pid: None,
            rootfs: None,
            network: None,
            entrypoint: None,
            failure: None,
        }
    }

    fn span(&mut self, phase: Phase, start: u64, end: u64, pid: u32, facts: BTreeMap<String, String>) {
        self.spans.push(Span { phase, start_ns: start.min(end), end_ns: end, pid, facts });
    }
}

pub struct Aggregator {
    s: Settings,
    next_seq: u64,
    next_order: u64,
    records: HashMap<u64, InProgress>,
    by_id: HashMap<String, u64>,
    by_netns: HashMap<u32, u64>,
    procs: HashMap<u32, Proc>,
    pending_mounts: HashMap<String, Vec<MountObs>>,
    pending_veths: VecDeque<VethObs>,
}

fn facts<const N: usize>(kv: [(&str, String); N]) -> BTreeMap<String, String> {
    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The first 64-hex run in a path (`/docker/<id>`, `…/docker-<id>.scope`).
fn id_in_path(path: &str) -> Option<&str> {
    let b = path.as_bytes();
    let mut i = 0;
    while i + 64 <= b.len() {
        let run = b[i..].iter().take_while(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()).count();
        if run == 64 {
            return Some(&path[i..i + 64]);
        }
        i += run.max(1);
    }
    None
}

/// The id a bundle path names: the component equal to the runtime's id
/// (`…/moby/<id>`, conmon's `…/overlay-containers/<id>/userdata`), else its
/// last component.
fn bundle_id<'a>(bundle: &'a str, id: &str) -> &'a str {
    let mut parts = bundle.split('/').filter(|c| !c.is_empty());
    parts.clone().find(|c| *c == id).or_else(|| parts.next_back()).unwrap_or_default()
}

/// `containerd-shim* … -id <id> start`: the id, when this exec starts a shim.
fn shim_start_id(args: &[String]) -> Option<&str> {
    if args.last().map(String::as_str) != Some("start") {
        return None;
    }
    let i = args.iter().position(|a| a == "-id" || a == "--id")?;
    args.get(i + 1).map(String::as_str).filter(|id| !id.is_empty())
}

/// What an OCI runtime's command line asks for.
#[derive(Debug, PartialEq, Eq)]
struct RuntimeCall<'a> {
    subcommand: &'a str,
    id: Option<&'a str>,
    bundle: Option<&'a str>,
}

/// Parses `runc [global options] <subcommand> [options] <id>`.
fn runtime_call(args: &[String]) -> Option<RuntimeCall<'_>> {
    // options that take a separate value (runc and crun)
    const GLOBAL_VALUED: &[&str] = &["--root", "--log", "--log-format", "--criu", "--rootless", "--cgroup-manager"];
    const SUB_VALUED: &[&str] =
        &["-b", "--bundle", "--console-socket", "--pid-file", "--preserve-fds", "--pidfd-socket"];
    let mut it = args.iter().skip(1).map(String::as_str);
    let mut subcommand = None;
    while let Some(a) = it.next() {
        if a.starts_with('-') {
            if GLOBAL_VALUED.contains(&a) {
                it.next();
            }
            continue;
        }
        subcommand = Some(a);
        break;
    }
    let subcommand = subcommand?;
    let mut bundle = None;
    let mut id = None;
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--bundle=") {
            bundle = Some(v);
        } else if a.starts_with('-') {
            if SUB_VALUED.contains(&a) {
                let v = it.next();
                if a == "-b" || a == "--bundle" {
                    bundle = v;
                }
            }
        } else {
            id = Some(a);
        }
    }
    Some(RuntimeCall { subcommand, id, bundle })
}

fn ns_flag_names(flags: u64) -> Vec<String> {
    const NAMES: [(u64, &str); 8] = [
        (0x0002_0000, "mnt"),
        (0x0400_0000, "uts"),
        (0x0800_0000, "ipc"),
        (0x2000_0000, "pid"),
        (0x4000_0000, "net"),
        (0x0200_0000, "cgroup"),
        (0x1000_0000, "user"),
        (0x0000_0080, "time"),
    ];
    NAMES.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, n)| n.to_string()).collect()
}

fn errno_name(e: i32) -> String {
    let name = match e {
        1 => "EPERM",
        2 => "ENOENT",
        7 => "E2BIG",
        8 => "ENOEXEC",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        26 => "ETXTBSY",
        40 => "ELOOP",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

/// The kernel's exit_code as a person reads it.
fn exit_status(code: i32) -> String {
    if code & 0x7f != 0 {
        format!("killed by signal {}", code & 0x7f)
    } else {
        format!("exited with status {}", (code >> 8) & 0xff)
    }
}

const MS_BIND: u64 = 0x1000;

impl Aggregator {
    pub fn new(s: Settings) -> Self {
        Aggregator {
            s,
            next_seq: 1,
            next_order: 0,
            records: HashMap::new(),
            by_id: HashMap::new(),
            by_netns: HashMap::new(),
            procs: HashMap::new(),
            pending_mounts: HashMap::new(),
            pending_veths: VecDeque::new(),
        }
    }

    /// Starts being followed now.
    pub fn in_progress(&self) -> usize {
        self.records.len()
    }

    pub fn tracked_processes(&self) -> usize {
        self.procs.len()
    }

    fn seq_of(&self, pid: u32) -> Option<u64> {
        self.procs.get(&pid).map(|p| p.seq).filter(|s| self.records.contains_key(s))
    }

    fn associate(&mut self, pid: u32, seq: u64, out: &mut Vec<Output>) {
        if !self.procs.contains_key(&pid) && self.procs.len() >= self.s.max_processes {
            self.evict_processes(out);
        }
        self.next_order += 1;
        let order = self.next_order;
        let p = self.procs.entry(pid).or_insert(Proc { seq, order, first_mount_ts: None, child_ns: None });
        p.seq = seq;
        if let Some(r) = self.records.get_mut(&seq) {
            r.pids.push(pid);
        }
    }

    /// Drops the oldest eighth of the process table.
    fn evict_processes(&mut self, out: &mut Vec<Output>) {
        let mut orders: Vec<(u64, u32)> = self.procs.iter().map(|(pid, p)| (p.order, *pid)).collect();
        orders.sort_unstable();
        let n = (orders.len() / 8).max(1);
        for (_, pid) in orders.into_iter().take(n) {
            self.procs.remove(&pid);
            out.push(Output::Evicted { table: Table::Processes });
        }
    }

    fn open(&mut self, id: &str, ts: u64, out: &mut Vec<Output>) -> u64 {
        if let Some(&seq) = self.by_id.get(id) {
            return seq;
        }
        if self.records.len() >= self.s.max_in_progress {
            if let Some((&oldest, _)) = self.records.iter().min_by_key(|(_, r)| r.created_ts) {
                if let Some(r) = self.remove(oldest) {
                    out.push(Output::Evicted { table: Table::InProgress });
                    out.push(Output::Abandoned { container_id: r.id, reason: "table_full" });
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.records.insert(seq, InProgress::new(id, ts));
        self.by_id.insert(id.to_string(), seq);
        seq
    }

    fn remove(&mut self, seq: u64) -> Option<InProgress> {
        let r = self.records.remove(&seq)?;
        self.by_id.remove(&r.id);
        if let Some(ns) = &r.namespaces {
            // the inode may have been reused by a newer start
            if self.by_netns.get(&ns.net) == Some(&seq) {
                self.by_netns.remove(&ns.net);
            }
        }
        for pid in &r.pids {
            if self.procs.get(pid).is_some_and(|p| p.seq == seq) {
                self.procs.remove(pid);
            }
        }
        Some(r)
    }

    /// Feeds one event.
    pub fn handle(&mut self, ev: &Event, out: &mut Vec<Output>) {
        let pid = ev.meta().pid;
        let seq = self.seq_of(pid);
        if let Some(seq) = seq {
            if let Some(r) = self.records.get_mut(&seq) {
                r.last_ts = r.last_ts.max(ev.meta().ts);
            }
        }
        match ev {
            Event::Exec { meta, filename, args, entrypoint, args_truncated, .. } => {
                // a cut command line ends in a cut id: do not open a start from it
                let args: &[String] = if *args_truncated && !*entrypoint { &[] } else { args };
                self.on_exec(meta, seq, filename, args, *entrypoint, out)
            }
            Event::ExecFail { meta, filename, errno, entrypoint, .. } => {
                if let (Some(seq), true) = (seq, *entrypoint) {
                    let reason = format!("exec {filename}: {}", errno_name(*errno));
                    if let Some(r) = self.records.get_mut(&seq) {
                        let f = facts([("filename", filename.clone()), ("error", errno_name(*errno))]);
                        r.span(Phase::Exec, meta.start_ts, meta.ts, pid, f);
                        r.failure = Some(reason);
                    }
                    self.complete(seq, Outcome::Failure, meta.ts, out);
                }
            }
            Event::Fork { child_pid, child_ns, .. } => {
                if let Some(seq) = seq {
                    self.associate(*child_pid, seq, out);
                    if let Some(p) = self.procs.get_mut(child_pid) {
                        p.child_ns = Some(*child_ns);
                    }
                }
            }
            Event::Exit { meta, exit_code } => self.on_exit(meta, seq, *exit_code, out),
            Event::Mount { meta, ret, new_api, flags, fstype, source, target } => {
                if *ret != 0 {
                    return;
                }
                let obs = MountObs {
                    start: meta.start_ts,
                    end: meta.ts,
                    pid,
                    new_api: *new_api,
                    fstype: fstype.clone(),
                    target: target.clone(),
                };
                self.on_mount(seq, obs, *flags, source, out)
            }
            Event::Namespace { meta, syscall, clone_flags, ret, ns } => {
                let Some(seq) = seq else { return };
                if *ret < 0 {
                    return;
                }
                let ns = match syscall {
                    NsSyscall::Unshare => Some(*ns),
                    // the new namespaces are the child's, reported at fork
                    NsSyscall::Clone | NsSyscall::Clone3 => {
                        u32::try_from(*ret).ok().and_then(|child| self.procs.get(&child)).and_then(|p| p.child_ns)
                    }
                };
                let Some(r) = self.records.get_mut(&seq) else { return };
                let names = ns_flag_names(*clone_flags);
                let sys = match syscall {
                    NsSyscall::Unshare => "unshare",
                    NsSyscall::Clone => "clone",
                    NsSyscall::Clone3 => "clone3",
                };
                let f = facts([
                    ("syscall", sys.to_string()),
                    ("flags", format!("{clone_flags:#x}")),
                    ("namespaces", names.join(",")),
                ]);
                r.span(Phase::NamespaceCreate, meta.start_ts, meta.ts, pid, f);
                let facts = r.namespaces.get_or_insert_with(NamespaceFacts::default);
                for n in names {
                    if !facts.created.contains(&n) {
                        facts.created.push(n);
                    }
                }
                if let Some(ns) = ns {
                    facts.mnt = ns.mnt;
                    facts.uts = ns.uts;
                    facts.ipc = ns.ipc;
                    facts.pid = ns.pid;
                    facts.net = ns.net;
                    facts.cgroup = ns.cgroup;
                    facts.user = ns.user;
                    facts.time = ns.time;
                    if clone_flags & 0x4000_0000 != 0 {
                        self.by_netns.insert(ns.net, seq);
                    }
                }
            }
            Event::PivotRoot { meta, ret } => {
                let Some(seq) = seq else { return };
                if *ret != 0 {
                    return;
                }
                let first = self.procs.get(&pid).and_then(|p| p.first_mount_ts);
                let Some(r) = self.records.get_mut(&seq) else { return };
                r.init_pid = Some(pid);
                let start = first.unwrap_or(meta.start_ts);
                r.span(Phase::RootfsSetup, start, meta.ts, pid, BTreeMap::new());
            }
            Event::Cgroup { meta, op, path, .. } => {
                let by_path = id_in_path(path).and_then(|id| self.by_id.get(id).copied());
                let Some(seq) = by_path.or(seq) else { return };
                let Some(r) = self.records.get_mut(&seq) else { return };
                if let Some(id) = id_in_path(path) {
                    r.identity.cgroup.get_or_insert_with(|| id.to_string());
                }
                match op {
                    CgroupOp::Mkdir => {
                        r.cgroup_first.get_or_insert(meta.ts);
                    }
                    CgroupOp::Attach => {
                        r.cgroup_first.get_or_insert(meta.ts);
                        r.cgroup_last = Some(meta.ts);
                    }
                }
                r.cgroup_pid = pid;
            }
            Event::Netlink { meta, op, ret, netns_inum, netns_pid, ifname, peer, .. } => {
                if *ret < 0 {
                    return;
                }
                match op {
                    NetlinkOp::VethCreate => {
                        let obs = VethObs {
                            start: meta.start_ts,
                            end: meta.ts,
                            pid,
                            host: ifname.clone(),
                            peer: peer.clone(),
                        };
                        if self.pending_veths.len() >= MAX_PENDING_VETHS {
                            self.pending_veths.pop_front();
                            out.push(Output::Evicted { table: Table::PendingVeths });
                        }
                        self.pending_veths.push_back(obs);
                    }
                    NetlinkOp::NetnsMove => {
                        let target = if *netns_inum != 0 {
                            self.by_netns.get(netns_inum).copied()
                        } else {
                            self.seq_of(*netns_pid)
                        };
                        let Some(seq) = target else { return };
                        let Some(r) = self.records.get(&seq) else { return };
                        // A veth created before this start began belongs to an
                        // earlier start that failed before moving it.
                        let began = r.spans.iter().map(|s| s.start_ns).min().unwrap_or(r.created_ts).min(r.created_ts);
                        let floor = began.saturating_sub(VETH_SLACK_NS);
                        while self.pending_veths.front().is_some_and(|v| v.end < floor) {
                            self.pending_veths.pop_front();
                        }
                        // The oldest veth not yet moved is the one being moved:
                        // the move names the link by index only.
                        let Some(v) = self.pending_veths.pop_front() else { return };
                        let Some(r) = self.records.get_mut(&seq) else { return };
                        let f = facts([("host_ifname", v.host.clone()), ("peer_ifname", v.peer.clone())]);
                        r.span(Phase::VethCreate, v.start, v.end, v.pid, f);
                        r.network =
                            Some(NetworkFacts { veth_host: v.host, veth_peer: v.peer, netns_inum: *netns_inum });
                    }
                }
            }
        }
    }

    fn on_exec(
        &mut self,
        meta: &Meta,
        seq: Option<u64>,
        filename: &str,
        args: &[String],
        entrypoint: bool,
        out: &mut Vec<Output>,
    ) {
        let pid = meta.pid;
        if entrypoint {
            let Some(seq) = seq else { return };
            let Some(r) = self.records.get_mut(&seq) else { return };
            let enter = if meta.start_ts != 0 { meta.start_ts } else { meta.ts };
            if let Some((start, init_pid)) = r.runc_init {
                r.span(Phase::RuncInit, start, enter, init_pid, BTreeMap::new());
            }
            r.span(Phase::Exec, enter, meta.ts, pid, facts([("filename", filename.to_string())]));
            r.init_pid.get_or_insert(pid);
            r.identity.argv.get_or_insert_with(|| r.id.clone());
            let capture = self.s.capture_args;
            r.entrypoint_set(pid, filename, capture.then(|| args.to_vec()));
            self.complete(seq, Outcome::Success, meta.ts, out);
            return;
        }

        if let Some(id) = shim_start_id(args) {
            if id.len() > 128 {
                return;
            }
            let seq = self.open(id, meta.ts, out);
            self.associate(pid, seq, out);
            if let Some(r) = self.records.get_mut(&seq) {
                r.shim_start.get_or_insert((meta.ts, pid));
            }
            return;
        }

        let runtime = &meta.comm;
        if !self.s.oci_runtimes.iter().any(|r| r == runtime) && !filename.ends_with("/runc") {
            // `runc init` re-execs /proc/self/exe, so its comm is not `runc`
            if args.get(1).map(String::as_str) == Some("init") {
                self.on_runtime_init(meta, seq);
            }
            return;
        }
        match runtime_call(args) {
            Some(call) if call.subcommand == "init" => self.on_runtime_init(meta, seq),
            Some(RuntimeCall { subcommand: "create" | "run", id: Some(id), bundle }) => {
                let seq = self.open(id, meta.ts, out);
                self.associate(pid, seq, out);
                let label = self.runtime_label(runtime);
                let Some(r) = self.records.get_mut(&seq) else { return };
                r.runtime = Some(label);
                r.identity.argv = Some(id.to_string());
                if let Some(b) = bundle {
                    r.identity.bundle = Some(bundle_id(b, id).to_string());
                }
                if let Some((start, shim_pid)) = r.shim_start.take() {
                    r.span(Phase::ShimStart, start, meta.ts, shim_pid, BTreeMap::new());
                }
                r.runc_create = Some((meta.ts, pid));
            }
            _ => {}
        }
    }

    fn on_runtime_init(&mut self, meta: &Meta, seq: Option<u64>) {
        let Some(r) = seq.and_then(|s| self.records.get_mut(&s)) else { return };
        r.runc_init.get_or_insert((meta.ts, meta.pid));
    }

    fn runtime_label(&self, comm: &str) -> String {
        if self.s.oci_runtimes.iter().any(|r| r == comm) {
            comm.to_string()
        } else {
            "unknown".to_string()
        }
    }

    fn on_exit(&mut self, meta: &Meta, seq: Option<u64>, exit_code: i32, out: &mut Vec<Output>) {
        let pid = meta.pid;
        let Some(seq) = seq else {
            return;
        };
        let Some(r) = self.records.get_mut(&seq) else { return };
        let mut done = false;
        if r.runc_create.is_some_and(|(_, p)| p == pid) {
            if let Some((start, _)) = r.runc_create {
                let f = facts([("exit", exit_status(exit_code))]);
                r.span(Phase::RuncCreate, start, meta.ts, pid, f);
            }
            r.runc_create_exited = true;
            if exit_code != 0 {
                r.failure.get_or_insert_with(|| {
                    format!("{} create {}", r.runtime.as_deref().unwrap_or("runtime"), exit_status(exit_code))
                });
                done = true;
            } else if r.failure.is_some() {
                done = true;
            }
        } else if exit_code != 0 || r.init_pid == Some(pid) {
            // The container's init (or a stage of the runtime) died before the
            // entrypoint ran; the runtime's own exit, if still to come, says the rest.
            let who = if r.init_pid == Some(pid) { "container init" } else { "runtime process" };
            r.failure.get_or_insert_with(|| format!("{who} {} ({}) {}", pid, meta.comm, exit_status(exit_code)));
            done = r.runc_create_exited || r.runc_create.is_none();
        }
        self.procs.remove(&pid);
        if done {
            self.complete(seq, Outcome::Failure, meta.ts, out);
        }
    }

    fn on_mount(&mut self, seq: Option<u64>, obs: MountObs, flags: u64, source: &str, out: &mut Vec<Output>) {
        let pid = obs.pid;
        let Some(seq) = seq else {
            if obs.fstype == "overlay" {
                self.pend_mount(obs, out);
            }
            return;
        };
        if let Some(p) = self.procs.get_mut(&pid) {
            p.first_mount_ts.get_or_insert(obs.start);
        }
        let Some(r) = self.records.get_mut(&seq) else { return };
        if obs.fstype == "overlay" {
            r.rootfs.get_or_insert_with(|| obs.target.clone());
            r.span(Phase::OverlayMount, obs.start, obs.end, pid, mount_facts(&obs));
            return;
        }
        // The runtime bind-mounts the rootfs onto itself: that names the
        // overlay mounted earlier by the engine.
        if flags & MS_BIND != 0 {
            let matched =
                self.pending_mounts.remove_entry(source).or_else(|| self.pending_mounts.remove_entry(&obs.target));
            if let Some((path, mut mounts)) = matched {
                // Docker also mounts the container's "-init" layer (…/<layer>-init/merged)
                // while creating it: part of the same start.
                if let Some(init) = init_layer_path(&path) {
                    mounts.extend(self.pending_mounts.remove(&init).unwrap_or_default());
                }
                r.rootfs.get_or_insert(path);
                for m in mounts {
                    r.span(Phase::OverlayMount, m.start, m.end, m.pid, mount_facts(&m));
                }
            }
        }
    }

    fn pend_mount(&mut self, obs: MountObs, out: &mut Vec<Output>) {
        if !self.pending_mounts.contains_key(&obs.target) && self.pending_mounts.len() >= self.s.max_pending_mounts {
            let oldest = self
                .pending_mounts
                .iter()
                .min_by_key(|(_, v)| v.first().map(|m| m.end).unwrap_or(0))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.pending_mounts.remove(&k);
                out.push(Output::Evicted { table: Table::PendingMounts });
            }
        }
        let v = self.pending_mounts.entry(obs.target.clone()).or_default();
        // a path mounted again and again without a start: keep the latest few
        if v.len() >= 8 {
            v.remove(0);
        }
        v.push(obs);
    }

    fn complete(&mut self, seq: u64, outcome: Outcome, end_ts: u64, out: &mut Vec<Output>) {
        let Some(mut r) = self.remove(seq) else { return };
        if let (Some(first), Some(last)) = (r.cgroup_first, r.cgroup_last.or(r.cgroup_first)) {
            let pid = r.cgroup_pid;
            r.span(Phase::CgroupSetup, first, last, pid, BTreeMap::new());
        }
        if outcome == Outcome::Timeout {
            r.failure.get_or_insert_with(|| "the start did not complete in time".to_string());
        }
        r.spans.sort_by_key(|s| (s.start_ns, s.end_ns));
        let start = r.spans.iter().map(|s| s.start_ns).min().unwrap_or(r.created_ts).min(r.created_ts);
        let end = end_ts.max(start);
        let ids: Vec<&String> =
            [&r.identity.argv, &r.identity.bundle, &r.identity.cgroup].into_iter().flatten().collect();
        r.identity.consistent = ids.iter().all(|i| **i == r.id);
        if !r.identity.consistent {
            out.push(Output::IdentityMismatch { identity: r.identity.clone() });
        }
        let rec = StartupRecord {
            container_id: r.id,
            runtime: r.runtime.unwrap_or_else(|| "unknown".to_string()),
            outcome,
            failure_reason: if outcome == Outcome::Success { None } else { r.failure },
            start_ns: start,
            end_ns: end,
            duration_seconds: (end - start) as f64 / 1e9,
            phases: record::totals(&r.spans),
            spans: r.spans,
            namespaces: r.namespaces,
            identity: r.identity,
            init_pid: r.init_pid,
            entrypoint: r.entrypoint,
            rootfs: r.rootfs,
            network: r.network,
        };
        out.push(Output::Completed(Box::new(rec)));
    }

    /// Gives up on every start in progress (the exporter is stopping).
    pub fn abandon_all(&mut self, out: &mut Vec<Output>) {
        let seqs: Vec<u64> = self.records.keys().copied().collect();
        for seq in seqs {
            if let Some(r) = self.remove(seq) {
                out.push(Output::Abandoned { container_id: r.id, reason: "shutdown" });
            }
        }
    }

    /// Expires what waited too long; call periodically with the current time.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Output>) {
        let ttl = self.s.record_timeout_ns;
        let expired: Vec<u64> =
            self.records.iter().filter(|(_, r)| now.saturating_sub(r.created_ts) > ttl).map(|(&s, _)| s).collect();
        for seq in expired {
            let last = self.records.get(&seq).map(|r| r.last_ts).unwrap_or(now);
            self.complete(seq, Outcome::Timeout, last, out);
        }
        self.pending_mounts.retain(|_, v| {
            v.retain(|m| now.saturating_sub(m.end) <= ttl);
            !v.is_empty()
        });
        while self.pending_veths.front().is_some_and(|v| now.saturating_sub(v.end) > ttl) {
            self.pending_veths.pop_front();
        }
    }
}

impl InProgress {
    fn entrypoint_set(&mut self, pid: u32, filename: &str, args: Option<Vec<String>>) {
        self.entrypoint = Some(Entrypoint { pid, filename: filename.to_string(), args });
    }
}

/// `…/overlay2/<layer>/merged` → `…/overlay2/<layer>-init/merged`.
fn init_layer_path(path: &str) -> Option<String> {
    let dir = path.strip_suffix("/merged")?;
    Some(format!("{dir}-init/merged"))
}

fn mount_facts(m: &MountObs) -> BTreeMap<String, String> {
    facts([
        ("target", m.target.clone()),
        ("fstype", m.fstype.clone()),
        ("api", if m.new_api { "fsmount" } else { "mount" }.to_string()),
    ])
}

#[cfg(test)]
mod tests;
