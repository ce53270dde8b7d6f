//! A lab text: the header between `+++` lines, then Markdown whose `##` sections are the
//! steps. Fenced blocks carry what `vmscope lab run` does with them:
//!
//! - `` ```run ``: commands, one a line, run in the lab directory with their output shown
//!   and saved (`vmscope` is this binary);
//! - `` ```run tty ``: commands that need the terminal (the TUI, a debug session), run with
//!   it and not saved;
//! - `` ```file NAME ``: a file written into the lab directory unless it is already there
//!   (a debug script, the `answers.toml` template);
//! - any other fence: shown only (e.g. what to type into gdb in a second terminal).

use super::header::Header;
use super::LabError;

/// One lab: where its text came from, its header and its sections.
#[derive(Clone, Debug)]
pub struct Lab {
    /// The text's file name (used in messages).
    pub file: String,
    /// The header.
    pub header: Header,
    /// The text after the header, as written.
    pub body: String,
    /// The body split at `##` headings; text before the first heading is a section with an
    /// empty title.
    pub sections: Vec<Section>,
}

/// A `##` section of a lab text.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    /// The heading, without `## `.
    pub title: String,
    /// Its prose and fenced blocks, in order.
    pub blocks: Vec<Block>,
}

/// A piece of a section.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// Markdown text, shown as it is.
    Prose(String),
    /// Commands to run in the lab directory.
    Run {
        /// The command lines.
        commands: Vec<String>,
        /// Whether they need the terminal (interactive) rather than captured output.
        tty: bool,
    },
    /// A file to create in the lab directory if it is missing.
    File {
        /// Its name.
        name: String,
        /// Its content.
        content: String,
    },
    /// A code block shown but not run.
    Code {
        /// The fence's info string (`sh`, `gdb`, …).
        info: String,
        /// The code.
        code: String,
    },
}

impl Section {
    /// Every command of the section's `run` blocks.
    pub fn commands(&self) -> Vec<&str> {
        self.blocks
            .iter()
            .flat_map(|b| match b {
                Block::Run { commands, .. } => commands.iter().map(String::as_str).collect(),
                _ => vec![],
            })
            .collect()
    }
}

/// The Markdown source of a built-in lab, header included.
pub fn source(lab: &Lab) -> &'static str {
    super::TEXTS.iter().find(|(file, _)| *file == lab.file).map_or("", |(_, text)| text)
}

impl Lab {
    /// Parses a lab text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, LabError> {
        let no_header = || LabError::NoHeader { file: file.into() };
        let rest = text.strip_prefix("+++\n").ok_or_else(no_header)?;
        let end = rest.find("\n+++\n").ok_or_else(no_header)?;
        let (head, body) = (&rest[..=end], &rest[end + 5..]);
        let header: Header = toml::from_str(head).map_err(|e| {
            let (field, message) = field_of(head, e.message(), e.span());
            LabError::BadHeader { file: file.into(), field, message }
        })?;
        validate(file, &header)?;
        Ok(Lab { file: file.into(), header, body: body.into(), sections: sections(body) })
    }
}

/// The header field a TOML error is about: the one the message names, or the key whose
/// value the message quotes, or else the key on the line the error points at — prefixed
/// with `checks[N].` inside the Nth check.
fn field_of(head: &str, message: &str, span: Option<std::ops::Range<usize>>) -> (String, String) {
    let message = message.trim().to_string();
    let at = span.map(|s| s.start.min(head.len()));
    let named =
        message.split_once("field `").and_then(|(_, r)| r.split_once('`')).map(|(f, _)| f.to_string());
    // Inside the checks (internally tagged tables) the span points at a table, not at the
    // key, so a wrong type is found by the value the message quotes.
    let by_value = at.zip(quoted_value(&message)).and_then(|(at, value)| {
        let mut offset = at;
        head[at..].split_inclusive('\n').find_map(|line| {
            let here = offset;
            offset += line.len();
            let (k, v) = line.split_once('=')?;
            (v.trim() == value).then(|| (here, k.trim().to_string()))
        })
    });
    let (pos, field) = match (named, by_value) {
        (Some(f), _) => (at, Some(f)),
        (None, Some((pos, k))) => (Some(pos), Some(k)),
        (None, None) => {
            let key = at.and_then(|at| {
                let start = head[..at].rfind('\n').map_or(0, |i| i + 1);
                head[start..].lines().next()?.split_once('=').map(|(k, _)| k.trim().to_string())
            });
            (at, key)
        }
    };
    let field = field.unwrap_or_else(|| "?".into());
    let check = pos.and_then(|p| {
        let n = head[..p].lines().filter(|l| l.trim() == "[[checks]]").count()
            + usize::from(head[p..].starts_with("[[checks]]"));
        n.checked_sub(1)
    });
    match check {
        Some(i) if !field.starts_with("checks") => (format!("checks[{i}].{field}"), message),
        _ => (field, message),
    }
}

