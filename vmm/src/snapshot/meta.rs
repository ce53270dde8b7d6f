//! The JSON sections: what the guest is (`meta`), its devices (`devices`) and vmscope's
//! debug state (`debug`). JSON because people read them (`vmscope snapshot info`) and
//! because a field added later is ignored by an older reader rather than misread.

use serde::{Deserialize, Serialize};

/// The `meta` section.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    /// The vmscope that wrote it.
    pub vmscope_version: String,
    /// When it was written (seconds since the Unix epoch).
    pub created_unix: u64,
    /// The host it was taken on ("pvm", "vmx", "svm", …) and what that means.
    pub host_kind: String,
    /// The guest's name (a path, "the built-in unikernel", a kernel).
    pub guest_name: String,
    /// The guest and how it was laid out.
    pub guest: GuestMeta,
    /// Guest RAM in bytes (one region at guest-physical 0).
    pub mem_bytes: u64,
    /// vCPUs in the VM.
    pub vcpus: usize,
    /// vCPUs (from 0) that run guest code; the rest stay parked.
    pub runnable_vcpus: usize,
    /// Whether the VM has an in-kernel PIC/IOAPIC/PIT (then the `vm` section has them).
    pub irqchip: bool,
    /// Bytes of memory that are not zero (what the file holds of RAM).
    pub nonzero_bytes: u64,
    /// State the host refused to give when the snapshot was taken, one line each.
    pub refused: Vec<String>,
}

/// The kind of guest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum GuestMeta {
    /// An ELF guest with vmscope's entry contract (the unikernel, `run --elf`).
    Elf {
        /// The CPL it was entered at.
        ring: u8,
        /// The ELF's entry point.
        entry: u64,
        /// First byte after its highest segment.
        elf_end: u64,
        /// The entry stack.
        stack: u64,
        /// The entry argument (the boot-info GPA).
        arg: u64,
        /// The entry CR3.
        cr3: u64,
        /// The boot information handed to the guest.
        boot_info: BootInfoMeta,
    },
    /// A Linux kernel (`vmscope run linux`), with its in-kernel irqchip and PIT.
    Linux {
        /// The kernel file it booted (for symbols and messages; RAM holds the kernel).
        kernel: String,
        /// The command line it booted with (device declarations included).
        cmdline: String,
        /// "pvh" or "linux64".
        protocol: String,
        /// The entry point it was booted at.
        entry: u64,
        /// First byte after the kernel image.
        kernel_end: u64,
        /// The initramfs (guest-physical address, size), if any.
        initrd: Option<(u64, u64)>,
        /// The kernel was a bzImage.
        bzimage: bool,
    },
}

/// `vmscope_abi::BootInfo`, field by field.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct BootInfoMeta {
    pub mem_size: u64,
    pub cmdline_gpa: u64,
    pub cmdline_len: u64,
    pub free_start: u64,
    pub free_end: u64,
    pub ring: u32,
    pub nr_vcpus: u32,
}

/// The `devices` section.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevicesMeta {
    /// COM1.
    pub serial: SerialMeta,
    /// The ioeventfd doorbell and how its ring consumer waits ("sleep", "poll"), if any.
    pub doorbell: Option<String>,
    /// The i8042 and the exit port keep no state; named so `info` lists every device.
    pub stateless: Vec<String>,
    /// The virtio-mmio devices, in bus order (absent in files of the first format version).
    #[serde(default)]
    pub virtio: Vec<VirtioMeta>,
}

/// One virtio-mmio device: where it is, its transport and queues, and the disk behind it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VirtioMeta {
    /// Short name ("blk").
    pub name: String,
    /// virtio device ID.
    pub device_id: u32,
    /// Window base.
    pub base: u64,
    /// Interrupt line.
    pub irq: u32,
    /// Registers, queues (virtio-queue's `QueueState`) and counters.
    pub transport: crate::devices::virtio::mmio::MmioTransportState,
    /// The image behind a disk: a restore refuses one that is missing or changed.
    pub disk: Option<crate::devices::virtio::block::DiskIdentity>,
}

/// vm-superio's `SerialState`, field by field, and the transmit count.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct SerialMeta {
    pub baud_divisor_low: u8,
    pub baud_divisor_high: u8,
    pub interrupt_enable: u8,
    pub interrupt_identification: u8,
    pub line_control: u8,
    pub line_status: u8,
    pub modem_control: u8,
    pub modem_status: u8,
    pub scratch: u8,
    /// The receive FIFO (at most 64 bytes).
    pub in_buffer: Vec<u8>,
    /// Bytes the guest has written to the transmit register.
    pub bytes_out: u64,
}

impl SerialMeta {
    /// From the UART's state.
    pub fn from_state(s: &vm_superio::SerialState, bytes_out: u64) -> Self {
        Self {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer.clone(),
            bytes_out,
        }
    }

    /// Back to the UART's state.
    pub fn to_state(&self) -> vm_superio::SerialState {
        vm_superio::SerialState {
            baud_divisor_low: self.baud_divisor_low,
            baud_divisor_high: self.baud_divisor_high,
            interrupt_enable: self.interrupt_enable,
            interrupt_identification: self.interrupt_identification,
            line_control: self.line_control,
            line_status: self.line_status,
            modem_control: self.modem_control,
            modem_status: self.modem_status,
            scratch: self.scratch,
            in_buffer: self.in_buffer.clone(),
        }
    }
}

/// The `debug` section: vmscope's software breakpoints (guest-virtual addresses).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DebugMeta {
    /// Where the `int3`s were (memory in the snapshot holds the original bytes).
    pub sw_breakpoints: Vec<u64>,
}
