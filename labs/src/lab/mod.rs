//! Guided labs (`vmscope lab`): Markdown texts with a TOML header, embedded in the binary,
//! that walk a learner through measurements and the debuggers and then check the learner's
//! work directory — their measurement reports and their `answers.toml` — against what the
//! lab asked for.
//!
//! - [`text`]: a lab's text, its header and its sections (where the steps are);
//! - [`header`]: the machine-readable header, including the checks it declares;
//! - [`select`]: picking a figure out of a [`crate::measure::Report`] by words in its name;
//! - [`check`]: running the checks against a work directory;
//! - [`table`]: one cell of a table a step printed (`ps`), for the `logged` check;
//! - [`runner`]: walking through the steps, running the commands the learner agrees to.
//!
//! ```
//! let lab = labs::lab::find("exits").unwrap();
//! assert_eq!(lab.header.number, 2);
//! assert!(lab.header.checks.len() >= 3);
//! ```

pub mod check;
pub mod header;
pub mod runner;
pub mod select;
pub mod table;
#[cfg(test)]
pub(crate) mod test_utils;
pub mod text;

pub use check::{run_checks, CheckResult};
pub use header::{CheckSpec, Header, Need};
pub use text::{Lab, Section};

use std::path::PathBuf;
use std::sync::OnceLock;

/// Errors from the lab engine.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A lab text has no `+++` header.
    #[error("{file}: no header: a lab text starts with a TOML header between two `+++` lines")]
    NoHeader {
        /// The lab text.
        file: String,
    },
    /// A lab header does not parse or says something impossible.
    #[error("{file}: bad header, field `{field}`: {message}")]
    BadHeader {
        /// The lab text.
        file: String,
        /// The field at fault (a dotted path when it is known, else the header line).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No lab has this name.
    #[error("no lab named {name:?}: choose from {known}")]
    UnknownLab {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// The work directory could not be used.
    #[error("cannot use the lab directory {path}")]
    WorkDir {
        /// The directory or file.
        path: PathBuf,
        /// The operating system's error (errno), shown as the cause.
        #[source]
        source: std::io::Error,
    },
    /// A step's command could not be started.
    #[error("cannot run the step command `{command}`")]
    Command {
        /// The command line.
        command: String,
        /// The operating system's error (errno), shown as the cause.
        #[source]
        source: std::io::Error,
    },
}

/// The lab texts built into the binary, by file name.
const TEXTS: &[(&str, &str)] = &[
    ("01-boot-memory.md", include_str!("../../texts/01-boot-memory.md")),
    ("02-exits.md", include_str!("../../texts/02-exits.md")),
    ("03-io-batching.md", include_str!("../../texts/03-io-batching.md")),
    ("04-rings.md", include_str!("../../texts/04-rings.md")),
    ("05-surface.md", include_str!("../../texts/05-surface.md")),
    ("06-page-tables.md", include_str!("../../texts/06-page-tables.md")),
    ("07-request-in-flight.md", include_str!("../../texts/07-request-in-flight.md")),
    ("08-throwaway.md", include_str!("../../texts/08-throwaway.md")),
    ("09-migration.md", include_str!("../../texts/09-migration.md")),
    ("10-looking-inside.md", include_str!("../../texts/10-looking-inside.md")),
];

/// Every built-in lab, in lab-number order. The texts are checked by the unit tests, so a
/// bad built-in text is a build bug, reported here as an error all the same.
pub fn all() -> Result<&'static [Lab], &'static LabError> {
    static LABS: OnceLock<Result<Vec<Lab>, LabError>> = OnceLock::new();
    LABS.get_or_init(|| {
        let mut labs =
            TEXTS.iter().map(|(file, text)| Lab::parse(file, text)).collect::<Result<Vec<_>, _>>()?;
        labs.sort_by_key(|l| l.header.number);
        Ok(labs)
    })
    .as_ref()
    .map(Vec::as_slice)
}

/// The built-in lab called `name` (or numbered `name`: `2` finds lab 2).
pub fn find(name: &str) -> Result<&'static Lab, LabError> {
    let labs = all().map_err(|e| LabError::BadHeader {
        file: "built-in labs".into(),
        field: "-".into(),
        message: e.to_string(),
    })?;
    labs.iter().find(|l| l.header.name == name || l.header.number.to_string() == name).ok_or_else(|| {
        LabError::UnknownLab {
            name: name.into(),
            known: labs.iter().map(|l| l.header.name.as_str()).collect::<Vec<_>>().join(", "),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_labs_parse_and_are_numbered_from_one() {
        let labs = all().unwrap();
        assert_eq!(labs.len(), TEXTS.len());
        let numbers: Vec<u32> = labs.iter().map(|l| l.header.number).collect();
        assert_eq!(numbers, (1..=TEXTS.len() as u32).collect::<Vec<_>>());
        for lab in labs {
            assert!(!lab.header.checks.is_empty(), "{} has no checks", lab.header.name);
            assert!(lab.sections.iter().any(|s| !s.commands().is_empty()), "{} has no commands", lab.file);
        }
    }

    #[test]
    fn find_by_name_or_number() {
        assert_eq!(find("surface").unwrap().header.number, 5);
        assert_eq!(find("4").unwrap().header.name, "rings");
        let e = find("nope").unwrap_err().to_string();
        assert!(e.contains("boot-memory") && e.contains("nope"), "{e}");
    }
}
