//! VMM exit statistics: plain data the VMM fills (one counter per exit reason, per port or
//! MMIO address) and everyone renders.
//!
//! The guest chooses the ports and MMIO pages it touches, and can touch millions, so the
//! keys that carry an address (or an unusual exit's name) are capped at [`MAX_KEYS`]:
//! exits at further addresses are counted in their kind's "other addresses" row
//! ([`ExitKey::overflow`]), which is shown in the table and in the JSON like any row, so
//! totals and per-kind counts stay exact.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The most distinct keys one [`ExitStats`] keeps before exits at new addresses go to their
/// kind's overflow row: 256. vmscope's guests use a handful of ports and one MMIO page per
/// device, so a real workload never reaches it, while a guest sweeping fresh MMIO pages
/// (each one a new key) is held to a table that stays readable and a few tens of KiB. The
/// keys without an address (one per exit kind, and the overflow rows) are always kept, so
/// at most `MAX_KEYS` plus two per kind exist.
pub const MAX_KEYS: usize = 256;

/// The `detail` of a kind's overflow row (the exits at addresses beyond [`MAX_KEYS`]).
pub const OVERFLOW_DETAIL: &str = "(other addresses)";

/// The kind of a vCPU exit (`KVM_EXIT_*`), with vmscope's finer split of port I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitKind {
    /// `KVM_EXIT_IO`, direction in.
    IoIn,
    /// `KVM_EXIT_IO`, direction out.
    IoOut,
    /// `KVM_EXIT_MMIO`, read.
    MmioRead,
    /// `KVM_EXIT_MMIO`, write.
    MmioWrite,
    /// `KVM_EXIT_HLT`.
    Hlt,
    /// `KVM_EXIT_SHUTDOWN`.
    Shutdown,
    /// `KVM_EXIT_DEBUG`.
    Debug,
    /// `KVM_EXIT_INTERNAL_ERROR`.
    InternalError,
    /// `KVM_EXIT_FAIL_ENTRY`.
    FailEntry,
    /// `KVM_EXIT_SYSTEM_EVENT`.
    SystemEvent,
    /// `KVM_EXIT_INTR` or an `EINTR` from `KVM_RUN` (a kick).
    Intr,
    /// Anything else.
    Other,
}

impl ExitKind {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::IoIn => "io-in",
            ExitKind::IoOut => "io-out",
            ExitKind::MmioRead => "mmio-read",
            ExitKind::MmioWrite => "mmio-write",
            ExitKind::Hlt => "hlt",
            ExitKind::Shutdown => "shutdown",
            ExitKind::Debug => "debug",
            ExitKind::InternalError => "internal-error",
            ExitKind::FailEntry => "fail-entry",
            ExitKind::SystemEvent => "system-event",
            ExitKind::Intr => "intr",
            ExitKind::Other => "other",
        }
    }
}

/// What exits are counted by: the kind plus the port or MMIO address, when there is one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExitKey {
    /// The kind.
    pub kind: ExitKind,
    /// The I/O port or MMIO address.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub addr: Option<u64>,
    /// For `Other`: the exit's name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

impl ExitKey {
    fn plain(kind: ExitKind) -> Self {
        Self { kind, addr: None, detail: None }
    }
    fn at(kind: ExitKind, addr: u64) -> Self {
        Self { kind, addr: Some(addr), detail: None }
    }
    /// Port `in`.
    pub fn io_in(port: u16) -> Self {
        Self::at(ExitKind::IoIn, port.into())
    }
    /// Port `out`.
    pub fn io_out(port: u16) -> Self {
        Self::at(ExitKind::IoOut, port.into())
    }
    /// MMIO read. Addresses are counted per 4 KiB page so a device is one row.
    pub fn mmio_read(addr: u64) -> Self {
        Self::at(ExitKind::MmioRead, addr & !0xfff)
    }
    /// MMIO write, per 4 KiB page.
    pub fn mmio_write(addr: u64) -> Self {
        Self::at(ExitKind::MmioWrite, addr & !0xfff)
    }
    /// HLT.
    pub fn hlt() -> Self {
        Self::plain(ExitKind::Hlt)
    }
    /// Shutdown (triple fault).
    pub fn shutdown() -> Self {
        Self::plain(ExitKind::Shutdown)
    }
    /// Debug.
    pub fn debug() -> Self {
        Self::plain(ExitKind::Debug)
    }
    /// Internal error.
    pub fn internal_error() -> Self {
        Self::plain(ExitKind::InternalError)
    }
    /// Failed entry.
    pub fn fail_entry() -> Self {
        Self::plain(ExitKind::FailEntry)
    }
    /// System event.
    pub fn system_event() -> Self {
        Self::plain(ExitKind::SystemEvent)
    }
    /// Interrupted run.
    pub fn intr() -> Self {
        Self::plain(ExitKind::Intr)
    }
    /// Another exit, by name.
    pub fn other(name: &str) -> Self {
        Self { kind: ExitKind::Other, addr: None, detail: Some(name.to_string()) }
    }
    /// The row that counts a kind's exits at addresses beyond [`MAX_KEYS`].
    pub fn overflow(kind: ExitKind) -> Self {
        Self { kind, addr: None, detail: Some(OVERFLOW_DETAIL.to_string()) }
    }
    /// Whether this is an overflow row.
    pub fn is_overflow(&self) -> bool {
        self.addr.is_none() && self.detail.as_deref() == Some(OVERFLOW_DETAIL)
    }
    /// Whether this key counts against [`MAX_KEYS`] (it has an address or a name that the
    /// guest's behaviour chooses).
    fn is_capped(&self) -> bool {
        (self.addr.is_some() || self.detail.is_some()) && !self.is_overflow()
    }
}

