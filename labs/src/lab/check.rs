//! `vmscope lab check`: each check of a lab's header against the learner's work
//! directory — the reports they measured and what they wrote in `answers.toml` — gives a
//! pass or a failure with a hint. Answers are judged against the learner's *own* data, so
//! a lab works the same on PVM and on hardware KVM, where the right answer may differ.

use super::header::{
    Best, CheckSpec, ChoiceCheck, JsonCheck, LogCheck, LoggedCheck, NumberCheck, ReportCheck, RowMatch,
    TextCheck, MAX_TOLERANCE, READING_SLACK,
};
use super::select::{convert, in_base_unit, Figure, Selector};
use super::table::Table;
use super::Lab;
use crate::measure::Report;
use inspect::HostKind;
use std::path::Path;

/// The file in the work directory that holds the learner's answers.
pub const ANSWERS: &str = "answers.toml";

/// The verdict of one check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    /// Whether it passed.
    pub passed: bool,
    /// What was checked.
    pub label: String,
    /// What was found.
    pub detail: String,
    /// What to do about a failure.
    pub hint: Option<String>,
}

impl CheckResult {
    fn pass(label: String, detail: String) -> Self {
        Self { passed: true, label, detail, hint: None }
    }

    fn fail(label: String, detail: String, hint: Option<String>) -> Self {
        Self { passed: false, label, detail, hint }
    }
}

/// Runs every check of `lab` against the work directory `dir`.
pub fn run_checks(lab: &Lab, dir: &Path) -> Vec<CheckResult> {
    let wd = WorkDir { dir, answers: load_answers(dir), lab: &lab.header.name };
    lab.header.checks.iter().map(|c| wd.check(c)).collect()
}

/// What the checks read: the directory and its `answers.toml`, loaded once.
struct WorkDir<'a> {
    dir: &'a Path,
    answers: Result<toml::Table, String>,
    lab: &'a str,
}

fn load_answers(dir: &Path) -> Result<toml::Table, String> {
    let path = dir.join(ANSWERS);
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{} is missing", path.display()),
        _ => format!("cannot read {}: {e}", path.display()),
    })?;
    toml::from_str(&text).map_err(|e| format!("{} is not valid TOML: {}", path.display(), e.message().trim()))
}

/// A figure in an answer's unit and how far its samples stray, relative.
struct Quantity {
    value: f64,
    spread: f64,
}

/// The answers a number check accepts: `low..=high`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Band {
    low: f64,
    high: f64,
}

impl Band {
    /// ± (spread + reading slack), within `min_tolerance..=MAX_TOLERANCE`, then cut at the
    /// geometric midpoint towards each neighbour (a neighbour equal to the figure cannot be
    /// told apart and is ignored).
    fn around(value: f64, spread: f64, min_tolerance: f64, neighbours: &[(&str, f64)]) -> Self {
        let r = (spread + READING_SLACK).clamp(min_tolerance, MAX_TOLERANCE);
        let mut band = Band { low: value * (1.0 - r), high: value * (1.0 + r) };
        for &(_, n) in neighbours {
            if n.is_nan() || n <= 0.0 || ((n - value) / value).abs() < 1e-9 {
                continue;
            }
            let midpoint = (n * value).sqrt();
            if n > value {
                band.high = band.high.min(midpoint);
            } else {
                band.low = band.low.max(midpoint);
            }
        }
        band
    }

    fn contains(&self, v: f64) -> bool {
        (self.low..=self.high).contains(&v)
    }
}

/// What may follow a value in vmscope's output: `+16]`, `+1 W]`, `(size 0x4ec,`.
const TRAILING: &[char] = &[',', ')', ';', ']', 'W', ' '];

