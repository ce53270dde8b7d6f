//! The filters compile, hold what they say, and a denied call ends the process with the
//! report. Filters cannot be removed, so the cases that install one run in a child: this
//! test binary started again on one test (`child_*`) that does its work only when
//! `VMSCOPE_SECCOMP_CHILD` says which case to play.

use super::*;
use std::process::Command;

const CHILD: &str = "VMSCOPE_SECCOMP_CHILD";

#[test]
fn every_filter_compiles_and_lists_each_call_once() {
    for thread in Thread::ALL {
        let program = filters::compile(thread).unwrap_or_else(|e| panic!("{}: {e}", thread.name()));
        assert!(!program.is_empty());
        let list = thread.allow_list();
        let mut numbers: Vec<i64> = list.iter().map(|a| a.number).collect();
        numbers.dedup();
        assert_eq!(numbers.len(), list.len(), "{} lists a call twice", thread.name());
        assert!(list.iter().all(|a| a.syscall != "?"), "{list:?}");
        for needed in ["write", "exit_group", "rt_sigreturn", "futex"] {
            assert!(list.iter().any(|a| a.syscall == needed), "{} lacks {needed}", thread.name());
        }
        for never in ["execve", "fork", "clone", "ptrace", "mount", "open_by_handle_at", "kill"] {
            assert!(!list.iter().any(|a| a.syscall == never), "{} allows {never}", thread.name());
        }
    }
}

#[test]
fn a_vcpu_may_issue_only_its_own_ioctls() {
    let list = Thread::Vcpu.allow_list();
    let ioctl = list.iter().find(|a| a.syscall == "ioctl").expect("vCPUs issue ioctls");
    let (arg, values) = ioctl.only.clone().expect("held to request numbers");
    assert_eq!(arg, 1);
    assert!(values.contains(&"KVM_RUN") && values.contains(&"KVM_SET_GUEST_DEBUG"), "{values:?}");
    assert!(!values.iter().any(|v| v.contains("CREATE")), "{values:?}");
    // The request numbers, as the kernel headers spell them.
    use filters::ioctls::*;
    assert_eq!(KVM_RUN(), 0xae80);
    assert_eq!(KVM_GET_REGS(), 0x8090_ae81);
    assert_eq!(KVM_SET_REGS(), 0x4090_ae82);
    assert_eq!(KVM_GET_SREGS(), 0x8138_ae83);
    assert_eq!(KVM_SET_SREGS(), 0x4138_ae84);
    assert_eq!(KVM_GET_MSRS(), 0xc008_ae88);
    assert_eq!(KVM_SET_MSRS(), 0x4008_ae89);
    assert_eq!(KVM_SET_GUEST_DEBUG(), 0x4048_ae9b);
    assert_eq!(KVM_GET_VCPU_EVENTS(), 0x8040_ae9f);
    assert_eq!(KVM_SET_VCPU_EVENTS(), 0x4040_aea0);
    assert_eq!(KVM_IOEVENTFD(), 0x4040_ae79);
}

#[test]
fn this_kernel_traps_and_the_report_lists_every_thread() {
    assert_eq!(kernel_support(), Ok(()));
    let r = report();
    let kinds: Vec<&str> = r.threads.iter().map(|t| t.thread.name()).collect();
    assert_eq!(kinds, ["vcpu", "doorbell", "main", "qmp"]);
    assert!(r.threads.iter().all(|t| t.allowed == t.thread.allow_list().len() && t.allowed > 10));
    assert_eq!(r.exit_status_when_denied, 159);
}

/// Runs `case` in a child (this binary, on `child_plays_a_case`) and returns its exit status
/// and standard error.
fn play(case: &str) -> (Option<i32>, String) {
    let o = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "seccomp::tests::child_plays_a_case", "--nocapture", "--test-threads", "1"])
        .env(CHILD, case)
        .output()
        .unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn a_denied_call_ends_the_process_with_the_report() {
    let (code, err) = play("denied");
    assert_eq!(code, Some(EXIT_DENIED.into()), "{err}");
    assert!(err.contains("allowed call went through"), "{err}");
    assert!(err.contains("vmscope: seccomp: thread "), "{err}");
    assert!(
        err.contains("(vcpu filter) made system call 110 (getppid), which its allow-list denies"),
        "{err}"
    );
    assert!(err.contains("--no-seccomp"), "{err}");
    assert!(!err.contains("survived"), "{err}");
}

