//! Console output through the console-write hypercall — or, when the guest was booted
//! through its PVH entry by another VMM, through the 16550 UART at COM1 — with integer
//! formatting of our own (core::fmt is off limits: it is built with SSE).

use crate::hypercall;

/// Writes `bytes` in one hypercall (under vmscope) or byte by byte to COM1 (elsewhere).
#[no_mangle]
#[inline(never)]
pub fn console_write(bytes: &[u8]) {
    if hypercall::serial_mode() {
        serial_write(bytes);
    } else {
        hypercall::console_write_raw(bytes.as_ptr() as u64, bytes.len() as u64);
    }
}

/// Switches the console (and the exit path) to what other VMMs offer: see `hypercall`.
pub fn use_serial() {
    hypercall::set_serial_mode();
}

/// COM1's data port and line status register.
const COM1: u16 = 0x3f8;
const COM1_LSR: u16 = COM1 + 5;
/// LSR.THRE: the transmit holding register is empty.
const LSR_THRE: u8 = 0x20;
/// How long to wait for THRE before writing anyway (an absent or stuck UART reads 0xff
/// or never drains; the guest must not hang on it).
const THRE_SPINS: u32 = 10_000;

/// Writes `bytes` to COM1, waiting (bounded) for the transmitter before each one.
pub fn serial_write(bytes: &[u8]) {
    for &b in bytes {
        let mut spins = 0;
        while hypercall::inb(COM1_LSR) & LSR_THRE == 0 && spins < THRE_SPINS {
            spins += 1;
        }
        hypercall::outb(COM1, b);
    }
}

/// Writes `bytes` (an alias that reads better at call sites).
pub fn write(bytes: &[u8]) {
    console_write(bytes);
}

/// A line being assembled on the stack, sent with one hypercall.
pub struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Self { buf: [0; 256], len: 0 }
    }

    /// Appends bytes (truncating at 256).
    pub fn str(&mut self, s: &[u8]) -> &mut Self {
        for &b in s {
            // `get_mut`, not indexing: a bounds-check panic would link core::fmt (SSE).
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        self
    }

    /// Appends a decimal number.
    pub fn dec(&mut self, mut n: u64) -> &mut Self {
        // Digits are produced last first; u64 has at most 20.
        let mut digits = [0u8; 20];
        let mut count = 0;
        for slot in digits.iter_mut() {
            *slot = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for d in digits.iter().take(count).rev() {
            self.str(core::slice::from_ref(d));
        }
        self
    }

    /// Appends `0x` and a hex number.
    pub fn hex(&mut self, n: u64) -> &mut Self {
        self.str(b"0x");
        let mut started = false;
        for shift in (0..16).rev() {
            let d = ((n >> (shift * 4)) & 0xf) as u8;
            if d != 0 || started || shift == 0 {
                started = true;
                self.str(&[if d < 10 { b'0' + d } else { b'a' + d - 10 }]);
            }
        }
        self
    }

    /// Sends the line.
    pub fn send(&mut self) {
        console_write(self.buf.get(..self.len).unwrap_or(&[]));
        self.len = 0;
    }
}
