//! The QEMU Machine Protocol's messages (QEMU's docs/interop/qmp-spec): the greeting,
//! commands `{"execute": NAME, "arguments": {...}, "id": ANY}`, replies
//! `{"return": ..., "id": ...}` or `{"error": {"class": ..., "desc": ...}, "id": ...}`, and
//! events `{"event": NAME, "data": {...}, "timestamp": {"seconds": S, "microseconds": U}}`.
//! Input is split into JSON objects as QEMU's streamer does: by brace depth (outside
//! strings), so clients may or may not end them with a newline.

use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The largest message a client may send: 1 MiB. A longer one is answered with an error
/// and the connection is closed.
pub const MAX_MESSAGE: usize = 1 << 20;

/// A QMP error: QEMU's class and a description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QmpError {
    /// `GenericError`, `CommandNotFound`, `DeviceNotFound`, …
    pub class: &'static str,
    /// What went wrong, for people.
    pub desc: String,
}

impl QmpError {
    /// A `GenericError`.
    pub fn generic(desc: impl Into<String>) -> Self {
        Self { class: "GenericError", desc: desc.into() }
    }

    /// A `CommandNotFound`.
    pub fn not_found(desc: impl Into<String>) -> Self {
        Self { class: "CommandNotFound", desc: desc.into() }
    }
}

/// A command from a client.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The command's name.
    pub execute: String,
    /// Its arguments (empty when none were given).
    pub arguments: Map<String, Value>,
    /// The client's `id`, echoed in the reply.
    pub id: Option<Value>,
}

/// What the splitter found in the input.
#[derive(Debug, PartialEq)]
pub enum Piece {
    /// One complete JSON text (an object, if the client is well-behaved).
    Message(Vec<u8>),
    /// Bytes that cannot start a JSON object, up to the end of their line.
    Garbage,
    /// A message grew past [`MAX_MESSAGE`].
    TooLong,
}

/// Splits a byte stream into JSON messages by brace depth.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    depth: usize,
    in_string: bool,
    escape: bool,
    garbage: bool,
}

