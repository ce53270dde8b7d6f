//! What happens when a filter denies a call: the kernel raises `SIGSYS` on the thread that
//! made it (`SECCOMP_RET_TRAP`, with the call's number in `siginfo_t`), and this handler
//! writes one line naming the thread and the call, then ends the process with
//! [`EXIT_DENIED`](super::EXIT_DENIED). It only reads a thread-local label written when the
//! filter was installed, formats into a stack buffer, and calls `write(2)` and `_exit(2)`,
//! both async-signal-safe and in every allow-list.

use super::names::SYSCALL_NAMES;
use std::cell::Cell;
use std::sync::Once;

const LABEL_BYTES: usize = 64;

thread_local! {
    /// "NAME (KIND filter)" of the calling thread, set when its filter is installed; length 0
    /// in a thread that inherited a filter from the thread that started it.
    static LABEL: Cell<([u8; LABEL_BYTES], usize)> = const { Cell::new(([0; LABEL_BYTES], 0)) };
}

/// Remembers, for the report, which thread this is and which filter it runs under.
pub(super) fn set_label(kind: &str, name: &str) {
    let mut buf = Buf::<LABEL_BYTES>::new();
    buf.push(name.as_bytes());
    buf.push(b" (");
    buf.push(kind.as_bytes());
    buf.push(b" filter)");
    LABEL.with(|l| l.set((buf.bytes, buf.len)));
}

/// The name of x86_64 system call `nr`, if the table has it.
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    let nr = u16::try_from(nr).ok()?;
    SYSCALL_NAMES.binary_search_by_key(&nr, |&(n, _)| n).ok().map(|i| SYSCALL_NAMES[i].1)
}

/// A fixed buffer that silently drops what does not fit (no allocation: usable in a signal
/// handler).
struct Buf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    fn new() -> Self {
        Self { bytes: [0; N], len: 0 }
    }

    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(N - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn push_decimal(&mut self, v: i64) {
        if v < 0 {
            self.push(b"-");
        }
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = v.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

/// The report for a denied call `nr` on a thread labelled `label` (empty: unlabelled).
fn report(label: &[u8], nr: i64) -> Buf<512> {
    let mut m = Buf::new();
    m.push(b"\nvmscope: seccomp: thread ");
    if label.is_empty() {
        m.push(b"(started by a filtered thread; it inherited that filter)");
    } else {
        m.push(label);
    }
    m.push(b" made system call ");
    m.push_decimal(nr);
    m.push(b" (");
    m.push(syscall_name(nr).unwrap_or("unknown").as_bytes());
    m.push(b"), which its allow-list denies; vmscope stops here with status ");
    m.push_decimal(super::EXIT_DENIED.into());
    m.push(b". Run with --no-seccomp to go without filters, and please report the call.\n");
    m
}

/// The fields the kernel fills in `siginfo_t` for SIGSYS (`_sigsys` in the kernel's
/// `siginfo.h`), after the three ints of the header and the union's alignment padding.
#[repr(C)]
struct SigsysInfo {
    si_signo: libc::c_int,
    si_errno: libc::c_int,
    si_code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let nr = if info.is_null() {
        -1
    } else {
        // SAFETY: the kernel passes a valid `siginfo_t` (128 bytes) to an SA_SIGINFO handler;
        // for SIGSYS raised by seccomp its union holds `_sigsys`, which `SigsysInfo` lays out
        // (16-byte header, then call address, syscall number, arch) within those bytes.
        i64::from(unsafe { (*info.cast::<SigsysInfo>()).syscall })
    };
    let (label, len) = LABEL.with(Cell::get);
    let msg = report(&label[..len], nr);
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is a live stack buffer of
    // `msg.len` initialized bytes. Both calls are in every allow-list.
    unsafe {
        libc::write(libc::STDERR_FILENO, msg.bytes.as_ptr().cast(), msg.len);
        libc::_exit(super::EXIT_DENIED.into());
    }
}

/// Installs the SIGSYS handler (once per process; every thread shares it).
pub(super) fn install_handler() -> std::io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        // SAFETY: a zeroed `sigaction` is a valid "no flags, empty mask" value that is then
        // filled in; `on_sigsys` has the SA_SIGINFO signature and only does
        // async-signal-safe work. `sigemptyset` and `sigaction` get pointers to live locals.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigsys as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) != 0 {
                result = Err(std::io::Error::last_os_error());
            }
        }
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_thread_and_the_call() {
        let m = report(b"vcpu0 (vcpu filter)", 59);
        let text = std::str::from_utf8(&m.bytes[..m.len]).unwrap();
        assert!(text.contains("thread vcpu0 (vcpu filter) made system call 59 (execve)"), "{text}");
        assert!(text.contains("status 159") && text.ends_with("report the call.\n"), "{text}");
        let m = report(b"", 100_000);
        let text = std::str::from_utf8(&m.bytes[..m.len]).unwrap();
        assert!(text.contains("inherited that filter) made system call 100000 (unknown)"), "{text}");
    }

    #[test]
    fn names_come_from_the_x86_64_table() {
        assert_eq!(syscall_name(0), Some("read"));
        assert_eq!(syscall_name(libc::SYS_ioctl), Some("ioctl"));
        assert_eq!(syscall_name(libc::SYS_openat), Some("openat"));
        assert_eq!(syscall_name(-1), None);
        assert_eq!(syscall_name(100_000), None);
    }

    #[test]
    fn a_long_label_is_cut_not_overflowed() {
        let mut b = Buf::<8>::new();
        b.push(b"0123456789");
        b.push_decimal(i64::MIN);
        assert_eq!(&b.bytes[..b.len], b"01234567");
    }
}
