//! Where a container's cgroups are, and what the kernel accounts in them.
//!
//! A runtime does not put a container's cgroup at a fixed place: runc nests it under the
//! cgroup of the process that called it (on this host `/sys/fs/cgroup/memory/process_api/
//! <hash>/<id>`), youki's libcontainer under its own prefix. So the directories are found
//! the way the kernel records them: the container process's `/proc/PID/cgroup` (one line per
//! hierarchy, `ID:CONTROLLERS:PATH`, the v2 one as `0::PATH`) resolved against the cgroup
//! mounts in `/proc/self/mountinfo`. That works for v1, v2 and hybrid layouts alike.

use std::path::{Path, PathBuf};

/// One cgroup hierarchy mounted on the host (a `cgroup` or `cgroup2` line of mountinfo).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    /// The cgroup the mount shows at its mount point (mountinfo's root field, usually `/`).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The v1 controllers attached to it (`memory`, `cpu`, `name=systemd`, …); empty for v2.
    pub controllers: Vec<String>,
    /// Whether it is the unified (v2) hierarchy.
    pub unified: bool,
}

/// The cgroup mounts listed in `mountinfo` (the text of `/proc/self/mountinfo`).
pub fn parse_mountinfo(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER-OPTIONS
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let (fstype, _source, super_options) = (right.next()?, right.next()?, right.next()?);
            let (root, mount_point) = (unescape(left.get(3)?), unescape(left.get(4)?));
            match fstype {
                "cgroup2" => Some(CgroupMount {
                    root,
                    mount_point: mount_point.into(),
                    controllers: vec![],
                    unified: true,
                }),
                "cgroup" => Some(CgroupMount {
                    root,
                    mount_point: mount_point.into(),
                    // The super options hold the controllers beside rw/ro and other flags.
                    controllers: super_options
                        .split(',')
                        .filter(|o| is_controller(o))
                        .map(String::from)
                        .collect(),
                    unified: false,
                }),
                _ => None,
            }
        })
        .collect()
}

fn is_controller(option: &str) -> bool {
    option.starts_with("name=")
        || matches!(
            option,
            "cpu"
                | "cpuacct"
                | "cpuset"
                | "memory"
                | "devices"
                | "freezer"
                | "net_cls"
                | "net_prio"
                | "blkio"
                | "perf_event"
                | "hugetlb"
                | "pids"
                | "rdma"
                | "misc"
        )
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| std::str::from_utf8(d).ok());
        match (bytes[i], octal.and_then(|d| u8::from_str_radix(d, 8).ok())) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup directories of one process, per controller that vmscope reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupDirs {
    /// The v1 `memory` controller's directory.
    pub memory: Option<PathBuf>,
    /// The v1 `cpuacct` controller's directory (often mounted together with `cpu`).
    pub cpuacct: Option<PathBuf>,
    /// The v1 `pids` controller's directory.
    pub pids: Option<PathBuf>,
    /// The process's directory in the unified (v2) hierarchy.
    pub unified: Option<PathBuf>,
}

/// Resolves the lines of `/proc/PID/cgroup` (`proc_cgroup`) against the host's cgroup
/// mounts: each line's path is taken relative to its mount's root and joined to its mount
/// point.
pub fn locate(proc_cgroup: &str, mounts: &[CgroupMount]) -> CgroupDirs {
    let mut dirs = CgroupDirs::default();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let controllers: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
        let mount = if controllers.is_empty() {
            mounts.iter().find(|m| m.unified)
        } else {
            mounts
                .iter()
                .find(|m| !m.unified && controllers.iter().all(|c| m.controllers.iter().any(|mc| mc == c)))
        };
        let Some(mount) = mount else { continue };
        let relative = path.strip_prefix(mount.root.as_str()).unwrap_or(path);
        let dir = mount.mount_point.join(relative.trim_start_matches('/'));
        if controllers.is_empty() {
            dirs.unified = Some(dir);
            continue;
        }
        for c in controllers {
            let slot = match c {
                "memory" => &mut dirs.memory,
                "cpuacct" => &mut dirs.cpuacct,
                "pids" => &mut dirs.pids,
                _ => continue,
            };
            *slot = Some(dir.clone());
        }
    }
    dirs
}

