//! The terminal comes back however vmscope ends: SIGTERM, SIGHUP and SIGINT (`kill`, a
//! closed window, `kill -INT`; Ctrl-C itself is a key in raw mode) while vmscope holds the
//! terminal in raw mode — `run linux --shell` ([`crate::rawtty`]) or the TUI — restore
//! it before the process ends, as normal returns, errors and panics already do.
//!
//! The signal handler only stores the signal's number and writes one byte to a pipe: two
//! calls every VMM thread's seccomp filter allows (the signal may land on a vCPU thread).
//! A watcher thread, started once per process before any filter exists, reads the pipe
//! and acts: the TUI ends its own loop ([`Graceful`]: containers are stopped, machines
//! dropped, the screen restored), then [`die_by`] the signal; otherwise the watcher
//! restores the terminal and the process ends by the signal's default action (its status
//! says which signal, as without vmscope's handler). A second signal while the TUI winds
//! down ends it at once.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The signals that end vmscope with the terminal restored.
pub const SIGNALS: [i32; 3] = [SIGTERM, SIGHUP, SIGINT];

/// What vmscope has done to the terminal, so the restore undoes exactly that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Raw mode (`run linux --shell`).
    Raw,
    /// Raw mode, the alternate screen and a hidden cursor (the TUI).
    Screen,
}

const NOT_HELD: u8 = 0;
const HELD_RAW: u8 = 1;
const HELD_SCREEN: u8 = 2;

/// What is held now.
static HELD: AtomicU8 = AtomicU8::new(NOT_HELD);
/// Whether a loop ends itself on a signal (the TUI) instead of the watcher ending the process.
static GRACEFUL: AtomicBool = AtomicBool::new(false);

/// The last signal caught (0: none), written by the handler.
fn caught() -> &'static Arc<AtomicUsize> {
    static CAUGHT: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    CAUGHT.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// Puts the terminal back from whatever is held now (nothing when nothing is).
pub fn restore() {
    match HELD.swap(NOT_HELD, Ordering::SeqCst) {
        HELD_SCREEN => {
            let _ = crossterm::terminal::disable_raw_mode();
            let _ = crossterm::execute!(
                std::io::stdout(),
                crossterm::terminal::LeaveAlternateScreen,
                crossterm::cursor::Show
            );
        }
        HELD_RAW => {
            let _ = crossterm::terminal::disable_raw_mode();
        }
        _ => {}
    }
}

/// Records that vmscope now holds the terminal this way, and makes sure the watcher runs
/// (false when the handlers could not be installed: the terminal is then restored on
/// normal exits and panics only).
pub fn hold(how: Hold) -> bool {
    HELD.store(if how == Hold::Screen { HELD_SCREEN } else { HELD_RAW }, Ordering::SeqCst);
    watcher_started()
}

fn watcher_started() -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| start_watcher().is_ok())
}

fn start_watcher() -> std::io::Result<()> {
    let (mut reader, writer) = std::io::pipe()?;
    for signal in SIGNALS {
        // The number first, then the wake-up: the watcher reads the number after the byte.
        signal_hook::flag::register_usize(signal, caught().clone(), signal as usize)?;
        signal_hook::low_level::pipe::register(signal, writer.try_clone()?)?;
    }
    std::thread::Builder::new().name("tty-signals".into()).spawn(move || {
        let mut byte = [0u8; 1];
        let mut told_loop = false;
        while reader.read(&mut byte).is_ok_and(|n| n == 1) {
            let signal = caught().load(Ordering::SeqCst) as i32;
            if GRACEFUL.load(Ordering::SeqCst) && !told_loop {
                // The loop sees the signal within a refresh and ends itself.
                told_loop = true;
                continue;
            }
            restore();
            die_by(signal);
        }
    })?;
    Ok(())
}

/// While alive, a signal is the loop's to act on ([`Graceful::signal`]) rather than the end
/// of the process; a second signal still ends the process at once.
pub struct Graceful(());

impl Graceful {
    /// Starts (the watcher too, if it is not running yet).
    pub fn begin() -> Self {
        caught().store(0, Ordering::SeqCst);
        GRACEFUL.store(true, Ordering::SeqCst);
        watcher_started();
        Self(())
    }

    /// The signal that asked the loop to end, if one did.
    pub fn signal(&self) -> Option<i32> {
        Some(caught().load(Ordering::SeqCst) as i32).filter(|&s| s != 0)
    }
}

impl Drop for Graceful {
    fn drop(&mut self) {
        GRACEFUL.store(false, Ordering::SeqCst);
    }
}

/// Ends the process as signal `signal` would have (so a shell sees 128 + its number), once
/// the terminal is restored; exits with 128 + `signal` if the default action cannot be
/// re-raised.
pub fn die_by(signal: i32) -> ! {
    restore();
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    std::process::exit(128 + signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_undoes_only_what_is_held_and_only_once() {
        // Nothing held: nothing written, nothing changed.
        restore();
        assert_eq!(HELD.load(Ordering::SeqCst), NOT_HELD);
        HELD.store(HELD_RAW, Ordering::SeqCst);
        restore();
        assert_eq!(HELD.load(Ordering::SeqCst), NOT_HELD, "a restore clears the hold");
    }
}
