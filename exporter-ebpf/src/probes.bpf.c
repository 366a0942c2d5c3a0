// SPDX-License-Identifier: GPL-2.0-only
/*
 * Kernel side of container-startup-exporter.
 *
 * Only processes of the container runtimes (a configured list of comm names)
 * and their descendants are followed: the `tracked` bitmap holds their tgids,
 * inherited at fork and cleared at exit. Every program first tests the current
 * tgid's bit and returns at once for anything else, so untracked processes
 * never touch the ring buffer. A bitmap indexed by tgid (pid_max bits, sized
 * by userspace) is an inlined array access: far cheaper on the fork/exec/exit
 * hot paths than a hash lookup, and it cannot fill up.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "events.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by userspace before load (aya override_global). */
volatile const __u32 cfg_wakeup_bytes = 65536;
volatile const __u32 cfg_capture_args = 0;
/* Bit c set: some runtime name starts with byte c. Rejects most execs before
 * the hash lookup of the full name. */
volatile const __u64 cfg_comm_first[4] = {};
/* The host's mount namespace (of pid 1), 0 if unknown. */
volatile const __u32 cfg_host_mnt_ns = 0;

_Static_assert(sizeof(struct cse_header) == 48, "cse_header layout");
_Static_assert(sizeof(struct cse_ns_inums) == 32, "cse_ns_inums layout");
_Static_assert(sizeof(struct cse_exec) == 1360, "cse_exec layout");
_Static_assert(__builtin_offsetof(struct cse_exec, args) == 336, "cse_exec.args");
_Static_assert(sizeof(struct cse_exec_fail) == 328, "cse_exec_fail layout");
_Static_assert(sizeof(struct cse_fork) == 88, "cse_fork layout");
_Static_assert(sizeof(struct cse_exit) == 56, "cse_exit layout");
_Static_assert(sizeof(struct cse_mount) == 592, "cse_mount layout");
_Static_assert(__builtin_offsetof(struct cse_mount, target) == 336, "cse_mount.target");
_Static_assert(sizeof(struct cse_namespace) == 104, "cse_namespace layout");
_Static_assert(sizeof(struct cse_pivot_root) == 56, "cse_pivot_root layout");
_Static_assert(sizeof(struct cse_cgroup) == 320, "cse_cgroup layout");
_Static_assert(sizeof(struct cse_netlink) == 112, "cse_netlink layout");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

/* One bit per tgid: followed. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536); /* 4M pids; userspace sets pid_max / 64 */
	__type(key, __u32);
	__type(value, __u64);
} tracked SEC(".maps");

/* One bit per tgid: did pivot_root, so its next exec is the entrypoint. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} pivoted SEC(".maps");

/* comm (zero padded) -> 1 for the runtime processes to follow */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, char[CSE_COMM_LEN]);
	__type(value, __u8);
} runtime_comms SEC(".maps");

/* Per-CPU counters: ring buffer reserve failures by kind, and others. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CSE_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* A syscall of a tracked thread between its enter and exit. */
enum inflight_kind {
	IF_EXECVE = 1,
	IF_MOUNT,
	IF_FSOPEN,
	IF_FSMOUNT,
	IF_MOVE_MOUNT,
	IF_UNSHARE,
	IF_CLONE,
	IF_CLONE3,
	IF_PIVOT_ROOT,
	IF_NETLINK,
};

struct inflight {
	__u64 ts;
	__u64 start_ts;  /* for fsmount/move_mount: the fsopen enter time */
	__u64 a0, a1, a2, a3;
	__u32 kind;
	__u32 nl_op;
	__s32 ifindex;
	__u32 netns_inum;
	__u32 netns_pid;
	__u32 msg_type;
	char comm[CSE_COMM_LEN];
	char ifname[CSE_COMM_LEN];
	char peer[CSE_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tid */
	__type(value, struct inflight);
} inflight SEC(".maps");

/* New mount API: (tgid, fd) of an overlay fs context or mount -> fsopen time */
struct fdkey {
	__u32 tgid;
	__s32 fd;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct fdkey);
	__type(value, __u64);
} overlay_fds SEC(".maps");

