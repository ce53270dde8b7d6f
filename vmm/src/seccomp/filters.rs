//! The allow-lists. Each entry was found by tracing what the thread calls (`strace -f` of
//! `vmscope run unikernel` with every workload, `--elf`, `run linux` with a virtio-blk disk,
//! `--gdb` over TCP and a unix socket, `--script` sessions, `--stats-json`), then widened
//! only by what the C library and Rust's runtime may call on the same paths: memory
//! allocation (`mmap`, `mremap`, `madvise`, `brk`), returning from a signal handler, thread
//! exit (`sigaltstack`, `munmap`, `exit`), and the clock when the vDSO is not usable.
//!
//! Arguments are checked where that is cheap and says something: the ioctl request numbers a
//! vCPU may issue, the signal the main thread may send (the kick), the `openat` flags the
//! main thread may use (read-only, or create-and-write for `--stats-json` and the cache).

use super::Thread;
use kvm_bindings::{kvm_guest_debug, kvm_msrs, kvm_regs, kvm_sregs, kvm_vcpu_events, KVMIO};
use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::Serialize;
use std::collections::BTreeMap;

pub(super) mod ioctls {
    #![allow(missing_docs)]
    use super::*;
    vmm_sys_util::ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_REGS, KVMIO, 0x82, kvm_regs);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_SREGS, KVMIO, 0x84, kvm_sregs);
    vmm_sys_util::ioctl_iowr_nr!(KVM_GET_MSRS, KVMIO, 0x88, kvm_msrs);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_MSRS, KVMIO, 0x89, kvm_msrs);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_GUEST_DEBUG, KVMIO, 0x9b, kvm_guest_debug);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_VCPU_EVENTS, KVMIO, 0x9f, kvm_vcpu_events);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_VCPU_EVENTS, KVMIO, 0xa0, kvm_vcpu_events);
    // Reading a vCPU's whole state for a snapshot (vstate/vcpu/state.rs).
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_FPU, KVMIO, 0x8c, kvm_bindings::kvm_fpu);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_LAPIC, KVMIO, 0x8e, kvm_bindings::kvm_lapic_state);
    vmm_sys_util::ioctl_iowr_nr!(KVM_GET_CPUID2, KVMIO, 0x91, kvm_bindings::kvm_cpuid2);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_MP_STATE, KVMIO, 0x98, kvm_bindings::kvm_mp_state);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_DEBUGREGS, KVMIO, 0xa1, kvm_bindings::kvm_debugregs);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_XSAVE, KVMIO, 0xa4, kvm_bindings::kvm_xsave);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_XCRS, KVMIO, 0xa6, kvm_bindings::kvm_xcrs);
    // Writing it back on the vCPU's own thread: a checkpoint's rewind (vmm/src/checkpoint/).
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_FPU, KVMIO, 0x8d, kvm_bindings::kvm_fpu);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_LAPIC, KVMIO, 0x8f, kvm_bindings::kvm_lapic_state);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_MP_STATE, KVMIO, 0x99, kvm_bindings::kvm_mp_state);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_DEBUGREGS, KVMIO, 0xa2, kvm_bindings::kvm_debugregs);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_XSAVE, KVMIO, 0xa5, kvm_bindings::kvm_xsave);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_XCRS, KVMIO, 0xa7, kvm_bindings::kvm_xcrs);
    // The VM's clock, interrupt controllers and PIT written back by the main thread.
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_CLOCK, KVMIO, 0x7b, kvm_bindings::kvm_clock_data);
    vmm_sys_util::ioctl_ior_nr!(KVM_SET_IRQCHIP, KVMIO, 0x63, kvm_bindings::kvm_irqchip);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_PIT2, KVMIO, 0xa0, kvm_bindings::kvm_pit_state2);
    // The VM's clock, read by the main thread for a snapshot.
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_CLOCK, KVMIO, 0x7c, kvm_bindings::kvm_clock_data);
    // A Linux guest's interrupt controllers and PIT, read by the main thread for a snapshot.
    vmm_sys_util::ioctl_iowr_nr!(KVM_GET_IRQCHIP, KVMIO, 0x62, kvm_bindings::kvm_irqchip);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_PIT2, KVMIO, 0x9f, kvm_bindings::kvm_pit_state2);
    vmm_sys_util::ioctl_iow_nr!(
        KVM_SET_USER_MEMORY_REGION,
        KVMIO,
        0x46,
        kvm_bindings::kvm_userspace_memory_region
    );
    vmm_sys_util::ioctl_iow_nr!(KVM_GET_DIRTY_LOG, KVMIO, 0x42, kvm_bindings::kvm_dirty_log);
    vmm_sys_util::ioctl_iow_nr!(KVM_IOEVENTFD, KVMIO, 0x79, kvm_bindings::kvm_ioeventfd);
}