/// The value an "invalid type" message quotes, as it is written in TOML: `string "yes"` →
/// `"yes"`, ``integer `7` `` → `7`.
fn quoted_value(message: &str) -> Option<String> {
    let rest = message.split_once("invalid type: ")?.1;
    let (kind, rest) = rest.split_once(' ')?;
    if kind == "string" {
        Some(format!("\"{}\"", rest.strip_prefix('"')?.split_once('"')?.0))
    } else {
        Some(rest.strip_prefix('`')?.split_once('`')?.0.to_string())
    }
}

fn validate(file: &str, h: &Header) -> Result<(), LabError> {
    let bad = |field: String, message: &str| LabError::BadHeader {
        file: file.into(),
        field,
        message: message.into(),
    };
    if h.name.is_empty() || !h.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(bad("name".into(), "must be lowercase letters, digits and dashes"));
    }
    if h.number == 0 {
        return Err(bad("number".into(), "must be 1 or more"));
    }
    for field in [("title", &h.title), ("seed", &h.seed), ("duration", &h.duration)] {
        if field.1.trim().is_empty() {
            return Err(bad(field.0.into(), "must not be empty"));
        }
    }
    let mut keys = std::collections::BTreeSet::new();
    for (i, c) in h.checks.iter().enumerate() {
        c.validate().map_err(|(f, m)| bad(format!("checks[{i}].{f}"), &m))?;
        if let Some(k) = c.answer_key() {
            if !keys.insert(k) {
                return Err(bad(format!("checks[{i}].key"), &format!("the answer key {k:?} is used twice")));
            }
        }
    }
    Ok(())
}

