//! A doorbell: a guest port write that never leaves the host kernel. KVM matches the write
//! against an ioeventfd (`KVM_IOEVENTFD`), signals the eventfd and resumes the guest at
//! once; a VMM thread drains the eventfd and counts the rings. This is how virtio queue
//! notifications avoid an exit to userspace, reduced to its bare mechanism.
//!
//! With guest memory and a console, the thread is also the consumer of the shared byte ring
//! of `vmscope_abi::ring`: it copies what the guest produced to the console. How it waits
//! for more is its [`RingConsumerMode`]:
//!
//! - [`RingConsumerMode::Sleep`] (the default): when the ring is empty it says so in the
//!   ring header (`consumer_sleeping = 1`), looks once more, and sleeps on the eventfd; the
//!   guest kicks only a consumer that said it sleeps. How many batches find it asleep
//!   depends on the host's scheduling: anywhere from none to every one.
//! - [`RingConsumerMode::Poll`]: it never says it sleeps, so the guest never kicks. It polls
//!   the ring while the guest produces and, once the ring has stayed empty for
//!   [`POLL_SPIN`], looks again every [`POLL_NAP_MS`] ms instead of spinning, so an idle or
//!   stopped guest costs no CPU. It ends, like the sleeping one, when the doorbell is
//!   dropped (within one nap).
//!
//! The ioeventfd is registered lazily: a VM with an ioeventfd pays for it when it is torn
//! down (on PVM, closing such a VM took 13-15 ms against under 1.5 ms without one;
//! deassigning it first takes about 6 ms and the close then under 1 ms). So the first
//! guest write to the port is an ordinary port I/O exit: the vCPU that took it
//! ([`DoorbellPort::rang_by_exit`]) counts that write and registers the ioeventfd, and
//! every later write stays in the kernel. A guest that never rings pays nothing; for one
//! that did, the drain thread deassigns the ioeventfd as it ends, before the VM is closed.

use crate::devices::console::Console;
use crate::vstate::memory::GuestMemory;
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;
use vmscope_abi::layout::{RING_DATA_GPA, RING_HEADER_GPA};
use vmscope_abi::ring::{CONSUMER_SLEEPING, HEAD, RING_SIZE, TAIL};

/// Errors from setting up a doorbell.
#[derive(Debug, thiserror::Error)]
pub enum DoorbellError {
    /// An eventfd or the epoll instance could not be created.
    #[error("cannot create the doorbell's eventfd or epoll instance")]
    Fd(#[source] std::io::Error),
    /// KVM refused the ioeventfd.
    #[error("KVM_IOEVENTFD for port {port:#x} failed")]
    Register {
        /// The port.
        port: u16,
        /// The KVM ioctl's error (errno).
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The drain thread could not be started.
    #[error("cannot start the doorbell thread")]
    Spawn(#[source] std::io::Error),
}

/// Epoll tokens of the drain thread.
const RING: u64 = 0;
const STOP: u64 = 1;

/// Poll mode: how long the consumer keeps looking at an empty ring (yielding the CPU
/// between looks) before it starts to nap.
pub const POLL_SPIN: Duration = Duration::from_micros(200);
/// Poll mode: the nap, in milliseconds, between looks at a ring that has stayed empty. The
/// consumer wakes by itself (the guest does not kick it), so this bounds how long produced
/// bytes wait after a pause.
pub const POLL_NAP_MS: i32 = 1;

/// How the ring consumer waits for the guest to produce (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RingConsumerMode {
    /// Announce sleep in the ring header and wait for a kick.
    #[default]
    Sleep,
    /// Never announce sleep: poll, then nap on a timer; the guest never kicks.
    Poll,
}

impl RingConsumerMode {
    /// The mode's name, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sleep => "sleep",
            Self::Poll => "poll",
        }
    }
}

/// The shared byte ring a doorbell's thread consumes.
#[derive(Debug)]
pub struct SharedRing {
    /// Guest memory, which holds the ring at `vmscope_abi::layout::RING_HEADER_GPA`.
    pub memory: GuestMemory,
    /// Where the consumed bytes go.
    pub console: Console,
    /// How the consumer waits.
    pub mode: RingConsumerMode,
}

/// Where the doorbell's ioeventfd stands with KVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registration {
    /// Not registered yet: writes to the port exit to the VMM.
    Pending,
    /// Registered: writes stay in the kernel.
    Registered,
    /// KVM refused it (every write keeps exiting, and is counted there), or the doorbell
    /// was taken down.
    Off,
}

