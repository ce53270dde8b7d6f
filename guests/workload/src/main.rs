//! The vmscope workload as a static Linux program, for the Linux guest's user space and the
//! container: the same command-line contract and output as the unikernel's workloads.
//!
//! ```text
//! workload hello | compute N | syscalls N | io BYTES [--batch B] | exit-port CODE
//! workload ticks N [SPIN] [--every MS]   (a numbered line per tick; nanosleep between)
//! workload dirty MIB_PER_S [SECONDS] [--mib SIZE]  (pages written at a rate, then checked)
//! workload cat PATH    (Linux only: print a file, e.g. from the disk mounted at /mnt)
//! workload syscall-denied  (Linux only: a call the container's seccomp profile refuses)
//! ```

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let code = run();
    // For `vmscope measure memory`: the process's own peak RSS, which a parent cannot
    // isolate (its fork's pages before exec count in ru_maxrss too).
    if std::env::var_os("VMSCOPE_REPORT_PEAK_RSS").is_some() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
            eprintln!("workload: {line}");
        }
    }
    code
}

fn run() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| args.get(i).and_then(|s| s.parse::<u64>().ok());
    match args.first().map(String::as_str).unwrap_or("hello") {
        "hello" => {
            println!("Hello from the vmscope workload (pid {}, Linux user space)", std::process::id());
            ExitCode::SUCCESS
        }
        "compute" => match num(1) {
            Some(n) => compute(n),
            None => usage(),
        },
        "syscalls" => match num(1) {
            Some(n) => syscalls(n),
            None => usage(),
        },
        "io" => {
            let batch = args
                .iter()
                .position(|a| a == "--batch")
                .and_then(|i| args.get(i + 1))
                .and_then(|s| s.parse().ok());
            match num(1) {
                Some(bytes) => io(bytes, batch.unwrap_or(4096)),
                None => usage(),
            }
        }
        "cat" => match args.get(1) {
            Some(path) => cat(path),
            None => {
                eprintln!("workload: cat needs a file path");
                ExitCode::from(2)
            }
        },
        "ticks" => {
            // ticks N [SPIN] [--every MS], as the unikernel parses it.
            let (mut spin, mut every, mut bad) = (Some(0), Some(0), false);
            let mut rest = args.iter().skip(2);
            let mut first = true;
            while let Some(w) = rest.next() {
                match w.as_str() {
                    "--every" => every = rest.next().and_then(|s| s.parse().ok()),
                    w if first => spin = w.parse().ok(),
                    _ => bad = true,
                }
                first = false;
            }
            match (num(1), spin, every) {
                (Some(n), Some(spin), Some(every)) if !bad => ticks(n, spin, every),
                _ => {
                    eprintln!("workload: ticks needs N, an optional SPIN count and an optional --every MS");
                    ExitCode::from(2)
                }
            }
        }
        "dirty" => {
            // dirty MIB_PER_S [SECONDS] [--mib SIZE], as the unikernel's plus the buffer size.
            let mut rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
            let mut mib = Some(DIRTY_DEFAULT_MIB);
            if let Some(i) = rest.iter().position(|a| *a == "--mib") {
                mib =
                    rest.get(i + 1).and_then(|s| s.parse().ok()).filter(|m| (1..=DIRTY_MAX_MIB).contains(m));
                rest.drain(i..(i + 2).min(rest.len()));
            }
            let rate = rest.first().and_then(|s| s.parse::<u64>().ok());
            let seconds = match rest.get(1) {
                Some(s) => s.parse::<u64>().ok(),
                None => Some(10),
            };
            match (rate, seconds, mib, rest.len() <= 2) {
                (Some(r), Some(s), Some(m), true) => dirty(r, s, m),
                _ => {
                    eprintln!("workload: dirty needs MIB_PER_S, an optional SECONDS and an optional --mib SIZE (1 to {DIRTY_MAX_MIB})");
                    ExitCode::from(2)
                }
            }
        }
        "sigdfl" => sigdfl(&args[1..]),
        "syscall-denied" => syscall_denied(),
        "exit-port" => match num(1) {
            Some(code) => exit_port(code as u32),
            None => usage(),
        },
        other => {
            eprintln!(
                "workload: unknown workload '{other}' (try hello, compute N, syscalls N, io BYTES --batch B, ticks N [SPIN] [--every MS], dirty MIB_PER_S [SECONDS] [--mib SIZE])"
            );
            ExitCode::from(2)
        }
    }
}

/// Prints the file at `path`.
fn cat(path: &str) -> ExitCode {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&bytes);
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("workload: cannot read {path}: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("workload: this workload needs a number argument");
    ExitCode::from(2)
}

