//! A doorbell: a guest port write that never leaves the host kernel. KVM matches the write
//! against an ioeventfd (`KVM_IOEVENTFD`), signals the eventfd and resumes the guest at
//! once; a VMM thread drains the eventfd and counts the rings. This is how virtio queue
//! notifications avoid an exit to userspace, reduced to its bare mechanism.

use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

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
        /// Why.
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

/// A registered doorbell and the thread that drains it.
#[derive(Debug)]
pub struct Doorbell {
    port: u16,
    ring: Arc<EventFd>,
    rings: Arc<AtomicU64>,
    stop: EventFd,
    drain: Option<JoinHandle<()>>,
}

/// Adds what the eventfd has accumulated (one per guest write) to `rings`.
fn drain(ring: &EventFd, rings: &AtomicU64) {
    while let Ok(n) = ring.read() {
        rings.fetch_add(n, Ordering::Relaxed);
    }
}

impl Doorbell {
    /// Registers an ioeventfd on `port` (any value, any width) and starts its drain thread.
    pub fn register(vm: &VmFd, port: u16) -> Result<Self, DoorbellError> {
        let ring = Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(DoorbellError::Fd)?);
        let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(DoorbellError::Fd)?;
        let epoll = Epoll::new().map_err(DoorbellError::Fd)?;
        for (fd, token) in [(ring.as_raw_fd(), RING), (stop.as_raw_fd(), STOP)] {
            epoll
                .ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, token))
                .map_err(DoorbellError::Fd)?;
        }
        vm.register_ioevent(&ring, &IoEventAddress::Pio(port.into()), NoDatamatch)
            .map_err(|source| DoorbellError::Register { port, source })?;
        let rings = Arc::new(AtomicU64::new(0));
        let (t_ring, t_rings) = (ring.clone(), rings.clone());
        let drain_thread = std::thread::Builder::new()
            .name(format!("doorbell-{port:#x}"))
            .spawn(move || {
                let mut events = [EpollEvent::default(); 2];
                loop {
                    let n = match epoll.wait(-1, &mut events) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => return,
                    };
                    drain(&t_ring, &t_rings);
                    if events[..n].iter().any(|e| e.data() == STOP) {
                        return;
                    }
                }
            })
            .map_err(DoorbellError::Spawn)?;
        Ok(Self { port, ring, rings, stop, drain: Some(drain_thread) })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
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
        let vm = kvm.create_vm().expect("KVM_CREATE_VM");
        let bell = Doorbell::register(&vm, 0x503).expect("an ioeventfd on port 0x503");
        assert_eq!((bell.port(), bell.rings()), (0x503, 0));
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
}