impl Splitter {
    /// Feeds bytes; returns the pieces they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.garbage {
                if b == b'\n' {
                    self.garbage = false;
                    out.push(Piece::Garbage);
                }
                continue;
            }
            if self.depth == 0 {
                match b {
                    b'{' | b'[' => {}
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    _ => {
                        self.garbage = true;
                        if b == b'\n' {
                            self.garbage = false;
                            out.push(Piece::Garbage);
                        }
                        continue;
                    }
                }
            }
            if self.buf.len() >= MAX_MESSAGE {
                out.push(Piece::TooLong);
                *self = Self::default();
                return out;
            }
            self.buf.push(b);
            if self.in_string {
                match (self.escape, b) {
                    (true, _) => self.escape = false,
                    (false, b'\\') => self.escape = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        out.push(Piece::Message(std::mem::take(&mut self.buf)));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// Parses one message into a command, or the error reply QEMU gives (with the `id` when
/// the message had one).
pub fn parse(message: &[u8]) -> Result<Request, (Option<Value>, QmpError)> {
    let value: Value = serde_json::from_slice(message)
        .map_err(|e| (None, QmpError::generic(format!("JSON parse error, {e}"))))?;
    let Value::Object(mut obj) = value else {
        return Err((None, QmpError::generic("QMP input must be a JSON object")));
    };
    let id = obj.remove("id");
    let execute = match obj.remove("execute").or_else(|| obj.remove("exec-oob")) {
        Some(Value::String(s)) => s,
        Some(_) => return Err((id, QmpError::generic("QMP input member 'execute' must be a string"))),
        None => return Err((id, QmpError::generic("QMP input lacks member 'execute'"))),
    };
    let arguments = match obj.remove("arguments") {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err((id, QmpError::generic("QMP input member 'arguments' must be an object"))),
    };
    if let Some(extra) = obj.keys().next() {
        return Err((id, QmpError::generic(format!("QMP input member '{extra}' is unexpected"))));
    }
    Ok(Request { execute, arguments, id })
}

/// The greeting a client gets when it connects.
pub fn greeting() -> Value {
    // The QEMU release whose QMP this follows, and vmscope's own version as the package.
    json!({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": format!("vmscope {}", env!("CARGO_PKG_VERSION"))}, "capabilities": []}})
}

/// A successful reply.
pub fn ok(id: Option<Value>, ret: Value) -> Value {
    let mut m = Map::new();
    m.insert("return".into(), ret);
    if let Some(id) = id {
        m.insert("id".into(), id);
    }
    Value::Object(m)
}

/// An error reply.
pub fn err(id: Option<Value>, e: &QmpError) -> Value {
    let mut m = Map::new();
    m.insert("error".into(), json!({"class": e.class, "desc": e.desc}));
    if let Some(id) = id {
        m.insert("id".into(), id);
    }
    Value::Object(m)
}

/// An event, stamped with the wall clock as QEMU stamps them.
pub fn event(name: &str, data: Option<Value>, at: SystemTime) -> Value {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut m = Map::new();
    m.insert("event".into(), json!(name));
    if let Some(d) = data {
        m.insert("data".into(), d);
    }
    m.insert("timestamp".into(), json!({"seconds": since.as_secs(), "microseconds": since.subsec_micros()}));
    Value::Object(m)
}

/// The type an argument must have.
#[derive(Clone, Copy, Debug)]
pub enum ArgType {
    /// A JSON string.
    Str,
    /// A JSON boolean.
    Bool,
    /// A JSON integer.
    Int,
    /// A list of strings.
    StrList,
}

/// Checks `args` against a command's parameters `(name, type, required)`, with QEMU's
/// messages for an unexpected, missing or mistyped parameter.
pub fn check_args(args: &Map<String, Value>, spec: &[(&str, ArgType, bool)]) -> Result<(), QmpError> {
    for key in args.keys() {
        if !spec.iter().any(|(n, _, _)| n == key) {
            return Err(QmpError::generic(format!("Parameter '{key}' is unexpected")));
        }
    }
    for (name, ty, required) in spec {
        let Some(v) = args.get(*name) else {
            if *required {
                return Err(QmpError::generic(format!("Parameter '{name}' is missing")));
            }
            continue;
        };
        let (good, expected) = match ty {
            ArgType::Str => (v.is_string(), "string"),
            ArgType::Bool => (v.is_boolean(), "boolean"),
            ArgType::Int => (v.is_i64() || v.is_u64(), "integer"),
            ArgType::StrList => (v.as_array().is_some_and(|a| a.iter().all(Value::is_string)), "array"),
        };
        if !good {
            return Err(QmpError::generic(format!(
                "Invalid parameter type for '{name}', expected: {expected}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(input: &[u8]) -> Vec<Piece> {
        Splitter::default().feed(input)
    }

    #[test]
    fn messages_are_split_by_brace_depth_with_or_without_newlines() {
        let p = messages(b"{\"execute\":\"a\"}{\"execute\":\"b}{\"}\r\n  {\"x\": [1, {\"y\": \"\\\"}\"}]}");
        assert_eq!(
            p,
            vec![
                Piece::Message(b"{\"execute\":\"a\"}".to_vec()),
                Piece::Message(b"{\"execute\":\"b}{\"}".to_vec()),
                Piece::Message(b"{\"x\": [1, {\"y\": \"\\\"}\"}]}".to_vec()),
            ]
        );
        let mut s = Splitter::default();
        assert!(s.feed(b"{\"exec").is_empty());
        assert_eq!(s.feed(b"ute\":1}"), vec![Piece::Message(b"{\"execute\":1}".to_vec())]);
    }

    #[test]
    fn garbage_is_one_piece_per_line_and_oversized_messages_are_cut() {
        let mut s = Splitter::default();
        assert_eq!(
            s.feed(b"hello world\nagain\n{}"),
            vec![Piece::Garbage, Piece::Garbage, Piece::Message(b"{}".to_vec())]
        );
        let mut s = Splitter::default();
        let mut big = b"{\"a\":\"".to_vec();
        big.resize(MAX_MESSAGE + 10, b'x');
        assert_eq!(s.feed(&big), vec![Piece::TooLong]);
    }

    #[test]
    fn requests_and_qemu_errors() {
        let r = parse(br#"{"execute":"stop","id":{"n":1}}"#).unwrap();
        assert_eq!((r.execute.as_str(), r.id), ("stop", Some(json!({"n": 1}))));
        assert_eq!(parse(b"[1]").unwrap_err().1.desc, "QMP input must be a JSON object");
        assert_eq!(
            parse(br#"{"id":7}"#).unwrap_err(),
            (Some(json!(7)), QmpError::generic("QMP input lacks member 'execute'"))
        );
        assert!(parse(b"{\"execute\":").unwrap_err().1.desc.starts_with("JSON parse error"));
        assert_eq!(
            parse(br#"{"execute":"a","x":1}"#).unwrap_err().1.desc,
            "QMP input member 'x' is unexpected"
        );
    }

    #[test]
    fn arguments_are_checked_as_qemu_checks_them() {
        let spec = [("fdname", ArgType::Str, true), ("paging", ArgType::Bool, false)];
        let args = |v: Value| v.as_object().unwrap().clone();
        assert!(check_args(&args(json!({"fdname": "x"})), &spec).is_ok());
        assert_eq!(check_args(&args(json!({})), &spec).unwrap_err().desc, "Parameter 'fdname' is missing");
        assert_eq!(
            check_args(&args(json!({"fdname": "x", "z": 1})), &spec).unwrap_err().desc,
            "Parameter 'z' is unexpected"
        );
        assert_eq!(
            check_args(&args(json!({"fdname": "x", "paging": 1})), &spec).unwrap_err().desc,
            "Invalid parameter type for 'paging', expected: boolean"
        );
    }

    #[test]
    fn replies_and_events_have_qemus_shape() {
        assert_eq!(ok(Some(json!("a")), json!({})), json!({"return": {}, "id": "a"}));
        assert_eq!(
            err(None, &QmpError::not_found("x")),
            json!({"error": {"class": "CommandNotFound", "desc": "x"}})
        );
        let e = event("STOP", None, UNIX_EPOCH + std::time::Duration::from_micros(1_500_002));
        assert_eq!(e, json!({"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 500_002}}));
    }
}
