/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Records sent from the kernel programs to userspace through the ring buffer.
 * The Rust side (common/src/lib.rs) mirrors every struct; both sides pin sizes
 * and offsets so that any drift fails the build.
 */
#ifndef CSE_EVENTS_H
#define CSE_EVENTS_H

#define CSE_COMM_LEN 16
#define CSE_PATH_LEN 256
#define CSE_ARGS_LEN 1024

enum cse_event_kind {
	CSE_EV_EXEC = 1,
	CSE_EV_EXEC_FAIL = 2,
	CSE_EV_FORK = 3,
	CSE_EV_EXIT = 4,
	CSE_EV_MOUNT = 5,
	CSE_EV_NAMESPACE = 6,
	CSE_EV_PIVOT_ROOT = 7,
	CSE_EV_CGROUP = 8,
	CSE_EV_NETLINK = 9,
	CSE_EV_KIND_MAX = 10,
};

/* Indexes of the per-CPU `counters` array beyond the per-kind drop counts. */
enum cse_counter {
	/* 0 .. CSE_EV_KIND_MAX-1: ring buffer reserve failures, by event kind */
	CSE_CNT_TRACKED_FULL = 16, /* a tgid beyond the bitmap (pid_max grew) */
	CSE_CNT_MAX = 24,
};

/* Bits of cse_exec.flags */
#define CSE_EXEC_ENTRYPOINT 1u  /* exec'd by a container init: the workload */
#define CSE_EXEC_ARGS_TRUNCATED 2u
#define CSE_EXEC_ENTER_SEEN 4u  /* start_ts holds the execve enter time */


struct cse_header {
	__u64 ts;       /* bpf_ktime_get_boot_ns() at the event (end for spans) */
	__u64 start_ts; /* syscall enter time for spans, 0 for instants */
	__u32 kind;
	__u32 pid;      /* tgid of current */
	__u32 tid;
	__u32 ppid;     /* tgid of real_parent */
	char comm[CSE_COMM_LEN];
};

struct cse_ns_inums {
	__u32 mnt;
	__u32 uts;
	__u32 ipc;
	__u32 pid;      /* pid_ns_for_children */
	__u32 net;
	__u32 cgroup;
	__u32 user;
	__u32 time;
};

struct cse_exec {
	struct cse_header h;
	char old_comm[CSE_COMM_LEN];
	__u32 flags;
	__u32 filename_len;
	__u32 args_len;
	__u32 _pad;
	char filename[CSE_PATH_LEN];
	char args[CSE_ARGS_LEN];
};

struct cse_exec_fail {
	struct cse_header h;
	char old_comm[CSE_COMM_LEN];
	__s32 ret;
	__u32 flags;
	char filename[CSE_PATH_LEN];
};

struct cse_fork {
	struct cse_header h;
	__u32 child_pid;
	__u32 _pad;
	struct cse_ns_inums child_ns;
};

struct cse_exit {
	struct cse_header h;
	__s32 exit_code;
	__u32 _pad;
};

#define CSE_MOUNT_API_LEGACY 0u
#define CSE_MOUNT_API_NEW 1u

struct cse_mount {
	struct cse_header h;
	__s32 ret;
	__u32 api;
	__u64 flags;
	char fstype[CSE_COMM_LEN];
	char source[CSE_PATH_LEN];
	char target[CSE_PATH_LEN];
};

#define CSE_NS_UNSHARE 0u
#define CSE_NS_CLONE 1u
#define CSE_NS_CLONE3 2u

struct cse_namespace {
	struct cse_header h;
	__u64 clone_flags;
	__s64 ret;
	__u32 syscall;
	__u32 _pad;
	struct cse_ns_inums ns; /* of current after the call (unshare only) */
};

struct cse_pivot_root {
	struct cse_header h;
	__s32 ret;
	__u32 _pad;
};

#define CSE_CGROUP_MKDIR 0u
#define CSE_CGROUP_ATTACH 1u

struct cse_cgroup {
	struct cse_header h;
	__u32 op;
	__u32 target_pid;
	__s32 level;
	__u32 _pad;
	char path[CSE_PATH_LEN];
};

#define CSE_NL_VETH_CREATE 1u
#define CSE_NL_NETNS_MOVE 2u

struct cse_netlink {
	struct cse_header h;
	__s64 ret;
	__u32 op;
	__u32 msg_type;
	__s32 ifindex;
	__u32 netns_inum; /* from IFLA_NET_NS_FD, resolved in the kernel */
	__u32 netns_pid;  /* from IFLA_NET_NS_PID */
	__u32 _pad;
	char ifname[CSE_COMM_LEN];
	char peer[CSE_COMM_LEN];
};

#endif