impl fmt::Display for ExitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.name())?;
        match (self.kind, self.addr, &self.detail) {
            (ExitKind::IoIn | ExitKind::IoOut, Some(a), _) => write!(f, " port {a:#x}"),
            (_, Some(a), _) => write!(f, " {a:#x}"),
            (_, None, Some(d)) => write!(f, " {d}"),
            _ => Ok(()),
        }
    }
}

/// Counts and VMM time for one exit key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitCounter {
    /// Number of exits.
    pub count: u64,
    /// Nanoseconds the VMM spent handling them (from KVM_RUN's return to the handler's end).
    pub total_ns: u64,
    /// The slowest one.
    pub max_ns: u64,
}

/// Exit statistics of one vCPU or a whole VM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStats {
    /// Per key.
    #[serde(with = "as_list")]
    pub per_key: BTreeMap<ExitKey, ExitCounter>,
}

mod as_list {
    use super::{ExitCounter, ExitKey};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    struct Row {
        #[serde(flatten)]
        key: ExitKey,
        #[serde(flatten)]
        counter: ExitCounter,
    }

    pub fn serialize<S: Serializer>(m: &BTreeMap<ExitKey, ExitCounter>, s: S) -> Result<S::Ok, S::Error> {
        m.iter().map(|(k, c)| Row { key: k.clone(), counter: *c }).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<ExitKey, ExitCounter>, D::Error> {
        Ok(Vec::<Row>::deserialize(d)?.into_iter().map(|r| (r.key, r.counter)).collect())
    }
}

impl ExitStats {
    /// The counter for `key`: its own row, or its kind's overflow row once [`MAX_KEYS`]
    /// keys exist and `key` is a new one with an address.
    fn counter(&mut self, key: &ExitKey) -> &mut ExitCounter {
        let key = if !self.per_key.contains_key(key) && key.is_capped() && self.per_key.len() >= MAX_KEYS {
            ExitKey::overflow(key.kind)
        } else {
            key.clone()
        };
        self.per_key.entry(key).or_default()
    }

    /// Counts one exit that took `ns` in the VMM.
    pub fn record(&mut self, key: ExitKey, ns: u64) {
        // The common case (a key already counted) is one lookup.
        let c = match self.per_key.get_mut(&key) {
            Some(c) => c,
            None => self.counter(&key),
        };
        c.count = c.count.saturating_add(1);
        c.total_ns = c.total_ns.saturating_add(ns);
        c.max_ns = c.max_ns.max(ns);
    }

    /// Adds `other` into this (under the same cap).
    pub fn merge(&mut self, other: &ExitStats) {
        for (k, o) in &other.per_key {
            let c = self.counter(k);
            c.count = c.count.saturating_add(o.count);
            c.total_ns = c.total_ns.saturating_add(o.total_ns);
            c.max_ns = c.max_ns.max(o.max_ns);
        }
    }

    /// Exits counted in overflow rows (at addresses beyond [`MAX_KEYS`]).
    pub fn overflowed(&self) -> u64 {
        self.per_key.iter().filter(|(k, _)| k.is_overflow()).map(|(_, c)| c.count).sum()
    }

    /// What happened since `earlier` (counts and times subtract; max is this one's). A key
    /// of `earlier` that this one counts in its overflow row (a merge can place a key there
    /// that had its own row before) is subtracted from that row.
    pub fn delta(&self, earlier: &ExitStats) -> ExitStats {
        let mut before: BTreeMap<ExitKey, ExitCounter> = BTreeMap::new();
        for (k, e) in &earlier.per_key {
            let k = if self.per_key.contains_key(k) { k.clone() } else { ExitKey::overflow(k.kind) };
            let b = before.entry(k).or_default();
            b.count = b.count.saturating_add(e.count);
            b.total_ns = b.total_ns.saturating_add(e.total_ns);
        }
        let mut out = ExitStats::default();
        for (k, c) in &self.per_key {
            let e = before.get(k).copied().unwrap_or_default();
            let d = ExitCounter {
                count: c.count.saturating_sub(e.count),
                total_ns: c.total_ns.saturating_sub(e.total_ns),
                max_ns: c.max_ns,
            };
            if d.count > 0 {
                out.per_key.insert(k.clone(), d);
            }
        }
        out
    }