/// The part of a doorbell a vCPU needs: the port's eventfd, and registering it with KVM on
/// the first write that reaches the VMM. Cloned into the port bus.
#[derive(Clone, Debug)]
pub struct DoorbellPort {
    port: u16,
    vm: Arc<VmFd>,
    ring: Arc<EventFd>,
    state: Arc<Mutex<Registration>>,
}

impl DoorbellPort {
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A guest write to the port that exited to the VMM (the ioeventfd was not registered
    /// yet, or KVM refused it): counts it as KVM would have (one eventfd increment, which
    /// also wakes the consumer), then registers the ioeventfd so that the next writes stay
    /// in the kernel. Only the first of several vCPUs registers.
    pub fn rang_by_exit(&self) {
        let _ = self.ring.write(1);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *state == Registration::Pending {
            *state = match self.assign() {
                Ok(()) => Registration::Registered,
                Err(e) => {
                    tracing::warn!("{e}: writes to the port keep exiting to the VMM");
                    Registration::Off
                }
            };
        }
    }

    /// Whether the ioeventfd is registered with KVM now.
    pub fn registered(&self) -> bool {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) == Registration::Registered
    }

    fn assign(&self) -> Result<(), DoorbellError> {
        self.vm
            .register_ioevent(&self.ring, &IoEventAddress::Pio(self.port.into()), NoDatamatch)
            .map_err(|source| DoorbellError::Register { port: self.port, source })
    }

    /// Deassigns the ioeventfd if it was registered (cheaper than leaving it to the VM's
    /// close) and keeps it from being registered again.
    fn take_down(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *state == Registration::Registered {
            let addr = IoEventAddress::Pio(self.port.into());
            let _ = self.vm.unregister_ioevent(&self.ring, &addr, NoDatamatch);
        }
        *state = Registration::Off;
    }
}

/// A doorbell (its ioeventfd registered on the first ring) and the thread that drains it.
#[derive(Debug)]
pub struct Doorbell {
    port: u16,
    handle: DoorbellPort,
    ring: Arc<EventFd>,
    rings: Arc<AtomicU64>,
    consumed: Arc<RingStats>,
    mode: Option<RingConsumerMode>,
    stop: EventFd,
    drain: Option<JoinHandle<()>>,
}

/// What the ring consumer did.
#[derive(Debug, Default)]
pub struct RingStats {
    /// Bytes taken from the ring.
    pub bytes: AtomicU64,
    /// Times the consumer went to sleep (and needed a kick to continue); always 0 in
    /// [`RingConsumerMode::Poll`].
    pub sleeps: AtomicU64,
    /// Times the guest broke the ring (`head` behind `tail`, or more than the ring ahead):
    /// the consumer skipped to `head`.
    pub errors: AtomicU64,
}

/// The consumer side of `vmscope_abi::ring`.
struct RingConsumer {
    mem: GuestMemory,
    console: Console,
    stats: Arc<RingStats>,
}

impl RingConsumer {
    fn at(offset: u64) -> GuestAddress {
        GuestAddress(RING_HEADER_GPA + offset)
    }

