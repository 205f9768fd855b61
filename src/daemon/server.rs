//! The daemon's two listeners, served from its event loop: the metrics
//! endpoint (HTTP on a TCP address the operator names) and the control
//! socket (a Unix socket under /run/udplb, root only). Each client sends one
//! request and gets one answer, then the connection closes.
//!
//! Nothing here waits on a client, as HAProxy and Envoy serve theirs:
//! listeners and clients are non-blocking; a request is read as it arrives
//! and an answer written as the client takes it, from a buffer of its own
//! (one answer: bounded by what [`answer`](Server::ready) renders), each
//! when the loop says the socket is ready; a client that has not taken its
//! whole answer [`CLIENT_TIMEOUT`] after it connected is cut. Each listener
//! has its own limit ([`MAX_METRICS_CLIENTS`], [`MAX_CONTROL_CLIENTS`]), so
//! metrics clients can never take the control socket's slots, which only
//! root can reach; a listener at its limit closes its oldest client not
//! being answered for the new one, so that clients which hold a slot without finishing cannot
//! lock out one that asks and reads at once. (The datapath never waits for
//! any of it: it runs in the kernel.)

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::PollFlags;

/// Which listener a client came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Metrics,
    Control,
}

/// What the loop watches: a listener, or one client by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Listener(Kind),
    Client(u32),
}

/// Metrics clients open at once: Prometheus servers (a few per balancer)
/// and curl, with room to spare.
pub const MAX_METRICS_CLIENTS: usize = 64;
/// Control clients open at once: `udplb status` and `reload`, root only.
pub const MAX_CONTROL_CLIENTS: usize = 16;
/// From connect to the last byte of the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request read: an HTTP request line and headers, or one control
/// line.
const MAX_REQUEST: usize = 8192;

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn shutdown_write(&self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }
}

/// Where a client is in its one exchange.
enum Stage {
    /// Reading its request, so far.
    Asking(Vec<u8>),
    /// Writing its answer: the bytes and how many were taken.
    Answering(Vec<u8>, usize),
    /// Answer written and our side shut: reading (and dropping) what the
    /// client still sends until it closes, so that closing with unread
    /// bytes does not reset the connection and cut the answer short.
    Draining(usize),
}

/// What a draining client may still send before it is simply closed.
const MAX_DRAIN: usize = 65536;
/// How long a listener rests after accept failed for want of descriptors
/// (it stays readable, and would wake the loop at once, again and again).
const ACCEPT_REST: Duration = Duration::from_millis(100);

struct Client {
    id: u32,
    kind: Kind,
    stream: Stream,
    stage: Stage,
    since: Instant,
}