/// `0x…` hex (underscores allowed) or a decimal number; hex beyond 2^53 is not needed
/// by any lab and is refused rather than rounded.
fn parse_value(s: &str) -> Option<f64> {
    let s = s.trim().replace('_', "");
    let s = s.trim_end_matches(TRAILING);
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok().filter(|v| *v < 1 << 53).map(|v| v as f64),
        None => s.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// A number with three significant digits, for messages.
fn num(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-2) {
        format!("{v:.3e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl WorkDir<'_> {
    fn check(&self, spec: &CheckSpec) -> CheckResult {
        match spec {
            CheckSpec::Report(c) => self.report_check(c),
            CheckSpec::Json(c) => self.json_check(c),
            CheckSpec::Log(c) => self.log_check(c),
            CheckSpec::Choice(c) => self.choice_check(c),
            CheckSpec::Number(c) => self.number_check(c),
            CheckSpec::Text(c) => self.text_check(c),
            CheckSpec::Logged(c) => self.logged_check(c),
        }
    }

    /// The bytes of `file` in the work directory, or a sentence about why not.
    fn read(&self, file: &str) -> Result<Vec<u8>, String> {
        let path = self.dir.join(file);
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{} is missing", path.display()),
            _ => format!("cannot read {}: {e}", path.display()),
        })
    }

    fn report(&self, file: &str) -> Result<Report, String> {
        let path = self.dir.join(file);
        let bytes = self.read(file)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a vmscope measure report: {e}", path.display()))
    }

    fn report_check(&self, c: &ReportCheck) -> CheckResult {
        let mut label = format!("{} is a report of the `{}` suite", c.file, c.suite);
        if c.full {
            label += " from a full run (not --quick)";
        }
        if !c.keywords.is_empty() {
            let words: Vec<String> = c.keywords.iter().map(|k| format!("{k:?}")).collect();
            label += &format!(" with figures for {}", words.join(", "));
        }
        let out = format!("--out {}", self.dir.display());
        let rerun = format!("run `vmscope measure {} {out}`", c.suite);
        let r = match self.report(&c.file) {
            Ok(r) => r,
            Err(e) => return CheckResult::fail(label, e, Some(c.hint.clone().unwrap_or(rerun))),
        };
        if r.suite != c.suite {
            let detail = format!("it comes from the `{}` suite", r.suite);
            return CheckResult::fail(label, detail, Some(rerun));
        }
        if r.environment.host_kind == HostKind::Unknown {
            let detail = "it was measured on a host whose kind vmscope could not tell".to_string();
            let hint = "figures mean little without the host kind: measure on a host where `vmscope host` names it (pvm, intel-vtx, amd-v)";
            return CheckResult::fail(label, detail, Some(hint.into()));
        }
        if c.full && r.quick {
            let detail = "it is a --quick run: too few or too small runs for this lab's question".to_string();
            return CheckResult::fail(label, detail, Some(format!("{rerun} without --quick")));
        }
        let missing: Vec<&String> = c
            .keywords
            .iter()
            .filter(|k| !r.metrics.iter().any(|m| m.metric.to_lowercase().contains(&k.to_lowercase())))
            .collect();
        if !missing.is_empty() {
            let detail = format!(
                "no metric mentions {}",
                missing.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ")
            );
            return CheckResult::fail(label, detail, Some(c.hint.clone().unwrap_or(rerun)));
        }
        let detail = format!("{} metrics measured on {}", r.metrics.len(), r.environment.host_kind);
        CheckResult::pass(label, detail)
    }

    fn json_check(&self, c: &JsonCheck) -> CheckResult {
        let label = format!("{}: {}", c.file, c.what);
        let path = self.dir.join(&c.file);
        let found = self
            .read(&c.file)
            .and_then(|b| {
                serde_json::from_slice::<serde_json::Value>(&b)
                    .map_err(|e| format!("{} is not JSON: {e}", path.display()))
            })
            .and_then(|v| {
                v.pointer(&c.pointer).cloned().ok_or_else(|| format!("{} has no {}", c.file, c.pointer))
            });
        let want = serde_json::to_value(&c.equals).unwrap_or(serde_json::Value::Null);
        match found {
            Ok(v) if v == want => CheckResult::pass(label, format!("{} = {v}", c.pointer)),
            Ok(v) => CheckResult::fail(label, format!("{} is {v}, not {want}", c.pointer), c.hint.clone()),
            Err(e) => CheckResult::fail(label, e, c.hint.clone()),
        }
    }

    fn log_check(&self, c: &LogCheck) -> CheckResult {
        let label = format!("{}: {}", c.file, c.what);
        match self.read(&c.file) {
            Ok(b) if String::from_utf8_lossy(&b).contains(&c.contains) => {
                CheckResult::pass(label, format!("it contains {:?}", c.contains))
            }
            Ok(_) => {
                CheckResult::fail(label, format!("it does not contain {:?}", c.contains), c.hint.clone())
            }
            Err(e) => CheckResult::fail(label, e, c.hint.clone()),
        }
    }

    /// The learner's answer to `key`, or a failure to report.
    fn answer(&self, key: &str, label: &str, example: &str) -> Result<&toml::Value, CheckResult> {
        let template = format!("`vmscope lab run {}` writes a template; or create it", self.lab);
        let answers = self.answers.as_ref().map_err(|e| {
            CheckResult::fail(label.into(), e.clone(), Some(format!("{template} with `{key} = {example}`")))
        })?;
        match answers.get(key) {
            Some(toml::Value::String(s)) if s.trim().is_empty() => Err(CheckResult::fail(
                label.into(),
                "no answer yet".into(),
                Some(format!("write `{key} = {example}` in {}", self.dir.join(ANSWERS).display())),
            )),
            Some(v) => Ok(v),
            None => Err(CheckResult::fail(
                label.into(),
                format!("{ANSWERS} has no `{key}`"),
                Some(format!("write `{key} = {example}` in {}", self.dir.join(ANSWERS).display())),
            )),
        }
    }

    fn figure(&self, s: &Selector) -> Result<Figure, String> {
        s.pick(&self.report(&s.file)?)
    }

    fn choice_check(&self, c: &ChoiceCheck) -> CheckResult {
        let label = format!("{}: {}", c.key, c.question);
        let names: Vec<&str> = c.choices.keys().map(String::as_str).collect();
        let example = format!("\"{}\"", names.join("\" or \""));
        let given = match self.answer(&c.key, &label, &example) {
            Ok(toml::Value::String(s)) => s.trim().to_lowercase(),
            Ok(v) => return CheckResult::fail(label, format!("{v} is not one of {example}"), None),
            Err(r) => return r,
        };
        let Some(chosen) = names.iter().find(|n| n.to_lowercase() == given) else {
            return CheckResult::fail(label, format!("{given:?} is not one of {example}"), None);
        };
        let mut known = vec![];
        let mut gaps = vec![];
        for (name, sel) in &c.choices {
            match self.figure(sel) {
                Ok(f) => known.push((name.as_str(), f)),
                Err(e) => gaps.push((name.as_str(), e)),
            }
        }
        let hint = c.hint.clone();
        if let Some((_, e)) = gaps.iter().find(|(n, _)| n == chosen) {
            return CheckResult::fail(label, format!("your data has no figure for {chosen}: {e}"), hint);
        }
        if known.len() < 2 {
            let why = gaps.iter().map(|(n, e)| format!("{n}: {e}")).collect::<Vec<_>>().join("; ");
            return CheckResult::fail(label, format!("your data cannot decide it yet ({why})"), hint);
        }
        let base = |f: &Figure| in_base_unit(f.value, &f.unit);
        let best = known
            .iter()
            .map(|(_, f)| base(f))
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| if c.best == Best::Lowest { a.min(v) } else { a.max(v) }))
            })
            .expect("two figures");
        let summary = known
            .iter()
            .map(|(n, f)| format!("{n} {} {}", num(f.value), f.unit))
            .collect::<Vec<_>>()
            .join(", ");
        let mine = known.iter().find(|(n, _)| n == chosen).map(|(_, f)| base(f)).expect("has data");
        if mine == best {
            CheckResult::pass(label, format!("{chosen}, as your data says ({summary})"))
        } else {
            let which = if c.best == Best::Lowest { "lowest" } else { "highest" };
            let metrics =
                known.iter().map(|(n, f)| format!("{n}: {:?}", f.metric)).collect::<Vec<_>>().join("; ");
            CheckResult::fail(
                label,
                format!("your own data does not agree with {chosen:?}"),
                Some(
                    c.hint
                        .clone()
                        .unwrap_or_else(|| format!("compare the medians ({which} wins) of {metrics}")),
                ),
            )
        }
    }

    fn number_check(&self, c: &NumberCheck) -> CheckResult {
        let label = format!("{}: {}", c.key, c.question);
        let unit = if c.unit.is_empty() { String::new() } else { format!(" {}", c.unit) };
        let given = match self.answer(&c.key, &label, "a number") {
            Ok(toml::Value::Integer(i)) => *i as f64,
            Ok(toml::Value::Float(f)) => *f,
            Ok(toml::Value::String(s)) => {
                match s.trim().trim_end_matches(c.unit.as_str()).trim().parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => return CheckResult::fail(label, format!("{s:?} is not a number"), None),
                }
            }
            Ok(v) => return CheckResult::fail(label, format!("{v} is not a number"), None),
            Err(r) => return r,
        };
        let where_from = match &c.over {
            Some(o) => format!("{} over {}", c.value.describe(), o.describe()),
            None => c.value.describe(),
        };
        let look = Some(c.hint.clone().unwrap_or_else(|| format!("look at {where_from}")));
        let expected = match self.quantity(&c.value, c.over.as_ref(), &c.unit) {
            Ok(q) => q,
            Err(e) => return CheckResult::fail(label, e, c.hint.clone()),
        };
        if !(expected.value > 0.0 && given > 0.0 && given.is_finite()) {
            let detail = format!("cannot compare {}{unit} with what your data gives", num(given));
            return CheckResult::fail(label, detail, look);
        }
        // Confusable figures the learner's data lacks cannot be confused: skip them.
        let neighbours: Vec<(&str, f64)> = c
            .confusable
            .iter()
            .filter_map(|k| {
                let q = self.quantity(&k.value, k.over.as_ref(), &c.unit).ok()?;
                Some((k.what.as_str(), q.value))
            })
            .collect();
        let band = Band::around(expected.value, expected.spread, c.min_tolerance, &neighbours);
        if band.contains(given) {
            return CheckResult::pass(
                label,
                format!("{}{unit}; your data says {}{unit}", num(given), num(expected.value)),
            );
        }
        let allowed = format!(
            "{}{unit} is outside {}–{}{unit}, the band your data allows around {}{unit}",
            num(given),
            num(band.low),
            num(band.high),
            num(expected.value)
        );
        // Name the mistake when the answer sits nearer a neighbouring figure than the
        // right one (in ratio terms: 30 is nearer 32 than 17).
        let distance = |v: f64| (given / v).ln().abs();
        let nearest = neighbours
            .iter()
            .filter(|(_, v)| *v > 0.0)
            .min_by(|a, b| distance(a.1).total_cmp(&distance(b.1)));
        let scale = (given / expected.value).log10().round();
        if scale.abs() >= 3.0 {
            let detail = format!("{allowed}: off by a factor of about 10^{scale} — check the unit{unit}");
            return CheckResult::fail(label, detail, look);
        }
        match nearest {
            Some((what, v)) if distance(*v) < distance(expected.value) => CheckResult::fail(
                label,
                format!(
                    "{allowed}: it is close to {what} ({}{unit}), which the question does not ask for",
                    num(*v)
                ),
                look,
            ),
            _ => CheckResult::fail(label, allowed, look),
        }
    }

    /// The figure `value` (over `over`, for a ratio) in the answer's `unit`, with its
    /// relative spread.
    fn quantity(&self, value: &Selector, over: Option<&Selector>, unit: &str) -> Result<Quantity, String> {
        let v = self.figure(value)?;
        match over {
            Some(o) => {
                let o = self.figure(o)?;
                let (a, b) = (in_base_unit(v.value, &v.unit), in_base_unit(o.value, &o.unit));
                if b == 0.0 {
                    return Err(format!("the metric {:?} is zero", o.metric));
                }
                Ok(Quantity { value: a / b, spread: v.spread() + o.spread() })
            }
            None if unit.is_empty() => Ok(Quantity { value: v.value, spread: v.spread() }),
            None => convert(v.value, &v.unit, unit)
                .map(|value| Quantity { value, spread: v.spread() })
                .ok_or_else(|| {
                    format!("the metric {:?} is in {}, which does not convert to {unit}", v.metric, v.unit)
                }),
        }
    }

    fn logged_check(&self, c: &LoggedCheck) -> CheckResult {
        let label = format!("{}: {}", c.key, c.question);
        let given = match self.answer(&c.key, &label, "\"0x…\"") {
            Ok(toml::Value::Integer(i)) => Ok(*i as f64),
            Ok(toml::Value::Float(f)) => Ok(*f),
            Ok(toml::Value::String(s)) => parse_value(s).ok_or_else(|| {
                if s.trim().starts_with("0x") && u64::from_str_radix(s.trim()[2..].trim(), 16).is_ok() {
                    format!("{s:?} is above 2^53, larger than any value this check reads (a kernel address?)")
                } else {
                    format!("{s:?} is not a number or a 0x… address")
                }
            }),
            Ok(v) => Err(format!("{v} is not a number")),
            Err(r) => return r,
        };
        let given = match given {
            Ok(g) => g,
            Err(e) => return CheckResult::fail(label, e, None),
        };
        // The answer as the learner wrote it, for naming the mistake.
        let written = match self.answers.as_ref().ok().and_then(|a| a.get(&c.key)) {
            Some(toml::Value::String(s)) => s.trim().to_string(),
            _ => num(given),
        };
        let text = match self.read(&c.file) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => return CheckResult::fail(label, e, c.hint.clone()),
        };
        let nth = match c.occurrence {
            1 => "first".to_string(),
            2 => "second".to_string(),
            n => format!("{n}th"),
        };
        let verdict = match (&c.after, &c.column, &c.row) {
            (Some(after), _, _) => logged_after(&text, c, after, &nth, given),
            (None, Some(column), Some(row)) => {
                logged_in_table(&text, c, column, row, &nth, (given, &written))
            }
            _ => Err(("the check does not say where its value is".to_string(), None)),
        };
        match verdict {
            Ok(detail) => CheckResult::pass(label, detail),
            Err((detail, hint)) => CheckResult::fail(label, detail, hint.or_else(|| c.hint.clone())),
        }
    }

    fn text_check(&self, c: &TextCheck) -> CheckResult {
        let label = format!("{}: {}", c.key, c.question);
        let text = match self.answer(&c.key, &label, "\"…in your words…\"") {
            Ok(toml::Value::String(s)) => s.to_lowercase(),
            Ok(v) => return CheckResult::fail(label, format!("{v} is not text"), None),
            Err(r) => return r,
        };
        if c.mentions.is_empty() || c.mentions.iter().any(|m| text.contains(&m.to_lowercase())) {
            CheckResult::pass(label, "answered".into())
        } else {
            CheckResult::fail(label, "the answer misses the key idea".into(), c.hint.clone())
        }
    }
}

