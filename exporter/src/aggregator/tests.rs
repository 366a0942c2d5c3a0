//! Replays of event sequences captured on a real host (`capture` subcommand,
//! Docker 20.10 / containerd 1.6 / runc 1.1, kernel 6.18) and synthetic
//! sequences for the bounds.

use super::*;
use crate::event::Event;
use crate::record::Outcome;

const NONE_BRIDGE_FAILURE: &str = include_str!("../../tests/fixtures/docker-none-bridge-failure.jsonl");
const EXEC_STOP_PARALLEL: &str = include_str!("../../tests/fixtures/docker-exec-stop-parallel.jsonl");
const EXEC_STOP_PARALLEL_NS: &str = include_str!("../../tests/fixtures/docker-exec-stop-parallel.ns");

fn events(text: &str) -> Vec<Event> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("fixture line {l}: {e}")))
        .collect()
}

fn replay(settings: Settings, evs: &[Event]) -> (Vec<StartupRecord>, Vec<Output>) {
    let mut agg = Aggregator::new(settings);
    let mut out = Vec::new();
    for ev in evs {
        agg.handle(ev, &mut out);
    }
    let last = evs.last().map(|e| e.meta().ts).unwrap_or(0);
    agg.tick(last, &mut out);
    let mut records = Vec::new();
    let mut other = Vec::new();
    for o in out {
        match o {
            Output::Completed(r) => records.push(*r),
            o => other.push(o),
        }
    }
    (records, other)
}

fn phases(r: &StartupRecord) -> Vec<&'static str> {
    r.phases.iter().map(|p| p.phase.as_str()).collect()
}

const DOCKER_SUCCESS: [&str; 8] = [
    "overlay_mount",
    "shim_start",
    "runc_create",
    "cgroup_setup",
    "namespace_create",
    "rootfs_setup",
    "runc_init",
    "exec",
];

#[test]
fn none_bridge_and_failing_entrypoint() {
    let (recs, other) = replay(Settings::default(), &events(NONE_BRIDGE_FAILURE));
    assert!(other.is_empty(), "{other:?}");
    // three `docker run`s, then two plain `runc run exp1` started by hand
    let ids: Vec<&str> = recs.iter().map(|r| &r.container_id[..]).collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(ids[0].starts_with("4b64232a78b6"));
    assert!(ids[1].starts_with("17de28cb4cf0"));
    assert!(ids[2].starts_with("6fb0ffca53e2"));
    assert_eq!(&ids[3..], ["exp1", "exp1"]);

    let none = &recs[0];
    assert_eq!(none.outcome, Outcome::Success);
    assert_eq!(none.runtime, "runc");
    assert_eq!(phases(none), DOCKER_SUCCESS);
    assert_eq!(none.phase(Phase::OverlayMount).unwrap().count, 3, "merged, -init and merged again");
    assert!(none.network.is_none());
    assert!(none.identity.consistent);
    assert_eq!(none.identity.cgroup.as_deref(), Some(none.container_id.as_str()));
    assert_eq!(none.identity.bundle.as_deref(), Some(none.container_id.as_str()));
    let ep = none.entrypoint.as_ref().unwrap();
    assert_eq!(ep.filename, "/bin/true");
    assert_eq!(ep.args, None, "arguments are not kept unless configured");
    assert!(none.rootfs.as_deref().unwrap().starts_with("/var/lib/docker/overlay2/"));
    let ns = none.namespaces.as_ref().unwrap();
    assert_eq!(ns.created, ["mnt", "uts", "ipc", "pid", "net"]);
    // total spans from the first overlay mount to the entrypoint running
    let first = none.spans.iter().map(|s| s.start_ns).min().unwrap();
    assert_eq!(none.start_ns, first);
    assert_eq!(none.end_ns, none.phase(Phase::Exec).unwrap().end_ns);
    let sum: f64 = none.duration_seconds;
    assert!((0.1..1.0).contains(&sum), "{sum}");
    // runc_init ends where the entrypoint's execve begins
    assert_eq!(none.phase(Phase::RuncInit).unwrap().end_ns, none.phase(Phase::Exec).unwrap().start_ns);

    let bridge = &recs[1];
    assert_eq!(bridge.outcome, Outcome::Success);
    let mut expect = DOCKER_SUCCESS.to_vec();
    expect.insert(6, "veth_create");
    assert_eq!(phases(bridge), expect);
    let net = bridge.network.as_ref().unwrap();
    assert_eq!((net.veth_host.as_str(), net.veth_peer.as_str()), ("veth9261747", "vetha5a06eb"));
    assert_eq!(net.netns_inum, bridge.namespaces.as_ref().unwrap().net);

    let failed = &recs[2];
    assert_eq!(failed.outcome, Outcome::Failure);
    assert_eq!(phases(failed), &DOCKER_SUCCESS[..6]);
    let reason = failed.failure_reason.as_deref().unwrap();
    assert!(reason.contains("exited with status 1"), "{reason}");

    for plain in &recs[3..] {
        assert_eq!(plain.outcome, Outcome::Success);
        assert!(plain.phase(Phase::OverlayMount).is_some());
        assert!(plain.phase(Phase::RuncCreate).is_some());
    }
}

