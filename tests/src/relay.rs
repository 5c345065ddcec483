//! A delay relay: a TCP proxy that holds every chunk it forwards for 200 ms ± 50 ms while
//! impaired (this kernel has no `netem`), keeping each direction's bytes in order. With
//! `Netns::set_loss` (nft drops in a namespace) it makes a slow, lossy link to a site.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The delay of an impaired link, and how far it varies either way.
pub const DELAY: Duration = Duration::from_millis(200);
pub const JITTER: Duration = Duration::from_millis(50);

/// A relay from `listen` to `target`; it stops accepting when dropped (connections in
/// flight end with their peers).
pub struct DelayRelay {
    impaired: Arc<AtomicBool>,
    delayed: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl DelayRelay {
    pub fn start(listen: SocketAddr, target: SocketAddr) -> std::io::Result<DelayRelay> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let impaired = Arc::new(AtomicBool::new(false));
        let delayed = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let seed = Arc::new(AtomicU64::new(0x5eed));
        let (imp, count, done) = (impaired.clone(), delayed.clone(), closed.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                if done.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(inbound) = inbound else { continue };
                let Ok(outbound) = TcpStream::connect(target) else {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                for (from, to) in [
                    (inbound.try_clone(), outbound.try_clone()),
                    (outbound.try_clone(), inbound.try_clone()),
                ] {
                    if let (Ok(from), Ok(to)) = (from, to) {
                        let salt = seed.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
                        pipe(from, to, (imp.clone(), count.clone()), salt);
                    }
                }
            }
        });
        Ok(DelayRelay {
            impaired,
            delayed,
            closed,
            addr,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Chunks it has delayed so far.
    pub fn delayed_chunks(&self) -> u64 {
        self.delayed.load(Ordering::Relaxed)
    }

    /// Delays what it forwards from now on (`true`), or stops delaying.
    pub fn set_impaired(&self, impaired: bool) {
        self.impaired.store(impaired, Ordering::Relaxed);
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
        // Wakes the accepting thread so that it sees `closed`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One direction: a reader stamps each chunk with when it may go on, a writer sends it
/// then. Release times never go back, so bytes keep their order.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    (impaired, delayed): (Arc<AtomicBool>, Arc<AtomicU64>),
    mut rng: u64,
) {
    let (chunks, release) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut last = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut at = Instant::now();
            if impaired.load(Ordering::Relaxed) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let spread = JITTER.as_millis() as u64 * 2 + 1;
                let ms = DELAY.as_millis() as u64 - JITTER.as_millis() as u64 + rng % spread;
                at += Duration::from_millis(ms);
                delayed.fetch_add(1, Ordering::Relaxed);
            }
            last = last.max(at);
            if chunks.send((last, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (at, chunk) in release {
            let wait = at.saturating_duration_since(Instant::now());
            std::thread::sleep(wait);
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
