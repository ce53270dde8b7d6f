//! Address newtypes: a guest-physical, a guest-virtual and a host address can never be
//! mixed up by the type checker.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw address.
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// This address plus `off`, or `None` on overflow.
            pub fn checked_add(self, off: u64) -> Option<Self> {
                self.0.checked_add(off).map(Self)
            }
            /// This address plus `off`, wrapping around at 2^64.
            pub const fn wrapping_add(self, off: u64) -> Self {
                Self(self.0.wrapping_add(off))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{:#x}"), self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A guest-physical address (what the guest's page tables map to).
    Gpa,
    "gpa:"
);
address_type!(
    /// A guest-virtual (linear) address, as the guest's code uses it.
    Gva,
    "gva:"
);
address_type!(
    /// An address in the VMM process's own address space (where guest memory is mapped).
    HostAddr,
    "host:"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_space() {
        assert_eq!(Gpa(0x1000).to_string(), "gpa:0x1000");
        assert_eq!(Gva(0xffff_8000_0000_0000).to_string(), "gva:0xffff800000000000");
        assert_eq!(Gpa(u64::MAX).checked_add(1), None);
    }
}
