//! Records sent by the kernel programs through the ring buffer.
//!
//! Each struct mirrors one in `exporter-ebpf/include/events.h`; both sides pin
//! sizes and field offsets (`_Static_assert` in C, `const` asserts here), so a
//! change on one side that is not made on the other fails the build.
#![no_std]

use core::mem::{offset_of, size_of};

pub const COMM_LEN: usize = 16;
pub const PATH_LEN: usize = 256;
pub const ARGS_LEN: usize = 1024;

pub const EV_EXEC: u32 = 1;
pub const EV_EXEC_FAIL: u32 = 2;
pub const EV_FORK: u32 = 3;
pub const EV_EXIT: u32 = 4;
pub const EV_MOUNT: u32 = 5;
pub const EV_NAMESPACE: u32 = 6;
pub const EV_PIVOT_ROOT: u32 = 7;
pub const EV_CGROUP: u32 = 8;
pub const EV_NETLINK: u32 = 9;
pub const EV_KIND_MAX: u32 = 10;

/// Index in the kernel's per-CPU `counters` array: tracked-process map full.
pub const CNT_TRACKED_FULL: u32 = 16;
pub const CNT_MAX: u32 = 24;

pub const EXEC_ENTRYPOINT: u32 = 1;
pub const EXEC_ARGS_TRUNCATED: u32 = 2;
pub const EXEC_ENTER_SEEN: u32 = 4;

pub const MOUNT_API_LEGACY: u32 = 0;
pub const MOUNT_API_NEW: u32 = 1;

pub const NS_UNSHARE: u32 = 0;
pub const NS_CLONE: u32 = 1;
pub const NS_CLONE3: u32 = 2;

pub const CGROUP_MKDIR: u32 = 0;
pub const CGROUP_ATTACH: u32 = 1;

pub const NL_VETH_CREATE: u32 = 1;
pub const NL_NETNS_MOVE: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Header {
    pub ts: u64,
    pub start_ts: u64,
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub comm: [u8; COMM_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct NsInums {
    pub mnt: u32,
    pub uts: u32,
    pub ipc: u32,
    pub pid: u32,
    pub net: u32,
    pub cgroup: u32,
    pub user: u32,
    pub time: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Exec {
    pub h: Header,
    pub old_comm: [u8; COMM_LEN],
    pub flags: u32,
    pub filename_len: u32,
    pub args_len: u32,
    pub _pad: u32,
    pub filename: [u8; PATH_LEN],
    pub args: [u8; ARGS_LEN],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecFail {
    pub h: Header,
    pub old_comm: [u8; COMM_LEN],
    pub ret: i32,
    pub flags: u32,
    pub filename: [u8; PATH_LEN],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Fork {
    pub h: Header,
    pub child_pid: u32,
    pub _pad: u32,
    pub child_ns: NsInums,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Exit {
    pub h: Header,
    pub exit_code: i32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Mount {
    pub h: Header,
    pub ret: i32,
    pub api: u32,
    pub flags: u64,
    pub fstype: [u8; COMM_LEN],
    pub source: [u8; PATH_LEN],
    pub target: [u8; PATH_LEN],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Namespace {
    pub h: Header,
    pub clone_flags: u64,
    pub ret: i64,
    pub syscall: u32,
    pub _pad: u32,
    pub ns: NsInums,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct PivotRoot {
    pub h: Header,
    pub ret: i32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Cgroup {
    pub h: Header,
    pub op: u32,
    pub target_pid: u32,
    pub level: i32,
    pub _pad: u32,
    pub path: [u8; PATH_LEN],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Netlink {
    pub h: Header,
    pub ret: i64,
    pub op: u32,
    pub msg_type: u32,
    pub ifindex: i32,
    pub netns_inum: u32,
    pub netns_pid: u32,
    pub _pad: u32,
    pub ifname: [u8; COMM_LEN],
    pub peer: [u8; COMM_LEN],
}

// Pinned against events.h.
const _: () = {
    assert!(size_of::<Header>() == 48);
    assert!(size_of::<NsInums>() == 32);
    assert!(size_of::<Exec>() == 1360);
    assert!(offset_of!(Exec, args) == 336);
    assert!(size_of::<ExecFail>() == 328);
    assert!(size_of::<Fork>() == 88);
    assert!(size_of::<Exit>() == 56);
    assert!(size_of::<Mount>() == 592);
    assert!(offset_of!(Mount, target) == 336);
    assert!(size_of::<Namespace>() == 104);
    assert!(size_of::<PivotRoot>() == 56);
    assert!(size_of::<Cgroup>() == 320);
    assert!(size_of::<Netlink>() == 112);
};