#[test]
fn exec_and_stop_are_not_starts_and_inums_match_proc() {
    let (recs, other) = replay(Settings::default(), &events(EXEC_STOP_PARALLEL));
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(recs.len(), 4, "one detached start (then exec ×2, stop) and three parallel starts");
    let d = &recs[0];
    assert!(d.container_id.starts_with("dd6338c835e3"));
    assert_eq!(d.entrypoint.as_ref().unwrap().filename, "/bin/sleep");

    let ns = d.namespaces.as_ref().unwrap();
    let want = |name: &str| -> u32 {
        let line = EXEC_STOP_PARALLEL_NS.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
        line.split('[').nth(1).unwrap().trim_end_matches(']').parse().unwrap()
    };
    assert_eq!(ns.mnt, want("mnt"));
    assert_eq!(ns.uts, want("uts"));
    assert_eq!(ns.ipc, want("ipc"));
    assert_eq!(ns.pid, want("pid"));
    assert_eq!(ns.net, want("net"));
    assert_eq!(ns.cgroup, want("cgroup"));
    assert_eq!(ns.user, want("user"));

    let parallel = &recs[1..];
    let mut peers: Vec<&str> = parallel
        .iter()
        .map(|r| {
            assert_eq!(r.outcome, Outcome::Success);
            r.network.as_ref().unwrap().veth_peer.as_str()
        })
        .collect();
    peers.sort();
    assert_eq!(peers, ["vethd72a6c8", "vethed7e8c6", "vethef08db7"]);
    for r in parallel {
        assert_eq!(r.network.as_ref().unwrap().netns_inum, r.namespaces.as_ref().unwrap().net);
    }
}

#[test]
fn argument_capture_is_opt_in() {
    let s = Settings { capture_args: true, ..Settings::default() };
    let mut evs = events(NONE_BRIDGE_FAILURE);
    // the kernel only sends them when configured to; emulate that here
    for ev in &mut evs {
        if let Event::Exec { entrypoint: true, args, .. } = ev {
            *args = vec!["true".into()];
        }
    }
    let (recs, _) = replay(s, &evs);
    assert_eq!(recs[0].entrypoint.as_ref().unwrap().args.as_deref(), Some(&["true".to_string()][..]));
}

fn meta(ts: u64, pid: u32, comm: &str) -> Meta {
    Meta { ts, start_ts: 0, pid, tid: pid, ppid: 1, comm: comm.into() }
}

