//! `vmscope lab run`: walk a learner through a lab's sections in order — show the prose,
//! write the lab's files into the work directory, and run each command the learner agrees
//! to there, saving captured output under `logs/`. The terminal side (asking, showing) is
//! behind [`Learner`] so the walk is tested without a terminal or a guest.

use super::text::{Block, Lab};
use super::LabError;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the learner says to a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Run it.
    Yes,
    /// Skip it.
    Skip,
    /// Stop the walk here.
    Quit,
}

/// The learner's side of a walk: a terminal, or a script in the tests.
pub trait Learner {
    /// Shows text.
    fn show(&mut self, text: &str);
    /// Asks a question; `Yes`, `Skip` or `Quit`.
    fn ask(&mut self, question: &str) -> Reply;
    /// Runs `command` (a shell line) in `dir`; with `log`, captures its output there (and
    /// shows it), without, gives it the terminal. Returns the exit status (`None`: killed
    /// by a signal).
    fn execute(&mut self, command: &str, dir: &Path, log: Option<&Path>) -> Result<Option<i32>, LabError>;
}

/// How to walk.
#[derive(Clone, Debug)]
pub struct Walk {
    /// The lab's work directory.
    pub dir: PathBuf,
    /// Run every command without asking.
    pub yes: bool,
}

/// What happened on a walk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Commands run that succeeded.
    pub ran: usize,
    /// Commands skipped.
    pub skipped: usize,
    /// Commands that failed, with their status.
    pub failed: Vec<(String, Option<i32>)>,
    /// Files written into the work directory.
    pub written: Vec<String>,
    /// Whether the learner stopped before the end.
    pub quit: bool,
}

/// The default work directory of a lab: `~/vmscope-labs/NAME`.
pub fn default_dir(lab: &Lab) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join("vmscope-labs").join(&lab.header.name)
}

