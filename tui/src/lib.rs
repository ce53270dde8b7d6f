//! vmscope's terminal UI: running guests side by side — console, registers (changes
//! highlighted), disassembly with symbols and breakpoints, page-table walks, exit rates —
//! with debugger keys (space pause/resume, `s` step, `n` next, `c` continue, `b`
//! breakpoint, `g` go to, `:` commands, `?` help, `q` quit).
//!
//! The app state ([`app::App`]) knows nothing about the terminal: keys map to intent
//! methods that return [`app::Action`]s; rendering is `impl Widget for &App` ([`ui`]);
//! [`runtime::run`] owns the terminal and the machines and loops over keys, VM events and
//! a tick.
//!
//! ```
//! use tui::app::{App, GuestView, Key, Action};
//! let mut app = App::new(vec![GuestView::new("unikernel", "pvm", 1)]);
//! assert_eq!(app.on_key(Key::Char('s')), vec![Action::Step(0)]);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod guest_tasks;
pub mod kernel_log;
pub mod keys;
pub mod migration;
pub mod processes;
pub mod rawtty;
pub mod runtime;
pub mod signals;
pub mod term;
pub mod ui;

pub use runtime::{run, LiveContainer, LiveGuest, TuiError, Unavailable};
