//! The QMP commands: argument checking, what each does to the guest, and the reply and
//! events it produces. One [`Monitor`] serves every client of the socket; each client's
//! negotiation state and passed descriptors live in its [`ClientState`].

use crate::dump::{self, DumpRequest};
use crate::guest::Guest;
use crate::hmp::{self, Hmp};
use crate::migration::{Migration, Status};
use crate::protocol::{check_args, ArgType, QmpError, Request};
use serde_json::{json, Map, Value};
use std::fs::File;

/// The most descriptors one client may hold by name (`getfd`).
pub const MAX_FDS: usize = 16;

/// The commands, as `query-commands` lists them.
pub const COMMANDS: &[&str] = &[
    "qmp_capabilities",
    "query-version",
    "query-commands",
    "query-status",
    "query-target",
    "query-cpus-fast",
    "query-dump",
    "query-dump-guest-memory-capability",
    "stop",
    "cont",
    "quit",
    "system_reset",
    "human-monitor-command",
    "getfd",
    "closefd",
    "dump-guest-memory",
    "migrate",
    "query-migrate",
    "migrate_cancel",
];

/// One client's state.
#[derive(Debug, Default)]
pub struct ClientState {
    /// `qmp_capabilities` was accepted.
    pub negotiated: bool,
    /// Whether the connection can carry descriptors.
    pub unix: bool,
    /// Descriptors received with the client's bytes and not yet named by `getfd`.
    pub received: Vec<File>,
    /// Descriptors named by `getfd`.
    pub fds: Vec<(String, File)>,
}

/// What a command asks of the server beyond its reply.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    /// Nothing.
    Nothing,
    /// End vmscope (`quit`), once the reply and the SHUTDOWN event are sent.
    Quit,
}

/// The state of the last dump (`query-dump`).
#[derive(Clone, Debug)]
struct DumpStatus {
    status: &'static str,
    completed: u64,
    total: u64,
}

/// The command dispatcher shared by every client.
pub struct Monitor<'g, 'a> {
    guest: &'g Guest<'a>,
    migration: &'g Migration,
    dump: DumpStatus,
}

impl<'g, 'a> Monitor<'g, 'a> {
    /// A monitor of `guest`, whose migration (run by the frontend) is `migration`.
    pub fn new(guest: &'g Guest<'a>, migration: &'g Migration) -> Self {
        Self { guest, migration, dump: DumpStatus { status: "none", completed: 0, total: 0 } }
    }

