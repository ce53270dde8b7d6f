//! Live migration from the command line: `migrate URI …` in a session (the source) and
//! `vmscope run --incoming URI` (the target). The work is `vmm::migration`; this module
//! shows progress, prints the summaries and ends the source once the guest has moved.

use anyhow::Context;
use debugger::Output;
use std::io::IsTerminal;
use std::time::Duration;
use vmm::devices::console::Console;
use vmm::machine::Machine;
use vmm::migration::{command, Progress, Uri};
use vmm::snapshot::RestoreOptions;

/// How long the target waits for each frame once a source has connected.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a session line if it is `migrate …`: the guest runs during the pre-copy rounds
/// (a stopped one is resumed, as the target will run it), a progress bar on a terminal.
/// On success the output is the summary and the caller ends the process with
/// [`end_source`]; on failure the guest runs on here and the error says why.
pub fn session_line(machine: &Machine, line: &str) -> Option<anyhow::Result<Output>> {
    let parsed = command::parse_line(line)?;
    Some((|| {
        let (uri, opts) = parsed?;
        machine.resume_all()?;
        let bar = progress_bar();
        let mut report = |p: &Progress| {
            if let Some(b) = &bar {
                b.set_length(p.pages_in_round);
                b.set_position(p.pages_in_round - p.pages_left);
                let what = if p.stopped { "stop-and-copy" } else { "pre-copy" };
                b.set_message(format!("round {} ({what}), {} MiB sent", p.round, p.bytes >> 20));
            }
        };
        let r = vmm::migration::migrate(machine, &uri, &opts, &mut report);
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let done =
            r.map_err(|e| anyhow::Error::new(e).context("migration failed; the guest runs on here"))?;
        let json = serde_json::to_value(&done.summary)?;
        let text = format!("{}\n", done.summary);
        // The vCPUs stay held (`done` keeps them) until the process ends.
        std::mem::forget(done);
        Ok(Output { text, json, ended: None })
    })())
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template("migrate {bar:30} {pos}/{len} pages  {msg}").ok()?;
    bar.set_style(style);
    Some(bar)
}

/// Ends the source after a migration: the guest runs on the target now.
pub fn end_source() -> ! {
    command::end_source()
}

/// Waits at `uri` (`vmscope run --incoming URI`) for one guest a source migrates here,
/// receives it and restores it; says what came.
pub fn receive(
    uri: &str,
    any_address: bool,
    console: Console,
    opts: RestoreOptions,
) -> anyhow::Result<vmm::snapshot::Restored> {
    let uri: Uri = uri.parse()?;
    let listener = uri.listen(any_address)?;
    let at = listener.uri();
    eprintln!("vmscope: waiting for a guest at {at}");
    let stream = vmm::migration::accept(&listener)?;
    drop(listener);
    eprintln!("vmscope: a source connected; receiving its guest");
    let received = vmm::migration::receive(stream, &at, console, opts, FRAME_TIMEOUT)
        .with_context(|| format!("no guest was received at {at}"))?;
    let s = &received.summary;
    eprintln!(
        "vmscope: received {} ({} MiB from a {} host: {} rounds, {} pages, {} bytes); restored in {:.2} ms",
        s.guest_name,
        s.mem_bytes >> 20,
        s.source_host,
        s.rounds,
        s.pages,
        s.bytes,
        s.restore_us as f64 / 1e3
    );
    Ok(received.restored)
}
