//! `vmscope`: boot guests under vmscope's own KVM VMM and look inside them.
#![forbid(unsafe_code)]

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// An interactive hypervisor and VM-introspection workbench.
#[derive(Parser, Debug)]
#[command(name = "vmscope", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Run the VMM's threads without their seccomp filters (for experiments: a system call a
    /// thread's allow-list denies otherwise ends vmscope with status 159).
    #[arg(long, global = true)]
    no_seccomp: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Boot a guest and stream its console; exits with the guest's exit code.
    Run(Box<cli::run::RunArgs>),
    /// Show what kind of KVM host this is and what it offers.
    Host(cli::host::HostArgs),
    /// Check what each guest and feature needs from this host, and how to add what is missing.
    Doctor(cli::doctor::DoctorArgs),
    /// Run measurement suites (boot, exits, compute, io-batching, memory, surface, anchors, …: `measure --help` lists them all) and write JSON + SVG.
    Measure(cli::measure::MeasureArgs),
    /// Build and list the provided guests.
    Guests(cli::guests::GuestsArgs),
    /// Explore running guests side by side in the terminal.
    Tui(cli::tui::TuiArgs),
    /// Guided labs: list, show, run a lab, and check your work.
    Lab(cli::lab::LabArgs),
    /// Read snapshot files: `info FILE`, `diff A B` (take one with `snapshot FILE` in a
    /// session; resume it with `run --restore FILE`).
    Snapshot(cli::snapshot::SnapshotArgs),
    /// Ask a running vmscope (`run … --qmp unix:PATH`) for an ELF core dump of its guest,
    /// readable by drgn (`drgn -c FILE`) and crash.
    Dump(cli::qmp::DumpArgs),
    /// The embedded OCI runtime (libcontainer), run by vmscope itself in a fresh process.
    #[command(hide = true)]
    OciRuntime(cli::oci_runtime::OciRuntimeArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("VMSCOPE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if cli.no_seccomp {
        vmm::seccomp::set_policy(vmm::seccomp::Policy::Off);
    }
    let result = match cli.command {
        Command::Run(args) => cli::run::run(*args),
        Command::Host(args) => cli::host::run(args),
        Command::Doctor(args) => cli::doctor::run(args),
        Command::Measure(args) => cli::measure::run(args),
        Command::Guests(args) => cli::guests::run(args),
        Command::Tui(args) => cli::tui::run(args),
        Command::Lab(args) => cli::lab::run(args),
        Command::Dump(args) => cli::qmp::dump(args),
        Command::Snapshot(args) => cli::snapshot::run(args),
        Command::OciRuntime(args) => return cli::oci_runtime::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmscope: {}", cli::chain(&e));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::{CommandFactory, Parser};

    /// The words of a shell command line: split at blanks, '…' and "…" quote, and an
    /// unquoted `#` at the start of a word begins a comment.
    fn shell_words(line: &str) -> Vec<String> {
        let mut words = vec![];
        let mut word: Option<String> = None;
        let mut quote = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.get_or_insert_with(String::new).push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    word.get_or_insert_with(String::new);
                }
                (None, c) if c.is_whitespace() => words.extend(word.take()),
                (None, '#') if word.is_none() => break,
                (None, c) => word.get_or_insert_with(String::new).push(c),
            }
        }
        words.extend(word);
        words
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every `vmscope …` (and `cargo run … -- …`) line in the README's shell blocks parses
    /// with the CLI as it is, so the README cannot drift from the binary.
    #[test]
    fn readme_commands_parse_with_this_cli() {
        let mut in_shell_block = false;
        let mut checked = 0;
        for (n, line) in include_str!("../README.md").lines().enumerate() {
            if line.starts_with("```") {
                in_shell_block = line == "```sh";
                continue;
            }
            let words = shell_words(line);
            let args = match words.first().map(String::as_str) {
                _ if !in_shell_block => continue,
                Some("vmscope") => words[1..].to_vec(),
                Some("cargo") if words.get(1).map(String::as_str) == Some("run") => {
                    match words.iter().position(|w| w == "--") {
                        Some(i) => words[i + 1..].to_vec(),
                        None => continue,
                    }
                }
                _ => continue,
            };
            let argv = std::iter::once("vmscope".to_string()).chain(args);
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!("README.md line {}: {line}\n{e}", n + 1);
            }
            checked += 1;
        }
        assert!(checked >= 30, "only {checked} README commands found: did the blocks move?");
    }

    #[test]
    fn shell_words_quote_and_comment_like_sh() {
        assert_eq!(
            shell_words(r#"vmscope run linux --workload 'hello;compute 1' -x "a b"  # note"#),
            ["vmscope", "run", "linux", "--workload", "hello;compute 1", "-x", "a b"]
        );
        assert_eq!(shell_words("a#b # c"), ["a#b"]);
    }

    /// What the help says matches what the binary does: the container's default runtime is
    /// the embedded one.
    #[test]
    fn help_names_the_default_container_runtime() {
        let mut cmd = Cli::command();
        let run = cmd.find_subcommand_mut("run").expect("run").render_long_help().to_string();
        let container = run.lines().skip_while(|l| !l.contains("container")).take(3).collect::<String>();
        assert!(!container.contains("run by runc"), "{container}");
        assert!(container.contains("built into vmscope"), "{container}");
    }
}