/* Scratch space too large for the 512-byte stack. */
struct scratch {
	struct inflight inf;
	__u8 nl[512];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

/* Syscall tracepoint contexts (the syscalls:* formats are fixed). */
struct sys_enter_ctx {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 args[6];
};

struct sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 ret;
};

#define CLONE_NEWTIME 0x00000080ULL
#define CLONE_NEWNS 0x00020000ULL
#define CLONE_NEWCGROUP 0x02000000ULL
#define CLONE_NEWUTS 0x04000000ULL
#define CLONE_NEWIPC 0x08000000ULL
#define CLONE_NEWUSER 0x10000000ULL
#define CLONE_NEWPID 0x20000000ULL
#define CLONE_NEWNET 0x40000000ULL
#define CLONE_NEW_MASK (CLONE_NEWTIME | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | \
			CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET)

#define RTM_NEWLINK 16
#define RTM_SETLINK 19
#define IFLA_IFNAME 3
#define IFLA_LINKINFO 18
#define IFLA_NET_NS_PID 19
#define IFLA_NET_NS_FD 28
#define IFLA_INFO_KIND 1
#define IFLA_INFO_DATA 2
#define VETH_INFO_PEER 1
#define SOCKADDR_NL_LEN 12
#define AF_NETLINK 16
#define NLMSG_IFINFO_LEN 32 /* nlmsghdr (16) + ifinfomsg (16) */

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline bool bit_test(void *map, __u32 tgid)
{
	__u32 idx = tgid >> 6;
	__u64 *w = bpf_map_lookup_elem(map, &idx);
	return w && ((*w >> (tgid & 63)) & 1);
}

static __always_inline void bit_set(void *map, __u32 tgid)
{
	__u32 idx = tgid >> 6;
	__u64 *w = bpf_map_lookup_elem(map, &idx);
	if (w)
		__sync_fetch_and_or(w, 1ULL << (tgid & 63));
	else
		count(CSE_CNT_TRACKED_FULL);
}

static __always_inline void bit_clear(void *map, __u32 tgid)
{
	__u32 idx = tgid >> 6;
	__u64 *w = bpf_map_lookup_elem(map, &idx);
	if (w)
		__sync_fetch_and_and(w, ~(1ULL << (tgid & 63)));
}

static __always_inline bool is_tracked(__u32 tgid)
{
	return bit_test(&tracked, tgid);
}

static __always_inline __u32 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline void *reserve(__u64 size, __u32 kind)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);
	if (!e)
		count(kind);
	return e;
}

/*
 * A wakeup per event costs 13-22 us in VMs, so userspace is only woken when a
 * start completes or fails (urgent) or enough data waits; it drains on a short
 * timer otherwise.
 */
static __always_inline void submit(void *e, bool urgent)
{
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (urgent || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= cfg_wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void fill_header(struct cse_header *h, __u32 kind, __u64 start_ts)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 id = bpf_get_current_pid_tgid();
	h->ts = bpf_ktime_get_boot_ns();
	h->start_ts = start_ts;
	h->kind = kind;
	h->pid = id >> 32;
	h->tid = (__u32)id;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline void read_ns(struct task_struct *task, struct cse_ns_inums *ns)
{
	struct nsproxy *nsp = BPF_CORE_READ(task, nsproxy);
	if (!nsp)
		return;
	ns->mnt = BPF_CORE_READ(nsp, mnt_ns, ns.inum);
	ns->uts = BPF_CORE_READ(nsp, uts_ns, ns.inum);
	ns->ipc = BPF_CORE_READ(nsp, ipc_ns, ns.inum);
	ns->pid = BPF_CORE_READ(nsp, pid_ns_for_children, ns.inum);
	ns->net = BPF_CORE_READ(nsp, net_ns, ns.inum);
	ns->cgroup = BPF_CORE_READ(nsp, cgroup_ns, ns.inum);
	ns->time = BPF_CORE_READ(nsp, time_ns, ns.inum);
	ns->user = BPF_CORE_READ(task, cred, user_ns, ns.inum);
}

static __always_inline struct inflight *scratch_inflight(void)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return 0;
	__builtin_memset(&s->inf, 0, sizeof(s->inf));
	return &s->inf;
}

/* Remember a tracked thread's syscall until its exit. */
static __always_inline struct inflight *begin(__u32 kind)
{
	struct inflight *inf = scratch_inflight();
	if (!inf)
		return 0;
	inf->kind = kind;
	inf->ts = bpf_ktime_get_boot_ns();
	return inf;
}

static __always_inline void commit(struct inflight *inf)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_update_elem(&inflight, &tid, inf, BPF_ANY);
}