/// Whether `given` is the printed `token`'s value: integers exactly, decimals within 1 %.
fn same_value(given: f64, token: &str) -> bool {
    match parse_value(token) {
        Some(v) if token.contains('.') => (given - v).abs() <= 0.01 * v.abs(),
        Some(v) => given == v,
        None => false,
    }
}

/// `given` as the learner would read it beside `token`: hex for an address.
fn shown(given: f64, token: &str) -> String {
    if token.starts_with("0x") && given >= 0.0 {
        format!("{:#x}", given as u64)
    } else {
        num(given)
    }
}

/// A `logged` verdict: what was found, or why it failed and, when the check's own hint
/// would not help, a better one.
type Verdict = Result<String, (String, Option<String>)>;

/// The `after` form: the word after `after` on the chosen line.
fn logged_after(text: &str, c: &LoggedCheck, after: &str, nth: &str, given: f64) -> Verdict {
    let where_from = format!("{nth} line with {:?} in {}, after {after:?}", c.line, c.file);
    let token = text
        .lines()
        .filter(|l| l.contains(&c.line))
        .nth(c.occurrence - 1)
        .and_then(|l| l.split_once(after))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(|t| t.trim_end_matches(TRAILING));
    let Some(token) = token.filter(|t| parse_value(t).is_some()) else {
        return Err((format!("{} has no value at the {where_from}", c.file), None));
    };
    if same_value(given, token) {
        Ok(format!("{token}, as {} says", c.file))
    } else {
        Err((
            format!("{} is not what vmscope printed", shown(given, token)),
            Some(c.hint.clone().unwrap_or_else(|| format!("look at the {where_from}"))),
        ))
    }
}

