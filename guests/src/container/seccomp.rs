//! The default seccomp profile for containers: Docker's default profile as a data table
//! (default action `ERRNO(EPERM)`, the x86 architectures, the allow-list, and the
//! conditional `personality` and `clone` rules for a container without `CAP_SYS_ADMIN`),
//! built into config.json with `oci-spec`'s builders.
//!
//! runc enforces it through libseccomp; the embedded runtime (libcontainer built without
//! its `libseccomp` feature) through seccompiler ([`super::seccomp_bpf`]).

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscallBuilder,
};

/// errno for a denied system call.
pub const EPERM: u32 = 1;
/// errno `clone3` gets, so C libraries fall back to `clone` (whose flags can be checked).
pub const ENOSYS: u32 = 38;

/// The architectures a filter covers: x86-64 and its 32-bit and x32 ABIs.
pub const ARCHITECTURES: &[Arch] = &[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32];

/// System calls allowed unconditionally (Docker's default allow-list, x86).
pub const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// `personality(2)` domains allowed: PER_LINUX, UNAME26, PER_LINUX32, PER_LINUX32|UNAME26,
/// and the query 0xffffffff.
pub const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `clone(2)` flags that create namespaces (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|
/// NEWPID|NEWNET): a clone is allowed only when none is set.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7e02_0000;

/// Errors building the profile.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the default seccomp profile: {0}")]
pub struct SeccompError(String);

/// Docker's default profile: everything not allowed below fails with EPERM.
pub fn default_profile() -> Result<LinuxSeccomp, SeccompError> {
    let e = |e: oci_spec::OciSpecError| SeccompError(e.to_string());
    let names = |n: &[&str]| n.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    let mut rules = vec![LinuxSyscallBuilder::default()
        .names(names(ALLOWED))
        .action(LinuxSeccompAction::ScmpActAllow)
        .build()
        .map_err(e)?];
    for &domain in PERSONALITIES {
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(domain)
            .op(LinuxSeccompOperator::ScmpCmpEq)
            .build()
            .map_err(e)?;
        rules.push(
            LinuxSyscallBuilder::default()
                .names(names(&["personality"]))
                .action(LinuxSeccompAction::ScmpActAllow)
                .args(vec![arg])
                .build()
                .map_err(e)?,
        );
    }
    let no_namespaces = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(CLONE_NAMESPACE_FLAGS)
        .value_two(0u64)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()
        .map_err(e)?;
    rules.push(
        LinuxSyscallBuilder::default()
            .names(names(&["clone"]))
            .action(LinuxSeccompAction::ScmpActAllow)
            .args(vec![no_namespaces])
            .build()
            .map_err(e)?,
    );
    rules.push(
        LinuxSyscallBuilder::default()
            .names(names(&["clone3"]))
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(ENOSYS)
            .build()
            .map_err(e)?,
    );
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(EPERM)
        .architectures(ARCHITECTURES.to_vec())
        .syscalls(rules)
        .build()
        .map_err(e)
}

/// The one-line report: `seccomp: default profile (N syscalls allowed, others EPERM)`, and
/// for the embedded runtime how it is enforced.
pub fn report(runtime: &str) -> String {
    let n = ALLOWED.len() + 2;
    if runtime == super::embedded::NAME {
        format!(
            "seccomp: default profile ({n} syscalls allowed, others EPERM), compiled with seccompiler for x86_64 (a 32-bit int 0x80 call kills the container)"
        )
    } else {
        format!("seccomp: default profile ({n} syscalls allowed, others EPERM)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_denies_by_default_with_eperm_and_covers_x86() {
        let p = default_profile().unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(EPERM));
        assert_eq!(p.architectures().as_deref(), Some(ARCHITECTURES));
    }

    #[test]
    fn dangerous_calls_are_not_allowed_and_normal_ones_are() {
        for denied in [
            "unshare",
            "mount",
            "umount2",
            "keyctl",
            "add_key",
            "ptrace",
            "bpf",
            "kexec_load",
            "init_module",
            "reboot",
            "setns",
            "pivot_root",
            "swapon",
            "perf_event_open",
            "userfaultfd",
            "open_by_handle_at",
        ] {
            assert!(!ALLOWED.contains(&denied), "{denied} is allowed");
        }
        for needed in ["read", "write", "exit_group", "getppid", "mmap", "execve", "wait4"] {
            assert!(ALLOWED.contains(&needed), "{needed} is missing");
        }
        let mut sorted = ALLOWED.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ALLOWED.len(), "a name is listed twice");
    }

    #[test]
    fn clone_is_allowed_only_without_namespace_flags_and_clone3_gets_enosys() {
        let p = default_profile().unwrap();
        let rules = p.syscalls().as_ref().unwrap();
        let clone = rules.iter().find(|r| r.names() == &["clone"]).unwrap();
        let arg = clone.args().as_ref().unwrap()[0];
        assert_eq!((arg.index(), arg.value(), arg.value_two()), (0, CLONE_NAMESPACE_FLAGS, Some(0)));
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        let clone3 = rules.iter().find(|r| r.names() == &["clone3"]).unwrap();
        assert_eq!((clone3.action(), clone3.errno_ret()), (LinuxSeccompAction::ScmpActErrno, Some(ENOSYS)));
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"defaultAction\":\"SCMP_ACT_ERRNO\""), "{json}");
        assert!(json.contains("SCMP_ARCH_X86_64"), "{json}");
    }

    #[test]
    fn the_report_says_how_each_runtime_enforces_it() {
        assert!(report("runc").contains("syscalls allowed, others EPERM"));
        assert!(report(super::super::embedded::NAME).contains("compiled with seccompiler"));
    }
}