/* The inflight entry of this thread if it is of `kind`; removed from the map. */
static __always_inline struct inflight *finish(__u32 kind)
{
	/* the bitmap first: untracked threads never reach the hash lookup */
	if (!is_tracked(current_tgid()))
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct inflight *inf = bpf_map_lookup_elem(&inflight, &tid);
	if (!inf)
		return 0;
	if (inf->kind != kind)
		return 0;
	struct inflight *copy = scratch_inflight();
	if (!copy)
		return 0;
	__builtin_memcpy(copy, inf, sizeof(*copy));
	bpf_map_delete_elem(&inflight, &tid);
	return copy;
}

/* ---------------------------------------------------------------- process tree */

static __always_inline bool comm_is_runtime(const char *comm)
{
	__u8 c = comm[0];
	if (!((cfg_comm_first[(c >> 6) & 3] >> (c & 63)) & 1))
		return false;
	return bpf_map_lookup_elem(&runtime_comms, comm) != 0;
}

static __always_inline bool comm_is_container_init(const char *c)
{
	/* runc names its last stage "runc:[2:INIT]" (runc exec too) */
	return c[0] == 'r' && c[1] == 'u' && c[2] == 'n' && c[3] == 'c' && c[4] == ':' &&
	       c[5] == '[' && c[6] == '2' && c[7] == ':' && c[8] == 'I';
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->pid != child->tgid)
		return 0; /* a new thread, not a new process */
	__u32 ptgid = parent->tgid;
	if (!is_tracked(ptgid))
		return 0;
	__u32 ctgid = child->tgid;
	bit_set(&tracked, ctgid);
	bit_clear(&pivoted, ctgid);

	struct cse_fork *e = reserve(sizeof(*e), CSE_EV_FORK);
	if (!e)
		return 0;
	fill_header(&e->h, CSE_EV_FORK, 0);
	e->child_pid = ctgid;
	e->_pad = 0;
	__builtin_memset(&e->child_ns, 0, sizeof(e->child_ns));
	read_ns(child, &e->child_ns);
	submit(e, false);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *p)
{
	if (p->pid != p->tgid)
		return 0; /* a thread; the process lives on */
	__u32 tgid = p->tgid;
	if (!is_tracked(tgid))
		return 0;
	bit_clear(&tracked, tgid);
	bit_clear(&pivoted, tgid);

	struct cse_exit *e = reserve(sizeof(*e), CSE_EV_EXIT);
	if (!e)
		return 0;
	fill_header(&e->h, CSE_EV_EXIT, 0);
	e->exit_code = p->exit_code;
	e->_pad = 0;
	/* a runtime exiting non-zero ends a start as failed: report it now */
	submit(e, e->exit_code != 0);
	return 0;
}