    /// Takes everything the guest has produced so far and publishes the new `tail`.
    /// Returns that tail and whether anything was taken (or skipped), or `None` when guest
    /// memory cannot be read: the ring is the guest's business, so that ends the attempt
    /// quietly.
    fn take_available(&self) -> Option<(u64, bool)> {
        let (Ok(head), Ok(start)) = (
            self.mem.load::<u64>(Self::at(HEAD), Ordering::SeqCst),
            self.mem.load::<u64>(Self::at(TAIL), Ordering::Acquire),
        ) else {
            return None;
        };
        let mut tail = start;
        if head < tail || head - tail > RING_SIZE {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            tail = head;
        }
        let mut buf = [0u8; 4096];
        while tail < head {
            let off = tail % RING_SIZE;
            let n = (head - tail).min(RING_SIZE - off).min(buf.len() as u64) as usize;
            self.mem.read_slice(&mut buf[..n], GuestAddress(RING_DATA_GPA + off)).ok()?;
            self.console.write(&buf[..n]);
            tail += n as u64;
            self.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        if tail != start {
            let _ = self.mem.store(tail, Self::at(TAIL), Ordering::Release);
        }
        Some((tail, tail != start))
    }

    /// [`RingConsumerMode::Sleep`]: takes everything the guest has produced, then marks the
    /// consumer asleep unless more arrived meanwhile.
    fn run_until_empty(&self) {
        let _ = self.mem.store(0u32, Self::at(CONSUMER_SLEEPING), Ordering::SeqCst);
        loop {
            let Some((tail, _)) = self.take_available() else { return };
            // Going to sleep: say so, then look once more (the guest may have produced
            // between our last look and the flag).
            let _ = self.mem.store(1u32, Self::at(CONSUMER_SLEEPING), Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            match self.mem.load::<u64>(Self::at(HEAD), Ordering::SeqCst) {
                Ok(h) if h != tail => {
                    let _ = self.mem.store(0u32, Self::at(CONSUMER_SLEEPING), Ordering::SeqCst);
                }
                _ => {
                    self.stats.sleeps.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// [`RingConsumerMode::Poll`]: consumes until `stop` is signalled, never announcing
    /// sleep. Doorbell writes (a guest may still ring the port) are counted as they come.
    fn poll_until_stopped(&self, epoll: &Epoll, ring: &EventFd, rings: &AtomicU64) {
        let _ = self.mem.store(0u32, Self::at(CONSUMER_SLEEPING), Ordering::SeqCst);
        let mut events = [EpollEvent::default(); 2];
        let mut idle_since: Option<Instant> = None;
        loop {
            let napping = idle_since.is_some_and(|t| t.elapsed() >= POLL_SPIN);
            let n = match epoll.wait(if napping { POLL_NAP_MS } else { 0 }, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(_) => return,
            };
            drain(ring, rings);
            if events[..n].iter().any(|e| e.data() == STOP) {
                return;
            }
            match self.take_available() {
                Some((_, true)) => idle_since = None,
                _ => {
                    idle_since.get_or_insert_with(Instant::now);
                    if !napping {
                        std::thread::yield_now();
                    }
                }
            }
        }
    }
}

/// Adds what the eventfd has accumulated (one per guest write) to `rings`.
fn drain(ring: &EventFd, rings: &AtomicU64) {
    while let Ok(n) = ring.read() {
        rings.fetch_add(n, Ordering::Relaxed);
    }
}

/// The drain thread's work until the doorbell is dropped: count rings and, with a consumer,
/// take the shared ring's bytes the way its mode says.
fn drain_until_stopped(
    consumer: Option<(RingConsumer, RingConsumerMode)>,
    epoll: &Epoll,
    ring: &EventFd,
    rings: &AtomicU64,
) {
    let consumer = match consumer {
        Some((c, RingConsumerMode::Poll)) => return c.poll_until_stopped(epoll, ring, rings),
        Some((c, RingConsumerMode::Sleep)) => Some(c),
        None => None,
    };
    let mut events = [EpollEvent::default(); 2];
    if let Some(c) = &consumer {
        c.run_until_empty();
    }
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        drain(ring, rings);
        if events[..n].iter().any(|e| e.data() == STOP) {
            return;
        }
        if let Some(c) = &consumer {
            c.run_until_empty();
        }
    }
}

impl Doorbell {
    /// A doorbell on `port` (any value, any width) of `vm`, with its drain thread, which
    /// also consumes `shared_ring` (to its console) if given. The ioeventfd is registered
    /// when the guest first writes the port ([`DoorbellPort::rang_by_exit`], reached through
    /// [`Doorbell::port_handle`] on the port bus), or at once with [`Doorbell::register_now`].
    pub fn new(vm: Arc<VmFd>, port: u16, shared_ring: Option<SharedRing>) -> Result<Self, DoorbellError> {
        let ring = Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(DoorbellError::Fd)?);
        let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(DoorbellError::Fd)?;
        let epoll = Epoll::new().map_err(DoorbellError::Fd)?;
        for (fd, token) in [(ring.as_raw_fd(), RING), (stop.as_raw_fd(), STOP)] {
            epoll
                .ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, token))
                .map_err(DoorbellError::Fd)?;
        }
        let state = Arc::new(Mutex::new(Registration::Pending));
        let handle = DoorbellPort { port, vm, ring: ring.clone(), state };
        let t_handle = handle.clone();
        let rings = Arc::new(AtomicU64::new(0));
        let consumed = Arc::new(RingStats::default());
        let (t_ring, t_rings) = (ring.clone(), rings.clone());
        let mode = shared_ring.as_ref().map(|r| r.mode);
        let consumer = shared_ring
            .map(|r| (RingConsumer { mem: r.memory, console: r.console, stats: consumed.clone() }, r.mode));
        let drain_thread = std::thread::Builder::new()
            .name(format!("doorbell-{port:#x}"))
            .spawn(move || {
                crate::seccomp::enter(crate::seccomp::Thread::Doorbell);
                drain_until_stopped(consumer, &epoll, &t_ring, &t_rings);
                t_handle.take_down();
            })
            .map_err(DoorbellError::Spawn)?;
        Ok(Self { port, handle, ring, rings, consumed, mode, stop, drain: Some(drain_thread) })
    }

    /// Registers the ioeventfd now rather than on the first ring.
    pub fn register_now(&self) -> Result<(), DoorbellError> {
        let mut state = self.handle.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *state == Registration::Pending {
            self.handle.assign()?;
            *state = Registration::Registered;
        }
        Ok(())
    }

    /// What the port bus calls when a write to the port exits to the VMM.
    pub fn port_handle(&self) -> DoorbellPort {
        self.handle.clone()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How the ring consumer waits; `None` when the doorbell consumes no ring.
    pub fn consumer_mode(&self) -> Option<RingConsumerMode> {
        self.mode
    }

    /// What the ring consumer did so far.
    pub fn ring_stats(&self) -> &RingStats {
        &self.consumed
    }

    /// Guest writes to the doorbell so far (including any not yet drained by the thread).
    pub fn rings(&self) -> u64 {
        drain(&self.ring, &self.rings);
        self.rings.load(Ordering::Relaxed)
    }
}

impl Drop for Doorbell {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.drain.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rings_without_exits() {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            panic!("this test needs /dev/kvm");
        };
        let vm = Arc::new(kvm.create_vm().expect("KVM_CREATE_VM"));
        let bell = Doorbell::new(vm, 0x503, None).expect("a doorbell on port 0x503");
        assert_eq!((bell.port(), bell.rings()), (0x503, 0));
        assert!(!bell.port_handle().registered(), "nothing is registered before the first ring");
        // What KVM does on a guest write: add one to the eventfd.
        for _ in 0..5 {
            bell.ring.write(1).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while bell.rings() < 5 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(bell.rings(), 5);
        drop(bell); // the thread stops and is joined
    }

    #[test]
    fn the_first_ring_that_exits_registers_the_ioeventfd_once() {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            panic!("this test needs /dev/kvm");
        };
        let vm = Arc::new(kvm.create_vm().expect("KVM_CREATE_VM"));
        let bell = Doorbell::new(vm.clone(), 0x503, None).expect("a doorbell on port 0x503");
        let (a, b) = (bell.port_handle(), bell.port_handle());
        a.rang_by_exit();
        assert!(a.registered() && b.registered(), "one registration, seen by every handle");
        // A second vCPU that exited before the registration took effect: counted, and the
        // ioeventfd is not registered twice (KVM would refuse a duplicate with EEXIST).
        b.rang_by_exit();
        bell.register_now().expect("already registered: nothing to do");
        assert_eq!(bell.rings(), 2, "both exits counted as rings");
        // KVM holds exactly one ioeventfd on the port: assigning another one fails.
        let other = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        assert!(vm.register_ioevent(&other, &IoEventAddress::Pio(0x503), NoDatamatch).is_err());
        drop(bell);
        // The drain thread took it down as it ended: the port is free again.
        assert!(!a.registered());
        vm.register_ioevent(&other, &IoEventAddress::Pio(0x503), NoDatamatch)
            .expect("the port is free once the doorbell is gone");
    }

    fn header(mem: &GuestMemory) -> (u64, u64, u32) {
        (
            mem.read_obj(RingConsumer::at(HEAD)).unwrap(),
            mem.read_obj(RingConsumer::at(TAIL)).unwrap(),
            mem.read_obj(RingConsumer::at(CONSUMER_SLEEPING)).unwrap(),
        )
    }

    #[test]
    fn the_consumer_takes_what_was_produced_and_sleeps() {
        let mem = crate::vstate::memory::create_guest_memory(4 << 20).unwrap();
        let console = Console::buffer();
        let c = RingConsumer { mem: mem.clone(), console: console.clone(), stats: Arc::default() };
        c.run_until_empty();
        assert_eq!(header(&mem), (0, 0, 1), "empty: asleep at once");
        // The producer wraps around the end of the data area.
        let start = RING_SIZE - 3;
        mem.write_obj(start, RingConsumer::at(HEAD)).unwrap();
        mem.write_obj(start, RingConsumer::at(TAIL)).unwrap();
        mem.write_slice(b"abc", GuestAddress(RING_DATA_GPA + RING_SIZE - 3)).unwrap();
        mem.write_slice(b"de", GuestAddress(RING_DATA_GPA)).unwrap();
        mem.write_obj(start + 5, RingConsumer::at(HEAD)).unwrap();
        c.run_until_empty();
        assert_eq!(console.take_buffer(), b"abcde");
        assert_eq!(header(&mem), (start + 5, start + 5, 1));
        assert_eq!(c.stats.bytes.load(Ordering::Relaxed), 5);
        assert_eq!(c.stats.sleeps.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_polling_consumer_never_announces_sleep_and_stops_when_dropped() {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            panic!("this test needs /dev/kvm");
        };
        let vm = Arc::new(kvm.create_vm().expect("KVM_CREATE_VM"));
        let mem = crate::vstate::memory::create_guest_memory(4 << 20).unwrap();
        let console = Console::buffer();
        let ring = SharedRing { memory: mem.clone(), console: console.clone(), mode: RingConsumerMode::Poll };
        let bell = Doorbell::new(vm, 0x503, Some(ring)).expect("a doorbell on port 0x503");
        bell.register_now().expect("an ioeventfd on port 0x503");
        assert_eq!(bell.consumer_mode(), Some(RingConsumerMode::Poll));
        // Produce as the guest does, in three batches, the last across the end of the data
        // area, with no kick: the consumer must find each by itself.
        let mut produced = 0u64;
        for batch in [&b"abc"[..], b"defg", &[b'x'; RING_SIZE as usize - 4]] {
            for (i, b) in batch.iter().enumerate() {
                let at = (produced + i as u64) % RING_SIZE;
                mem.write_obj(*b, GuestAddress(RING_DATA_GPA + at)).unwrap();
            }
            produced += batch.len() as u64;
            mem.store(produced, RingConsumer::at(HEAD), Ordering::SeqCst).unwrap();
            // A liveness bound, not a timing figure: a consumer that stopped would hang.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while mem.load::<u64>(RingConsumer::at(TAIL), Ordering::Acquire).unwrap() != produced {
                assert_eq!(
                    mem.load::<u32>(RingConsumer::at(CONSUMER_SLEEPING), Ordering::SeqCst).unwrap(),
                    0
                );
                assert!(std::time::Instant::now() < deadline, "the polling consumer stopped consuming");
                std::thread::yield_now();
            }
        }
        let mut expected = b"abcdefg".to_vec();
        expected.resize(produced as usize, b'x');
        assert!(console.take_buffer() == expected, "every byte, in order");
        assert_eq!(header(&mem), (produced, produced, 0), "never announced sleep");
        assert_eq!(bell.ring_stats().sleeps.load(Ordering::Relaxed), 0);
        assert_eq!(bell.ring_stats().errors.load(Ordering::Relaxed), 0);
        // A doorbell write still counts, although this consumer never asks for one.
        bell.ring.write(1).unwrap();
        while bell.rings() < 1 {
            std::thread::yield_now();
        }
        // The thread has napped by now (an idle ring); dropping it still ends it.
        drop(bell);
    }

    #[test]
    fn a_broken_ring_is_skipped_not_followed() {
        let mem = crate::vstate::memory::create_guest_memory(4 << 20).unwrap();
        let console = Console::buffer();
        let c = RingConsumer { mem: mem.clone(), console: console.clone(), stats: Arc::default() };
        // Head a terabyte ahead, then behind the tail.
        mem.write_obj(1u64 << 40, RingConsumer::at(HEAD)).unwrap();
        c.run_until_empty();
        mem.write_obj(5u64, RingConsumer::at(HEAD)).unwrap();
        c.run_until_empty();
        assert_eq!(c.stats.errors.load(Ordering::Relaxed), 2);
        assert!(console.take_buffer().is_empty());
        assert_eq!(header(&mem), (5, 5, 1));
    }
}