/// The `column` + `row` form: a cell of the table under the chosen line. A wrong answer
/// that is another cell of the table is named (the PPID for the PID, another process's
/// PID), so the learner sees which mistake it was.
fn logged_in_table(
    text: &str,
    c: &LoggedCheck,
    column: &str,
    row: &RowMatch,
    nth: &str,
    (given, given_text): (f64, &str),
) -> Verdict {
    let header = format!("the table under the {nth} line with {:?} in {}", c.line, c.file);
    let Some(table) = Table::under(text, &c.line, c.occurrence) else {
        return Err((format!("{} has no {nth} line with {:?}", c.file, c.line), None));
    };
    let (Some(col), Some(key)) = (table.column(column), table.column(&row.column)) else {
        let names = table.columns.join(" ");
        return Err((
            format!("{header} has no column {column} or {} (its columns: {names})", row.column),
            None,
        ));
    };
    let which = format!("the row whose {} is {:?}", row.column, row.equals);
    let Some(cell) = table.find(col, key, &row.equals) else {
        return Err((format!("{header} has no row whose {} is {:?}", row.column, row.equals), None));
    };
    let token = table.text(cell).trim_end_matches(TRAILING);
    if parse_value(token).is_none() {
        return Err((format!("the {column} on {which} in {} is {token:?}, not a value", c.file), None));
    }
    if same_value(given, token) {
        return Ok(format!("{token}, the {column} on {which} in {}", c.file));
    }
    let mistake =
        table.cells_where(cell, |t| same_value(given, t.trim_end_matches(TRAILING))).first().map(|m| {
            if m.row == cell.row {
                format!("{given_text} is the {} on {which}, not its {column}", table.columns[m.column])
            } else {
                let other = &table.rows[m.row][key];
                format!(
                    "{given_text} is the {} of the row whose {} is {other:?}, not of {:?}",
                    table.columns[m.column], row.column, row.equals
                )
            }
        });
    let detail = mistake.unwrap_or_else(|| format!("{given_text} is not what {} says", c.file));
    let hint = c.hint.clone().unwrap_or_else(|| format!("read the {column} column on {which} in {}", c.file));
    Err((detail, Some(hint)))
}

