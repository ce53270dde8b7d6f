//! Kicking a vCPU thread out of `KVM_RUN`: a real-time signal whose handler sets
//! `kvm_run.immediate_exit` on the signalled thread, so a kick that arrives just before
//! `KVM_RUN` is not lost (KVM then returns `EINTR` at once). This is Firecracker's scheme.

use kvm_bindings::kvm_run;
use std::cell::Cell;
use std::sync::Once;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

thread_local! {
    /// The `kvm_run` area of the vCPU this thread runs, or null.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The signal used to kick vCPU threads.
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn handle_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: `run` was registered by `register_current_thread` on this very thread and
        // points into the vCPU's `kvm_run` mapping, which outlives the registration (it is
        // cleared before the vCPU is dropped). A volatile byte store is async-signal-safe.
        unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
    }
}

/// Installs the kick handler (once per process).
pub fn install_handler() -> std::io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = register_signal_handler(kick_signal(), handle_kick)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()));
    });
    result
}

/// Registers the calling thread's vCPU `kvm_run` area (null to unregister).
pub fn register_current_thread(run: *mut kvm_run) {
    KVM_RUN.with(|c| c.set(run));
}
