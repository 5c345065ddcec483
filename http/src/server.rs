//! Accepting and serving the API's connections, with limits: at most
//! [`HTTP_CONNECTIONS_MAX`] open at once, [`HTTP_CONNECTIONS_PER_PEER_MAX`] of them from
//! one peer, and [`HEADER_READ_TIMEOUT_MS`] for a client to send a request's headers.
//! Without them, clients that connect and never finish a request (no token needed) took
//! every file descriptor of the master, whose zenoh sessions and state writes share the
//! same table; without the per-peer cap, one client holding 256 idle connections (and
//! opening a new one as each is closed) kept everyone else out.
//!
//! `axum::serve` takes no configuration: it builds hyper's connection builder itself and
//! gives it no timer, and without a timer hyper never applies its header-read timeout. So
//! the connections are served here with hyper's HTTP/1 builder directly, as `axum::serve`
//! does otherwise (this workspace builds axum with HTTP/1 only). hyper knows where a
//! request's headers end and when a kept-alive connection waits for the next request; a
//! wrapper around the socket would have to guess both from bytes and time, and would cut
//! long answers such as `/api/v1/events` or a followed log.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Most HTTP connections open at once. Past it, the master accepts no more: new ones wait
/// in the kernel's accept backlog (and are refused by the kernel when that is full), and
/// hold none of the master's descriptors. Each open connection holds one; 256 leaves three
/// quarters of the usual 1,024-descriptor soft limit to zenoh and the state store, and is
/// far more than an edge master's operators need (a CLI call holds one connection for a
/// moment, a dashboard a handful: a browser opens at most six per host).
pub const HTTP_CONNECTIONS_MAX: usize = 256;

/// Most HTTP connections open at once from one peer: one address, or one /64 for IPv6
/// (what one host is given). Past it, the peer's new connections are closed as soon as
/// they are accepted, so it takes at least four peers to fill [`HTTP_CONNECTIONS_MAX`].
/// Behind a reverse proxy every client is the proxy's one peer: 64 connections are still
/// ten browsers' worth of dashboards.
pub const HTTP_CONNECTIONS_PER_PEER_MAX: usize = 64;

/// Longest a client may take to send a request's headers, counted from when the server
/// starts waiting for them: when it accepts the connection, and after each answer on a
/// kept-alive connection, so it is also how long an idle keep-alive connection stays
/// open. Then the connection is closed and its place under [`HTTP_CONNECTIONS_MAX`] freed.
/// A real client sends its headers in one write, right away; ten seconds leave room for a
/// slow link, while a client that connects and stays silent holds its place no longer.
/// Once the headers are in, the answer may take as long as it takes (streams included).
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;

/// How long accepting pauses after an error other than a connection refused, aborted or
/// reset before it was accepted (such as EMFILE, out of descriptors): retrying at once
/// would spin while nothing frees one. The pause `axum::serve` makes.
const ACCEPT_ERROR_PAUSE_MS: u64 = 1_000;

/// The limits [`serve`] applies; [`Limits::default`] is the master's, tests take smaller.
#[derive(Debug)]
pub(crate) struct Limits {
    /// A permit per open connection, held until the connection is closed.
    pub(crate) connections: Arc<Semaphore>,
    pub(crate) per_peer: Arc<PeerConnections>,
    pub(crate) header_read_timeout: Duration,
}

impl Limits {
    pub(crate) fn new(
        connections_max: usize,
        per_peer_max: usize,
        header_read_timeout: Duration,
    ) -> Limits {
        Limits {
            connections: Arc::new(Semaphore::new(connections_max)),
            per_peer: Arc::new(PeerConnections::new(per_peer_max)),
            header_read_timeout,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new(
            HTTP_CONNECTIONS_MAX,
            HTTP_CONNECTIONS_PER_PEER_MAX,
            Duration::from_millis(HEADER_READ_TIMEOUT_MS),
        )
    }
}

/// Open connections per peer ([`HTTP_CONNECTIONS_PER_PEER_MAX`]).
#[derive(Debug)]
pub(crate) struct PeerConnections {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PeerConnections {
    fn new(max: usize) -> PeerConnections {
        PeerConnections {
            max,
            open: Mutex::default(),
        }
    }

