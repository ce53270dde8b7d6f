//! Whether a container may get its own user namespace, and with which mapping: the probe
//! of the host ([`probe`]) and the decision, a pure function of what the probe found
//! ([`decide`]). When vmscope runs as root, the container's uids/gids 0..65536 would map to
//! an unprivileged host range: root's `/etc/subuid` / `/etc/subgid` entry when it has one
//! of at least 65536 ids, else the fixed range 100000..165536.
//!
//! `prepare_bundle` applies the decision: a `user` namespace with these id mappings in
//! config.json, the bundle chowned to the mapped root (see guests/DESIGN.md, container
//! section).

use std::path::Path;
use std::process::{Command, Stdio};

/// How many ids the container sees (0..65536).
pub const MAP_SIZE: u32 = 65536;

/// The host range used when root has no subordinate-id entry.
pub const FIXED_HOST_START: u32 = 100_000;

/// What the probe found on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// vmscope's effective uid is 0.
    pub root: bool,
    /// `/proc/sys/user/max_user_namespaces`, if readable.
    pub max_user_namespaces: Option<u64>,
    /// `/proc/sys/kernel/unprivileged_userns_clone` (Debian/Ubuntu kernels only).
    pub unprivileged_userns_clone: Option<u64>,
    /// `unshare -U true`: `Ok` if it succeeded, else what went wrong.
    pub trial: Result<(), String>,
    /// Root's `/etc/subuid` entry (start, count), if any.
    pub subuid: Option<(u32, u32)>,
    /// Root's `/etc/subgid` entry (start, count), if any.
    pub subgid: Option<(u32, u32)>,
}

/// Where the host range came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSource {
    /// Root's `/etc/subuid` and `/etc/subgid` entries.
    SubordinateIds,
    /// [`FIXED_HOST_START`], root having no entry of [`MAP_SIZE`] ids.
    Fixed,
}

/// Container ids 0..[`MAP_SIZE`] map to host uids `uid_start..` and gids `gid_start..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The host uid container uid 0 maps to.
    pub uid_start: u32,
    /// The host gid container gid 0 maps to.
    pub gid_start: u32,
    /// Where the range came from.
    pub source: RangeSource,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A user namespace with this mapping.
    Use(Mapping),
    /// No user namespace, and why (one line for `-v`).
    Skip(String),
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Use(m) => write!(
                f,
                "user namespace: container ids 0..{MAP_SIZE} -> host uids {}.. gids {}.. ({})",
                m.uid_start,
                m.gid_start,
                match m.source {
                    RangeSource::SubordinateIds => "root's /etc/subuid and /etc/subgid entries",
                    RangeSource::Fixed =>
                        "fixed range: root has no /etc/subuid and /etc/subgid entries of 65536 ids",
                }
            ),
            Decision::Skip(why) => write!(f, "no user namespace: {why}"),
        }
    }
}

/// Root's entry in a subordinate-id file (`name:start:count` lines): the first `root` or
/// `0` line with at least [`MAP_SIZE`] ids whose range does not wrap past `u32::MAX`.
pub fn parse_subid(text: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (name, start, count) = (f.next()?, f.next()?, f.next()?);
        if f.next().is_some() || (name != "root" && name != "0") {
            return None;
        }
        let (start, count) = (start.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
        (count >= MAP_SIZE && start.checked_add(MAP_SIZE).is_some()).then_some((start, count))
    })
}