/// The same sieve as the unikernel; the same output line.
fn compute(n: u64) -> ExitCode {
    if n < 2 {
        println!("compute: N={n} does not fit in guest memory (or is below 2)");
        return ExitCode::from(3);
    }
    let mut composite = vec![0u8; n.div_ceil(8) as usize];
    let (mut count, mut sum) = (0u64, 0u64);
    for i in 2..n {
        if composite[(i / 8) as usize] & (1 << (i % 8)) == 0 {
            count += 1;
            sum = sum.wrapping_add(i);
            let mut j = i.saturating_mul(i);
            while j < n {
                composite[(j / 8) as usize] |= 1 << (j % 8);
                j += i;
            }
        }
    }
    println!("compute: N={n} primes={count} checksum={sum:#x}");
    ExitCode::SUCCESS
}

/// `personality(ADDR_NO_RANDOMIZE)`: harmless and allowed to any process, but outside the
/// personalities the container's default seccomp profile permits, so under it the call
/// fails with EPERM. Says which happened.
fn syscall_denied() -> ExitCode {
    const SYS_PERSONALITY: i64 = 135;
    const ADDR_NO_RANDOMIZE: i64 = 0x0040000;
    let ret: i64;
    // SAFETY: personality(2) only changes this process's execution domain flags; the
    // registers clobbered by the syscall instruction (rcx, r11) are declared.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") SYS_PERSONALITY => ret, in("rdi") ADDR_NO_RANDOMIZE,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    match ret {
        -1 => {
            println!("syscall-denied: personality(ADDR_NO_RANDOMIZE) failed with EPERM: seccomp refused it")
        }
        r if r < 0 => println!("syscall-denied: personality(ADDR_NO_RANDOMIZE) failed with errno {}", -r),
        _ => println!(
            "syscall-denied: personality(ADDR_NO_RANDOMIZE) was allowed: no seccomp filter refused it"
        ),
    }
    ExitCode::SUCCESS
}

/// `tick 1` … `tick N`, SPIN loop iterations and then a sleep of MS milliseconds after each
/// (nanosleep: the process costs nothing meanwhile), then `ticks: done N`; exits with
/// N mod 256, as the unikernel's `ticks`.
fn ticks(n: u64, spin: u64, every_ms: u64) -> ExitCode {
    for seq in 1..=n {
        for i in 0..spin {
            std::hint::black_box(i);
        }
        println!("tick {seq}");
        std::thread::sleep(std::time::Duration::from_millis(every_ms));
    }
    println!("ticks: done {n}");
    ExitCode::from((n % 256) as u8)
}

/// The buffer `dirty` writes over unless `--mib` says otherwise: small, because on PVM the
/// kernel clears each page it hands out in its instruction emulator (milliseconds a page).
const DIRTY_DEFAULT_MIB: u64 = 4;
/// The largest `--mib`.
const DIRTY_MAX_MIB: u64 = 1024;