    /// A place for one more connection of `addr`'s peer, held until dropped; `None` when
    /// the peer has its [`PeerConnections::max`] open.
    fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<PeerPlace> {
        let peer = peer_of(addr);
        let mut open = self.lock();
        let count = open.entry(peer).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PeerPlace {
            peers: self.clone(),
            peer,
        })
    }

    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.lock().values().sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Nothing panics while it is held; a poisoned count is still a count.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's place under its peer's cap.
struct PeerPlace {
    peers: Arc<PeerConnections>,
    peer: IpAddr,
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut open = self.peers.lock();
        if let Some(count) = open.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

/// Who a connection counts against: its address, or its /64 for IPv6 (an IPv4 address
/// mapped into IPv6 counts as itself).
fn peer_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Accepts connections on `listener` and serves `router` on each, within `limits`, until
/// the task is dropped. Connections already open are served to their end.
pub(crate) async fn serve(listener: TcpListener, router: axum::Router, limits: Limits) {
    // The semaphore is never closed, so acquiring never fails.
    while let Ok(permit) = limits.connections.clone().acquire_owned().await {
        // The permit is taken before accepting: at the cap, the next connection stays in
        // the kernel's backlog until an open one is closed.
        let (stream, addr) = accept(&listener).await;
        let Some(place) = limits.per_peer.admit(addr) else {
            tracing::debug!(%addr, "HTTP connection closed: its peer has its share open");
            continue; // dropping the stream closes it, and the permit is given back
        };
        let service = TowerToHyperService::new(router.clone());
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = connection.await {
                // Clients going away and the header deadline end up here.
                tracing::debug!(%e, "HTTP connection ended");
            }
            drop((permit, place));
        });
    }
}

/// The next connection and its peer's address; errors are logged and accepting goes on,
/// as in `axum::serve`.
async fn accept(listener: &TcpListener) -> (TcpStream, IpAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => return (stream, addr.ip()),
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::error!(%e, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
            }
        }
    }
}

