//! Decoding of ring-buffer records into owned events.
//!
//! Events are also the unit of the recorded fixtures (JSON lines written by
//! the `capture` subcommand), so they serialise in a readable form.

use std::mem::size_of;

use cse_common as c;
use serde::{Deserialize, Serialize};

/// Fields every event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Kernel boot-clock time of the event, ns (the end, for syscall spans).
    pub ts: u64,
    /// Enter time for syscall spans, 0 when the event is an instant.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_ts: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub comm: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    pub mnt: u32,
    pub uts: u32,
    pub ipc: u32,
    pub pid: u32,
    pub net: u32,
    pub cgroup: u32,
    pub user: u32,
    pub time: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Exec {
        #[serde(flatten)]
        meta: Meta,
        old_comm: String,
        filename: String,
        args: Vec<String>,
        /// Exec'd by a container's init: the workload's entrypoint.
        entrypoint: bool,
        #[serde(default)]
        args_truncated: bool,
    },
    ExecFail {
        #[serde(flatten)]
        meta: Meta,
        old_comm: String,
        filename: String,
        errno: i32,
        entrypoint: bool,
    },
    Fork {
        #[serde(flatten)]
        meta: Meta,
        child_pid: u32,
        child_ns: Namespaces,
    },
    Exit {
        #[serde(flatten)]
        meta: Meta,
        /// The kernel's exit_code: status << 8, or the signal number.
        exit_code: i32,
    },
    Mount {
        #[serde(flatten)]
        meta: Meta,
        ret: i32,
        new_api: bool,
        flags: u64,
        fstype: String,
        source: String,
        target: String,
    },
    Namespace {
        #[serde(flatten)]
        meta: Meta,
        syscall: NsSyscall,
        clone_flags: u64,
        ret: i64,
        ns: Namespaces,
    },
    PivotRoot {
        #[serde(flatten)]
        meta: Meta,
        ret: i32,
    },
    Cgroup {
        #[serde(flatten)]
        meta: Meta,
        op: CgroupOp,
        target_pid: u32,
        level: i32,
        path: String,
    },
    Netlink {
        #[serde(flatten)]
        meta: Meta,
        op: NetlinkOp,
        ret: i64,
        msg_type: u32,
        ifindex: i32,
        netns_inum: u32,
        netns_pid: u32,
        ifname: String,
        peer: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NsSyscall {
    Unshare,
    Clone,
    Clone3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupOp {
    Mkdir,
    Attach,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetlinkOp {
    VethCreate,
    NetnsMove,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its header")]
    Short { len: usize },
    #[error("record of kind {kind} has {len} bytes, expected {expected}")]
    Size { kind: u32, len: usize, expected: usize },
    #[error("unknown record kind {kind}")]
    Kind { kind: u32 },
    #[error("record of kind {kind} has an invalid field {field}")]
    Field { kind: u32, field: &'static str },
}

/// Event type names for the `type` label of the events counter.
pub const TYPE_NAMES: [&str; 9] =
    ["exec", "exec_fail", "fork", "exit", "mount", "namespace", "pivot_root", "cgroup", "netlink"];

impl Event {
    pub fn meta(&self) -> &Meta {
        match self {
            Event::Exec { meta, .. }
            | Event::ExecFail { meta, .. }
            | Event::Fork { meta, .. }
            | Event::Exit { meta, .. }
            | Event::Mount { meta, .. }
            | Event::Namespace { meta, .. }
            | Event::PivotRoot { meta, .. }
            | Event::Cgroup { meta, .. }
            | Event::Netlink { meta, .. } => meta,
        }
    }

    /// One of [`TYPE_NAMES`].
    pub fn type_name(&self) -> &'static str {
        let i = match self {
            Event::Exec { .. } => 0,
            Event::ExecFail { .. } => 1,
            Event::Fork { .. } => 2,
            Event::Exit { .. } => 3,
            Event::Mount { .. } => 4,
            Event::Namespace { .. } => 5,
            Event::PivotRoot { .. } => 6,
            Event::Cgroup { .. } => 7,
            Event::Netlink { .. } => 8,
        };
        TYPE_NAMES[i]
    }
}

/// A NUL-terminated (or full) byte array as text.
fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// `argv` as the kernel lays it out: NUL-separated strings.
fn split_args(b: &[u8]) -> Vec<String> {
    let b = b.strip_suffix(&[0]).unwrap_or(b);
    if b.is_empty() {
        return Vec::new();
    }
    b.split(|&x| x == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

fn read<T: Copy>(data: &[u8], kind: u32) -> Result<T, DecodeError> {
    if data.len() != size_of::<T>() {
        return Err(DecodeError::Size { kind, len: data.len(), expected: size_of::<T>() });
    }
    // SAFETY: the length was checked; T is a repr(C) record of plain integers
    // and byte arrays, valid for any bit pattern; read_unaligned needs no alignment.
    Ok(unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<T>()) })
}

fn meta(h: &c::Header) -> Meta {
    Meta { ts: h.ts, start_ts: h.start_ts, pid: h.pid, tid: h.tid, ppid: h.ppid, comm: cstr(&h.comm) }
}

fn ns(n: &c::NsInums) -> Namespaces {
    Namespaces {
        mnt: n.mnt,
        uts: n.uts,
        ipc: n.ipc,
        pid: n.pid,
        net: n.net,
        cgroup: n.cgroup,
        user: n.user,
        time: n.time,
    }
}

/// Decodes one ring-buffer record.
pub fn decode(data: &[u8]) -> Result<Event, DecodeError> {
    if data.len() < size_of::<c::Header>() {
        return Err(DecodeError::Short { len: data.len() });
    }
    let kind = u32::from_ne_bytes([data[16], data[17], data[18], data[19]]);
    Ok(match kind {
        c::EV_EXEC => {
            let e: c::Exec = read(data, kind)?;
            let n = (e.args_len as usize).min(c::ARGS_LEN);
            Event::Exec {
                meta: meta(&e.h),
                old_comm: cstr(&e.old_comm),
                filename: cstr(&e.filename),
                args: split_args(&e.args[..n]),
                entrypoint: e.flags & c::EXEC_ENTRYPOINT != 0,
                args_truncated: e.flags & c::EXEC_ARGS_TRUNCATED != 0,
            }
        }
        c::EV_EXEC_FAIL => {
            let e: c::ExecFail = read(data, kind)?;
            Event::ExecFail {
                meta: meta(&e.h),
                old_comm: cstr(&e.old_comm),
                filename: cstr(&e.filename),
                errno: -e.ret,
                entrypoint: e.flags & c::EXEC_ENTRYPOINT != 0,
            }
        }
        c::EV_FORK => {
            let e: c::Fork = read(data, kind)?;
            Event::Fork { meta: meta(&e.h), child_pid: e.child_pid, child_ns: ns(&e.child_ns) }
        }
        c::EV_EXIT => {
            let e: c::Exit = read(data, kind)?;
            Event::Exit { meta: meta(&e.h), exit_code: e.exit_code }
        }
        c::EV_MOUNT => {
            let e: c::Mount = read(data, kind)?;
            if e.api != c::MOUNT_API_LEGACY && e.api != c::MOUNT_API_NEW {
                return Err(DecodeError::Field { kind, field: "api" });
            }
            Event::Mount {
                meta: meta(&e.h),
                ret: e.ret,
                new_api: e.api == c::MOUNT_API_NEW,
                flags: e.flags,
                fstype: cstr(&e.fstype),
                source: cstr(&e.source),
                target: cstr(&e.target),
            }
        }
        c::EV_NAMESPACE => {
            let e: c::Namespace = read(data, kind)?;
            let syscall = match e.syscall {
                c::NS_UNSHARE => NsSyscall::Unshare,
                c::NS_CLONE => NsSyscall::Clone,
                c::NS_CLONE3 => NsSyscall::Clone3,
                _ => return Err(DecodeError::Field { kind, field: "syscall" }),
            };
            Event::Namespace { meta: meta(&e.h), syscall, clone_flags: e.clone_flags, ret: e.ret, ns: ns(&e.ns) }
        }
        c::EV_PIVOT_ROOT => {
            let e: c::PivotRoot = read(data, kind)?;
            Event::PivotRoot { meta: meta(&e.h), ret: e.ret }
        }
        c::EV_CGROUP => {
            let e: c::Cgroup = read(data, kind)?;
            let op = match e.op {
                c::CGROUP_MKDIR => CgroupOp::Mkdir,
                c::CGROUP_ATTACH => CgroupOp::Attach,
                _ => return Err(DecodeError::Field { kind, field: "op" }),
            };
            Event::Cgroup { meta: meta(&e.h), op, target_pid: e.target_pid, level: e.level, path: cstr(&e.path) }
        }
        c::EV_NETLINK => {
            let e: c::Netlink = read(data, kind)?;
            let op = match e.op {
                c::NL_VETH_CREATE => NetlinkOp::VethCreate,
                c::NL_NETNS_MOVE => NetlinkOp::NetnsMove,
                _ => return Err(DecodeError::Field { kind, field: "op" }),
            };
            Event::Netlink {
                meta: meta(&e.h),
                op,
                ret: e.ret,
                msg_type: e.msg_type,
                ifindex: e.ifindex,
                netns_inum: e.netns_inum,
                netns_pid: e.netns_pid,
                ifname: cstr(&e.ifname),
                peer: cstr(&e.peer),
            }
        }
        _ => return Err(DecodeError::Kind { kind }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u32) -> c::Header {
        let mut comm = [0u8; c::COMM_LEN];
        comm[..4].copy_from_slice(b"runc");
        c::Header { ts: 1_000, start_ts: 900, kind, pid: 10, tid: 11, ppid: 1, comm }
    }

    fn bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is a repr(C) plain-data record; viewing it as bytes is sound.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn decodes_exec_with_args() {
        let mut e = c::Exec {
            h: header(c::EV_EXEC),
            old_comm: [0; 16],
            flags: c::EXEC_ENTRYPOINT,
            filename_len: 0,
            args_len: 0,
            _pad: 0,
            filename: [0; c::PATH_LEN],
            args: [0; c::ARGS_LEN],
        };
        e.filename[..9].copy_from_slice(b"/bin/true");
        let args = b"runc\0init\0";
        e.args[..args.len()].copy_from_slice(args);
        e.args_len = args.len() as u32;
        let ev = decode(&bytes(&e)).unwrap();
        match ev {
            Event::Exec { meta, filename, args, entrypoint, .. } => {
                assert_eq!(meta.comm, "runc");
                assert_eq!((meta.ts, meta.start_ts, meta.pid), (1_000, 900, 10));
                assert_eq!(filename, "/bin/true");
                assert_eq!(args, vec!["runc", "init"]);
                assert!(entrypoint);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_wrong_sizes_and_kinds() {
        assert_eq!(decode(&[0u8; 10]), Err(DecodeError::Short { len: 10 }));
        let mut b = bytes(&header(c::EV_EXIT));
        assert!(matches!(decode(&b), Err(DecodeError::Size { kind: 4, expected: 56, .. })));
        b[16] = 99;
        assert_eq!(decode(&b), Err(DecodeError::Kind { kind: 99 }));
    }

    #[test]
    fn type_names_cover_every_kernel_kind() {
        assert_eq!(TYPE_NAMES.len() as u32, c::EV_KIND_MAX - 1);
    }

    #[test]
    fn json_round_trip() {
        let ev = Event::Exit {
            meta: Meta { ts: 5, start_ts: 0, pid: 1, tid: 1, ppid: 0, comm: "runc".into() },
            exit_code: 256,
        };
        let s = serde_json::to_string(&ev).unwrap();
        assert_eq!(s, r#"{"type":"exit","ts":5,"pid":1,"tid":1,"ppid":0,"comm":"runc","exit_code":256}"#);
        assert_eq!(serde_json::from_str::<Event>(&s).unwrap(), ev);
    }
}
