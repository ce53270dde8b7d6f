//! Ctrl-C (or SIGTERM, SIGHUP) while `container::run` waits: the container is ended the
//! way the TUI ends one — SIGKILL to its init process — so the runtime sees it exit,
//! deletes its state and cgroups, and `run` returns and removes the bundle. Without this,
//! vmscope would die at once and leave all three behind (and a runc container's init, as
//! pid 1 of its namespace, ignores the SIGINT runc forwards to it).
//!
//! The handlers are installed once per process with signal-hook: while no container is
//! being waited for, each signal keeps its default action (the process ends).

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The runtime process being waited for (0: none).
static RUNTIME_PID: AtomicU32 = AtomicU32::new(0);
/// The last signal that arrived while waiting (0: none).
static CAUGHT: AtomicI32 = AtomicI32::new(0);

/// Set while no container is waited for: a signal then has its default action.
fn default_action() -> Option<&'static Arc<AtomicBool>> {
    static FLAG: OnceLock<Option<Arc<AtomicBool>>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(true));
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).ok()?;
        for s in [SIGINT, SIGTERM, SIGHUP] {
            signal_hook::flag::register_conditional_default(s, flag.clone()).ok()?;
        }
        std::thread::Builder::new()
            .name("container-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let runtime = RUNTIME_PID.load(Ordering::SeqCst);
                    if runtime != 0 {
                        CAUGHT.store(signal, Ordering::SeqCst);
                        kill_init_of(runtime);
                    }
                }
            })
            .ok()?;
        Some(flag)
    })
    .as_ref()
}

/// SIGKILL to the init process of the container that runtime process `runtime` runs, once
/// it exists (for up to 5 s: the runtime may still be creating it).
fn kill_init_of(runtime: u32) {
    use nix::sys::signal::{kill, Signal};
    let deadline = Instant::now() + Duration::from_secs(5);
    while RUNTIME_PID.load(Ordering::SeqCst) == runtime && Instant::now() < deadline {
        if let Some(init) = super::cgroup::children_of(runtime).into_iter().next() {
            if let Ok(pid) = i32::try_from(init) {
                let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// While alive, the three signals end the container of runtime process `pid` instead of
/// this process.
pub(super) struct Guard;

impl Guard {
    pub(super) fn new(pid: u32) -> Self {
        CAUGHT.store(0, Ordering::SeqCst);
        RUNTIME_PID.store(pid, Ordering::SeqCst);
        if let Some(flag) = default_action() {
            flag.store(false, Ordering::SeqCst);
        }
        Guard
    }

    /// The signal that interrupted the wait, if one did.
    pub(super) fn caught(&self) -> Option<i32> {
        Some(CAUGHT.load(Ordering::SeqCst)).filter(|&s| s != 0)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        RUNTIME_PID.store(0, Ordering::SeqCst);
        if let Some(flag) = default_action() {
            flag.store(true, Ordering::SeqCst);
        }
    }
}
