//! `run linux --shell` on a terminal: the host terminal goes into raw mode, so the guest's
//! line discipline is the only one (no line echoed twice, no `^[[7;5R` where the guest's
//! cursor-position query met the host's echo) and Ctrl-C reaches the guest's shell as 0x03.
//! The mode is restored when the guard drops (normal end and errors), from the panic hook,
//! and on SIGTERM, SIGHUP and SIGINT ([`crate::signals`]).

use std::io::IsTerminal;

/// Holds the host terminal in raw mode until dropped.
pub struct RawTty(());

impl RawTty {
    /// Raw mode when standard input is a terminal (None for a pipe or file: nothing to do).
    pub fn enable() -> Option<Self> {
        if !std::io::stdin().is_terminal() {
            return None;
        }
        crossterm::terminal::enable_raw_mode().ok()?;
        crate::signals::hold(crate::signals::Hold::Raw);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            crate::signals::restore();
            previous(info);
        }));
        Some(Self(()))
    }
}

impl Drop for RawTty {
    fn drop(&mut self) {
        crate::signals::restore();
    }
}