/// The cgroup directories of process `pid`, or `None` when it (or procfs) is gone.
pub fn dirs_of(pid: u32) -> Option<CgroupDirs> {
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    Some(locate(&proc_cgroup, &parse_mountinfo(&mountinfo)))
}

/// What the host kernel accounts to a running container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Memory in use, bytes (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub memory_bytes: Option<u64>,
    /// CPU time used, nanoseconds (v1 `cpuacct.usage`, v2 `cpu.stat` usage_usec).
    pub cpu_ns: Option<u64>,
    /// The processes in it: (pid, command).
    pub processes: Vec<(u32, String)>,
}

impl CgroupDirs {
    /// Reads the accounting in these directories, preferring v1 controllers (which is
    /// where a hybrid host keeps them) and falling back to the unified hierarchy.
    pub fn stats(&self) -> CgroupStats {
        let read = |d: &Option<PathBuf>, file: &str| {
            d.as_ref().and_then(|d| std::fs::read_to_string(d.join(file)).ok())
        };
        let num = |d: &Option<PathBuf>, file: &str| read(d, file).and_then(|t| t.trim().parse::<u64>().ok());
        let memory_bytes =
            num(&self.memory, "memory.usage_in_bytes").or_else(|| num(&self.unified, "memory.current"));
        let cpu_ns = num(&self.cpuacct, "cpuacct.usage").or_else(|| {
            read(&self.unified, "cpu.stat").as_deref().and_then(usage_usec).map(|us| us.saturating_mul(1000))
        });
        let procs = read(&self.pids, "cgroup.procs")
            .or_else(|| read(&self.memory, "cgroup.procs"))
            .or_else(|| read(&self.unified, "cgroup.procs"))
            .unwrap_or_default();
        let processes =
            procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()).map(|pid| (pid, comm(pid))).collect();
        CgroupStats { memory_bytes, cpu_ns, processes }
    }
}

fn usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat.lines().find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

/// The direct children of process `parent` (found by scanning `/proc/*/stat`, since
/// `/proc/PID/task/TID/children` needs CONFIG_PROC_CHILDREN, which not every kernel has).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| parent_pid(&s))
                == Some(parent)
        })
        .collect()
}

/// Whether process `pid` lives in a PID namespace other than this process's (a container's
/// init does; a runtime's set-up stages do not). False when either cannot be read.
pub fn in_own_pid_namespace(pid: u32) -> bool {
    let ours = std::fs::read_link("/proc/self/ns/pid");
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/pid"));
    matches!((ours, theirs), (Ok(a), Ok(b)) if a != b)
}