static __always_inline int execve_enter(const char *filename)
{
	if (!is_tracked(current_tgid()))
		return 0;
	struct inflight *inf = begin(IF_EXECVE);
	if (!inf)
		return 0;
	inf->a0 = (__u64)filename;
	bpf_get_current_comm(inf->comm, sizeof(inf->comm));
	commit(inf);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int enter_execve(struct sys_enter_ctx *ctx)
{
	return execve_enter((const char *)ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int enter_execveat(struct sys_enter_ctx *ctx)
{
	return execve_enter((const char *)ctx->args[1]);
}

static __always_inline int execve_exit(struct sys_exit_ctx *ctx)
{
	if (ctx->ret >= 0)
		return 0; /* success is reported by sched_process_exec */
	struct inflight *inf = finish(IF_EXECVE);
	if (!inf)
		return 0;
	struct cse_exec_fail *e = reserve(sizeof(*e), CSE_EV_EXEC_FAIL);
	if (!e)
		return 0;
	fill_header(&e->h, CSE_EV_EXEC_FAIL, inf->ts);
	__builtin_memcpy(e->old_comm, inf->comm, sizeof(e->old_comm));
	e->ret = ctx->ret;
	bool entrypoint = bit_test(&pivoted, current_tgid()) || comm_is_container_init(inf->comm);
	e->flags = entrypoint ? CSE_EXEC_ENTRYPOINT : 0;
	if (bpf_probe_read_user_str(e->filename, sizeof(e->filename), (const char *)inf->a0) < 0)
		e->filename[0] = 0;
	submit(e, e->flags & CSE_EXEC_ENTRYPOINT);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int exit_execve(struct sys_exit_ctx *ctx)
{
	return execve_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int exit_execveat(struct sys_exit_ctx *ctx)
{
	return execve_exit(ctx);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = p->tgid;
	bool tracked_before = is_tracked(tgid);
	char comm[CSE_COMM_LEN];
	bpf_get_current_comm(comm, sizeof(comm));
	if (!tracked_before) {
		if (!comm_is_runtime(comm))
			return 0;
		bit_set(&tracked, tgid);
	}
	bool pivot = tracked_before && bit_test(&pivoted, tgid);

	/* the execve enter was recorded under the exec'ing thread's old tid */
	__u32 old_tid = old_pid;
	struct inflight *inf = bpf_map_lookup_elem(&inflight, &old_tid);
	__u64 enter_ts = 0;
	char old_comm[CSE_COMM_LEN] = {};
	if (inf && inf->kind == IF_EXECVE) {
		enter_ts = inf->ts;
		__builtin_memcpy(old_comm, inf->comm, sizeof(old_comm));
		bpf_map_delete_elem(&inflight, &old_tid);
	}
	bool entrypoint = pivot || comm_is_container_init(old_comm);

	/*
	 * The workload itself is not followed: its children are not runtimes.
	 * Nor is anything a runtime execs inside a container's mount namespace
	 * that is not itself a runtime (`crun exec`, whose init has no runc name).
	 * Decided before the event is reserved, so a full ring buffer cannot
	 * leave a workload followed.
	 */
	__u32 mnt = BPF_CORE_READ(p, nsproxy, mnt_ns, ns.inum);
	bool in_container = cfg_host_mnt_ns && mnt && mnt != cfg_host_mnt_ns;
	if (entrypoint || (in_container && !comm_is_runtime(comm))) {
		bit_clear(&tracked, tgid);
		bit_clear(&pivoted, tgid);
	}

	struct cse_exec *e = reserve(sizeof(*e), CSE_EV_EXEC);
	if (!e)
		return 0;
	fill_header(&e->h, CSE_EV_EXEC, enter_ts);
	__builtin_memcpy(e->old_comm, old_comm, sizeof(e->old_comm));
	e->flags = (enter_ts ? CSE_EXEC_ENTER_SEEN : 0) | (entrypoint ? CSE_EXEC_ENTRYPOINT : 0);
	e->_pad = 0;
	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	e->filename_len = n > 0 ? n : 0;
	e->args_len = 0;
	if (!entrypoint || cfg_capture_args) {
		struct mm_struct *mm = BPF_CORE_READ(p, mm);
		unsigned long start = BPF_CORE_READ(mm, arg_start);
		unsigned long end = BPF_CORE_READ(mm, arg_end);
		unsigned long len = end - start;
		if (len > CSE_ARGS_LEN) {
			len = CSE_ARGS_LEN;
			e->flags |= CSE_EXEC_ARGS_TRUNCATED;
		}
		if (len > 0 && len <= CSE_ARGS_LEN &&
		    bpf_probe_read_user(e->args, len, (void *)start) == 0)
			e->args_len = len;
	}
	submit(e, entrypoint);
	return 0;
}

/* ---------------------------------------------------------------- mounts */

SEC("tracepoint/syscalls/sys_enter_mount")
int enter_mount(struct sys_enter_ctx *ctx)
{
	if (!is_tracked(current_tgid()))
		return 0;
	struct inflight *inf = begin(IF_MOUNT);
	if (!inf)
		return 0;
	inf->a0 = ctx->args[0]; /* dev_name */
	inf->a1 = ctx->args[1]; /* dir_name */
	inf->a2 = ctx->args[2]; /* type */
	inf->a3 = ctx->args[3]; /* flags */
	commit(inf);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mount")
int exit_mount(struct sys_exit_ctx *ctx)
{
	struct inflight *inf = finish(IF_MOUNT);
	if (!inf)
		return 0;
	struct cse_mount *e = reserve(sizeof(*e), CSE_EV_MOUNT);
	if (!e)
		return 0;
	fill_header(&e->h, CSE_EV_MOUNT, inf->ts);
	e->ret = ctx->ret;
	e->api = CSE_MOUNT_API_LEGACY;
	e->flags = inf->a3;
	if (!inf->a2 || bpf_probe_read_user_str(e->fstype, sizeof(e->fstype), (void *)inf->a2) < 0)
		e->fstype[0] = 0;
	if (!inf->a0 || bpf_probe_read_user_str(e->source, sizeof(e->source), (void *)inf->a0) < 0)
		e->source[0] = 0;
	if (bpf_probe_read_user_str(e->target, sizeof(e->target), (void *)inf->a1) < 0)
		e->target[0] = 0;
	submit(e, false);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_fsopen")
int enter_fsopen(struct sys_enter_ctx *ctx)
{
	if (!is_tracked(current_tgid()))
		return 0;
	char name[8] = {};
	bpf_probe_read_user_str(name, sizeof(name), (void *)ctx->args[0]);
	if (!(name[0] == 'o' && name[1] == 'v' && name[2] == 'e' && name[3] == 'r' &&
	      name[4] == 'l' && name[5] == 'a' && name[6] == 'y' && name[7] == 0))
		return 0;
	struct inflight *inf = begin(IF_FSOPEN);
	if (inf)
		commit(inf);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_fsopen")
int exit_fsopen(struct sys_exit_ctx *ctx)
{
	struct inflight *inf = finish(IF_FSOPEN);
	if (!inf || ctx->ret < 0)
		return 0;
	struct fdkey k = { .tgid = current_tgid(), .fd = ctx->ret };
	bpf_map_update_elem(&overlay_fds, &k, &inf->ts, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_fsmount")
int enter_fsmount(struct sys_enter_ctx *ctx)
{
	struct fdkey k = { .tgid = current_tgid(), .fd = ctx->args[0] };
	__u64 *opened = bpf_map_lookup_elem(&overlay_fds, &k);
	if (!opened)
		return 0;
	struct inflight *inf = begin(IF_FSMOUNT);
	if (!inf)
		return 0;
	inf->start_ts = *opened;
	inf->a0 = ctx->args[0];
	commit(inf);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_fsmount")
int exit_fsmount(struct sys_exit_ctx *ctx)
{
	struct inflight *inf = finish(IF_FSMOUNT);
	if (!inf || ctx->ret < 0)
		return 0;
	/* the context fd is spent: a later fd of that number is something else */
	struct fdkey used = { .tgid = current_tgid(), .fd = inf->a0 };
	bpf_map_delete_elem(&overlay_fds, &used);
	struct fdkey k = { .tgid = current_tgid(), .fd = ctx->ret };
	bpf_map_update_elem(&overlay_fds, &k, &inf->start_ts, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_move_mount")
int enter_move_mount(struct sys_enter_ctx *ctx)
{
	struct fdkey k = { .tgid = current_tgid(), .fd = ctx->args[0] };
	__u64 *opened = bpf_map_lookup_elem(&overlay_fds, &k);
	if (!opened)
		return 0;
	struct inflight *inf = begin(IF_MOVE_MOUNT);
	if (!inf)
		return 0;
	inf->start_ts = *opened;
	inf->a1 = ctx->args[3]; /* to_pathname */
	bpf_map_delete_elem(&overlay_fds, &k);
	commit(inf);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_move_mount")
int exit_move_mount(struct sys_exit_ctx *ctx)
{
	struct inflight *inf = finish(IF_MOVE_MOUNT);
	if (!inf)
		return 0;
	struct cse_mount *e = reserve(sizeof(*e), CSE_EV_MOUNT);
	if (!e)
		return 0;
	fill_header(&e->h, CSE_EV_MOUNT, inf->start_ts);
	e->ret = ctx->ret;
	e->api = CSE_MOUNT_API_NEW;
	e->flags = 0;
	__builtin_memset(e->fstype, 0, sizeof(e->fstype));
	__builtin_memcpy(e->fstype, "overlay", 8);
	e->source[0] = 0;
	if (bpf_probe_read_user_str(e->target, sizeof(e->target), (void *)inf->a1) < 0)
		e->target[0] = 0;
	submit(e, false);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_pivot_root")
int enter_pivot_root(struct sys_enter_ctx *ctx)
{
	if (!is_tracked(current_tgid()))
		return 0;
	struct inflight *inf = begin(IF_PIVOT_ROOT);
	if (inf)
		commit(inf);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_pivot_root")
int exit_pivot_root(struct sys_exit_ctx *ctx)
{
	struct inflight *inf = finish(IF_PIVOT_ROOT);
	if (!inf)
		return 0;
	/* the next exec of this process is the container's entrypoint */
	if (ctx->ret == 0)
		bit_set(&pivoted, current_tgid());
	struct cse_pivot_root *e = reserve(sizeof(*e), CSE_EV_PIVOT_ROOT);
	if (!e)
		return 0;
	fill_header(&e->h, CSE_EV_PIVOT_ROOT, inf->ts);
	e->ret = ctx->ret;
	e->_pad = 0;
	submit(e, false);
	return 0;
}

/* ---------------------------------------------------------------- namespaces */

static __always_inline int ns_enter(__u64 flags, __u32 kind)
{
	if (!(flags & CLONE_NEW_MASK))
		return 0;
	if (!is_tracked(current_tgid()))
		return 0;
	struct inflight *inf = begin(kind);
	if (!inf)
		return 0;
	inf->a0 = flags;
	commit(inf);
	return 0;
}

static __always_inline int ns_exit(struct sys_exit_ctx *ctx, __u32 kind, __u32 syscall)
{
	struct inflight *inf = finish(kind);
	if (!inf)
		return 0;
	struct cse_namespace *e = reserve(sizeof(*e), CSE_EV_NAMESPACE);
	if (!e)
		return 0;
	fill_header(&e->h, CSE_EV_NAMESPACE, inf->ts);
	e->clone_flags = inf->a0;
	e->ret = ctx->ret;
	e->syscall = syscall;
	e->_pad = 0;
	__builtin_memset(&e->ns, 0, sizeof(e->ns));
	if (syscall == CSE_NS_UNSHARE)
		read_ns((struct task_struct *)bpf_get_current_task(), &e->ns);
	submit(e, false);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_unshare")
int enter_unshare(struct sys_enter_ctx *ctx)
{
	return ns_enter(ctx->args[0], IF_UNSHARE);
}

SEC("tracepoint/syscalls/sys_exit_unshare")
int exit_unshare(struct sys_exit_ctx *ctx)
{
	return ns_exit(ctx, IF_UNSHARE, CSE_NS_UNSHARE);
}

SEC("tracepoint/syscalls/sys_enter_clone")
int enter_clone(struct sys_enter_ctx *ctx)
{
	return ns_enter(ctx->args[0], IF_CLONE);
}

SEC("tracepoint/syscalls/sys_exit_clone")
int exit_clone(struct sys_exit_ctx *ctx)
{
	return ns_exit(ctx, IF_CLONE, CSE_NS_CLONE);
}

SEC("tracepoint/syscalls/sys_enter_clone3")
int enter_clone3(struct sys_enter_ctx *ctx)
{
	if (!is_tracked(current_tgid()))
		return 0;
	__u64 flags = 0;
	/* struct clone_args starts with the u64 flags */
	if (bpf_probe_read_user(&flags, sizeof(flags), (void *)ctx->args[0]) < 0)
		return 0;
	return ns_enter(flags, IF_CLONE3);
}

SEC("tracepoint/syscalls/sys_exit_clone3")
int exit_clone3(struct sys_exit_ctx *ctx)
{
	return ns_exit(ctx, IF_CLONE3, CSE_NS_CLONE3);
}

/* ---------------------------------------------------------------- cgroups */

static __always_inline int cgroup_event(__u32 op, int level, const char *path, __u32 target)
{
	if (!is_tracked(current_tgid()))
		return 0;
	struct cse_cgroup *e = reserve(sizeof(*e), CSE_EV_CGROUP);
	if (!e)
		return 0;
	fill_header(&e->h, CSE_EV_CGROUP, 0);
	e->op = op;
	e->target_pid = target;
	e->level = level;
	e->_pad = 0;
	if (bpf_probe_read_kernel_str(e->path, sizeof(e->path), path) < 0)
		e->path[0] = 0;
	submit(e, false);
	return 0;
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(handle_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	return cgroup_event(CSE_CGROUP_MKDIR, cgrp->level, path, 0);
}

SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(handle_cgroup_attach, struct cgroup *cgrp, const char *path, struct task_struct *task)
{
	return cgroup_event(CSE_CGROUP_ATTACH, cgrp->level, path, task->tgid);
}

/* ---------------------------------------------------------------- netlink */

static __always_inline __u32 netns_inum_of_fd(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) < 0 || !f)
		return 0;
	/* a namespace file's inode number is the namespace's inum */
	return BPF_CORE_READ(f, f_inode, i_ino);
}

static __always_inline __u16 rd16(const __u8 *b, __u32 off)
{
	return (__u16)b[off & 511] | ((__u16)b[(off + 1) & 511] << 8);
}

static __always_inline __u32 rd32(const __u8 *b, __u32 off)
{
	return (__u32)rd16(b, off) | ((__u32)rd16(b, off + 2) << 16);
}

static __always_inline void copy_name(char *dst, const __u8 *b, __u32 off, __u32 len)
{
	for (int i = 0; i < CSE_COMM_LEN - 1; i++) {
		if (i >= len)
			break;
		dst[i] = b[(off + i) & 511];
	}
}

/* The peer's IFLA_IFNAME inside IFLA_INFO_DATA → VETH_INFO_PEER. */
static __always_inline void parse_peer(struct inflight *inf, const __u8 *b, __u32 off, __u32 end)
{
	/* VETH_INFO_PEER carries an ifinfomsg, then attributes */
	if (off + 4 > end || (rd16(b, off + 2) & 0x3fff) != VETH_INFO_PEER)
		return;
	__u32 pend = off + rd16(b, off);
	if (pend > end)
		pend = end;
	off += 4 + 16;
	for (int i = 0; i < 4; i++) {
		if (off + 4 > pend)
			break;
		__u16 len = rd16(b, off), type = rd16(b, off + 2) & 0x3fff;
		if (len < 4)
			break;
		if (type == IFLA_IFNAME) {
			copy_name(inf->peer, b, off + 4, len - 4);
			return;
		}
		off += (len + 3) & ~3;
	}
}

/* Is this an RTM_NEWLINK of kind veth, or a move of a link to a netns? */
static __always_inline bool parse_link_request(struct inflight *inf, const __u8 *b, __u32 n)
{
	__u16 type = rd16(b, 4);
	if (type != RTM_NEWLINK && type != RTM_SETLINK)
		return false;
	inf->msg_type = type;
	inf->ifindex = rd32(b, 20);
	bool veth = false, move = false;
	__u32 off = NLMSG_IFINFO_LEN;
	for (int i = 0; i < 10; i++) {
		if (off + 4 > n)
			break;
		__u16 len = rd16(b, off), at = rd16(b, off + 2) & 0x3fff;
		if (len < 4)
			break;
		if (at == IFLA_IFNAME) {
			copy_name(inf->ifname, b, off + 4, len - 4);
		} else if (at == IFLA_NET_NS_FD && len >= 8) {
			inf->netns_inum = netns_inum_of_fd(rd32(b, off + 4));
			move = true;
		} else if (at == IFLA_NET_NS_PID && len >= 8) {
			inf->netns_pid = rd32(b, off + 4);
			move = true;
		} else if (at == IFLA_LINKINFO) {
			__u32 end = off + len;
			__u32 o = off + 4;
			for (int j = 0; j < 3; j++) {
				if (o + 4 > end || o + 4 > n)
					break;
				__u16 l = rd16(b, o), t = rd16(b, o + 2) & 0x3fff;
				if (l < 4)
					break;
				/* "veth", NUL-terminated or not (Go's netlink sends 4 bytes) */
				if (t == IFLA_INFO_KIND && (l == 8 || (l >= 9 && b[(o + 8) & 511] == 0)) &&
				    b[(o + 4) & 511] == 'v' && b[(o + 5) & 511] == 'e' &&
				    b[(o + 6) & 511] == 't' && b[(o + 7) & 511] == 'h')
					veth = true;
				else if (t == IFLA_INFO_DATA && veth)
					parse_peer(inf, b, o + 4, end < n ? end : n);
				o += (l + 3) & ~3;
			}
		}
		off += (len + 3) & ~3;
	}
	if (veth && type == RTM_NEWLINK) {
		inf->nl_op = CSE_NL_VETH_CREATE;
		return true;
	}
	if (move) {
		inf->nl_op = CSE_NL_NETNS_MOVE;
		return true;
	}
	return false;
}

static __always_inline int netlink_enter(const void *buf, __u64 len)
{
	if (len < NLMSG_IFINFO_LEN)
		return 0;
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return 0;
	/* one read of at most 511 bytes: offsets are masked with 511 below */
	__u32 n = len > 511 ? 511 : len;
	if (n < NLMSG_IFINFO_LEN || bpf_probe_read_user(s->nl, n, buf) < 0)
		return 0;
	__builtin_memset(&s->inf, 0, sizeof(s->inf));
	if (!parse_link_request(&s->inf, s->nl, n))
		return 0;
	s->inf.kind = IF_NETLINK;
	s->inf.ts = bpf_ktime_get_boot_ns();
	commit(&s->inf);
	return 0;
}

/* 12 bytes is also a sockaddr_un with a short path: check the family. */
static __always_inline bool is_netlink_addr(const void *addr)
{
	__u16 family = 0;
	return bpf_probe_read_user(&family, sizeof(family), addr) == 0 && family == AF_NETLINK;
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct sys_enter_ctx *ctx)
{
	/* argument checks first: ordinary traffic is rejected without a lookup */
	if (ctx->args[5] != SOCKADDR_NL_LEN || ctx->args[2] < NLMSG_IFINFO_LEN)
		return 0;
	if (!is_tracked(current_tgid()))
		return 0;
	if (!is_netlink_addr((const void *)ctx->args[4]))
		return 0;
	return netlink_enter((const void *)ctx->args[1], ctx->args[2]);
}

struct user_msghdr {
	void *msg_name;
	int msg_namelen;
	void *msg_iov;
	__u64 msg_iovlen;
};

struct iovec {
	void *iov_base;
	__u64 iov_len;
};

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int enter_sendmsg(struct sys_enter_ctx *ctx)
{
	if (!is_tracked(current_tgid()))
		return 0;
	struct user_msghdr m;
	if (bpf_probe_read_user(&m, sizeof(m), (void *)ctx->args[1]) < 0)
		return 0;
	if (m.msg_namelen != SOCKADDR_NL_LEN || m.msg_iovlen < 1)
		return 0;
	if (!is_netlink_addr(m.msg_name))
		return 0;
	struct iovec iov;
	if (bpf_probe_read_user(&iov, sizeof(iov), m.msg_iov) < 0)
		return 0;
	return netlink_enter(iov.iov_base, iov.iov_len);
}

static __always_inline int netlink_exit(struct sys_exit_ctx *ctx)
{
	struct inflight *inf = finish(IF_NETLINK);
	if (!inf)
		return 0;
	struct cse_netlink *e = reserve(sizeof(*e), CSE_EV_NETLINK);
	if (!e)
		return 0;
	fill_header(&e->h, CSE_EV_NETLINK, inf->ts);
	e->ret = ctx->ret;
	e->op = inf->nl_op;
	e->msg_type = inf->msg_type;
	e->ifindex = inf->ifindex;
	e->netns_inum = inf->netns_inum;
	e->netns_pid = inf->netns_pid;
	e->_pad = 0;
	__builtin_memcpy(e->ifname, inf->ifname, sizeof(e->ifname));
	__builtin_memcpy(e->peer, inf->peer, sizeof(e->peer));
	submit(e, false);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int exit_sendto(struct sys_exit_ctx *ctx)
{
	return netlink_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int exit_sendmsg(struct sys_exit_ctx *ctx)
{
	return netlink_exit(ctx);
}
