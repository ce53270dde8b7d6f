//! The teaching half of vmscope: scripted measurements (`vmscope measure`) that run the
//! real `vmscope` binary many times and report min/median/max with the host kind stamped
//! on every figure, as JSON, a table and an SVG plot — and the guided labs (`vmscope lab`)
//! that use those measurements, the TUI and the debuggers to answer one question each, and
//! check the learner's own results (see `DESIGN.md`).
//!
//! ```
//! use labs::measure::Summary;
//! let s = Summary::of("boot", "ms", &[3.0, 1.0, 2.0]).unwrap();
//! assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod lab;
pub mod measure;