#[cfg(test)]
mod tests {
    use super::super::test_utils::{report, TempDir};
    use super::*;

    fn lab(checks: &str) -> Lab {
        let text = format!(
            "+++\nname = \"t\"\nnumber = 1\ntitle = \"t\"\nseed = \"s\"\nduration = \"1\"\n{checks}\n+++\nbody\n"
        );
        Lab::parse("t.md", &text).unwrap()
    }

    fn one(checks: &str, dir: &TempDir) -> CheckResult {
        let r = run_checks(&lab(checks), dir.path());
        assert_eq!(r.len(), 1);
        r.into_iter().next().unwrap()
    }

    const REPORT: &str = "[[checks]]\nkind = \"report\"\nfile = \"exits.json\"\nsuite = \"exits\"\nfull = true\nkeywords = [\"uart\", \"cpuid\"]";

    fn exits() -> Report {
        report(
            "exits",
            "pvm",
            &[
                ("UART byte exit, CPL3 (round trip)", "us", 36.0),
                ("UART byte exit, CPL0 (round trip)", "us", 19.0),
                ("cpuid exit, CPL3 (round trip)", "us", 3.0),
            ],
        )
    }

    #[test]
    fn report_check_passes_and_fails_for_each_reason() {
        let d = TempDir::new("report");
        let r = one(REPORT, &d);
        assert!(!r.passed && r.detail.contains("missing"), "{r:?}");
        assert!(r.hint.unwrap().contains("vmscope measure exits --out"));
        d.put("exits.json", "{\"suite\": 1}");
        assert!(one(REPORT, &d).detail.contains("not a vmscope measure report"));
        d.put_report("exits.json", &exits());
        let r = one(REPORT, &d);
        assert!(r.passed, "{r:?}");
        assert!(r.detail.contains("pvm"));
        let mut wrong = exits();
        wrong.suite = "boot".into();
        d.put_report("exits.json", &wrong);
        assert!(one(REPORT, &d).detail.contains("`boot` suite"));
        let mut quick = exits();
        quick.quick = true;
        d.put_report("exits.json", &quick);
        let r = one(REPORT, &d);
        assert!(!r.passed && r.detail.contains("--quick") && r.hint.unwrap().contains("without --quick"));
        let mut unknown = exits();
        unknown.environment.host_kind = HostKind::Unknown;
        d.put_report("exits.json", &unknown);
        assert!(one(REPORT, &d).detail.contains("could not tell"));
        let mut old = exits();
        old.metrics.pop();
        d.put_report("exits.json", &old);
        let r = one(REPORT, &d);
        assert!(!r.passed && r.detail.contains("\"cpuid\"") && !r.detail.contains("uart"), "{r:?}");
    }

    const CHOICE: &str = "[[checks]]\nkind = \"choice\"\nkey = \"cheapest\"\nquestion = \"Which exit is cheapest?\"\nbest = \"lowest\"\n[checks.choices]\nuart = { file = \"exits.json\", all = [\"uart\"], native_cpl = true }\ncpuid = { file = \"exits.json\", all = [\"cpuid\"] }\nmmio = { file = \"exits.json\", all = [\"mmio\"] }";

    #[test]
    fn choice_check_agrees_with_the_learners_data() {
        let d = TempDir::new("choice");
        d.put_report("exits.json", &exits());
        let r = one(CHOICE, &d);
        assert!(!r.passed && r.detail.ends_with("answers.toml is missing"), "{r:?}");
        assert!(r.hint.unwrap().contains("`vmscope lab run t`"));
        d.put(ANSWERS, "cheapest = \"\"");
        assert_eq!(one(CHOICE, &d).detail, "no answer yet");
        d.put(ANSWERS, "cheapest = \"CPUID\"");
        let r = one(CHOICE, &d);
        assert!(r.passed && r.detail.contains("uart 36 us"), "{r:?}");
        d.put(ANSWERS, "cheapest = \"uart\"");
        let r = one(CHOICE, &d);
        assert!(!r.passed && r.detail.contains("does not agree"), "{r:?}");
        assert!(r.hint.unwrap().contains("lowest"));
        d.put(ANSWERS, "cheapest = \"mmio\"");
        assert!(one(CHOICE, &d).detail.contains("no figure for mmio"));
        d.put(ANSWERS, "cheapest = \"hypercall\"");
        assert!(one(CHOICE, &d).detail.contains("is not one of"));
        d.put(ANSWERS, "cheapest = 3");
        assert!(!one(CHOICE, &d).passed);
        d.put(ANSWERS, "cheapest = [");
        assert!(one(CHOICE, &d).detail.contains("not valid TOML"));
        // With only one figure there is nothing to compare.
        let mut only = exits();
        only.metrics.truncate(2);
        d.put_report("exits.json", &only);
        d.put(ANSWERS, "cheapest = \"uart\"");
        assert!(one(CHOICE, &d).detail.contains("cannot decide"));
    }

