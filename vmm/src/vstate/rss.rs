//! How much memory the VMM process uses, read from `/proc/self`: its peak resident set
//! (VmHWM) and how much of guest memory is resident (the guest touched it, or the VMM
//! wrote it at boot), so the VMM's own overhead is their difference.

use super::memory::GuestMemory;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

/// Peak resident set size of this process in bytes (VmHWM), if readable.
pub fn peak_rss_bytes() -> Option<u64> {
    status_field("VmHWM:")
}

/// Private dirty memory of this process in bytes (`/proc/self/smaps_rollup`): anonymous
/// memory and written pages, but not clean file-backed pages such as the binary's own
/// code, which the page cache shares between every vmscope process.
pub fn private_dirty_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = text.lines().find(|l| l.starts_with("Private_Dirty:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Current resident set size in bytes (VmRSS), if readable.
pub fn rss_bytes() -> Option<u64> {
    status_field("VmRSS:")
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes of guest memory resident in this process (the `Rss:` of the guest mappings in
/// `/proc/self/smaps`).
pub fn guest_resident_bytes(mem: &GuestMemory) -> Option<u64> {
    let starts: Vec<u64> = mem
        .iter()
        .filter_map(|r| r.get_host_address(MemoryRegionAddress(0)).ok())
        .map(|p| p as u64)
        .collect();
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut total = 0;
    let mut in_guest = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((lo, hi)) = range.split_once('-') {
                if let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) {
                    // The kernel may merge a guest region with an adjacent anonymous mapping
                    // of the same flags, so the area is the one that holds the region's start
                    // (then an upper bound: it counts the neighbour's resident pages too).
                    in_guest = starts.iter().any(|&s| lo <= s && s < hi);
                    continue;
                }
            }
        }
        if in_guest {
            if let Some(rest) = line.strip_prefix("Rss:") {
                total += rest.split_whitespace().next()?.parse::<u64>().ok()? * 1024;
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::{create_guest_memory, write_phys};
    use inspect::Gpa;

    #[test]
    fn touched_guest_pages_are_counted() {
        let mem = create_guest_memory(8 << 20).unwrap();
        let before = guest_resident_bytes(&mem).unwrap();
        for page in 0..64u64 {
            write_phys(&mem, Gpa(page * 4096), &[1]).unwrap();
        }
        let after = guest_resident_bytes(&mem).unwrap();
        assert!(after >= before + 64 * 4096, "{before} -> {after}");
        assert!(peak_rss_bytes().unwrap() >= rss_bytes().unwrap() / 2);
        assert!(private_dirty_bytes().unwrap() >= after - before);
    }
}