#[test]
fn an_ioctl_outside_the_vcpu_list_is_denied_by_request_number() {
    let (code, err) = play("ioctl");
    assert_eq!(code, Some(EXIT_DENIED.into()), "{err}");
    assert!(err.contains("KVM_RUN on /dev/null: allowed, ENOTTY"), "{err}");
    assert!(err.contains("(vcpu filter) made system call 16 (ioctl)"), "{err}");
}

#[test]
fn virtio_blk_requests_run_under_the_vcpu_filter() {
    // The image lives in the parent's directory: removing a file is not a vCPU's business.
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![7u8; 8 * 512]).unwrap();
    let o = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "seccomp::tests::child_plays_a_case", "--nocapture"])
        .env(CHILD, "blk")
        .env("VMSCOPE_SECCOMP_IMAGE", &image)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("read 7, wrote 0x5a, flushed: status 0 0 0"), "{err}");
    let disk = std::fs::read(&image).unwrap();
    assert!(disk[512..1024].iter().all(|&b| b == 0x5a) && disk[..512].iter().all(|&b| b == 7));
}

#[test]
fn policy_off_installs_nothing() {
    let (code, err) = play("off");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("installed: false, filtered: Some(false)"), "{err}");
}

/// The child side of the cases above; does nothing in a normal test run.
#[test]
fn child_plays_a_case() {
    let Ok(case) = std::env::var(CHILD) else { return };
    match case.as_str() {
        "denied" => {
            assert!(install(Thread::Vcpu).unwrap());
            eprintln!("allowed call went through");
            let _ = std::os::unix::process::parent_id(); // getppid: not in the vCPU list
            eprintln!("survived");
        }
        "ioctl" => {
            let null = std::fs::File::open("/dev/null").unwrap();
            assert!(install(Thread::Vcpu).unwrap());
            use std::os::fd::AsRawFd;
            // SAFETY: ioctls on /dev/null with no argument touch no memory of ours.
            let run = unsafe { libc::ioctl(null.as_raw_fd(), filters::ioctls::KVM_RUN() as _, 0) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            if run == -1 && errno == Some(libc::ENOTTY) {
                eprintln!("KVM_RUN on /dev/null: allowed, ENOTTY");
            }
            // SAFETY: as above (the call is denied before it runs).
            unsafe { libc::ioctl(null.as_raw_fd(), libc::FIONREAD as _, 0) };
            eprintln!("survived");
        }
        "blk" => {
            use crate::devices::virtio::block::Block;
            use crate::devices::virtio::test_driver::{Driver, BUFFERS};
            use virtio_bindings::virtio_blk::{VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
            use vm_memory::{Bytes, GuestAddress};
            let path = std::env::var("VMSCOPE_SECCOMP_IMAGE").unwrap();
            let mut d = Driver::new(Box::new(Block::open(std::path::Path::new(&path), false).unwrap()));
            d.setup();
            assert!(install(Thread::Vcpu).unwrap());
            // What a vCPU does on a QueueNotify exit: the whole request on this thread.
            let (header, data, status) = (BUFFERS, BUFFERS + 0x1000, BUFFERS + 0x3000);
            let request = |d: &mut Driver, kind: u32, sector: u64, with_data: Option<bool>| {
                d.mem.write_obj(kind, GuestAddress(header)).unwrap();
                d.mem.write_obj(0u32, GuestAddress(header + 4)).unwrap();
                d.mem.write_obj(sector, GuestAddress(header + 8)).unwrap();
                d.mem.write_obj(0xffu8, GuestAddress(status)).unwrap();
                match with_data {
                    Some(device_writes) => {
                        d.submit(&[(header, 16, false), (data, 512, device_writes), (status, 1, true)])
                    }
                    None => d.submit(&[(header, 16, false), (status, 1, true)]),
                };
                d.mem.read_obj::<u8>(GuestAddress(status)).unwrap()
            };
            let read = request(&mut d, VIRTIO_BLK_T_IN, 0, Some(true));
            let byte: u8 = d.mem.read_obj(GuestAddress(data)).unwrap();
            d.mem.write_slice(&[0x5a; 512], GuestAddress(data)).unwrap();
            let wrote = request(&mut d, VIRTIO_BLK_T_OUT, 1, Some(false));
            let flushed = request(&mut d, VIRTIO_BLK_T_FLUSH, 0, None);
            eprintln!("read {byte}, wrote 0x5a, flushed: status {read} {wrote} {flushed}");
        }
        "off" => {
            set_policy(Policy::Off);
            let installed = install(Thread::Vcpu).unwrap();
            eprintln!("installed: {installed}, filtered: {:?}", current_thread_filtered());
        }
        other => panic!("unknown case {other}"),
    }
}