    /// All exits.
    pub fn total(&self) -> u64 {
        self.per_key.values().map(|c| c.count).sum()
    }

    /// Exits of one kind (all ports/addresses).
    pub fn count_kind(&self, kind: ExitKind) -> u64 {
        self.per_key.iter().filter(|(k, _)| k.kind == kind).map(|(_, c)| c.count).sum()
    }

    /// Exits for one key.
    pub fn count(&self, key: &ExitKey) -> u64 {
        self.per_key.get(key).map_or(0, |c| c.count)
    }

    /// Rows sorted by count, largest first.
    pub fn rows(&self) -> Vec<(&ExitKey, &ExitCounter)> {
        let mut rows: Vec<_> = self.per_key.iter().collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
        rows
    }
}

impl fmt::Display for ExitStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<28} {:>12} {:>14} {:>12}", "exit", "count", "avg in VMM", "max")?;
        for (k, c) in self.rows() {
            let avg = c.total_ns.checked_div(c.count).unwrap_or(0);
            writeln!(f, "{:<28} {:>12} {:>11} ns {:>9} ns", k.to_string(), c.count, avg, c.max_ns)?;
        }
        write!(f, "{:<28} {:>12}", "total", self.total())?;
        if self.overflowed() > 0 {
            write!(
                f,
                "\n(past {MAX_KEYS} distinct ports/pages, exits at new ones are counted in the {OVERFLOW_DETAIL} rows)"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_merge_delta() {
        let mut a = ExitStats::default();
        a.record(ExitKey::io_out(0x500), 100);
        a.record(ExitKey::io_out(0x500), 300);
        a.record(ExitKey::hlt(), 10);
        let snapshot = a.clone();
        a.record(ExitKey::io_out(0x500), 50);
        let d = a.delta(&snapshot);
        assert_eq!(d.count(&ExitKey::io_out(0x500)), 1);
        assert_eq!(d.count(&ExitKey::hlt()), 0);
        assert_eq!(a.per_key[&ExitKey::io_out(0x500)], ExitCounter { count: 3, total_ns: 450, max_ns: 300 });
        let mut m = ExitStats::default();
        m.merge(&a);
        m.merge(&a);
        assert_eq!(m.total(), 8);
        assert_eq!(m.count_kind(ExitKind::IoOut), 6);
        assert_eq!(m.rows()[0].0, &ExitKey::io_out(0x500));
        let json = serde_json::to_string(&m).unwrap();
        let back: ExitStats = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert!(m.to_string().contains("io-out port 0x500"));
    }

    #[test]
    fn a_million_fresh_pages_make_a_bounded_table_with_exact_totals() {
        let mut s = ExitStats::default();
        for page in 0..1_000_000u64 {
            s.record(ExitKey::mmio_write(0x1_0000_0000 + page * 4096), 2);
        }
        assert!(s.per_key.len() <= MAX_KEYS + 1, "{} rows", s.per_key.len());
        assert_eq!(s.total(), 1_000_000);
        assert_eq!(s.count_kind(ExitKind::MmioWrite), 1_000_000);
        let over = ExitKey::overflow(ExitKind::MmioWrite);
        assert_eq!(s.count(&over), 1_000_000 - MAX_KEYS as u64);
        assert_eq!(s.per_key[&over].total_ns, 2 * (1_000_000 - MAX_KEYS as u64));
        assert_eq!(s.overflowed(), 1_000_000 - MAX_KEYS as u64);
        // Pages counted before the cap keep their own rows.
        s.record(ExitKey::mmio_write(0x1_0000_0000), 1);
        assert_eq!(s.count(&ExitKey::mmio_write(0x1_0000_0000)), 2);
        // Keys without an address are always kept.
        s.record(ExitKey::hlt(), 1);
        s.record(ExitKey::io_out(0x3f8), 1);
        assert_eq!(s.count(&ExitKey::hlt()), 1);
        assert_eq!(s.count(&ExitKey::overflow(ExitKind::IoOut)), 1);
        assert_eq!(s.total(), 1_000_003);
        // Shown in the table and in the JSON.
        let table = s.to_string();
        assert!(table.contains("mmio-write (other addresses)"), "{table}");
        assert!(table.contains(&format!("past {MAX_KEYS} distinct")), "{table}");
        let json = serde_json::to_value(&s).unwrap();
        let rows = json["per_key"].as_array().unwrap();
        assert!(rows.iter().any(|r| r["kind"] == "mmio-write" && r["detail"] == OVERFLOW_DETAIL));
        let back: ExitStats = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        // Merging keeps the cap and the totals.
        let mut m = ExitStats::default();
        m.merge(&s);
        m.merge(&s);
        assert!(m.per_key.len() <= MAX_KEYS + 3);
        assert_eq!(m.total(), 2 * s.total());
        let d = m.delta(&s);
        assert_eq!(d.total(), s.total());
    }
}