    /// Runs one command; events it causes are pushed to `events` (name, data).
    pub fn execute(
        &mut self,
        client: &mut ClientState,
        req: &Request,
        events: &mut Vec<(&'static str, Option<Value>)>,
    ) -> Result<(Value, After), QmpError> {
        let args = &req.arguments;
        let name = req.execute.as_str();
        if !client.negotiated {
            if name != "qmp_capabilities" {
                return Err(QmpError::not_found(
                    "Expecting capabilities negotiation with 'qmp_capabilities'",
                ));
            }
            check_args(args, &[("enable", ArgType::StrList, false)])?;
            if let Some(cap) = args.get("enable").and_then(Value::as_array).and_then(|a| a.first()) {
                return Err(QmpError::generic(format!(
                    "Capability '{}' not available",
                    cap.as_str().unwrap_or_default()
                )));
            }
            client.negotiated = true;
            return Ok((json!({}), After::Nothing));
        }
        let none: &[(&str, ArgType, bool)] = &[];
        let ret = match name {
            "qmp_capabilities" => {
                return Err(QmpError::not_found(
                    "Capabilities negotiation is already complete, command ignored",
                ))
            }
            "query-version" => {
                check_args(args, none)?;
                json!({"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": format!("vmscope {}", env!("CARGO_PKG_VERSION"))})
            }
            "query-commands" => {
                check_args(args, none)?;
                Value::Array(COMMANDS.iter().map(|c| json!({"name": c})).collect())
            }
            "query-status" => {
                check_args(args, none)?;
                // After a migration the vCPUs are held (the guest runs on the target).
                if self.migration.status() == Status::Completed {
                    json!({"status": "postmigrate", "singlestep": false, "running": false})
                } else {
                    let running = self.guest.running();
                    json!({"status": if running { "running" } else { "paused" }, "singlestep": false, "running": running})
                }
            }
            "query-target" => {
                check_args(args, none)?;
                json!({"arch": "x86_64"})
            }
            "query-cpus-fast" => {
                check_args(args, none)?;
                let tids = self.guest.thread_ids();
                Value::Array(
                    tids.iter()
                        .enumerate()
                        .map(|(i, tid)| {
                            json!({"cpu-index": i, "qom-path": format!("/machine/unattached/device[{i}]"), "thread-id": tid,
                                   "props": {"core-id": 0, "thread-id": 0, "socket-id": i}, "target": "x86_64"})
                        })
                        .collect(),
                )
            }
            "stop" => {
                check_args(args, none)?;
                self.stop(events)?;
                json!({})
            }
            "cont" => {
                check_args(args, none)?;
                self.cont(events)?;
                json!({})
            }
            "quit" => {
                check_args(args, none)?;
                events.push(("SHUTDOWN", Some(json!({"guest": false, "reason": "host-qmp-quit"}))));
                return Ok((json!({}), After::Quit));
            }
            "system_reset" => {
                check_args(args, none)?;
                return Err(QmpError::generic(
                    "system_reset is not supported by vmscope: a guest cannot be reset in place (quit and run it again)",
                ));
            }
            "human-monitor-command" => {
                check_args(
                    args,
                    &[("command-line", ArgType::Str, true), ("cpu-index", ArgType::Int, false)],
                )?;
                let line = args["command-line"].as_str().unwrap_or_default();
                let cpu = match args.get("cpu-index").and_then(Value::as_u64) {
                    Some(c) if c as usize >= self.guest.vcpu_count() => {
                        return Err(QmpError::generic(format!("CPU {c} is not present")))
                    }
                    Some(c) => c as usize,
                    None => 0,
                };
                match hmp::run(self.guest, line, cpu) {
                    Ok(Hmp::Text(t)) => json!(t),
                    Ok(Hmp::Qmp(cmd, arguments)) => {
                        let sub = Request { execute: cmd.into(), arguments, id: None };
                        let (_, after) = match self.execute(client, &sub, events) {
                            Ok(r) => r,
                            // HMP reports a failed command in its text, as QEMU does.
                            Err(e) => return Ok((json!(format!("Error: {}\n", e.desc)), After::Nothing)),
                        };
                        if after == After::Quit {
                            return Ok((json!(""), After::Quit));
                        }
                        json!("")
                    }
                    // HMP reports errors in its text; QMP's reply still succeeds.
                    Err(e) => json!(format!("Error: {}\n", e.desc)),
                }
            }
            "getfd" => {
                check_args(args, &[("fdname", ArgType::Str, true)])?;
                let fdname = args["fdname"].as_str().unwrap_or_default().to_string();
                if fdname.is_empty() || fdname.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(QmpError::generic(
                        "Parameter 'fdname' expects a name not starting with a digit",
                    ));
                }
                if !client.unix {
                    return Err(QmpError::generic(
                        "getfd needs the unix socket: descriptors cannot pass over TCP",
                    ));
                }
                let Some(file) = client.received.pop() else {
                    return Err(QmpError::generic("No file descriptor supplied via SCM_RIGHTS"));
                };
                client.fds.retain(|(n, _)| *n != fdname);
                if client.fds.len() >= MAX_FDS {
                    return Err(QmpError::generic(format!(
                        "this client holds {MAX_FDS} descriptors, the limit (closefd one)"
                    )));
                }
                client.fds.push((fdname, file));
                json!({})
            }
            "closefd" => {
                check_args(args, &[("fdname", ArgType::Str, true)])?;
                let fdname = args["fdname"].as_str().unwrap_or_default();
                let before = client.fds.len();
                client.fds.retain(|(n, _)| n != fdname);
                if client.fds.len() == before {
                    return Err(QmpError::generic(format!("File descriptor named '{fdname}' not found")));
                }
                json!({})
            }
            "query-dump" => {
                check_args(args, none)?;
                json!({"status": self.dump.status, "completed": self.dump.completed, "total": self.dump.total})
            }
            "query-dump-guest-memory-capability" => {
                check_args(args, none)?;
                json!({"formats": ["elf"]})
            }
            "dump-guest-memory" => {
                self.dump_guest_memory(client, args, events)?;
                json!({})
            }
            "migrate" => {
                // QEMU's other arguments (blk, inc, detach, resume) are accepted where they
                // ask for nothing vmscope lacks.
                check_args(
                    args,
                    &[
                        ("uri", ArgType::Str, true),
                        ("detach", ArgType::Bool, false),
                        ("blk", ArgType::Bool, false),
                        ("inc", ArgType::Bool, false),
                        ("resume", ArgType::Bool, false),
                    ],
                )?;
                for flag in ["blk", "inc", "resume"] {
                    if args.get(flag).and_then(Value::as_bool) == Some(true) {
                        return Err(QmpError::generic(format!(
                            "Parameter '{flag}': vmscope migrates RAM and device state by pre-copy only"
                        )));
                    }
                }
                let total = self.guest.ram().iter().map(|(_, len)| len).sum();
                self.migration.request(args["uri"].as_str().unwrap_or_default(), total, events)?;
                json!({})
            }
            "query-migrate" => {
                check_args(args, none)?;
                self.migration.query()
            }
            "migrate_cancel" => {
                check_args(args, none)?;
                self.migration.cancel(events);
                json!({})
            }
            other => return Err(QmpError::not_found(format!("The command {other} has not been found"))),
        };
        Ok((ret, After::Nothing))
    }