    #[test]
    fn choice_compares_across_units() {
        let d = TempDir::new("units");
        d.put_report(
            "m.json",
            &report("memory", "amd-v", &[("unikernel", "KiB", 900.0), ("container", "MiB", 2.0)]),
        );
        let c = "[[checks]]\nkind = \"choice\"\nkey = \"lighter\"\nquestion = \"q\"\nbest = \"lowest\"\n[checks.choices]\nunikernel = { file = \"m.json\", all = [\"unikernel\"] }\ncontainer = { file = \"m.json\", all = [\"container\"] }";
        d.put(ANSWERS, "lighter = \"unikernel\"");
        assert!(one(c, &d).passed);
        let c = c.replace("lowest", "highest");
        d.put(ANSWERS, "lighter = \"container\"");
        assert!(one(&c, &d).passed);
    }

    const NUMBER: &str = "[[checks]]\nkind = \"number\"\nkey = \"uart_ns\"\nquestion = \"What does a UART exit cost?\"\nunit = \"ns\"\nvalue = { file = \"exits.json\", all = [\"uart\"], native_cpl = true }\n[[checks.confusable]]\nwhat = \"the other CPL's round trip\"\nvalue = { file = \"exits.json\", all = [\"uart\"], other_cpl = true }";

    #[test]
    fn number_check_accepts_the_figure_it_names_and_not_its_neighbours() {
        let d = TempDir::new("number");
        d.put_report("exits.json", &exits());
        // One sample each: the band is the 10 % floor, 32.4-39.6 us, and the other CPL's
        // figure (19 us) is far outside it.
        for (answer, ok) in [
            ("36000", true),
            ("33000.0", true),
            ("\"39000 ns\"", true),
            ("30000", false),
            ("19000", false), // CPL0's figure for the CPL3 question
            ("36", false),    // microseconds where nanoseconds are asked
            ("36000000", false),
            ("0", false),
            ("-36000", false),
            ("nan", false),
        ] {
            d.put(ANSWERS, &format!("uart_ns = {answer}"));
            let r = one(NUMBER, &d);
            assert_eq!(r.passed, ok, "{answer}: {r:?}");
        }
        d.put(ANSWERS, "uart_ns = 19000");
        let r = one(NUMBER, &d);
        assert!(r.detail.contains("close to the other CPL's round trip (19000 ns)"), "{r:?}");
        assert!(r.hint.unwrap().contains("exits.json"));
        d.put(ANSWERS, "uart_ns = 36");
        assert!(one(NUMBER, &d).detail.contains("check the unit ns"));
        d.put(ANSWERS, "uart_ns = \"lots\"");
        assert!(one(NUMBER, &d).detail.contains("not a number"));
        // On hardware KVM the native CPL is 0: the same answers swap roles.
        let mut hw = exits();
        hw.environment.host_kind = HostKind::IntelVtx;
        d.put_report("exits.json", &hw);
        d.put(ANSWERS, "uart_ns = 19000");
        assert!(one(NUMBER, &d).passed);
        d.put(ANSWERS, "uart_ns = 36000");
        assert!(!one(NUMBER, &d).passed);
        // Units that do not convert are an error, not a silent pass.
        let bytes = NUMBER.replace("\"ns\"", "\"MiB\"");
        assert!(one(&bytes, &d).detail.contains("does not convert"));
    }

    #[test]
    fn the_band_follows_the_learners_spread_and_stops_short_of_neighbours() {
        // No spread: the floor.
        let b = Band::around(100.0, 0.0, 0.10, &[]);
        assert!((b.low - 90.0).abs() < 1e-9 && (b.high - 110.0).abs() < 1e-9, "{b:?}");
        // A run spread of ±20 % plus 5 % for reading.
        let b = Band::around(100.0, 0.20, 0.10, &[]);
        assert!((b.low - 75.0).abs() < 1e-9 && (b.high - 125.0).abs() < 1e-9, "{b:?}");
        // However noisy the data, never wider than ±35 %: 165 never accepts 90.
        let b = Band::around(165.0, 3.0, 0.10, &[]);
        assert!(!b.contains(90.0) && b.contains(110.0), "{b:?}");
        // A neighbour at 1.2x cuts the band at their geometric midpoint (109.5).
        let b = Band::around(100.0, 0.20, 0.10, &[("n", 120.0)]);
        assert!(b.contains(109.0) && !b.contains(110.0) && !b.contains(120.0), "{b:?}");
        let b = Band::around(100.0, 0.20, 0.10, &[("n", 80.0)]);
        assert!(b.contains(90.0) && !b.contains(89.0) && !b.contains(80.0), "{b:?}");
        // A neighbour equal to the figure says nothing; a zero one neither.
        assert_eq!(
            Band::around(100.0, 0.0, 0.10, &[("same", 100.0), ("zero", 0.0)]),
            Band::around(100.0, 0.0, 0.10, &[])
        );
    }