/// The decision from what the probe found.
pub fn decide(p: &Probe) -> Decision {
    if !p.root {
        return Decision::Skip(
            "vmscope is not running as root (the runtimes' rootless mode is not used)".into(),
        );
    }
    match p.max_user_namespaces {
        Some(0) => return Decision::Skip("/proc/sys/user/max_user_namespaces is 0".into()),
        None => {
            return Decision::Skip(
                "/proc/sys/user/max_user_namespaces is missing (no user namespaces in this kernel)".into(),
            )
        }
        Some(_) => {}
    }
    if let Err(why) = &p.trial {
        return Decision::Skip(format!("a trial `unshare -U true` failed: {why}"));
    }
    match (p.subuid, p.subgid) {
        (Some((u, _)), Some((g, _))) => {
            Decision::Use(Mapping { uid_start: u, gid_start: g, source: RangeSource::SubordinateIds })
        }
        _ => Decision::Use(Mapping {
            uid_start: FIXED_HOST_START,
            gid_start: FIXED_HOST_START,
            source: RangeSource::Fixed,
        }),
    }
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Probes this host: its euid, the sysctls, a trial `unshare -U true`, root's subordinate ids.
pub fn probe() -> Probe {
    let trial = match Command::new("unshare")
        .args(["-U", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("{}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("cannot run unshare: {e}")),
    };
    let subid = |p: &str| std::fs::read_to_string(Path::new(p)).ok().as_deref().and_then(parse_subid);
    Probe {
        root: nix::unistd::geteuid().is_root(),
        max_user_namespaces: read_number("/proc/sys/user/max_user_namespaces"),
        unprivileged_userns_clone: read_number("/proc/sys/kernel/unprivileged_userns_clone"),
        trial,
        subuid: subid("/etc/subuid"),
        subgid: subid("/etc/subgid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Probe {
        Probe {
            root: true,
            max_user_namespaces: Some(63_000),
            unprivileged_userns_clone: None,
            trial: Ok(()),
            subuid: None,
            subgid: None,
        }
    }

    #[test]
    fn not_root_skips() {
        let d = decide(&Probe { root: false, ..allowed() });
        assert!(matches!(&d, Decision::Skip(w) if w.contains("not running as root")), "{d}");
    }

    #[test]
    fn zero_max_user_namespaces_skips() {
        let d = decide(&Probe { max_user_namespaces: Some(0), ..allowed() });
        assert_eq!(d, Decision::Skip("/proc/sys/user/max_user_namespaces is 0".into()));
    }

    #[test]
    fn missing_max_user_namespaces_skips() {
        let d = decide(&Probe { max_user_namespaces: None, ..allowed() });
        assert!(matches!(&d, Decision::Skip(w) if w.contains("missing")), "{d}");
    }

    #[test]
    fn failed_trial_skips_and_says_why() {
        let d = decide(&Probe {
            trial: Err("exit status: 1: unshare: Operation not permitted".into()),
            ..allowed()
        });
        assert!(d.to_string().contains("Operation not permitted"), "{d}");
        assert!(matches!(d, Decision::Skip(_)));
    }

    #[test]
    fn no_subordinate_ids_uses_the_fixed_range() {
        let d = decide(&allowed());
        assert_eq!(
            d,
            Decision::Use(Mapping { uid_start: 100_000, gid_start: 100_000, source: RangeSource::Fixed })
        );
        assert!(d.to_string().contains("fixed range"), "{d}");
    }

    #[test]
    fn subordinate_ids_are_used_when_both_files_have_root() {
        let d =
            decide(&Probe { subuid: Some((200_000, 65536)), subgid: Some((300_000, 70000)), ..allowed() });
        assert_eq!(
            d,
            Decision::Use(Mapping {
                uid_start: 200_000,
                gid_start: 300_000,
                source: RangeSource::SubordinateIds
            })
        );
        // Only one of the two files: the fixed range for both.
        let d = decide(&Probe { subuid: Some((200_000, 65536)), ..allowed() });
        assert!(matches!(d, Decision::Use(Mapping { source: RangeSource::Fixed, .. })), "{d}");
    }

    #[test]
    fn subid_parsing_takes_roots_large_enough_entry_only() {
        assert_eq!(parse_subid("alice:100000:65536\nroot:165536:65536\n"), Some((165_536, 65_536)));
        assert_eq!(parse_subid("0:1000000:100000"), Some((1_000_000, 100_000)));
        assert_eq!(parse_subid("root:100000:1000\n"), None, "too few ids");
        assert_eq!(parse_subid("root:4294967000:65536"), None, "wraps past u32::MAX");
        assert_eq!(parse_subid("root:x:65536\nroot:1:2:3\n\nroot"), None, "garbage lines");
        assert_eq!(parse_subid("root:1000:100\nroot:500000:65536"), Some((500_000, 65_536)));
    }
}
