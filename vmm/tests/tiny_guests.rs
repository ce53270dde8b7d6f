//! Boots hand-assembled guests under the real KVM to check the VMM's exit handling and
//! its error paths, independently of the unikernel.

use std::time::Duration;
use vmm::arch::x86_64::Ring;
use vmm::devices::console::Console;
use vmm::machine::{ElfGuestConfig, Machine, Outcome};
use vmm::test_utils::tiny_elf;
use vmm::vstate::vcpu::StopReason;

const ENTRY: u64 = 0x10_0000;

fn require_kvm() {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "these tests need /dev/kvm (hardware KVM or PVM); it is missing on this machine"
    );
}

fn boot(code: &[u8], ring: Ring) -> (Machine, Console) {
    require_kvm();
    let console = Console::buffer();
    let cfg = ElfGuestConfig {
        name: "tiny".into(),
        elf: tiny_elf(ENTRY, code, 62).into(),
        cmdline: String::new(),
        mem_mib: 16,
        vcpus: 1,
        ring,
        start_paused: false,
        doorbell: false,
        ring_consumer: Default::default(),
    };
    (Machine::boot_elf(&cfg, console.clone()).expect("boot"), console)
}

/// mov eax, imm32; mov dx, 0x502; out dx, eax
fn exit_with(code: u32) -> Vec<u8> {
    let mut v = vec![0xb8];
    v.extend_from_slice(&code.to_le_bytes());
    v.extend_from_slice(&[0x66, 0xba, 0x02, 0x05, 0xef]);
    v
}

#[test]
fn exit_code_at_both_rings() {
    for ring in [Ring::Ring0, Ring::Ring3] {
        let (m, _) = boot(&exit_with(42), ring);
        match m.wait(Some(Duration::from_secs(30))) {
            Outcome::Exited { code } => assert_eq!(code, 42, "{ring:?}"),
            other => panic!("{ring:?}: {other:?}"),
        }
    }
}

#[test]
fn serial_output_reaches_the_console() {
    // mov dx, 0x3f8; mov al, 'h'; out dx, al; mov al, 'i'; out dx, al; then exit 0
    let mut code = vec![0x66, 0xba, 0xf8, 0x03, 0xb0, b'h', 0xee, 0xb0, b'i', 0xee];
    code.extend(exit_with(0));
    let (m, console) = boot(&code, Ring::Ring3);
    assert!(matches!(m.wait(Some(Duration::from_secs(30))), Outcome::Exited { code: 0 }));
    assert_eq!(console.take_buffer(), b"hi");
    let stats = m.exit_stats();
    assert_eq!(stats.count(&inspect::exits::ExitKey::io_out(0x3f8)), 2);
    assert_eq!(stats.count(&inspect::exits::ExitKey::io_out(0x502)), 1);
}

#[test]
fn triple_fault_is_reported() {
    // ud2 with no IDT: #UD -> #DF -> triple fault.
    let (m, _) = boot(&[0x0f, 0x0b], Ring::Ring3);
    match m.wait(Some(Duration::from_secs(30))) {
        Outcome::Fault { reason: StopReason::Shutdown, snapshot } => {
            let report = vmm::report::render(&StopReason::Shutdown, &snapshot, m.memory());
            assert!(report.contains("triple fault"), "{report}");
            assert!(report.contains("ud2"), "{report}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_spinning_guest_times_out() {
    // jmp $
    let (m, _) = boot(&[0xeb, 0xfe], Ring::Ring3);
    match m.wait(Some(Duration::from_millis(300))) {
        Outcome::TimedOut { snapshot: Some(s), .. } => assert_eq!(s.regs.rip, ENTRY),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_ports_are_counted_not_fatal() {
    // in al, 0x80 ... out 0x99, al; then exit 7
    let mut code = vec![0xe4, 0x80, 0xe6, 0x99];
    code.extend(exit_with(7));
    let (m, _) = boot(&code, Ring::Ring3);
    assert!(matches!(m.wait(Some(Duration::from_secs(30))), Outcome::Exited { code: 7 }));
    let stats = m.exit_stats();
    assert_eq!(stats.count(&inspect::exits::ExitKey::io_in(0x80)), 1);
    assert_eq!(stats.count(&inspect::exits::ExitKey::io_out(0x99)), 1);
}

#[test]
fn sse_at_cpl0_on_pvm_is_an_emulation_failure() {
    // movd xmm0, eax; then exit 0
    let mut code = vec![0x66, 0x0f, 0x6e, 0xc0];
    code.extend(exit_with(0));
    let (m, _) = boot(&code, Ring::Ring0);
    let outcome = m.wait(Some(Duration::from_secs(30)));
    if vmm::host_kind() == inspect::HostKind::Pvm {
        match outcome {
            Outcome::Fault { reason: reason @ StopReason::InternalError(_), snapshot } => {
                let report = vmm::report::render(&reason, &snapshot, m.memory());
                assert!(report.contains("emulator"), "{report}");
                assert!(report.contains("movd"), "{report}");
                assert_eq!(snapshot.regs.rip, ENTRY);
            }
            other => panic!("{other:?}"),
        }
    } else {
        assert!(matches!(outcome, Outcome::Exited { code: 0 }), "{outcome:?}");
    }
}