impl Client {
    /// Writes what the socket takes now; once all is written, shuts our
    /// side and drains. Returns whether the client is finished with.
    fn flush(&mut self) -> bool {
        let Stage::Answering(bytes, sent) = &mut self.stage else {
            return false;
        };
        while *sent < bytes.len() {
            match self.stream.write(&bytes[*sent..]) {
                Ok(0) => return true,
                Ok(n) => *sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        if self.stream.shutdown_write().is_err() {
            return true;
        }
        self.stage = Stage::Draining(0);
        self.drain()
    }

    /// Reads and drops what the client sends after its request. Returns
    /// whether it is finished with: closed, gone, or sent too much.
    fn drain(&mut self) -> bool {
        let Stage::Draining(drained) = &mut self.stage else {
            return false;
        };
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    *drained += n;
                    if *drained > MAX_DRAIN {
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }
}

#[derive(Default)]
pub struct Server {
    metrics: Option<TcpListener>,
    /// The control socket, its path and the inode it was bound as.
    control: Option<(UnixListener, PathBuf, u64)>,
    clients: Vec<Client>,
    next_id: u32,
    /// Listeners resting after accept ran out of descriptors, and until
    /// when.
    resting: Vec<(Kind, Instant)>,
}

/// A complete request, as text, once its terminator has arrived: the blank
/// line ending HTTP headers, or the newline ending a control command.
fn complete(kind: Kind, request: &[u8]) -> Option<String> {
    let end = match kind {
        Kind::Metrics => request.windows(4).position(|w| w == b"\r\n\r\n"),
        Kind::Control => request.iter().position(|&b| b == b'\n'),
    }?;
    Some(String::from_utf8_lossy(&request[..end]).into_owned())
}

fn limit(kind: Kind) -> usize {
    match kind {
        Kind::Metrics => MAX_METRICS_CLIENTS,
        Kind::Control => MAX_CONTROL_CLIENTS,
    }
}

impl Server {
    /// Serves `/metrics` on `addr`.
    pub fn listen_metrics(&mut self, addr: SocketAddr) -> Result<()> {
        let l =
            TcpListener::bind(addr).with_context(|| format!("listening for metrics on {addr}"))?;
        l.set_nonblocking(true)?;
        self.metrics = Some(l);
        Ok(())
    }

    /// Serves the control socket at `path`, readable by root only. The
    /// caller holds the interfaces now: a socket there belongs to a udplb
    /// that died or that `--force` replaced, and is taken over.
    pub fn listen_control(&mut self, path: &Path) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let dir = path
            .parent()
            .context("control socket path has no directory")?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path)
            .with_context(|| format!("creating the control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        l.set_nonblocking(true)?;
        let ino = std::fs::metadata(path)?.ino();
        self.control = Some((l, path.to_path_buf(), ino));
        Ok(())
    }

    /// Every descriptor the loop should watch now, and for what: listeners
    /// and asking clients for input, answering clients for room to write.
    pub fn sources(&self) -> Vec<(BorrowedFd<'_>, Source, PollFlags)> {
        let mut v = Vec::new();
        let now = Instant::now();
        let awake = |kind| !self.resting.iter().any(|(k, t)| *k == kind && *t > now);
        if let (Some(l), true) = (&self.metrics, awake(Kind::Metrics)) {
            v.push((
                l.as_fd(),
                Source::Listener(Kind::Metrics),
                PollFlags::POLLIN,
            ));
        }
        if let (Some((l, _, _)), true) = (&self.control, awake(Kind::Control)) {
            v.push((
                l.as_fd(),
                Source::Listener(Kind::Control),
                PollFlags::POLLIN,
            ));
        }
        v.extend(self.clients.iter().map(|c| {
            let wants = match c.stage {
                Stage::Asking(_) | Stage::Draining(_) => PollFlags::POLLIN,
                Stage::Answering(..) => PollFlags::POLLOUT,
            };
            (c.stream.as_fd(), Source::Client(c.id), wants)
        }));
        v
    }

    /// `source` is ready: accept new clients, read a client's request and,
    /// once it is whole, answer it with `respond(kind, request)`, or write
    /// more of an answer.
    pub fn ready(&mut self, source: Source, respond: impl FnOnce(Kind, &str) -> Vec<u8>) {
        match source {
            Source::Listener(kind) => self.accept(kind),
            Source::Client(id) => self.serve(id, respond),
        }
    }

    fn accept(&mut self, kind: Kind) {
        loop {
            let stream = match (kind, &self.metrics, &self.control) {
                (Kind::Metrics, Some(l), _) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                (Kind::Control, _, Some((l, _, _))) => l.accept().map(|(s, _)| Stream::Unix(s)),
                _ => return,
            };
            let stream = match stream {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return, // all taken
                Err(_) => {
                    // EMFILE, ENFILE, ENOBUFS: the connection stays queued
                    // and the listener readable; rest rather than spin.
                    self.resting.retain(|(k, _)| *k != kind);
                    self.resting.push((kind, Instant::now() + ACCEPT_REST));
                    return;
                }
            };
            let nonblocking = match &stream {
                Stream::Tcp(s) => s.set_nonblocking(true),
                Stream::Unix(s) => s.set_nonblocking(true),
            };
            if nonblocking.is_err() {
                continue;
            }
            let mine = self.clients.iter().filter(|c| c.kind == kind);
            if mine.clone().count() >= limit(kind) {
                // The oldest that is not being answered (still asking, or
                // answered and draining) goes first: one being answered (a
                // big scrape) is cut only when every client is.
                let oldest = mine
                    .min_by_key(|c| (matches!(c.stage, Stage::Answering(..)), c.since))
                    .map(|c| c.id);
                self.clients.retain(|c| Some(c.id) != oldest);
            }
            self.next_id = self.next_id.wrapping_add(1);
            self.clients.push(Client {
                id: self.next_id,
                kind,
                stream,
                stage: Stage::Asking(Vec::new()),
                since: Instant::now(),
            });
        }
    }

    fn serve(&mut self, id: u32, respond: impl FnOnce(Kind, &str) -> Vec<u8>) {
        let Some(i) = self.clients.iter().position(|c| c.id == id) else {
            return;
        };
        let c = &mut self.clients[i];
        let done = match &mut c.stage {
            Stage::Answering(..) => c.flush(),
            Stage::Draining(_) => c.drain(),
            Stage::Asking(request) => {
                let mut buf = [0u8; 2048];
                match c.stream.read(&mut buf) {
                    Ok(0) => true, // closed before a whole request
                    Ok(n) => {
                        request.extend_from_slice(&buf[..n]);
                        if let Some(req) = complete(c.kind, request) {
                            c.stage = Stage::Answering(respond(c.kind, &req), 0);
                            c.flush()
                        } else {
                            request.len() > MAX_REQUEST
                        }
                    }
                    Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
                }
            }
        };
        if done {
            self.clients.swap_remove(i);
        }
    }

    /// Cuts clients that have not taken their answer in time.
    pub fn expire(&mut self) {
        self.clients.retain(|c| c.since.elapsed() < CLIENT_TIMEOUT);
    }
}

impl Drop for Server {
    /// Removes the control socket, unless another udplb (`--force`) has
    /// taken its path over meanwhile.
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if let Some((_, path, ino)) = &self.control {
            if std::fs::metadata(path).is_ok_and(|m| m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_end_where_their_protocol_says() {
        assert_eq!(complete(Kind::Control, b"status"), None);
        assert_eq!(complete(Kind::Control, b"status\n"), Some("status".into()));
        let http = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(complete(Kind::Metrics, &http[..20]), None);
        assert_eq!(
            complete(Kind::Metrics, http).as_deref(),
            Some("GET /metrics HTTP/1.1\r\nHost: x")
        );
    }

    #[test]
    fn a_slow_client_cannot_hold_the_server_and_a_whole_request_is_answered() {
        let dir = std::env::temp_dir().join(format!("udplb-srv-{}", std::process::id()));
        let path = dir.join("t.sock");
        let mut srv = Server::default();
        srv.listen_control(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second server takes the path over (as `--force` does) and
        // removes it when it goes.
        let mut second = Server::default();
        second.listen_control(&path).unwrap();
        drop(second);
        assert!(!path.exists());
        srv.listen_control(&path).unwrap();

        let mut slow = UnixStream::connect(&path).unwrap();
        slow.write_all(b"sta").unwrap();
        let mut fast = UnixStream::connect(&path).unwrap();
        fast.write_all(b"status\n").unwrap();
        srv.ready(Source::Listener(Kind::Control), |_, _| unreachable!());
        assert_eq!(srv.clients.len(), 2);
        let ids: Vec<u32> = srv.clients.iter().map(|c| c.id).collect();
        for id in ids {
            srv.ready(Source::Client(id), |k, r| {
                assert_eq!((k, r), (Kind::Control, "status"));
                b"answer\n".to_vec()
            });
        }
        let mut got = String::new();
        fast.read_to_string(&mut got).unwrap();
        assert_eq!(got, "answer\n");
        // Answered, it is kept until it closes its side (draining).
        assert_eq!(srv.clients.len(), 2);
        drop(fast);
        serve_ready(&mut srv, &|| unreachable!());
        assert_eq!(srv.clients.len(), 1, "the slow one waits");
        srv.clients[0].since -= CLIENT_TIMEOUT;
        srv.expire();
        assert!(srv.clients.is_empty());
        drop(srv);
        assert!(!path.exists(), "the socket is removed with the server");
        let _ = std::fs::remove_dir(&dir);
        let _ = slow.write_all(b"tus\n");
    }

    fn metrics_server() -> (Server, SocketAddr) {
        let mut srv = Server::default();
        srv.listen_metrics("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = srv.metrics.as_ref().unwrap().local_addr().unwrap();
        (srv, addr)
    }

    /// Serves every client that is ready, as the loop would, once.
    fn serve_ready(srv: &mut Server, respond: &dyn Fn() -> Vec<u8>) {
        let ready: Vec<Source> = {
            let sources = srv.sources();
            let mut fds: Vec<nix::poll::PollFd<'_>> = sources
                .iter()
                .map(|(fd, _, f)| nix::poll::PollFd::new(*fd, *f))
                .collect();
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u8)).unwrap();
            (fds.iter().zip(&sources))
                .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, (_, s, _))| *s)
                .collect()
        };
        for s in ready {
            srv.ready(s, |_, _| respond());
        }
    }

    #[test]
    fn a_client_that_does_not_read_its_answer_holds_nothing() {
        let (mut srv, addr) = metrics_server();
        let big = vec![b'x'; 8 << 20]; // more than any socket buffer takes
        let mut stuck = TcpStream::connect(addr).unwrap();
        stuck.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let start = Instant::now();
        for _ in 0..5 {
            serve_ready(&mut srv, &|| big.clone());
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(srv.clients.len(), 1, "still answering, not waited for");
        assert!(matches!(srv.clients[0].stage, Stage::Answering(_, n) if n < big.len()));
        // Another client is served meanwhile, whole.
        let mut other = TcpStream::connect(addr).unwrap();
        other.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        for _ in 0..5 {
            serve_ready(&mut srv, &|| b"small".to_vec());
        }
        let mut got = String::new();
        other.read_to_string(&mut got).unwrap();
        assert_eq!(got, "small");
        drop(other);
        serve_ready(&mut srv, &|| unreachable!());
        assert_eq!(srv.clients.len(), 1);
        // Its deadline cuts the one that does not read.
        srv.clients[0].since -= CLIENT_TIMEOUT;
        srv.expire();
        assert!(srv.clients.is_empty());
        drop(stuck);
    }

    #[test]
    fn metrics_clients_cannot_take_the_control_sockets_slots() {
        let (mut srv, addr) = metrics_server();
        let dir = std::env::temp_dir().join(format!("udplb-slots-{}", std::process::id()));
        let path = dir.join("c.sock");
        srv.listen_control(&path).unwrap();
        // Silent metrics clients, more than the limit: the oldest are cut
        // for the newest, the number open never passes the limit.
        let silent: Vec<TcpStream> = (0..MAX_METRICS_CLIENTS + 10)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        for _ in 0..3 {
            serve_ready(&mut srv, &|| unreachable!());
        }
        let metrics = srv.clients.iter().filter(|c| c.kind == Kind::Metrics);
        assert_eq!(metrics.count(), MAX_METRICS_CLIENTS);
        let mut root = UnixStream::connect(&path).unwrap();
        root.write_all(b"status\n").unwrap();
        for _ in 0..3 {
            serve_ready(&mut srv, &|| b"answer\n".to_vec());
        }
        let mut got = String::new();
        root.read_to_string(&mut got).unwrap();
        assert_eq!(got, "answer\n");
        // A metrics client that asks at once is served although all slots
        // were held: the oldest silent one made room.
        let mut fresh = TcpStream::connect(addr).unwrap();
        fresh.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        for _ in 0..3 {
            serve_ready(&mut srv, &|| b"metrics".to_vec());
        }
        got.clear();
        fresh.read_to_string(&mut got).unwrap();
        assert_eq!(got, "metrics");
        drop(silent);
        drop(srv);
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn bytes_after_the_request_do_not_cut_the_answer_short() {
        let (mut srv, addr) = metrics_server();
        let answer = vec![b'a'; 200_000];
        let mut c = TcpStream::connect(addr).unwrap();
        let mut request = b"GET /metrics HTTP/1.1\r\n\r\n".to_vec();
        request.extend(vec![b'z'; 3000]); // more than the first read takes
        c.write_all(&request).unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            c.read_to_end(&mut got).map(|_| got.len())
        });
        let start = Instant::now();
        while !srv.clients.is_empty() || start.elapsed() < Duration::from_millis(200) {
            serve_ready(&mut srv, &|| answer.clone());
            assert!(start.elapsed() < Duration::from_secs(5), "never finished");
        }
        assert_eq!(reader.join().unwrap().unwrap(), 200_000);
    }
}
