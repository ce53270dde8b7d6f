//! The header of a lab text: TOML between two `+++` lines at the top. It names the lab,
//! says what it needs, and declares the checks `vmscope lab check` runs.
//!
//! ```toml
//! name = "exits"                # what `vmscope lab run exits` takes
//! number = 2
//! title = "Where do exits go?"
//! seed = "Which exits leave the kernel, and what does each cost?"
//! needs = []                    # "linux" and/or "container" when the lab uses them
//! duration = "40 min"
//!
//! [[checks]]                    # one table per check; `kind` chooses which
//! kind = "report"
//! file = "exits.json"
//! suite = "exits"
//! full = true                   # not a `--quick` run
//! keywords = ["UART"]           # some metric's name contains each of these
//! ```

use super::select::Selector;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A lab's header.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Short name used on the command line (lowercase, dashes).
    pub name: String,
    /// Lab number (the order labs are listed and taught in).
    pub number: u32,
    /// The title.
    pub title: String,
    /// The seed question the lab answers.
    pub seed: String,
    /// Guests beyond the built-in unikernel the lab uses.
    #[serde(default)]
    pub needs: Vec<Need>,
    /// How long it takes, roughly ("45 min").
    pub duration: String,
    /// What `vmscope lab check` verifies.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
}

/// A guest a lab needs besides the unikernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Need {
    /// The minimal Linux guest (built from source on first use).
    Linux,
    /// An OCI runtime (runc) for the container guest.
    Container,
}

impl Need {
    /// The name used in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Linux => "linux",
            Need::Container => "container",
        }
    }
}

/// One check, as declared in a header.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CheckSpec {
    /// A measurement report the lab asked for is there and is the right kind.
    Report(ReportCheck),
    /// A JSON file (e.g. `vmscope run --stats-json`) has a value at a JSON pointer.
    Json(JsonCheck),
    /// A saved console log contains a text.
    Log(LogCheck),
    /// An answer names one of several choices, and the learner's own data agrees.
    Choice(ChoiceCheck),
    /// An answer is a number close to what the learner's own data says.
    Number(Box<NumberCheck>),
    /// An answer in words, mentioning one of some key ideas.
    Text(TextCheck),
    /// An answer equal to a value vmscope printed into a saved log (an address, an
    /// index, a page-table entry).
    Logged(LoggedCheck),
}

/// `kind = "report"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportCheck {
    /// The report's file name in the work directory.
    pub file: String,
    /// The suite it must come from.
    pub suite: String,
    /// Whether a `--quick` report is not good enough.
    #[serde(default)]
    pub full: bool,
    /// Every one of these must appear in some metric's name (case-insensitive).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Advice shown when the check fails.
    pub hint: Option<String>,
}

/// `kind = "json"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonCheck {
    /// The file in the work directory.
    pub file: String,
    /// A JSON pointer (RFC 6901), e.g. `/outcome/exited`.
    pub pointer: String,
    /// The value it must have.
    pub equals: toml::Value,
    /// What this shows, for the learner.
    pub what: String,
    /// Advice shown when the check fails.
    pub hint: Option<String>,
}

/// `kind = "log"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogCheck {
    /// The file in the work directory.
    pub file: String,
    /// Text it must contain.
    pub contains: String,
    /// What this shows, for the learner.
    pub what: String,
    /// Advice shown when the check fails.
    pub hint: Option<String>,
}

/// Whether the right choice is the one with the lowest or the highest figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Best {
    /// The smallest figure wins (faster, lighter).
    Lowest,
    /// The largest figure wins (more system calls).
    Highest,
}

/// `kind = "choice"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceCheck {
    /// The key in `answers.toml`.
    pub key: String,
    /// The question, as the text asks it.
    pub question: String,
    /// Each possible answer and the figure that stands for it.
    pub choices: BTreeMap<String, Selector>,
    /// Which figure makes the right answer.
    pub best: Best,
    /// Advice shown when the check fails.
    pub hint: Option<String>,
}

