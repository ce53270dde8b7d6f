//! The bytes of a guest ELF, borrowed or shared.
//!
//! The built-in unikernel is a `static` in the vmscope binary (766 KB, most of it DWARF).
//! Copying it into the heap before booting made every `vmscope run unikernel` read all of it
//! from the binary's file pages and keep a private copy: about 1.5 MiB of resident memory
//! for a guest whose loadable segments are a fraction of that. [`ElfImage::Static`] boots
//! straight from the binary's pages, so only the ELF headers and the loadable segments are
//! ever read, and symbols (the debug sections) are read only when a debugger asks.
//! [`ElfImage::Read`] keeps a file's bytes in the buffer they were read into: turning a
//! `Vec<u8>` into an `Arc<[u8]>` copies it, and for a moment both copies were resident
//! (`run --elf` of the unikernel peaked 0.75 MiB higher for it).
//!
//! ```
//! use vmm::machine::ElfImage;
//! static GUEST: &[u8] = b"\x7fELF...";
//! let borrowed = ElfImage::from(GUEST);
//! let shared = ElfImage::from(b"\x7fELF...".to_vec());
//! assert_eq!(&*borrowed, &*shared);
//! ```

use std::ops::Deref;
use std::sync::Arc;

/// A guest ELF image: bytes that live as long as the program (the built-in unikernel), or
/// bytes read from a file and shared between the boot, the symbolizer and QMP.
#[derive(Clone)]
pub enum ElfImage {
    /// Bytes in the program's own image; cloning copies a pointer.
    Static(&'static [u8]),
    /// Bytes on the heap; cloning bumps a reference count.
    Shared(Arc<[u8]>),
    /// Bytes read from a file, in the buffer they were read into; cloning bumps a reference
    /// count.
    Read(Arc<Vec<u8>>),
}

impl ElfImage {
    /// The bytes as an `Arc<[u8]>`, for an API that keeps them (shared for a shared image,
    /// copied otherwise).
    pub fn to_arc(&self) -> Arc<[u8]> {
        match self {
            ElfImage::Static(b) => Arc::from(*b),
            ElfImage::Shared(a) => a.clone(),
            ElfImage::Read(v) => Arc::from(v.as_slice()),
        }
    }
}

impl Deref for ElfImage {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ElfImage::Static(b) => b,
            ElfImage::Shared(a) => a,
            ElfImage::Read(v) => v,
        }
    }
}

impl AsRef<[u8]> for ElfImage {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for ElfImage {
    // Not the bytes: a config printed with `{:?}` would otherwise dump the whole ELF.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            ElfImage::Static(_) => "Static",
            ElfImage::Shared(_) => "Shared",
            ElfImage::Read(_) => "Read",
        };
        write!(f, "ElfImage::{kind}({} bytes)", self.len())
    }
}

impl From<&'static [u8]> for ElfImage {
    fn from(bytes: &'static [u8]) -> Self {
        ElfImage::Static(bytes)
    }
}

impl From<Arc<[u8]>> for ElfImage {
    fn from(bytes: Arc<[u8]>) -> Self {
        ElfImage::Shared(bytes)
    }
}

impl From<Vec<u8>> for ElfImage {
    fn from(bytes: Vec<u8>) -> Self {
        ElfImage::Read(Arc::new(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: &[u8] = b"\x7fELF static";

    #[test]
    fn a_static_image_is_borrowed_not_copied() {
        let image = ElfImage::from(BYTES);
        assert!(std::ptr::eq(image.as_ptr(), BYTES.as_ptr()));
        let clone = image.clone();
        assert!(std::ptr::eq(clone.as_ptr(), BYTES.as_ptr()));
        assert_eq!(format!("{image:?}"), "ElfImage::Static(11 bytes)");
    }

    #[test]
    fn a_shared_image_is_shared_by_its_clones() {
        let image = ElfImage::from(Arc::<[u8]>::from(&b"\x7fELF heap"[..]));
        let arc = image.to_arc();
        assert!(std::ptr::eq(arc.as_ptr(), image.as_ptr()));
        assert_eq!(&*image.clone(), b"\x7fELF heap");
        assert_eq!(format!("{image:?}"), "ElfImage::Shared(9 bytes)");
        assert_eq!(&*ElfImage::from(BYTES).to_arc(), BYTES);
    }

    #[test]
    fn a_read_image_stays_in_its_buffer() {
        let bytes = b"\x7fELF file".to_vec();
        let at = bytes.as_ptr();
        let image = ElfImage::from(bytes);
        assert!(std::ptr::eq(image.as_ptr(), at));
        assert!(std::ptr::eq(image.clone().as_ptr(), at));
        assert_eq!(&*image.to_arc(), b"\x7fELF file");
        assert_eq!(format!("{image:?}"), "ElfImage::Read(9 bytes)");
    }
}