/// One allowed system call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Allowed {
    /// Its name.
    pub syscall: &'static str,
    /// Its x86_64 number.
    pub number: i64,
    /// When it is held to certain argument values: which argument (0-based) and the values
    /// allowed, by name. `None`: any arguments.
    pub only: Option<(u8, Vec<&'static str>)>,
}

/// An allowed call: any arguments, or argument `arg` (compared as 32 bits) one of `values`.
struct Entry {
    nr: i64,
    only: Option<(u8, Vec<(&'static str, u64)>)>,
}

fn any(nr: i64) -> Entry {
    Entry { nr, only: None }
}

fn one_of(nr: i64, arg: u8, values: Vec<(&'static str, u64)>) -> Entry {
    Entry { nr, only: Some((arg, values)) }
}

/// What every filtered thread needs: memory allocation, signal return, locks and channels,
/// writing to standard error (the SIGSYS report itself), thread and process exit.
fn common() -> Vec<Entry> {
    use libc::*;
    [
        SYS_brk,
        SYS_mmap,
        SYS_munmap,
        SYS_mremap,
        SYS_mprotect,
        SYS_madvise,
        SYS_futex,
        SYS_write,
        SYS_close,
        SYS_rt_sigreturn,
        // A timed wait (futex with a timeout: a vCPU's sleep between guest ticks) that a
        // signal such as the kick interrupts is resumed by the kernel through this call.
        SYS_restart_syscall,
        SYS_rt_sigprocmask,
        SYS_sigaltstack,
        SYS_sched_yield,
        SYS_sched_getaffinity,
        SYS_clock_gettime,
        SYS_gettid,
        SYS_getrandom,
        SYS_exit,
        SYS_exit_group,
    ]
    .into_iter()
    .map(any)
    .collect()
}

fn entries(thread: Thread) -> Vec<Entry> {
    use libc::*;
    let mut list = common();
    match thread {
        Thread::Vcpu => {
            use ioctls::*;
            let requests = vec![
                ("KVM_RUN", KVM_RUN()),
                ("KVM_GET_REGS", KVM_GET_REGS()),
                ("KVM_SET_REGS", KVM_SET_REGS()),
                ("KVM_GET_SREGS", KVM_GET_SREGS()),
                ("KVM_SET_SREGS", KVM_SET_SREGS()),
                ("KVM_GET_MSRS", KVM_GET_MSRS()),
                ("KVM_SET_MSRS", KVM_SET_MSRS()),
                ("KVM_SET_GUEST_DEBUG", KVM_SET_GUEST_DEBUG()),
                ("KVM_GET_VCPU_EVENTS", KVM_GET_VCPU_EVENTS()),
                ("KVM_SET_VCPU_EVENTS", KVM_SET_VCPU_EVENTS()),
                // A snapshot reads the rest of the state on the vCPU's own thread.
                ("KVM_GET_FPU", KVM_GET_FPU()),
                ("KVM_GET_LAPIC", KVM_GET_LAPIC()),
                ("KVM_GET_CPUID2", KVM_GET_CPUID2()),
                ("KVM_GET_MP_STATE", KVM_GET_MP_STATE()),
                ("KVM_GET_DEBUGREGS", KVM_GET_DEBUGREGS()),
                ("KVM_GET_XSAVE", KVM_GET_XSAVE()),
                ("KVM_GET_XCRS", KVM_GET_XCRS()),
                // `rewind N` writes a checkpoint's state back on the vCPU's own thread.
                ("KVM_SET_FPU", KVM_SET_FPU()),
                ("KVM_SET_LAPIC", KVM_SET_LAPIC()),
                ("KVM_SET_MP_STATE", KVM_SET_MP_STATE()),
                ("KVM_SET_DEBUGREGS", KVM_SET_DEBUGREGS()),
                ("KVM_SET_XSAVE", KVM_SET_XSAVE()),
                ("KVM_SET_XCRS", KVM_SET_XCRS()),
                // The doorbell's ioeventfd is registered by the vCPU whose write to its
                // port exited first (devices/doorbell.rs: lazy registration).
                ("KVM_IOEVENTFD", KVM_IOEVENTFD()),
            ];
            list.push(one_of(SYS_ioctl, 1, requests));
            // virtio-blk requests are served on the vCPU that notified: reads, writes and
            // FLUSH on the image; the irqfd is a `write`.
            list.extend([SYS_pread64, SYS_pwrite64, SYS_fdatasync, SYS_fsync].map(any));
        }
        Thread::Doorbell => {
            // The eventfd (read) and the stop eventfd, waited on with epoll.
            list.extend([SYS_read, SYS_epoll_wait, SYS_epoll_pwait].map(any));
            // As it ends, the thread deassigns the doorbell's ioeventfd (cheaper than
            // leaving it to the VM's close).
            list.push(one_of(SYS_ioctl, 1, vec![("KVM_IOEVENTFD", ioctls::KVM_IOEVENTFD())]));
        }
        Thread::Main => {
            list.extend(
                [
                    // Waiting for the guest, reading session scripts, standard input and the
                    // KVM statistics fds.
                    SYS_read,
                    SYS_pread64,
                    SYS_poll,
                    SYS_getpid,
                    SYS_lseek,
                    SYS_fstat,
                    SYS_newfstatat,
                    SYS_statx,
                    SYS_fcntl,
                    // The gdb stub: its listener (TCP or a unix socket created 0600, removed
                    // at the end) and the connection.
                    SYS_socket,
                    SYS_bind,
                    SYS_listen,
                    SYS_accept4,
                    SYS_setsockopt,
                    SYS_getsockopt,
                    SYS_getsockname,
                    SYS_getpeername,
                    SYS_recvfrom,
                    SYS_sendto,
                    SYS_shutdown,
                    // `migrate URI` connects to the target.
                    SYS_connect,
                    SYS_umask,
                    SYS_chmod,
                    SYS_unlink,
                    // The unikernel ELF gdb is pointed at is written to the cache if missing
                    // (atomically: a temporary file, fsync, rename).
                    SYS_mkdir,
                    SYS_fsync,
                    SYS_rename,
                    // `snapshot FILE` writes a sparse file (holes for zero pages) and sets
                    // its length past the last written page.
                    SYS_ftruncate,
                ]
                .map(any),
            );
            list.push(one_of(
                SYS_openat,
                2,
                vec![
                    ("O_RDONLY|O_CLOEXEC", (O_RDONLY | O_CLOEXEC) as u64),
                    ("O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC", (O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC) as u64),
                    ("O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC", (O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC) as u64),
                ],
            ));
            // Kicking vCPUs out of KVM_RUN is the only signal the main thread sends.
            list.push(one_of(
                SYS_tgkill,
                2,
                vec![("the kick signal", crate::vstate::vcpu::kick::kick_signal() as u64)],
            ));
            list.push(one_of(
                SYS_ioctl,
                1,
                vec![
                    ("FIONBIO", FIONBIO),
                    ("TCGETS", TCGETS),
                    // `run linux --shell` restores the terminal it put in raw mode.
                    ("TCSETS", TCSETS),
                    ("TIOCGWINSZ", TIOCGWINSZ),
                    // `snapshot FILE`: the VM's kvmclock.
                    ("KVM_GET_CLOCK", ioctls::KVM_GET_CLOCK()),
                    // `snapshot FILE` of a Linux guest: PICs, IOAPIC, PIT.
                    ("KVM_GET_IRQCHIP", ioctls::KVM_GET_IRQCHIP()),
                    ("KVM_GET_PIT2", ioctls::KVM_GET_PIT2()),
                    // `migrate URI`: the dirty-page log on the memory slot.
                    ("KVM_SET_USER_MEMORY_REGION", ioctls::KVM_SET_USER_MEMORY_REGION()),
                    ("KVM_GET_DIRTY_LOG", ioctls::KVM_GET_DIRTY_LOG()),
                    // `rewind N`: the VM's kvmclock, PICs, IOAPIC and PIT as checkpointed.
                    ("KVM_SET_CLOCK", ioctls::KVM_SET_CLOCK()),
                    ("KVM_SET_IRQCHIP", ioctls::KVM_SET_IRQCHIP()),
                    ("KVM_SET_PIT2", ioctls::KVM_SET_PIT2()),
                ],
            ));
        }
        Thread::Qmp => {
            list.extend(
                [
                    // Clients: accepting, non-blocking reads (recvmsg carries descriptors
                    // for getfd), writes; the socket file is removed at quit.
                    SYS_accept4,
                    SYS_read,
                    SYS_recvfrom,
                    SYS_recvmsg,
                    SYS_sendto,
                    SYS_unlink,
                    // Dump files, the vmlinux's symbols, /proc/self/task (vCPU thread ids).
                    SYS_pread64,
                    SYS_lseek,
                    SYS_fstat,
                    SYS_newfstatat,
                    SYS_statx,
                    SYS_fcntl,
                    SYS_getdents64,
                    // Idle naps; the pid for the kick (pthread_kill).
                    SYS_nanosleep,
                    SYS_clock_nanosleep,
                    SYS_getpid,
                ]
                .map(any),
            );
            list.push(one_of(
                SYS_openat,
                2,
                vec![
                    ("O_RDONLY|O_CLOEXEC", (O_RDONLY | O_CLOEXEC) as u64),
                    (
                        "O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY",
                        (O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_DIRECTORY) as u64,
                    ),
                    ("O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC", (O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC) as u64),
                ],
            ));
            // Pausing and resuming vCPUs kicks them out of KVM_RUN.
            list.push(one_of(
                SYS_tgkill,
                2,
                vec![("the kick signal", crate::vstate::vcpu::kick::kick_signal() as u64)],
            ));
            list.push(one_of(SYS_ioctl, 1, vec![("FIONBIO", FIONBIO)]));
        }
    }
    list
}

/// The allow-list of `thread`, sorted by system call number.
pub(super) fn allow_list(thread: Thread) -> Vec<Allowed> {
    let mut list: Vec<Allowed> = entries(thread)
        .into_iter()
        .map(|e| Allowed {
            syscall: super::syscall_name(e.nr).unwrap_or("?"),
            number: e.nr,
            only: e.only.map(|(arg, values)| (arg, values.into_iter().map(|(n, _)| n).collect())),
        })
        .collect();
    list.sort_by_key(|a| a.number);
    list
}

/// `thread`'s filter as BPF: allow what the list says, trap (SIGSYS) everything else.
pub(super) fn compile(thread: Thread) -> Result<BpfProgram, BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for e in entries(thread) {
        let these = match e.only {
            None => vec![],
            Some((arg, values)) => values
                .into_iter()
                .map(|(_, v)| {
                    let cond = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v)?;
                    SeccompRule::new(vec![cond])
                })
                .collect::<Result<_, _>>()?,
        };
        rules.insert(e.nr, these);
    }
    let filter = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, TargetArch::x86_64)?;
    BpfProgram::try_from(filter)
}