    #[test]
    fn a_speedup_of_90_is_not_one_of_165() {
        let d = TempDir::new("speedup");
        let mut r = report("io-batching", "pvm", &[]);
        for (name, samples) in [
            ("unikernel, batch 1 (65537 exits), whole run", [2100.0, 2300.0, 2600.0]),
            ("unikernel, batch 256 (257 exits), whole run", [13.0, 14.0, 15.0]),
            ("container, batch 1 (65536 write syscalls), whole run", [45.0, 48.0, 52.0]),
            ("container, batch 256 (256 write syscalls), whole run", [34.0, 35.0, 37.0]),
        ] {
            r.metrics.push(crate::measure::Summary::of(name, "ms", &samples).unwrap());
        }
        d.put_report("io.json", &r);
        let c = "[[checks]]\nkind = \"number\"\nkey = \"speedup\"\nquestion = \"q\"\nvalue = { file = \"io.json\", all = [\"unikernel, batch 1 (\"] }\nover = { file = \"io.json\", all = [\"unikernel, batch 256 \"] }\n[[checks.confusable]]\nwhat = \"the container's speedup\"\nvalue = { file = \"io.json\", all = [\"container, batch 1 (\"] }\nover = { file = \"io.json\", all = [\"container, batch 256 \"] }";
        // 2300 / 14 = 164.3; spreads ±10.9 % and ±7.1 % plus 5 %: ±23 %.
        for (answer, ok) in
            [("164", true), ("150", true), ("190", true), ("90", false), ("1.37", false), ("1640", false)]
        {
            d.put(ANSWERS, &format!("speedup = {answer}"));
            let res = one(c, &d);
            assert_eq!(res.passed, ok, "{answer}: {res:?}");
        }
        d.put(ANSWERS, "speedup = 1.4");
        assert!(one(c, &d).detail.contains("close to the container's speedup"));
    }

    #[test]
    fn number_check_ratio_over_another_figure() {
        let d = TempDir::new("ratio");
        d.put_report(
            "compute.json",
            &report(
                "compute",
                "pvm",
                &[
                    ("unikernel CPL3, compute 20000000", "ms", 65.0),
                    ("unikernel CPL0, compute 200000", "s", 6.0),
                ],
            ),
        );
        let c = "[[checks]]\nkind = \"number\"\nkey = \"slowdown\"\nquestion = \"q\"\nvalue = { file = \"compute.json\", all = [\"CPL0\"], per_number_after = \"compute \" }\nover = { file = \"compute.json\", all = [\"CPL3\"], per_number_after = \"compute \" }";
        // (6 s / 2e5) / (65 ms / 2e7) = 9231.
        d.put(ANSWERS, "slowdown = 9000");
        let r = one(c, &d);
        assert!(r.passed && r.detail.contains("9230.769"), "{r:?}");
        d.put(ANSWERS, "slowdown = 100");
        assert!(!one(c, &d).passed);
        d.put_report(
            "compute.json",
            &report("compute", "pvm", &[("unikernel CPL3, compute 20000000", "ms", 65.0)]),
        );
        assert!(one(c, &d).detail.contains("no metric in compute.json"));
    }

    #[test]
    fn text_check_wants_a_key_idea() {
        let d = TempDir::new("text");
        let c = "[[checks]]\nkind = \"text\"\nkey = \"why\"\nquestion = \"Why is CPL0 slow?\"\nmentions = [\"emulat\"]\nhint = \"who runs CPL0 code on PVM?\"";
        d.put(ANSWERS, "why = \"KVM's instruction Emulator runs it\"");
        assert!(one(c, &d).passed);
        d.put(ANSWERS, "why = \"because\"");
        let r = one(c, &d);
        assert!(!r.passed && r.hint.as_deref() == Some("who runs CPL0 code on PVM?"));
        d.put(ANSWERS, "why = \"  \"");
        assert_eq!(one(c, &d).detail, "no answer yet");
        let any = "[[checks]]\nkind = \"text\"\nkey = \"why\"\nquestion = \"q\"";
        d.put(ANSWERS, "why = \"because\"");
        assert!(one(any, &d).passed);
        d.put(ANSWERS, "why = 1");
        assert!(one(any, &d).detail.contains("not text"));
    }

    #[test]
    fn json_and_log_checks() {
        let d = TempDir::new("json");
        let j = "[[checks]]\nkind = \"json\"\nfile = \"ring0.json\"\npointer = \"/outcome/exited\"\nequals = 0\nwhat = \"the CPL0 run exited cleanly\"";
        assert!(one(j, &d).detail.ends_with("ring0.json is missing"));
        d.put("ring0.json", "{\"ring\": 0, \"outcome\": {\"exited\": 0}}");
        assert!(one(j, &d).passed);
        d.put("ring0.json", "{\"ring\": 0, \"outcome\": {\"exited\": 2}}");
        assert!(one(j, &d).detail.contains("is 2, not 0"));
        d.put("ring0.json", "{\"ring\": 0, \"outcome\": \"timed-out\"}");
        assert!(one(j, &d).detail.contains("has no /outcome/exited"));
        d.put("ring0.json", "not json");
        assert!(one(j, &d).detail.contains("is not JSON"));
        let l = "[[checks]]\nkind = \"log\"\nfile = \"linux.log\"\ncontains = \"vmscope: ready\"\nwhat = \"Linux reached /init\"";
        assert!(!one(l, &d).passed);
        d.put("linux.log", "...\nvmscope: ready (uptime 52 s)\n");
        assert!(one(l, &d).passed);
        d.put("linux.log", "Kernel panic\n");
        assert!(one(l, &d).detail.contains("does not contain"));
    }