fn shim_start(ts: u64, pid: u32, id: &str) -> Event {
    Event::Exec {
        meta: meta(ts, pid, "containerd-shim"),
        old_comm: "containerd".into(),
        filename: "/usr/bin/containerd-shim-runc-v2".into(),
        args: ["containerd-shim-runc-v2", "-namespace", "moby", "-id", id, "start"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        entrypoint: false,
        args_truncated: false,
    }
}

#[test]
fn unfinished_start_times_out() {
    let mut agg = Aggregator::new(Settings::default());
    let mut out = Vec::new();
    agg.handle(&shim_start(1_000, 10, &"a".repeat(64)), &mut out);
    agg.tick(1_000 + 29_000_000_000, &mut out);
    assert!(out.is_empty());
    assert_eq!(agg.in_progress(), 1);
    agg.tick(1_000 + 31_000_000_000, &mut out);
    let [Output::Completed(r)] = &out[..] else { panic!("{out:?}") };
    assert_eq!(r.outcome, Outcome::Timeout);
    assert_eq!(agg.in_progress(), 0);
    assert_eq!(agg.tracked_processes(), 0);
}

#[test]
fn a_stale_veth_is_not_given_to_a_later_start() {
    // Replay the bridge start of the fixture with a leftover veth, created
    // 20 s earlier by a start that failed before moving it, queued first.
    let mut evs = events(NONE_BRIDGE_FAILURE);
    let first_veth = evs.iter().position(|e| matches!(e, Event::Netlink { op: NetlinkOp::VethCreate, .. })).unwrap();
    let mut stale = evs[first_veth].clone();
    if let Event::Netlink { meta, ifname, peer, .. } = &mut stale {
        meta.ts -= 20_000_000_000;
        meta.start_ts -= 20_000_000_000;
        *ifname = "vethstale0".into();
        *peer = "vethstale1".into();
    }
    evs.insert(0, stale);
    let (recs, _) = replay(Settings::default(), &evs);
    let net = recs[1].network.as_ref().unwrap();
    assert_eq!(net.veth_peer, "vetha5a06eb");
    assert!(recs[1].duration_seconds < 1.0);
}

#[test]
fn shutdown_abandons_what_is_in_progress() {
    let mut agg = Aggregator::new(Settings::default());
    let mut out = Vec::new();
    agg.handle(&shim_start(1, 10, &"c".repeat(64)), &mut out);
    agg.abandon_all(&mut out);
    assert_eq!(out, [Output::Abandoned { container_id: "c".repeat(64), reason: "shutdown" }]);
    assert_eq!((agg.in_progress(), agg.tracked_processes()), (0, 0));
}

#[test]
fn in_progress_table_is_bounded() {
    let s = Settings { max_in_progress: 16, ..Settings::default() };
    let mut agg = Aggregator::new(s);
    let mut out = Vec::new();
    for i in 0..20u32 {
        agg.handle(&shim_start(u64::from(i) + 1, 100 + i, &format!("{i:064x}")), &mut out);
    }
    assert_eq!(agg.in_progress(), 16);
    let evicted = out.iter().filter(|o| matches!(o, Output::Evicted { table: Table::InProgress })).count();
    let abandoned: Vec<&str> = out
        .iter()
        .filter_map(|o| match o {
            Output::Abandoned { container_id, .. } => Some(container_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(evicted, 4);
    assert_eq!(abandoned, [format!("{:064x}", 0), format!("{:064x}", 1), format!("{:064x}", 2), format!("{:064x}", 3)]);
}

#[test]
fn pending_mounts_are_bounded_and_expire() {
    let s = Settings { max_pending_mounts: 16, ..Settings::default() };
    let mut agg = Aggregator::new(s);
    let mut out = Vec::new();
    for i in 0..20u64 {
        let ev = Event::Mount {
            meta: meta(i + 1, 5, "dockerd"),
            ret: 0,
            new_api: false,
            flags: 0,
            fstype: "overlay".into(),
            source: "overlay".into(),
            target: format!("/var/lib/docker/overlay2/{i}/merged"),
        };
        agg.handle(&ev, &mut out);
    }
    assert_eq!(agg.pending_mounts.len(), 16);
    assert_eq!(out.len(), 4);
    assert!(out.iter().all(|o| *o == Output::Evicted { table: Table::PendingMounts }));
    agg.tick(100 + 31_000_000_000, &mut out);
    assert!(agg.pending_mounts.is_empty());
}

#[test]
fn process_table_is_bounded() {
    let s = Settings { max_processes: 16, ..Settings::default() };
    let mut agg = Aggregator::new(s);
    let mut out = Vec::new();
    agg.handle(&shim_start(1, 10, &"b".repeat(64)), &mut out);
    for child in 11..40u32 {
        let ev =
            Event::Fork { meta: meta(2, 10, "containerd-shim"), child_pid: child, child_ns: Namespaces::default() };
        agg.handle(&ev, &mut out);
    }
    assert!(agg.tracked_processes() <= 16);
    assert!(out.iter().all(|o| *o == Output::Evicted { table: Table::Processes }));
    assert!(!out.is_empty());
}

#[test]
fn runtime_command_lines() {
    let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let a = args("runc --root /var/run/docker/runtime-runc/moby --log /x/log.json --log-format json create --bundle /run/containerd/io.containerd.runtime.v2.task/moby/abc --pid-file /x/init.pid abc");
    assert_eq!(
        runtime_call(&a),
        Some(RuntimeCall {
            subcommand: "create",
            id: Some("abc"),
            bundle: Some("/run/containerd/io.containerd.runtime.v2.task/moby/abc"),
        })
    );
    let a = args("runc --root /r --systemd-cgroup exec --process /tmp/p.json --detach abc");
    assert_eq!(runtime_call(&a).unwrap().subcommand, "exec");
    assert_eq!(runtime_call(&args("runc init")).unwrap().subcommand, "init");
    assert_eq!(shim_start_id(&args("containerd-shim-runc-v2 -namespace moby -id abc start")), Some("abc"));
    assert_eq!(shim_start_id(&args("containerd-shim-runc-v2 -namespace moby -id abc -bundle /b delete")), None);
    assert_eq!(id_in_path(&format!("/system.slice/docker-{}.scope", "c".repeat(64))), Some(&*"c".repeat(64)));
    assert_eq!(id_in_path("/docker/abc"), None);
    assert_eq!(bundle_id("/run/containerd/io.containerd.runtime.v2.task/moby/abc", "abc"), "abc");
    assert_eq!(bundle_id("/var/lib/containers/storage/overlay-containers/abc/userdata", "abc"), "abc");
    assert_eq!(bundle_id("/b/other/", "abc"), "other");
}