/// `kind = "number"`.
///
/// The answer passes when it lies in a band around the figure it names: ± the learner's
/// own spread (half the min-max range of the samples, summed over both figures of a
/// ratio) plus [`READING_SLACK`], never narrower than `min_tolerance` nor wider than
/// [`MAX_TOLERANCE`], and cut at the geometric midpoint towards every `confusable`
/// figure, so the neighbouring wrong answer (the other CPL's row, the other layer's
/// speedup) always falls outside.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberCheck {
    /// The key in `answers.toml`.
    pub key: String,
    /// The question, as the text asks it.
    pub question: String,
    /// The figure the answer should match…
    pub value: Selector,
    /// …divided by this one, when the answer is a ratio.
    pub over: Option<Selector>,
    /// The unit the answer is in (`us`, `ms`, `MiB`, …; empty for a ratio or a count).
    #[serde(default)]
    pub unit: String,
    /// The narrowest band, relative (0.1: ±10 %), for figures whose samples all agree.
    #[serde(default = "default_min_tolerance")]
    pub min_tolerance: f64,
    /// Figures a learner may give by mistake; the band stops halfway to each.
    #[serde(default)]
    pub confusable: Vec<Confusable>,
    /// Advice shown when the check fails.
    pub hint: Option<String>,
}

/// What is added to the learner's spread for reading and rounding a figure: 5 %.
pub const READING_SLACK: f64 = 0.05;

/// The widest band a number check allows: ±35 %. Wide enough for a noisy run read off
/// a terminal, narrow enough that a figure 1.6× away (CPL0's exit for CPL3's, one
/// layer's speedup for another's) never passes, confusable or not.
pub const MAX_TOLERANCE: f64 = 0.35;

fn default_min_tolerance() -> f64 {
    0.10
}

/// A wrong figure close to the right one, in a number check.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confusable {
    /// What it is, for the failure message ("the CPL0 round trip").
    pub what: String,
    /// The figure…
    pub value: Selector,
    /// …over this one, for a ratio.
    pub over: Option<Selector>,
}

/// `kind = "logged"`: the answer must equal a value a step printed into a saved log, read
/// one of two ways:
///
/// - `after`: the word that follows `after` on the `occurrence`-th line of `file` that
///   contains `line` (`cr3 0x9000`, `index 31`);
/// - `column` + `row`: in the table whose header is that line (its words are the column
///   names; [`super::table`]), the cell in column `column` on the row whose `row.column` is
///   `row.equals` ("the PID on the row whose COMM is miner").
///
/// The value is `0x…` hex or decimal. Values that are read, not measured, have no spread:
/// integers must match exactly, decimals within 1 % (the rounding of a printed figure).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedCheck {
    /// The key in `answers.toml`.
    pub key: String,
    /// The question, as the text asks it.
    pub question: String,
    /// The saved output in the work directory.
    pub file: String,
    /// Text the line holding the value (or the table's header line) contains.
    pub line: String,
    /// Which such line (1 = the first).
    #[serde(default = "first")]
    pub occurrence: usize,
    /// The value is the word right after this text on that line.
    pub after: Option<String>,
    /// The value is in the column with this name, in the table under that line…
    pub column: Option<String>,
    /// …on the row this picks.
    pub row: Option<RowMatch>,
    /// Advice shown when the check fails.
    pub hint: Option<String>,
}

/// Which row of a table a `logged` check reads: the first whose cell in `column` is
/// exactly `equals`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowMatch {
    /// A column name of the header.
    pub column: String,
    /// The whole cell (the last column's cell is the rest of the line: `sleep 1001`).
    pub equals: String,
}

impl LoggedCheck {
    /// Whether the check says where its value is in exactly one way: `(field, message)`.
    fn validate_place(&self) -> Result<(), (&'static str, &'static str)> {
        let word = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
        if self.occurrence == 0 {
            return Err(("occurrence", "counts from 1"));
        }
        match (&self.after, &self.column, &self.row) {
            (Some(a), None, None) if !a.is_empty() => Ok(()),
            (Some(_), None, None) => Err(("after", "must not be empty")),
            (None, Some(c), Some(r)) if word(c) && word(&r.column) && !r.equals.trim().is_empty() => Ok(()),
            (None, Some(_), Some(_)) => Err((
                "column",
                "`column` and `row.column` must be one column name each (no spaces), `row.equals` a cell",
            )),
            (None, Some(_), None) => {
                Err(("row", "`column` needs `row = { column = \"…\", equals = \"…\" }`"))
            }
            (None, None, Some(_)) => Err(("column", "`row` needs the `column` the value is in")),
            (None, None, None) => Err(("after", "say where the value is: `after`, or `column` and `row`")),
            (Some(_), _, _) => Err(("after", "use `after` or `column` and `row`, not both")),
        }
    }
}

fn first() -> usize {
    1
}

/// `kind = "text"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextCheck {
    /// The key in `answers.toml`.
    pub key: String,
    /// The question, as the text asks it.
    pub question: String,
    /// The answer must mention at least one of these (case-insensitive); empty: any
    /// non-empty answer.
    #[serde(default)]
    pub mentions: Vec<String>,
    /// Advice shown when the check fails.
    pub hint: Option<String>,
}