    #[test]
    fn logged_check_wants_the_printed_value() {
        let d = TempDir::new("logged");
        let c = "[[checks]]\nkind = \"logged\"\nkey = \"pd_index\"\nquestion = \"q\"\nfile = \"walk.log\"\nline = \"PDE \"\nafter = \"index\"";
        let entry = "[[checks]]\nkind = \"logged\"\nkey = \"pde\"\nquestion = \"q\"\nfile = \"walk.log\"\nline = \"PDE \"\noccurrence = 2\nafter = \"entry\"";
        d.put(ANSWERS, "pd_index = 31\npde = \"0x3e000e3\"");
        assert!(one(c, &d).detail.ends_with("walk.log is missing"));
        d.put(
            "walk.log",
            "PML4E  table gpa:0x9000  index   0  entry 0x000000000000a023  P RW A\n\
             PDE    table gpa:0xb000  index  31  entry 0x0000000003e000e3  P RW A D PS\n\
             PDE    table gpa:0xb000  index  31  entry 0x0000000003e000e3  P RW A D PS\n",
        );
        assert!(one(c, &d).passed);
        assert!(one(entry, &d).passed);
        // The neighbouring wrong answers: the PML4 index, the index in hex read as decimal,
        // the entry without its flag bits, the entry's bytes as xp shows them.
        for wrong in ["pd_index = 0", "pd_index = \"0x31\"", "pd_index = 32"] {
            d.put(ANSWERS, &format!("{wrong}\npde = 1"));
            let r = one(c, &d);
            assert!(!r.passed && r.detail.contains("not what vmscope printed"), "{wrong}: {r:?}");
        }
        for wrong in ["\"0x3e00000\"", "\"0xe300e003\"", "\"pde\""] {
            d.put(ANSWERS, &format!("pde = {wrong}"));
            assert!(!one(entry, &d).passed, "{wrong}");
        }
        d.put("walk.log", "nothing here\n");
        d.put(ANSWERS, "pd_index = 31");
        assert!(
            one(c, &d).detail.contains("has no value at the first line with \"PDE \""),
            "{:?}",
            one(c, &d)
        );
        assert_eq!(parse_value("0x_10"), Some(16.0));
        assert_eq!(parse_value("2.5,"), Some(2.5));
        assert_eq!(parse_value("0xffffffffffffffff"), None);
    }

    /// vmscope's `ps` and busybox's, as saved logs (real runs, cut).
    const PS_LOG: &str = "(vmscope) ps\n   PID   TGID S COMM             TASK               PGD
     0      0 R swapper/0        0xffffffff82a0c940 -
     2      2 S kthreadd         0xffff888000219000 -
    31     31 S sh               0xffff8880002ac000 0x2d9000
    32     32 S sleep            0xffff8880002c3000 0x2dd000
    35     35 S miner            0xffff8880002b0000 0x2ef000
(vmscope) quit
";

    const IN_TABLE: &str = "[[checks]]\nkind = \"logged\"\nkey = \"pid\"\nquestion = \"q\"\nfile = \"ps.log\"\nline = \"PGD\"\ncolumn = \"PID\"\nrow = { column = \"COMM\", equals = \"miner\" }";

    #[test]
    fn logged_check_reads_the_cell_on_the_row_asked_for() {
        let d = TempDir::new("table");
        d.put("ps.log", PS_LOG);
        d.put(ANSWERS, "pid = 35");
        let r = one(IN_TABLE, &d);
        assert!(r.passed && r.detail.contains("the PID on the row whose COMM is \"miner\""), "{r:?}");
        let pgd = IN_TABLE
            .replace("column = \"PID\"", "column = \"PGD\"")
            .replace("key = \"pid\"", "key = \"pgd\"");
        d.put(ANSWERS, "pgd = \"0x2ef000\"");
        assert!(one(&pgd, &d).passed);
        // Each plausible mistake is named: another process's PID, a kernel thread's, a value
        // from another column of the right row.
        for (answer, why) in [
            ("32", "32 is the PID of the row whose COMM is \"sleep\", not of \"miner\""),
            ("2", "2 is the PID of the row whose COMM is \"kthreadd\""),
            ("\"0x2ef000\"", "0x2ef000 is the PGD on the row whose COMM is \"miner\", not its PID"),
            ("36", "36 is not what ps.log says"),
        ] {
            d.put(ANSWERS, &format!("pid = {answer}"));
            let r = one(IN_TABLE, &d);
            assert!(!r.passed && r.detail.contains(why), "{answer}: {r:?}");
            assert!(r.hint.unwrap().contains("read the PID column"), "{answer}");
        }
        d.put(ANSWERS, "pid = \"0xffff8880002b0000\"");
        assert!(one(IN_TABLE, &d).detail.contains("above 2^53"));
        d.put(ANSWERS, "pgd = \"0x2dd000\"");
        assert!(one(&pgd, &d).detail.contains("0x2dd000 is the PGD of the row whose COMM is \"sleep\""));
        // What the log lacks is said, with what it has.
        d.put(ANSWERS, "pid = 35");
        d.put("ps.log", &PS_LOG.replace("miner ", "other "));
        assert!(one(IN_TABLE, &d).detail.contains("has no row whose COMM is \"miner\""));
        d.put("ps.log", "(vmscope) ps\nerror: no vmlinux\n");
        assert!(one(IN_TABLE, &d).detail.contains("ps.log has no first line with \"PGD\""));
        let ppid = IN_TABLE.replace("column = \"PID\"", "column = \"PPID\"");
        d.put("ps.log", PS_LOG);
        let r = one(&ppid, &d);
        assert!(
            r.detail.contains("has no column PPID or COMM (its columns: PID TGID S COMM TASK PGD)"),
            "{r:?}"
        );
        // A kernel thread has no page-table root: `-` is not a value.
        let kthread = pgd.replace("\"miner\"", "\"kthreadd\"");
        d.put(ANSWERS, "pgd = 0");
        assert!(one(&kthread, &d).detail.contains("is \"-\", not a value"));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(36.0), "36");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(9230.769), "9230.769");
        assert_eq!(num(2e7), "2.000e7");
    }
}