/// `dirty MIB_PER_S [SECONDS] [--mib SIZE]`: the unikernel's `dirty` in user space. One
/// 8-byte store per 4 KiB page of a SIZE MiB buffer (touched once first, so the kernel's page
/// faults are not in the measurement), MIB_PER_S × 256 pages a second cycling over it, paced
/// by the monotonic clock with 1 ms sleeps while ahead; `dirty: second S` each second; after
/// SECONDS (default 10) every page is checked to hold the last value written there:
/// `dirty: verified N pages, W writes` and 0, or the first mismatch and 1. A page a live
/// migration lost shows in the check; the rate is what its pre-copy has to keep up with,
/// and SIZE bounds the set of pages that can be dirty at once (the writable working set).
fn dirty(mib_per_s: u64, seconds: u64, mib: u64) -> ExitCode {
    const WORDS_PER_PAGE: usize = 4096 / 8;
    let npages = (mib * 256) as usize;
    let mut buf = vec![0u64; npages * WORDS_PER_PAGE];
    for p in 0..npages {
        // SAFETY: the index is inside `buf`; a volatile store makes the page really touched.
        unsafe { std::ptr::write_volatile(buf.as_mut_ptr().add(p * WORDS_PER_PAGE), 0) };
    }
    println!("dirty: {mib_per_s} MiB/s for {seconds} s over {mib} MiB");
    let pages_per_s = u128::from(mib_per_s) * 256;
    let start = std::time::Instant::now();
    let (mut written, mut second) = (0u64, 0u64);
    loop {
        let elapsed = start.elapsed();
        if elapsed.as_secs() >= seconds {
            break;
        }
        if elapsed.as_secs() > second {
            second = elapsed.as_secs();
            println!("dirty: second {second}");
        }
        let due = (pages_per_s * elapsed.as_nanos() / 1_000_000_000) as u64;
        if written >= due {
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        while written < due {
            let p = (written % npages as u64) as usize;
            // SAFETY: as above; volatile so that every store reaches memory.
            unsafe { std::ptr::write_volatile(buf.as_mut_ptr().add(p * WORDS_PER_PAGE), written + 1) };
            written += 1;
        }
    }
    let checked = written.min(npages as u64);
    for p in 0..checked {
        let last = written - 1 - (written - 1 - p) % npages as u64;
        // SAFETY: as above.
        let found = unsafe { std::ptr::read_volatile(buf.as_ptr().add(p as usize * WORDS_PER_PAGE)) };
        if found != last + 1 {
            println!("dirty: MISMATCH at page {p}: found {found}, wrote {}", last + 1);
            return ExitCode::from(1);
        }
    }
    println!("dirty: verified {checked} pages, {written} writes");
    ExitCode::SUCCESS
}

/// `sigdfl PROGRAM [ARGS…]`: runs PROGRAM with SIGINT and SIGQUIT back at their default
/// action. The Linux guest's /init starts its shell in the background (`&`), and a shell
/// without job control starts background commands with both ignored; an interactive ash
/// keeps a signal ignored on entry ignored for everything it runs, so Ctrl-C at the
/// console would interrupt nothing.
fn sigdfl(command: &[String]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    const SYS_RT_SIGACTION: i64 = 13;
    let Some((program, rest)) = command.split_first() else {
        eprintln!("workload: sigdfl needs a program to run");
        return ExitCode::from(2);
    };
    // struct kernel_sigaction { handler, flags, restorer, mask }: all zero is SIG_DFL.
    let dfl = [0u64; 4];
    for signal in [2i64, 3] {
        let ret: i64;
        // SAFETY: rt_sigaction(signal, &dfl, NULL, 8) reads 32 bytes from `dfl`, which lives
        // across the call; rcx and r11, clobbered by `syscall`, are declared.
        unsafe {
            std::arch::asm!("syscall", inlateout("rax") SYS_RT_SIGACTION => ret, in("rdi") signal,
                in("rsi") dfl.as_ptr(), in("rdx") 0i64, in("r10") 8i64,
                lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        if ret != 0 {
            eprintln!("workload: sigdfl: rt_sigaction({signal}) failed with errno {}", -ret);
        }
    }
    let e = std::process::Command::new(program).args(rest).exec();
    eprintln!("workload: sigdfl: cannot run {program}: {e}");
    ExitCode::from(127)
}

/// N cheap system calls (getppid).
fn syscalls(n: u64) -> ExitCode {
    let start = std::time::Instant::now();
    let mut acc = 0u64;
    for _ in 0..n {
        acc = acc.wrapping_add(std::os::unix::process::parent_id() as u64);
    }
    std::hint::black_box(acc);
    println!("syscalls: {n} getppid calls in {:.3} ms", start.elapsed().as_secs_f64() * 1e3);
    ExitCode::SUCCESS
}

/// BYTES bytes written to /dev/null in writes of B bytes.
fn io(bytes: u64, batch: usize) -> ExitCode {
    let batch = batch.max(1);
    let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        eprintln!("io: cannot open /dev/null");
        return ExitCode::from(1);
    };
    let buf = vec![b'x'; batch];
    let (mut left, mut writes) = (bytes, 0u64);
    let start = std::time::Instant::now();
    while left > 0 {
        let n = (left as usize).min(batch);
        if f.write_all(&buf[..n]).is_err() {
            return ExitCode::from(1);
        }
        left -= n as u64;
        writes += 1;
    }
    println!(
        "io: {bytes} bytes in {writes} writes of up to {batch} in {:.3} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    ExitCode::SUCCESS
}

/// Ends the VM through vmscope's exit port (needs root inside the guest for iopl).
fn exit_port(code: u32) -> ExitCode {
    // SAFETY: iopl(3) changes only this process's I/O privilege; the kernel checks
    // CAP_SYS_RAWIO and returns an error otherwise.
    let r = unsafe { libc_iopl(3) };
    if r != 0 {
        eprintln!("exit-port: iopl(3) failed (not root, or not a vmscope VM)");
        return ExitCode::from(1);
    }
    // SAFETY: with IOPL 3, `out` to port 0x502 is allowed; under vmscope it stops the VM.
    unsafe {
        std::arch::asm!("out dx, eax", in("dx") 0x502u16, in("eax") code, options(nostack, preserves_flags))
    };
    eprintln!("exit-port: the VM did not stop (not running under vmscope?)");
    ExitCode::from(1)
}

/// The raw iopl system call (no libc crate: the binary has no dependencies).
unsafe fn libc_iopl(level: i64) -> i64 {
    let ret: i64;
    // SAFETY: syscall 172 is iopl on x86_64; it takes one integer argument.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") 172i64 => ret, in("rdi") level, lateout("rcx") _, lateout("r11") _, options(nostack))
    };
    ret
}
