//! The newc cpio reader (`guests::cpio::parse`), which reads initramfs archives back, and
//! the VMM's initramfs check.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vmm::boot::linux::check_initrd("fuzz.cpio", data);
    if let Some(entries) = guests::cpio::parse(data) {
        // Entries are slices of the input: they can never hold more than it.
        let total: usize = entries.iter().map(|e| e.name.len() + e.data.len()).sum();
        assert!(total <= data.len());
    }
});
