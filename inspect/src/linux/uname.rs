//! `uname` from `init_uts_ns.name` (a `struct new_utsname`: six NUL-terminated fields of
//! `__NEW_UTS_LEN + 1` = 65 bytes), as the guest's own `uname -a` prints it.

use super::{KernelMemory, LinuxError};
use serde::Serialize;

/// One field's size.
const FIELD: u64 = 65;

/// The kernel's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Utsname {
    /// `Linux`.
    pub sysname: String,
    /// The host name.
    pub nodename: String,
    /// The release (`6.1.0`).
    pub release: String,
    /// The build (`#1 SMP PREEMPT ...`).
    pub version: String,
    /// `x86_64`.
    pub machine: String,
    /// The NIS domain name.
    pub domainname: String,
}

impl std::fmt::Display for Utsname {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} {} {}", self.sysname, self.nodename, self.release, self.version, self.machine)
    }
}

/// Reads `init_uts_ns.name`.
pub fn read(k: &KernelMemory<'_>) -> Result<Utsname, LinuxError> {
    let base = k.kernel().globals.init_uts_ns + k.kernel().offsets.uts_name;
    let field = |i: u64, what: &str| k.read_cstr(what, base + i * FIELD, FIELD as usize);
    Ok(Utsname {
        sysname: field(0, "utsname.sysname")?,
        nodename: field(1, "utsname.nodename")?,
        release: field(2, "utsname.release")?,
        version: field(3, "utsname.version")?,
        machine: field(4, "utsname.machine")?,
        domainname: field(5, "utsname.domainname")?,
    })
}
