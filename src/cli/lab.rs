//! `vmscope lab list | show | run | check`: the guided labs (texts and checks live in
//! `labs/src/lab/` and `labs/texts/`).

use anyhow::Context;
use clap::{Args, Subcommand};
use labs::lab::runner::{self, Learner, Reply, Shell, Walk};
use labs::lab::text::Block;
use labs::lab::{Lab, LabError, Need};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `vmscope lab`.
#[derive(Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// List the labs.
    List,
    /// Print a lab's text: its goal, steps and what the check looks for.
    Show {
        /// The lab's name or number.
        name: String,
        /// The Markdown source, header included.
        #[arg(long)]
        raw: bool,
    },
    /// Walk through a lab, running each command you agree to in the lab directory.
    Run {
        /// The lab's name or number.
        name: String,
        /// Run every command without asking.
        #[arg(long, short)]
        yes: bool,
        /// The lab directory (default: ~/vmscope-labs/NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check your measurements and answers in the lab directory.
    Check {
        /// The lab's name or number.
        name: String,
        /// The lab directory (default: ~/vmscope-labs/NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs `vmscope lab`.
pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::List => list(),
        LabCommand::Show { name, raw } => {
            let lab = labs::lab::find(&name)?;
            if raw {
                print!("{}", labs::lab::text::source(lab));
            } else {
                print!("{}", render(lab));
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Run { name, yes, dir } => {
            let lab = labs::lab::find(&name)?;
            walk(lab, yes, dir.unwrap_or_else(|| runner::default_dir(lab)))
        }
        LabCommand::Check { name, dir } => {
            let lab = labs::lab::find(&name)?;
            check(lab, &dir.unwrap_or_else(|| runner::default_dir(lab)))
        }
    }
}

fn list() -> anyhow::Result<ExitCode> {
    let labs = labs::lab::all().map_err(|e| anyhow::anyhow!("{e}"))?;
    for lab in labs {
        let h = &lab.header;
        let needs = if h.needs.is_empty() {
            String::new()
        } else {
            format!(" · needs: {}", h.needs.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", "))
        };
        println!("{:>2}  {:<12} {}", h.number, h.name, h.title);
        println!("    {:<12} {}", "", h.seed);
        println!("    {:<12} {}{needs}\n", "", h.duration);
    }
    println!("`vmscope lab show NAME` to read one, `vmscope lab run NAME` to do it, `vmscope lab check NAME` to check it.");
    Ok(ExitCode::SUCCESS)
}

/// What is missing on this machine for the guests a lab needs.
fn unmet(lab: &Lab) -> Vec<String> {
    lab.header
        .needs
        .iter()
        .filter_map(|n| match n {
            Need::Container if guests::container::runtime_path("runc").is_none() => {
                Some("runc is not installed (`apt install runc`): the container steps will fail".into())
            }
            Need::Linux
                if !guests::linux::list_cached().iter().any(|a| a.key == guests::linux::build_key()) =>
            {
                Some(
                    "the Linux guest is not built yet: `vmscope guests build linux` builds it (about 4 min)"
                        .into(),
                )
            }
            _ => None,
        })
        .collect()
}

/// A lab's text for the terminal: fences become indented blocks, each labelled with what
/// `vmscope lab run` does with it.
fn render(lab: &Lab) -> String {
    let h = &lab.header;
    let mut out =
        format!("Lab {}: {}\nSeed question: {}\nTakes: {}\n", h.number, h.title, h.seed, h.duration);
    if !h.needs.is_empty() {
        let needs: Vec<&str> = h.needs.iter().map(|n| n.as_str()).collect();
        out += &format!("Needs: {} (besides the built-in unikernel)\n", needs.join(", "));
    }
    for s in &lab.sections {
        if !s.title.is_empty() {
            out += &format!("\n## {}\n", s.title);
        }
        for b in &s.blocks {
            out += &match b {
                Block::Prose(p) => format!("\n{p}\n"),
                Block::Run { commands, tty } => {
                    let how = if *tty { "run with your terminal" } else { "output saved under logs/" };
                    let lines: String = commands.iter().map(|c| format!("    $ {c}\n")).collect();
                    format!("\n  [{how}]\n{lines}")
                }
                Block::File { name, content } => {
                    let lines: String = content.lines().map(|l| format!("    {l}\n")).collect();
                    format!("\n  [file {name} — `vmscope lab run` writes it into the lab directory]\n{lines}")
                }
                Block::Code { code, .. } => {
                    code.lines().map(|l| format!("\n    {l}")).collect::<String>() + "\n"
                }
            };
        }
    }
    out += &format!("\nWhat `vmscope lab check {}` looks for:\n", h.name);
    for c in &h.checks {
        out += &format!("  - {}\n", c.summary());
    }
    out
}

/// The learner at this terminal.
struct Terminal {
    shell: Shell,
}

impl Learner for Terminal {
    fn show(&mut self, text: &str) {
        print!("{text}");
        let _ = std::io::stdout().flush();
    }

    fn ask(&mut self, question: &str) -> Reply {
        print!("{question} ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => Reply::Quit,
            Ok(_) => match line.trim().to_lowercase().as_str() {
                "" | "y" | "yes" => Reply::Yes,
                "q" | "quit" => Reply::Quit,
                _ => Reply::Skip,
            },
        }
    }

    fn execute(&mut self, command: &str, dir: &Path, log: Option<&Path>) -> Result<Option<i32>, LabError> {
        self.shell.execute(command, dir, log, &mut std::io::stdout())
    }
}

fn walk(lab: &Lab, yes: bool, dir: PathBuf) -> anyhow::Result<ExitCode> {
    for problem in unmet(lab) {
        println!("note: {problem}");
    }
    let exe = std::env::current_exe().context("cannot find the vmscope binary")?;
    let bin_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut learner = Terminal { shell: Shell { bin_dir } };
    let summary = runner::walk(lab, &Walk { dir, yes }, &mut learner)?;
    println!(
        "\n{} command(s) ran, {} skipped, {} failed{}",
        summary.ran,
        summary.skipped,
        summary.failed.len(),
        if summary.quit { " (stopped early: `vmscope lab run` again picks up your files)" } else { "" }
    );
    Ok(if summary.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn check(lab: &Lab, dir: &Path) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        dir.is_dir(),
        "the lab directory {} does not exist: `vmscope lab run {}` creates it (or pass --dir)",
        dir.display(),
        lab.header.name
    );
    println!("Lab {} ({}): checking {}", lab.header.number, lab.header.name, dir.display());
    let results = labs::lab::run_checks(lab, dir);
    for r in &results {
        println!("  {} {} — {}", if r.passed { "✔" } else { "✘" }, r.label, r.detail);
        if let Some(hint) = r.hint.as_ref().filter(|_| !r.passed) {
            println!("      hint: {hint}");
        }
    }
    let passed = results.iter().filter(|r| r.passed).count();
    println!("{passed} of {} checks pass.", results.len());
    Ok(if passed == results.len() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