/// The parent pid in the text of `/proc/PID/stat` (the field after `(comm) state`; the
/// command may itself hold spaces and parentheses, so the last `)` ends it).
fn parent_pid(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `path` is a directory the kernel still keeps for a cgroup (it disappears when
/// the runtime deletes the container).
pub fn exists(path: &Path) -> bool {
    path.join("cgroup.procs").exists()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_is_not_in_a_pid_namespace_of_its_own() {
        assert!(!super::in_own_pid_namespace(std::process::id()));
        assert!(!super::in_own_pid_namespace(u32::MAX));
    }

    use super::*;

    /// This host: hybrid, v1 controllers under /sys/fs/cgroup/*, a v2 mount with no
    /// controllers at /sys/fs/cgroup/unified.
    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A runc container on this host: nested under the caller's memory cgroup.
    const RUNC_PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/bundle-7-0
4:memory:/process_api/a047d1c9/bundle-7-0
2:cpuacct:/bundle-7-0
1:cpu:/bundle-7-0
0::/
";

    #[test]
    fn hybrid_mounts_are_parsed() {
        let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
        assert_eq!(mounts.len(), 6, "the tmpfs is not a cgroup mount");
        assert_eq!(mounts[2].controllers, ["memory"]);
        assert_eq!(mounts[4].controllers, ["name=systemd"]);
        assert!(mounts[5].unified && mounts[5].controllers.is_empty());
        assert_eq!(mounts[5].mount_point, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn a_nested_runc_cgroup_is_found_on_a_hybrid_host() {
        let dirs = locate(RUNC_PROC_CGROUP, &parse_mountinfo(HYBRID_MOUNTINFO));
        assert_eq!(
            dirs.memory.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/process_api/a047d1c9/bundle-7-0"))
        );
        assert_eq!(dirs.cpuacct.as_deref(), Some(Path::new("/sys/fs/cgroup/cpuacct/bundle-7-0")));
        assert_eq!(dirs.pids.as_deref(), Some(Path::new("/sys/fs/cgroup/pids/bundle-7-0")));
        assert_eq!(dirs.unified.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn co_mounted_v1_controllers_share_a_directory() {
        let mountinfo = "\
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
";
        let dirs = locate("3:cpu,cpuacct:/docker/abc\n2:memory:/docker/abc\n", &parse_mountinfo(mountinfo));
        assert_eq!(dirs.cpuacct.as_deref(), Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/docker/abc")));
        assert_eq!(dirs.memory.as_deref(), Some(Path::new("/sys/fs/cgroup/memory/docker/abc")));
        assert_eq!(dirs.unified, None, "no v2 line, no v2 mount");
    }

    #[test]
    fn a_pure_v2_host_uses_the_unified_line() {
        let mountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let dirs = locate("0::/user.slice/runc-x\n", &parse_mountinfo(mountinfo));
        assert_eq!(dirs.unified.as_deref(), Some(Path::new("/sys/fs/cgroup/user.slice/runc-x")));
        assert_eq!((dirs.memory, dirs.cpuacct, dirs.pids), (None, None, None));
    }

    #[test]
    fn a_mount_of_a_sub_cgroup_is_taken_relative_to_its_root() {
        // Inside a container the hierarchy's root may be a sub-cgroup (mountinfo's 4th field).
        let mountinfo = "40 31 0:32 /outer /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        let dirs = locate("4:memory:/outer/inner\n", &parse_mountinfo(mountinfo));
        assert_eq!(dirs.memory.as_deref(), Some(Path::new("/sys/fs/cgroup/memory/inner")));
    }

    #[test]
    fn escaped_mount_points_and_odd_lines_are_handled() {
        let mountinfo = "50 1 0:40 / /mnt/my\\040cgroups rw - cgroup cgroup rw,pids\nnot a mount line\n";
        let mounts = parse_mountinfo(mountinfo);
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].mount_point, Path::new("/mnt/my cgroups"));
        let dirs = locate("garbage\n8:pids:/c\n", &mounts);
        assert_eq!(dirs.pids.as_deref(), Some(Path::new("/mnt/my cgroups/c")));
    }

    #[test]
    fn cpu_stat_and_proc_stat_fields_are_read() {
        assert_eq!(usage_usec("usage_usec 1234\nuser_usec 1000\n"), Some(1234));
        assert_eq!(parent_pid("42 (a) b) S 7 42 42 0"), Some(7), "a command with a ')' in it");
    }

    #[test]
    fn this_process_has_cgroup_dirs() {
        let dirs = dirs_of(std::process::id()).expect("procfs is mounted");
        let any =
            [&dirs.memory, &dirs.cpuacct, &dirs.pids, &dirs.unified].into_iter().flatten().next().cloned();
        assert!(any.is_some_and(|d| exists(&d)), "{dirs:?}");
    }
}