/// Walks `lab`, creating the work directory first.
pub fn walk(lab: &Lab, walk: &Walk, learner: &mut dyn Learner) -> Result<Summary, LabError> {
    let dir = &walk.dir;
    std::fs::create_dir_all(dir.join("logs"))
        .map_err(|source| LabError::WorkDir { path: dir.clone(), source })?;
    let h = &lab.header;
    learner.show(&format!("Lab {}: {}\nSeed question: {}\n", h.number, h.title, h.seed));
    learner.show(&format!("Work directory: {} (commands run there)\n", dir.display()));
    let mut sum = Summary::default();
    let total = lab.sections.len();
    for (i, section) in lab.sections.iter().enumerate() {
        let title = if section.title.is_empty() { "Introduction" } else { &section.title };
        learner.show(&format!("\n── {}/{total} {title} ──\n", i + 1));
        let mut n = 0;
        for block in &section.blocks {
            match block {
                Block::Prose(text) => learner.show(&format!("{text}\n")),
                Block::Code { code, .. } => learner.show(&indent(code)),
                Block::File { name, content } => {
                    let path = dir.join(name);
                    if path.exists() {
                        learner.show(&format!("(keeping your {})\n", path.display()));
                    } else {
                        std::fs::write(&path, content)
                            .map_err(|source| LabError::WorkDir { path: path.clone(), source })?;
                        learner.show(&format!("(wrote {})\n{}", path.display(), indent(content)));
                        sum.written.push(name.clone());
                    }
                }
                Block::Run { commands, tty } => {
                    for command in commands {
                        n += 1;
                        learner.show(&format!("    $ {command}\n"));
                        let reply = if walk.yes { Reply::Yes } else { learner.ask("Run it? [Y/n/q]") };
                        match reply {
                            Reply::Skip => {
                                sum.skipped += 1;
                                continue;
                            }
                            Reply::Quit => {
                                sum.quit = true;
                                return Ok(sum);
                            }
                            Reply::Yes => {}
                        }
                        let log = (!tty).then(|| dir.join("logs").join(format!("step-{:02}-{n}.log", i + 1)));
                        match learner.execute(command, dir, log.as_deref())? {
                            Some(0) => sum.ran += 1,
                            status => {
                                let saved = log.map(|l| format!("; its output is in {}", l.display()));
                                learner.show(&format!(
                                    "The command failed ({}){}\n",
                                    status.map_or("killed by a signal".into(), |s| format!("status {s}")),
                                    saved.unwrap_or_default()
                                ));
                                sum.failed.push((command.clone(), status));
                                if !walk.yes && learner.ask("Go on with the lab? [Y/n]") != Reply::Yes {
                                    sum.quit = true;
                                    return Ok(sum);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    learner.show(&format!(
        "\nDone. Write your answers in {}, then run:\n    vmscope lab check {} --dir {}\n",
        dir.join(super::check::ANSWERS).display(),
        h.name,
        dir.display()
    ));
    Ok(sum)
}

fn indent(code: &str) -> String {
    code.lines().map(|l| format!("    {l}\n")).collect()
}

/// Runs lab commands with `sh -c` in the work directory, with `bin_dir` (where this
/// `vmscope` lives) first on `PATH` so a lab's `vmscope …` is this binary.
#[derive(Clone, Debug)]
pub struct Shell {
    /// Put first on `PATH`.
    pub bin_dir: PathBuf,
}

impl Shell {
    /// Runs one command; output goes to `log` and to `echo` when `log` is given, to the
    /// terminal otherwise.
    pub fn execute(
        &self,
        command: &str,
        dir: &Path,
        log: Option<&Path>,
        echo: &mut dyn Write,
    ) -> Result<Option<i32>, LabError> {
        let err = |source| LabError::Command { command: command.into(), source };
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.bin_dir.clone()];
        paths.extend(std::env::split_paths(&path));
        let mut cmd = Command::new("sh");
        cmd.current_dir(dir)
            .env("PATH", std::env::join_paths(paths).map_err(|e| err(std::io::Error::other(e)))?)
            .env("VMSCOPE_LAB_DIR", dir);
        let Some(log) = log else {
            return cmd.args(["-c", command]).status().map(|s| s.code()).map_err(err);
        };
        // `exec 2>&1` merges stderr into the one pipe, so the log keeps the output's order.
        let mut child =
            cmd.args(["-c", &format!("exec 2>&1\n{command}")]).stdout(Stdio::piped()).spawn().map_err(err)?;
        let mut file =
            std::fs::File::create(log).map_err(|source| LabError::WorkDir { path: log.into(), source })?;
        let mut out = child.stdout.take().expect("piped");
        let mut buf = [0u8; 4096];
        loop {
            let n = match out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            };
            let _ = echo.write_all(&buf[..n]);
            let _ = echo.flush();
            file.write_all(&buf[..n]).map_err(|source| LabError::WorkDir { path: log.into(), source })?;
        }
        child.wait().map(|s| s.code()).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_utils::TempDir;
    use super::*;

    /// A learner who answers from a list and records what ran.
    struct Scripted {
        replies: Vec<Reply>,
        shown: String,
        ran: Vec<(String, bool)>,
        status: i32,
    }

    impl Learner for Scripted {
        fn show(&mut self, text: &str) {
            self.shown.push_str(text);
        }
        fn ask(&mut self, _: &str) -> Reply {
            if self.replies.is_empty() {
                Reply::Yes
            } else {
                self.replies.remove(0)
            }
        }
        fn execute(&mut self, command: &str, _: &Path, log: Option<&Path>) -> Result<Option<i32>, LabError> {
            self.ran.push((command.into(), log.is_some()));
            Ok(Some(self.status))
        }
    }

    const TEXT: &str = "+++\nname = \"w\"\nnumber = 1\ntitle = \"Walk\"\nseed = \"s?\"\nduration = \"1\"\n+++\nIntro.\n## One\n```run\nvmscope measure boot --out .\nvmscope measure exits --out .\n```\n```file answers.toml\nx = \"\"\n```\n## Two\n```run tty\nvmscope tui\n```\n";

    fn learner(replies: Vec<Reply>, status: i32) -> Scripted {
        Scripted { replies, shown: String::new(), ran: vec![], status }
    }

    #[test]
    fn yes_runs_everything_and_writes_files_once() {
        let lab = Lab::parse("w.md", TEXT).unwrap();
        let d = TempDir::new("walk");
        let w = Walk { dir: d.path().into(), yes: true };
        let mut l = learner(vec![Reply::Quit], 0);
        let s = walk(&lab, &w, &mut l).unwrap();
        assert_eq!((s.ran, s.skipped, s.quit), (3, 0, false));
        assert_eq!(s.written, ["answers.toml"]);
        assert_eq!(l.ran[2], ("vmscope tui".to_string(), false));
        assert!(l.ran[0].1, "captured commands are logged");
        assert!(l.shown.contains("── 3/3 Two ──") && l.shown.contains("vmscope lab check w"), "{}", l.shown);
        // A second walk keeps the learner's answers.
        d.put("answers.toml", "x = \"mine\"");
        let s = walk(&lab, &w, &mut learner(vec![], 0)).unwrap();
        assert!(s.written.is_empty());
        assert_eq!(std::fs::read_to_string(d.path().join("answers.toml")).unwrap(), "x = \"mine\"");
    }

    #[test]
    fn asks_before_each_command_and_stops_on_quit_or_failure() {
        let lab = Lab::parse("w.md", TEXT).unwrap();
        let d = TempDir::new("ask");
        let w = Walk { dir: d.path().into(), yes: false };
        let mut l = learner(vec![Reply::Skip, Reply::Yes, Reply::Quit], 0);
        let s = walk(&lab, &w, &mut l).unwrap();
        assert_eq!((s.ran, s.skipped, s.quit), (1, 1, true));
        assert_eq!(l.ran.len(), 1);
        assert_eq!(l.ran[0].0, "vmscope measure exits --out .");
        // A failing command is reported; answering no to "go on" stops the walk.
        let mut l = learner(vec![Reply::Yes, Reply::Skip], 3);
        let s = walk(&lab, &w, &mut l).unwrap();
        assert_eq!(s.failed, [("vmscope measure boot --out .".to_string(), Some(3))]);
        assert!(s.quit && l.shown.contains("status 3"));
    }

    #[test]
    fn shell_captures_output_in_the_work_directory() {
        let d = TempDir::new("shell");
        let sh = Shell { bin_dir: d.path().into() };
        let log = d.path().join("out.log");
        let mut echo = vec![];
        let status = sh.execute("pwd; echo oops >&2; exit 4", d.path(), Some(&log), &mut echo).unwrap();
        assert_eq!(status, Some(4));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("oops") && text.contains(d.path().file_name().unwrap().to_str().unwrap()));
        assert_eq!(String::from_utf8(echo).unwrap(), text);
        // PATH starts with the binary's directory.
        std::fs::write(d.path().join("path.sh"), "echo $PATH").unwrap();
        let mut echo = vec![];
        sh.execute("sh path.sh", d.path(), Some(&log), &mut echo).unwrap();
        assert!(String::from_utf8(echo).unwrap().starts_with(d.path().to_str().unwrap()));
    }
}
