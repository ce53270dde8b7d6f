//! A `vmscope` process the test types into: its standard output and error lines arrive on
//! channels as they are printed, so a test waits for what the guest says with a bound.

use std::io::{BufRead, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// How long a guest may take to print what a test waits for (Linux boots in minutes on PVM):
/// a bound that keeps a broken run from hanging the suite, not a timing assertion.
pub const BOUND: Duration = Duration::from_secs(1200);

/// A running `vmscope ARGS…` with piped standard streams.
pub struct Typing {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Receiver<String>,
    err: Receiver<String>,
    /// Every standard-output line read so far.
    pub seen: String,
}

impl Typing {
    pub fn spawn(args: &[&str]) -> Self {
        super::require_kvm();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vmscope"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the vmscope binary");
        let out = lines(child.stdout.take().expect("piped"));
        let err = lines(child.stderr.take().expect("piped"));
        Typing { stdin: child.stdin.take(), child, out, err, seen: String::new() }
    }

    /// Reads standard output until a line contains `what`, for at most `bound`; the line, or
    /// `None` when it did not come.
    pub fn wait_out(&mut self, what: &str, bound: Duration) -> Option<String> {
        let deadline = Instant::now() + bound;
        loop {
            let line = self.out.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()?;
            self.seen += &line;
            self.seen.push('\n');
            if line.contains(what) {
                return Some(line);
            }
        }
    }

    /// As [`Typing::wait_out`] within [`BOUND`], failing the test (with all that was seen and
    /// the process's standard error) when the line never comes.
    pub fn expect_out(&mut self, what: &str) -> String {
        match self.wait_out(what, BOUND) {
            Some(line) => line,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err: Vec<String> = self.err.try_iter().collect();
                panic!("{what:?} never came; the output was:\n{}\n{}", self.seen, err.join("\n"));
            }
        }
    }

    /// The rest of the first standard-error line that contains `what` (within 300 s).
    pub fn expect_err(&mut self, what: &str) -> String {
        loop {
            let line = self.err.recv_timeout(Duration::from_secs(300)).expect("the process said nothing");
            if let Some(i) = line.find(what) {
                return line[i + what.len()..].to_string();
            }
        }
    }

    pub fn type_line(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(format!("{text}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Types `text` until `what` comes: a line typed before the guest's shell reads its
    /// terminal is lost, so it is typed again after each 60 s without an answer.
    pub fn type_until(&mut self, text: &str, what: &str) {
        for _ in 0..20 {
            self.type_line(text);
            if self.wait_out(what, Duration::from_secs(60)).is_some() {
                return;
            }
        }
        self.expect_out(what);
    }

    /// Closes standard input and waits for the end: the status, all standard output seen,
    /// and standard error.
    pub fn finish(mut self) -> (Option<i32>, String, String) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.out.recv() {
            self.seen += &line;
            self.seen.push('\n');
        }
        let err: Vec<String> = self.err.iter().collect();
        (status.code(), self.seen, err.join("\n"))
    }
}

/// The lines of `stream`, sent as they are read.
fn lines(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}