fn sections(body: &str) -> Vec<Section> {
    let mut out = vec![Section { title: String::new(), blocks: vec![] }];
    let mut prose = String::new();
    let mut fence: Option<(String, String)> = None;
    let flush = |prose: &mut String, out: &mut Vec<Section>| {
        if !prose.trim().is_empty() {
            out.last_mut()
                .expect("one section")
                .blocks
                .push(Block::Prose(prose.trim_matches('\n').trim_end().to_string()));
        }
        prose.clear();
    };
    for line in body.lines() {
        if let Some((info, code)) = &mut fence {
            if line.trim_start().starts_with("```") {
                let block = to_block(info, std::mem::take(code));
                out.last_mut().expect("one section").blocks.push(block);
                fence = None;
            } else {
                code.push_str(line);
                code.push('\n');
            }
        } else if let Some(info) = line.trim_start().strip_prefix("```") {
            flush(&mut prose, &mut out);
            fence = Some((info.trim().to_string(), String::new()));
        } else if let Some(title) = line.strip_prefix("## ") {
            flush(&mut prose, &mut out);
            out.push(Section { title: title.trim().into(), blocks: vec![] });
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    if let Some((info, code)) = fence {
        out.last_mut().expect("one section").blocks.push(to_block(&info, code));
    }
    flush(&mut prose, &mut out);
    out.retain(|s| !(s.title.is_empty() && s.blocks.is_empty()));
    out
}

fn to_block(info: &str, code: String) -> Block {
    let words: Vec<&str> = info.split_whitespace().collect();
    let commands = || {
        code.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()
    };
    match words.as_slice() {
        ["run"] => Block::Run { commands: commands(), tty: false },
        ["run", "tty"] => Block::Run { commands: commands(), tty: true },
        ["file", name] => Block::File { name: (*name).into(), content: code },
        _ => Block::Code { info: info.into(), code },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "+++
name = \"demo\"
number = 9
title = \"A demo\"
seed = \"Does it parse?\"
needs = [\"container\"]
duration = \"5 min\"

[[checks]]
kind = \"report\"
file = \"boot.json\"
suite = \"boot\"

[[checks]]
kind = \"text\"
key = \"why\"
question = \"Why?\"
+++
Intro.

## Goal
Learn.

## Step 1: measure
Run this:

```run
# a comment
vmscope measure boot --out .
```

```run tty
vmscope tui
```

```file answers.toml
why = \"\"
```

```gdb
target remote :1234
```
";

    fn err(text: &str) -> String {
        Lab::parse("bad.md", text).unwrap_err().to_string()
    }

    fn with_header(header: &str) -> String {
        format!("+++\n{header}\n+++\nbody\n")
    }

    const BASE: &str = "name = \"x\"\nnumber = 1\ntitle = \"t\"\nseed = \"s\"\nduration = \"1 min\"\n";

    #[test]
    fn parses_header_and_sections() {
        let lab = Lab::parse("demo.md", GOOD).unwrap();
        assert_eq!(lab.header.name, "demo");
        assert_eq!(lab.header.needs, [super::super::Need::Container]);
        assert_eq!(lab.header.checks.len(), 2);
        let titles: Vec<&str> = lab.sections.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["", "Goal", "Step 1: measure"]);
        let step = &lab.sections[2];
        assert_eq!(step.commands(), ["vmscope measure boot --out .", "vmscope tui"]);
        assert!(matches!(&step.blocks[2], Block::Run { tty: true, .. }));
        assert_eq!(
            step.blocks[3],
            Block::File { name: "answers.toml".into(), content: "why = \"\"\n".into() }
        );
        assert!(matches!(&step.blocks[4], Block::Code { info, .. } if info == "gdb"));
    }

    #[test]
    fn missing_header_names_the_file() {
        let e = err("# no header\n");
        assert!(e.starts_with("bad.md: no header"), "{e}");
        let e = err("+++\nname = \"x\"\n");
        assert!(e.contains("bad.md: no header"), "{e}");
    }

    #[test]
    fn missing_field_is_named() {
        let e = err(&with_header("name = \"x\"\nnumber = 1\ntitle = \"t\"\nduration = \"1\""));
        assert!(e.starts_with("bad.md: bad header, field `seed`"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_field_from_its_line() {
        let e = err(&with_header(&BASE.replace("number = 1", "number = \"one\"")));
        assert!(e.starts_with("bad.md: bad header, field `number`"), "{e}");
    }

    #[test]
    fn unknown_field_and_need_are_named() {
        let e = err(&with_header(&format!("{BASE}colour = \"red\"")));
        assert!(e.contains("field `colour`"), "{e}");
        let e = err(&with_header(&format!("{BASE}needs = [\"windows\"]")));
        assert!(e.contains("field `needs`") && e.contains("windows"), "{e}");
    }

    #[test]
    fn check_errors_name_the_check() {
        let e = err(&with_header(&format!("{BASE}[[checks]]\nkind = \"report\"\nfile = \"a.json\"\n")));
        assert!(e.contains("field `checks[0].suite`") || e.contains("`suite`"), "{e}");
        let e = err(&with_header(&format!(
            "{BASE}[[checks]]\nkind = \"text\"\nkey = \"a\"\nquestion = \"q\"\n[[checks]]\nkind = \"teleport\"\n"
        )));
        assert!(e.contains("teleport"), "{e}");
        let e = err(&with_header(&format!(
            "{BASE}[[checks]]\nkind = \"number\"\nkey = \"a\"\nquestion = \"q\"\nmin_tolerance = 2.0\nvalue = {{ file = \"a.json\", all = [\"x\"] }}\n"
        )));
        assert!(e.contains("field `checks[0].min_tolerance`"), "{e}");
        let e = err(&with_header(&format!(
            "{BASE}[[checks]]\nkind = \"number\"\nkey = \"a\"\nquestion = \"q\"\nvalue = {{ file = \"a.json\", all = [\"x\"] }}\n[[checks.confusable]]\nwhat = \"w\"\nvalue = {{ file = \"a.json\", all = [\"y\"] }}\nover = {{ file = \"a.json\", all = [\"z\"] }}\n"
        )));
        assert!(e.contains("confusable[0].over") && e.contains("a ratio exactly when"), "{e}");
        let e = err(&with_header(&format!(
            "{BASE}[[checks]]\nkind = \"choice\"\nkey = \"a\"\nquestion = \"q\"\nbest = \"lowest\"\n[checks.choices]\nx = {{ file = \"a.json\" }}\ny = {{ file = \"a.json\", all = [\"y\"] }}\n"
        )));
        assert!(e.contains("field `checks[0].choices.x`") && e.contains("`all` or `any`"), "{e}");
        let e = err(&with_header(&format!(
            "{BASE}[[checks]]\nkind = \"text\"\nkey = \"a\"\nquestion = \"q\"\n[[checks]]\nkind = \"text\"\nkey = \"a\"\nquestion = \"r\"\n"
        )));
        assert!(e.contains("field `checks[1].key`") && e.contains("used twice"), "{e}");
        let e = err(&with_header(&format!(
            "{BASE}[[checks]]\nkind = \"json\"\nfile = \"../x.json\"\npointer = \"/a\"\nequals = 1\nwhat = \"w\"\n"
        )));
        assert!(e.contains("field `checks[0].file`"), "{e}");
    }

    #[test]
    fn a_logged_check_says_where_its_value_is_in_one_way() {
        let logged = |place: &str| {
            with_header(&format!(
                "{BASE}[[checks]]\nkind = \"logged\"\nkey = \"a\"\nquestion = \"q\"\nfile = \"ps.log\"\nline = \"PID\"\n{place}\n"
            ))
        };
        let row = "row = { column = \"COMM\", equals = \"miner\" }";
        assert!(Lab::parse("ok.md", &logged("after = \"pid\"")).is_ok());
        assert!(Lab::parse("ok.md", &logged(&format!("column = \"PID\"\n{row}"))).is_ok());
        for (place, field, says) in [
            ("", "after", "`after`, or `column` and `row`"),
            ("after = \"\"", "after", "must not be empty"),
            (&format!("after = \"pid\"\ncolumn = \"PID\"\n{row}") as &str, "after", "not both"),
            ("column = \"PID\"", "row", "needs `row"),
            (row, "column", "needs the `column`"),
            (&format!("column = \"P ID\"\n{row}"), "column", "no spaces"),
            ("column = \"PID\"\nrow = { column = \"COMM\", equals = \" \" }", "column", "a cell"),
            ("after = \"pid\"\noccurrence = 0", "occurrence", "counts from 1"),
        ] {
            let e = err(&logged(place));
            assert!(e.contains(&format!("field `checks[0].{field}`")) && e.contains(says), "{place}: {e}");
        }
        let e = err(&logged("column = \"PID\"\nrow = { column = \"COMM\", is = \"miner\" }"));
        assert!(e.contains("is"), "{e}");
    }

    #[test]
    fn wrong_type_inside_a_check_is_found_by_its_value() {
        let e = err(&with_header(&format!(
            "{BASE}[[checks]]\nkind = \"report\"\nfile = \"a.json\"\nsuite = \"s\"\nfull = \"yes\"\n"
        )));
        assert!(e.contains("field `checks[0].full`") && e.contains("expected a boolean"), "{e}");
        let e = err(&with_header(&format!(
            "{BASE}[[checks]]\nkind = \"text\"\nkey = \"k\"\nquestion = \"q\"\n[[checks]]\nkind = \"text\"\nkey = \"j\"\nquestion = 7\n"
        )));
        assert!(e.contains("field `checks[1].question`"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = err(&with_header(&BASE.replace("name = \"x\"", "name = \"Bad Name\"")));
        assert!(e.contains("field `name`"), "{e}");
        let e = err(&with_header(&BASE.replace("number = 1", "number = 0")));
        assert!(e.contains("field `number`"), "{e}");
        let e = err(&with_header(&BASE.replace("seed = \"s\"", "seed = \" \"")));
        assert!(e.contains("field `seed`"), "{e}");
    }
}
