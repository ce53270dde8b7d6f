//! Where vmscope keeps what it builds or fetches: outside the checkout, keyed by inputs.
//! `$VMSCOPE_CACHE`, else `$XDG_CACHE_HOME/vmscope`, else `~/.cache/vmscope`.

use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// The cache root.
pub fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os("VMSCOPE_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("vmscope");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache/vmscope")
}

/// A cache key: the first 16 hex digits of SHA-256 over named inputs. Each input is
/// length-prefixed, so moving bytes between inputs changes the key.
pub fn key<'a>(inputs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut h = Sha256::new();
    for (name, bytes) in inputs {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_sensitive() {
        let a = key([("config", b"A=y".as_slice()), ("patch", b"".as_slice())]);
        assert_eq!(a, key([("config", b"A=y".as_slice()), ("patch", b"".as_slice())]));
        assert_eq!(a.len(), 16);
        assert_ne!(a, key([("config", b"A=n".as_slice()), ("patch", b"".as_slice())]));
        // Moving a byte from one input to the next changes the key.
        assert_ne!(
            key([("a", b"xy".as_slice()), ("b", b"".as_slice())]),
            key([("a", b"x".as_slice()), ("b", b"y".as_slice())])
        );
    }
}