    fn stop(&self, events: &mut Vec<(&'static str, Option<Value>)>) -> Result<(), QmpError> {
        if self.guest.running() && self.migration.moved_to().is_none() {
            self.guest.stop().map_err(QmpError::generic)?;
            events.push(("STOP", None));
        }
        Ok(())
    }

    fn cont(&self, events: &mut Vec<(&'static str, Option<Value>)>) -> Result<(), QmpError> {
        if let Some(uri) = self.migration.moved_to() {
            return Err(QmpError::generic(format!(
                "the guest was migrated to {uri} and runs there; this VM stays stopped (postmigrate)"
            )));
        }
        if !self.guest.running() {
            self.guest.cont().map_err(QmpError::generic)?;
            events.push(("RESUME", None));
        }
        Ok(())
    }

    fn dump_guest_memory(
        &mut self,
        client: &mut ClientState,
        args: &Map<String, Value>,
        events: &mut Vec<(&'static str, Option<Value>)>,
    ) -> Result<(), QmpError> {
        check_args(
            args,
            &[
                ("paging", ArgType::Bool, true),
                ("protocol", ArgType::Str, true),
                ("detach", ArgType::Bool, false),
                ("begin", ArgType::Int, false),
                ("length", ArgType::Int, false),
                ("format", ArgType::Str, false),
            ],
        )?;
        if let Some(f) = args.get("format").and_then(Value::as_str) {
            if f != "elf" {
                return Err(QmpError::generic(format!(
                    "Parameter 'format' does not accept value '{f}' (vmscope writes elf)"
                )));
            }
        }
        let begin = args.get("begin").and_then(Value::as_u64);
        let length = args.get("length").and_then(Value::as_u64);
        let filter = match (begin, length) {
            (None, None) => None,
            (Some(_), None) => return Err(QmpError::generic("Parameter 'length' is missing")),
            (None, Some(_)) => return Err(QmpError::generic("Parameter 'begin' is missing")),
            (Some(_), Some(0)) => {
                return Err(QmpError::generic("Parameter 'length' expects a non-zero length"))
            }
            (Some(b), Some(l)) => Some((b, l)),
        };
        let req = DumpRequest { paging: args["paging"].as_bool().unwrap_or(false), filter };
        let protocol = args["protocol"].as_str().unwrap_or_default();
        let mut file = if let Some(name) = protocol.strip_prefix("fd:") {
            let i = client.fds.iter().position(|(n, _)| n == name).ok_or_else(|| {
                QmpError::generic(format!("File descriptor named '{name}' has not been found"))
            })?;
            // The dump consumes the descriptor, as QEMU's does.
            client.fds.remove(i).1
        } else if let Some(path) = protocol.strip_prefix("file:") {
            open_new(path).map_err(|e| QmpError::generic(format!("Could not open '{path}': {e}")))?
        } else {
            return Err(QmpError::generic(format!(
                "Invalid parameter 'protocol': {protocol:?} (file:PATH or fd:NAME)"
            )));
        };
        let was_running = self.guest.running();
        self.stop(events)?;
        self.dump = DumpStatus { status: "active", completed: 0, total: 0 };
        let result = dump::write(self.guest, req, &mut file);
        if was_running {
            self.cont(events)?;
        }
        match result {
            Ok(report) => {
                self.dump =
                    DumpStatus { status: "completed", completed: report.memory, total: report.memory };
                let status =
                    json!({"status": "completed", "completed": report.memory, "total": report.memory});
                events.push(("DUMP_COMPLETED", Some(json!({"result": status}))));
                Ok(())
            }
            Err(e) => {
                self.dump = DumpStatus { status: "failed", completed: 0, total: 0 };
                let status = json!({"status": "failed", "completed": 0, "total": 0});
                events.push(("DUMP_COMPLETED", Some(json!({"result": status, "error": e.to_string()}))));
                Err(QmpError::generic(e.to_string()))
            }
        }
    }
}

/// Creates (or truncates) a dump file with mode 0600.
fn open_new(path: &str) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}
