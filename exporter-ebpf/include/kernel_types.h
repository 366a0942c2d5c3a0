/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The few kernel types the programs read, declared with only the fields used.
 * preserve_access_index makes every access a CO-RE relocation resolved against
 * the running kernel's BTF at load time, so field offsets never come from the
 * build machine (no generated vmlinux.h to keep in sync).
 */
#ifndef CSE_KERNEL_TYPES_H
#define CSE_KERNEL_TYPES_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
};

#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)

struct ns_common {
	unsigned int inum;
};
struct uts_namespace { struct ns_common ns; };
struct ipc_namespace { struct ns_common ns; };
struct mnt_namespace { struct ns_common ns; };
struct pid_namespace { struct ns_common ns; };
struct net { struct ns_common ns; };
struct time_namespace { struct ns_common ns; };
struct cgroup_namespace { struct ns_common ns; };
struct user_namespace { struct ns_common ns; };

struct nsproxy {
	struct uts_namespace *uts_ns;
	struct ipc_namespace *ipc_ns;
	struct mnt_namespace *mnt_ns;
	struct pid_namespace *pid_ns_for_children;
	struct net *net_ns;
	struct time_namespace *time_ns;
	struct cgroup_namespace *cgroup_ns;
};

struct cred {
	struct user_namespace *user_ns;
};

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
};

struct inode {
	unsigned long i_ino;
};

struct file {
	struct inode *f_inode;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	struct task_struct *real_parent;
	struct nsproxy *nsproxy;
	const struct cred *cred;
	struct mm_struct *mm;
	struct files_struct *files;
};

struct linux_binprm {
	const char *filename;
};

struct cgroup {
	int level;
};

#pragma clang attribute pop

#endif
