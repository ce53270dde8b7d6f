//! A writer for "newc" cpio archives (the initramfs format Linux unpacks): 110-byte ASCII
//! headers, names and data padded to 4 bytes, and a `TRAILER!!!` entry.

/// File-type bits of `mode`.
pub mod mode {
    /// Directory.
    pub const DIR: u32 = 0o040000;
    /// Regular file.
    pub const FILE: u32 = 0o100000;
    /// Symbolic link.
    pub const SYMLINK: u32 = 0o120000;
    /// Character device.
    pub const CHAR: u32 = 0o020000;
}

/// Builds an archive in memory.
#[derive(Debug, Default)]
pub struct CpioWriter {
    out: Vec<u8>,
    next_ino: u32,
}

impl CpioWriter {
    /// An empty archive.
    pub fn new() -> Self {
        Self { out: Vec::new(), next_ino: 1 }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & 0o170000 == mode::DIR { 2 } else { 1 };
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so archives are reproducible
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// A directory.
    pub fn dir(&mut self, name: &str, perm: u32) -> &mut Self {
        self.entry(name, mode::DIR | perm, &[], (0, 0));
        self
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> &mut Self {
        self.entry(name, mode::FILE | perm, data, (0, 0));
        self
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, mode::SYMLINK | 0o777, target.as_bytes(), (0, 0));
        self
    }

    /// A character device node.
    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> &mut Self {
        self.entry(name, mode::CHAR | perm, &[], (major, minor));
        self
    }

    /// The finished archive (with its trailer).
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.out
    }
}

/// One parsed entry (for tests and `vmscope guests list`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path.
    pub name: String,
    /// Mode bits.
    pub mode: u32,
    /// Contents.
    pub data: Vec<u8>,
}

/// Reads a newc archive back; `None` if it is malformed.
pub fn parse(mut bytes: &[u8]) -> Option<Vec<Entry>> {
    let mut out = vec![];
    let start_len = bytes.len();
    loop {
        let header = bytes.get(..110)?;
        if &header[..6] != b"070701" {
            return None;
        }
        let field = |i: usize| {
            u32::from_str_radix(std::str::from_utf8(&header[6 + i * 8..14 + i * 8]).ok()?, 16).ok()
        };
        let (mode, filesize, namesize) = (field(1)?, field(6)? as usize, field(11)? as usize);
        let consumed = start_len - bytes.len();
        let name_end = 110 + namesize;
        let name = std::str::from_utf8(bytes.get(110..name_end - 1)?).ok()?.to_string();
        let data_start = (consumed + name_end).next_multiple_of(4) - consumed;
        let data = bytes.get(data_start..data_start + filesize)?.to_vec();
        let next = (consumed + data_start + filesize).next_multiple_of(4) - consumed;
        if name == "TRAILER!!!" {
            return Some(out);
        }
        out.push(Entry { name, mode, data });
        bytes = bytes.get(next..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = CpioWriter::new();
        w.dir("bin", 0o755)
            .file("bin/busybox", 0o755, b"\x7fELF...")
            .symlink("bin/sh", "busybox")
            .char_device("dev/console", 0o600, 5, 1);
        let bytes = w.finish();
        assert!(bytes.starts_with(b"070701"));
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes).unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(
            entries[1],
            Entry { name: "bin/busybox".into(), mode: mode::FILE | 0o755, data: b"\x7fELF...".to_vec() }
        );
        assert_eq!(entries[2].data, b"busybox");
        assert_eq!(entries[3].mode & 0o170000, mode::CHAR);
        assert!(parse(&bytes[..100]).is_none());
        assert!(parse(b"hello world, not a cpio archive at all, and long enough to hold a header............................................").is_none());
    }

    #[test]
    fn the_cpio_tool_reads_it() {
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-i", "-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            return; // cpio(1) not installed: the parser test above still covers the format.
        };
        let mut w = CpioWriter::new();
        w.dir("etc", 0o755).file("etc/motd", 0o644, b"hi\n");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&w.finish()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "etc\netc/motd\n");
    }
}