impl CheckSpec {
    /// The `answers.toml` key the check reads, if it reads one.
    pub fn answer_key(&self) -> Option<&str> {
        match self {
            CheckSpec::Choice(c) => Some(&c.key),
            CheckSpec::Number(c) => Some(&c.key),
            CheckSpec::Text(c) => Some(&c.key),
            CheckSpec::Logged(c) => Some(&c.key),
            _ => None,
        }
    }

    /// The question the learner answers, if the check reads an answer.
    pub fn question(&self) -> Option<&str> {
        match self {
            CheckSpec::Choice(c) => Some(&c.question),
            CheckSpec::Number(c) => Some(&c.question),
            CheckSpec::Text(c) => Some(&c.question),
            CheckSpec::Logged(c) => Some(&c.question),
            _ => None,
        }
    }

    /// One line on what the check looks for, for `vmscope lab show`.
    pub fn summary(&self) -> String {
        match self {
            CheckSpec::Report(c) => {
                let full = if c.full { ", a full run (not --quick)" } else { "" };
                format!("{}: a `{}` report from `vmscope measure`{full}", c.file, c.suite)
            }
            CheckSpec::Json(c) => format!("{}: {}", c.file, c.what),
            CheckSpec::Log(c) => format!("{}: {}", c.file, c.what),
            CheckSpec::Choice(c) => {
                let names: Vec<&str> = c.choices.keys().map(String::as_str).collect();
                format!("answers.toml `{}` ({}): {}", c.key, names.join(" | "), c.question)
            }
            CheckSpec::Number(c) => format!("answers.toml `{}` (a number): {}", c.key, c.question),
            CheckSpec::Text(c) => format!("answers.toml `{}` (in words): {}", c.key, c.question),
            CheckSpec::Logged(c) => {
                format!("answers.toml `{}` (a value from {}): {}", c.key, c.file, c.question)
            }
        }
    }

    /// Whatever a header can get wrong that the types do not rule out: `(field, message)`,
    /// the field relative to this check.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
        let no_file = |f: &str| f.trim().is_empty() || f.contains('/');
        match self {
            CheckSpec::Report(c) if no_file(&c.file) => {
                bad("file", "must be a file name in the lab directory")
            }
            CheckSpec::Report(c) if c.suite.trim().is_empty() => bad("suite", "must name a suite"),
            CheckSpec::Json(c) if no_file(&c.file) => bad("file", "must be a file name in the lab directory"),
            CheckSpec::Json(c) if !c.pointer.starts_with('/') => {
                bad("pointer", "must be a JSON pointer starting with `/`")
            }
            CheckSpec::Log(c) if no_file(&c.file) => bad("file", "must be a file name in the lab directory"),
            CheckSpec::Logged(c) if no_file(&c.file) => {
                bad("file", "must be a file name in the lab directory")
            }
            CheckSpec::Logged(c) if c.line.is_empty() => bad("line", "must say which line holds the value"),
            CheckSpec::Logged(c) => c.validate_place().or_else(|(f, m)| bad(f, m)),
            CheckSpec::Choice(c) if c.choices.len() < 2 => bad("choices", "needs at least two choices"),
            CheckSpec::Choice(c) => {
                for (name, s) in &c.choices {
                    s.validate().or_else(|m| bad(&format!("choices.{name}"), &m))?;
                }
                Ok(())
            }
            CheckSpec::Number(c) if !(c.min_tolerance > 0.0 && c.min_tolerance <= MAX_TOLERANCE) => {
                bad("min_tolerance", "must be above 0 and at most 0.35 (0.1 accepts ±10 %)")
            }
            CheckSpec::Number(c) => {
                c.value.validate().or_else(|m| bad("value", &m))?;
                if let Some(o) = &c.over {
                    o.validate().or_else(|m| bad("over", &m))?;
                }
                for (i, k) in c.confusable.iter().enumerate() {
                    if k.over.is_some() != c.over.is_some() {
                        return bad(
                            &format!("confusable[{i}].over"),
                            "a confusable figure is a ratio exactly when the answer is",
                        );
                    }
                    k.value.validate().or_else(|m| bad(&format!("confusable[{i}].value"), &m))?;
                    if let Some(o) = &k.over {
                        o.validate().or_else(|m| bad(&format!("confusable[{i}].over"), &m))?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }?;
        match self.answer_key() {
            Some(k) if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                bad("key", "must be a bare TOML key: letters, digits and `_`")
            }
            _ => Ok(()),
        }
    }
}