/// An error of that one connection, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::{ClusterState, Command, Handles};

    /// Longest wait for something the server must do. Generous: only a server that never
    /// does it fails, never a slow one.
    const WAIT_MAX: Duration = Duration::from_secs(60);
    /// The header deadline of most tests: short, so that they do not wait long for it.
    const SHORT_DEADLINE: Duration = Duration::from_millis(300);
    /// What a slow or malicious client sends: a request whose headers never end.
    const INCOMPLETE: &[u8] = b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\n";

    struct Server {
        addr: SocketAddr,
        connections: Arc<Semaphore>,
        state: watch::Sender<Arc<ClusterState>>,
        _commands: mpsc::Receiver<Command>,
    }

    async fn start(connections_max: usize, header_read_timeout: Duration) -> Server {
        start_with(Limits::new(
            connections_max,
            connections_max,
            header_read_timeout,
        ))
        .await
    }

    async fn start_with(limits: Limits) -> Server {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("the listener's address");
        let (state, state_rx) = watch::channel(Arc::new(ClusterState::default()));
        let (commands_tx, commands) = mpsc::channel(1);
        let connections = limits.connections.clone();
        let router = crate::router(Handles::new(state_rx, commands_tx));
        tokio::spawn(serve(listener, router, limits));
        Server {
            addr,
            connections,
            state,
            _commands: commands,
        }
    }

    async fn connect(addr: SocketAddr, request: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("send a request");
        stream
    }

    /// Reads until `done` holds for what was read, the server closes, or [`WAIT_MAX`].
    async fn read_until(stream: &mut TcpStream, done: impl Fn(&str) -> bool) -> (String, bool) {
        let mut read = Vec::new();
        let closed = tokio::time::timeout(WAIT_MAX, async {
            let mut buf = [0u8; 4096];
            loop {
                if done(&String::from_utf8_lossy(&read)) {
                    return false;
                }
                match stream.read(&mut buf).await {
                    Ok(0) => return true,
                    Ok(n) => read.extend_from_slice(&buf[..n]),
                    // The server closed with bytes unread: a reset.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                    Err(e) => panic!("reading from the server: {e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("nothing happened within {WAIT_MAX:?}"));
        (String::from_utf8_lossy(&read).into_owned(), closed)
    }

    /// A whole answer to a request: its headers, and then its body of `Content-Length`.
    fn whole_answer(read: &str) -> bool {
        let Some((head, body)) = read.split_once("\r\n\r\n") else {
            return false;
        };
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse::<usize>().ok())
            .is_some_and(|length| body.len() >= length)
    }

    const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

    async fn health(addr: SocketAddr) -> (TcpStream, String) {
        let mut stream = connect(addr, HEALTH).await;
        let (answer, closed) = read_until(&mut stream, whole_answer).await;
        assert!(!closed, "the server closed before answering: {answer:?}");
        (stream, answer)
    }

    /// The outside tester's attack, scaled down: more idle connections than the cap, each
    /// with a request whose headers never end. The deadline closes them, so `/health` is
    /// answered, and no connection is left open.
    #[tokio::test]
    async fn idle_connections_past_the_cap_are_closed_and_health_is_still_answered() {
        const CAP: usize = 4;
        let server = start(CAP, SHORT_DEADLINE).await;
        let mut idle = Vec::new();
        for _ in 0..3 * CAP {
            idle.push(connect(server.addr, INCOMPLETE).await);
        }

        let (_health, answer) = health(server.addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        for mut stream in idle {
            let (read, closed) = read_until(&mut stream, |_| false).await;
            assert!(closed);
            assert!(
                !read.contains(" 200 "),
                "an incomplete request was answered: {read}"
            );
        }
    }

    /// A kept-alive connection that asks nothing more is closed, freeing its place.
    #[tokio::test]
    async fn a_kept_alive_connection_that_goes_silent_is_closed() {
        let server = start(1, SHORT_DEADLINE).await;
        let (mut first, answer) = health(server.addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let (_, closed) = read_until(&mut first, |_| false).await;
        assert!(closed);
        // The one place is free again.
        let (_second, answer) = health(server.addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// At the cap, a new connection waits, and is served as soon as an open one closes.
    #[tokio::test]
    async fn at_the_cap_a_connection_waits_for_a_place() {
        const CAP: usize = 2;
        let server = start(CAP, Duration::from_secs(3_600)).await;
        let mut idle = Vec::new();
        for _ in 0..CAP {
            idle.push(connect(server.addr, INCOMPLETE).await);
        }
        let started = Instant::now();
        while server.connections.available_permits() > 0 {
            assert!(
                started.elapsed() < WAIT_MAX,
                "the idle connections were not accepted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let mut waiting = connect(server.addr, HEALTH).await;
        drop(idle.pop());
        let (answer, closed) = read_until(&mut waiting, whole_answer).await;
        assert!(!closed, "the server closed before answering: {answer:?}");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // One idle connection and the kept-alive one: the cap, no more.
        assert_eq!(server.connections.available_permits(), 0);
    }

    /// One peer holding its share of idle connections (and more as each is closed, as
    /// the outside tester's did) keeps nobody else out: its next connection is closed at
    /// once, another peer's is served.
    #[tokio::test]
    async fn a_peer_holding_its_share_keeps_no_other_peer_out() {
        let limits = Limits::new(4, 2, Duration::from_secs(3_600));
        let per_peer = limits.per_peer.clone();
        let server = start_with(limits).await;
        let _idle = [
            connect(server.addr, INCOMPLETE).await,
            connect(server.addr, INCOMPLETE).await,
        ];
        let started = Instant::now();
        while per_peer.open() < 2 {
            assert!(
                started.elapsed() < WAIT_MAX,
                "the idle connections were not accepted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut third = connect(server.addr, HEALTH).await;
        let (read, closed) = read_until(&mut third, |_| false).await;
        assert!(closed && read.is_empty(), "{read:?}");

        let other = tokio::net::TcpSocket::new_v4().expect("a socket");
        other
            .bind((Ipv4Addr::new(127, 0, 0, 2), 0).into())
            .expect("bind 127.0.0.2");
        let mut other = other.connect(server.addr).await.expect("connect");
        other.write_all(HEALTH).await.expect("send a request");
        let (answer, closed) = read_until(&mut other, whole_answer).await;
        assert!(!closed, "the server closed before answering: {answer:?}");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[test]
    fn an_ipv6_peer_is_its_64_and_a_mapped_ipv4_address_itself() {
        let v6 = |s: &str| s.parse::<IpAddr>().expect("an address");
        assert_eq!(peer_of(v6("2001:db8:1:2:aaaa::1")), v6("2001:db8:1:2::"));
        assert_eq!(peer_of(v6("::ffff:10.0.0.7")), v6("10.0.0.7"));
        assert_eq!(peer_of(v6("10.0.0.7")), v6("10.0.0.7"));
    }

    /// The deadline is for headers only: a stream of events goes on past it.
    #[tokio::test]
    async fn an_event_stream_outlives_the_header_deadline() {
        let server = start(1, SHORT_DEADLINE).await;
        let mut events = connect(
            server.addr,
            b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        let count = |read: &str| read.matches("event: state").count();
        let (read, closed) = read_until(&mut events, |read| count(read) >= 1).await;
        assert!(!closed, "{read}");

        tokio::time::sleep(3 * SHORT_DEADLINE).await;
        let next = ClusterState {
            generated_at_ms: 1,
            ..ClusterState::default()
        };
        server.state.send_replace(Arc::new(next));
        let (read, closed) = read_until(&mut events, |read| count(read) >= 1).await;
        assert!(!closed, "the stream was cut: {read}");
    }
}
