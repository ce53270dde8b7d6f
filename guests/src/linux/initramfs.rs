//! The initramfs: busybox, the workload binary, and an `/init` that mounts the usual file
//! systems, prints a ready marker, runs the workload named on the kernel command line and
//! ends the VM with its status through the exit port.

use super::LinuxError;
use crate::cpio::CpioWriter;
use std::path::Path;

/// Debian's busybox-static.
pub const BUSYBOX: &str = "/bin/busybox";
/// What `/init` prints when user space is up.
pub const READY_MARKER: &str = "vmscope: ready";

/// The busybox applets linked in /bin.
const APPLETS: &[&str] = &[
    "sh", "mount", "umount", "mkdir", "cat", "echo", "ls", "ps", "sleep", "uname", "dmesg", "grep", "sed",
    "cut", "tr", "head", "tail", "wc", "true", "false", "poweroff", "reboot", "mknod", "env", "id",
    "hostname", "uptime", "free", "df", "sync",
];

/// The `/init` script.
pub const INIT: &str = r#"#!/bin/sh
# vmscope's init: set up, report ready, run the workload from the kernel command line,
# end the VM with its status through the exit port (I/O port 0x502).
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox mount -t tmpfs tmpfs /tmp
# The first virtio-blk disk (vmscope run linux --disk FILE) is mounted at /mnt.
if [ -b /dev/vda ]; then
  sectors=$(cat /sys/block/vda/size)
  if mount /dev/vda /mnt 2>/dev/null || mount -o ro /dev/vda /mnt 2>/dev/null; then
    echo "vmscope: disk /dev/vda ($sectors sectors) mounted at /mnt"
  else
    echo "vmscope: disk /dev/vda ($sectors sectors) holds no file system this kernel can mount"
  fi
fi
# busybox's reboot and poweroff signal PID 1 (TERM, USR2; USR1 for halt). A PC without
# ACPI cannot be powered off, so power-off and halt end the VM through the exit port;
# reboot goes to the kernel (reboot=k), whose i8042 reset vmscope answers by ending the VM.
trap 'echo "vmscope: reboot requested"; sync; /bin/busybox reboot -f' TERM
trap 'echo "vmscope: power-off requested"; sync; /bin/workload exit-port 0' USR1 USR2
workload=hello
shell=0
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vmscope.workload=*) workload=$(echo "${arg#vmscope.workload=}" | tr ',' ' ') ;;
    vmscope.shell=1) shell=1 ;;
  esac
done
echo "vmscope: ready (uptime $(cut -d' ' -f1 /proc/uptime) s)"
if [ "$shell" = 1 ]; then
  # In the background so that the traps above run as soon as a signal arrives; with
  # SIGINT and SIGQUIT at their default again (a background command starts with both
  # ignored, and the shell would keep them so for all it runs: Ctrl-C would stop nothing).
  setsid /bin/workload sigdfl /bin/sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1' &
  wait $!
  status=$?
else
  # Several workloads run in one boot when separated by ';'.
  status=0
  IFS=';'
  for one in $workload; do
    IFS=' '
    one=$(echo $one)
    /bin/workload $one
    rc=$?
    echo "vmscope: workload '$one' exited with status $rc"
    [ $rc -ne 0 ] && status=$rc
  done
fi
grep -q ' /mnt ' /proc/mounts && umount /mnt
echo "vmscope: done with status $status (uptime $(cut -d' ' -f1 /proc/uptime) s)"
/bin/workload exit-port $status
echo "vmscope: the exit port did not stop the VM"
/bin/busybox reboot -f
"#;

/// Builds the initramfs (uncompressed newc cpio) from busybox at `busybox` and the static
/// `workload` binary.
pub fn build(busybox: &Path, workload: &[u8]) -> Result<Vec<u8>, LinuxError> {
    let bb = std::fs::read(busybox).map_err(|_| LinuxError::NoBusybox(busybox.into()))?;
    let mut w = CpioWriter::new();
    for d in ["bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "etc", "root"] {
        w.dir(d, 0o755);
    }
    w.char_device("dev/console", 0o600, 5, 1);
    w.char_device("dev/ttyS0", 0o600, 4, 64);
    w.file("bin/busybox", 0o755, &bb);
    for applet in APPLETS {
        w.symlink(&format!("bin/{applet}"), "busybox");
    }
    w.symlink("bin/setsid", "busybox");
    w.file("bin/workload", 0o755, workload);
    w.file("init", 0o755, INIT.as_bytes());
    w.file("etc/hostname", 0o644, b"vmscope-linux\n");
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio;

    #[test]
    fn has_init_busybox_and_workload() {
        let tmp = std::env::temp_dir().join(format!("fake-busybox-{}", std::process::id()));
        std::fs::write(&tmp, b"\x7fELF busybox").unwrap();
        let archive = build(&tmp, b"\x7fELF workload").unwrap();
        std::fs::remove_file(&tmp).ok();
        let entries = cpio::parse(&archive).unwrap();
        let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap_or_else(|| panic!("{n} missing"));
        assert!(get("init").data.starts_with(b"#!/bin/sh"));
        assert_eq!(get("init").mode & 0o777, 0o755);
        assert_eq!(get("bin/sh").data, b"busybox");
        assert_eq!(get("bin/workload").data, b"\x7fELF workload");
        assert!(INIT.contains("trap") && INIT.contains("reboot -f"));
        assert!(INIT.contains(READY_MARKER));
        assert!(matches!(build(Path::new("/nonexistent/busybox"), b""), Err(LinuxError::NoBusybox(_))));
    }
}
