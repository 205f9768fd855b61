//! The daemon's two listeners, served from its event loop: the metrics
//! endpoint (HTTP on a TCP address the operator names) and the control
//! socket (a Unix socket under /run/udplb, root only). Each client sends one
//! request and gets one answer, then the connection closes.
//!
//! Nothing here can hold the loop: listeners and clients are non-blocking,
//! a request is read as it arrives, a client that has not finished its
//! request after [`CLIENT_TIMEOUT`] is dropped, at most [`MAX_CLIENTS`] are
//! open at once, and an answer is written with a short timeout. (The
//! datapath never waits for any of it: it runs in the kernel.)

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

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

pub const MAX_CLIENTS: usize = 16;
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request read: an HTTP request line and headers, or one control
/// line.
const MAX_REQUEST: usize = 8192;
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

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

    /// Writes the whole answer, blocking at most WRITE_TIMEOUT.
    fn answer(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_nonblocking(false)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                s.write_all(bytes)
            }
            Stream::Unix(s) => {
                s.set_nonblocking(false)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                s.write_all(bytes)
            }
        }
    }
}

struct Client {
    id: u32,
    kind: Kind,
    stream: Stream,
    request: Vec<u8>,
    since: Instant,
}

#[derive(Default)]
pub struct Server {
    metrics: Option<TcpListener>,
    /// The control socket, its path and the inode it was bound as.
    control: Option<(UnixListener, PathBuf, u64)>,
    clients: Vec<Client>,
    next_id: u32,
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

    /// Every descriptor the loop should watch now.
    pub fn sources(&self) -> Vec<(BorrowedFd<'_>, Source)> {
        let mut v = Vec::new();
        if let Some(l) = &self.metrics {
            v.push((l.as_fd(), Source::Listener(Kind::Metrics)));
        }
        if let Some((l, _, _)) = &self.control {
            v.push((l.as_fd(), Source::Listener(Kind::Control)));
        }
        v.extend(
            self.clients
                .iter()
                .map(|c| (c.stream.as_fd(), Source::Client(c.id))),
        );
        v
    }

    /// `source` is readable: accept new clients, or read a client's request
    /// and, once it is whole, answer it with `respond(kind, request)`.
    pub fn ready(&mut self, source: Source, respond: impl FnOnce(Kind, &str) -> Vec<u8>) {
        match source {
            Source::Listener(kind) => self.accept(kind),
            Source::Client(id) => self.read(id, respond),
        }
    }

    fn accept(&mut self, kind: Kind) {
        loop {
            let stream = match (kind, &self.metrics, &self.control) {
                (Kind::Metrics, Some(l), _) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                (Kind::Control, _, Some((l, _, _))) => l.accept().map(|(s, _)| Stream::Unix(s)),
                _ => return,
            };
            let Ok(stream) = stream else { return }; // WouldBlock: all taken
            if self.clients.len() >= MAX_CLIENTS {
                continue; // dropped: closing it is the answer
            }
            let nonblocking = match &stream {
                Stream::Tcp(s) => s.set_nonblocking(true),
                Stream::Unix(s) => s.set_nonblocking(true),
            };
            if nonblocking.is_err() {
                continue;
            }
            self.next_id = self.next_id.wrapping_add(1);
            self.clients.push(Client {
                id: self.next_id,
                kind,
                stream,
                request: Vec::new(),
                since: Instant::now(),
            });
        }
    }

    fn read(&mut self, id: u32, respond: impl FnOnce(Kind, &str) -> Vec<u8>) {
        let Some(i) = self.clients.iter().position(|c| c.id == id) else {
            return;
        };
        let c = &mut self.clients[i];
        let mut buf = [0u8; 2048];
        let done = match c.stream.read(&mut buf) {
            Ok(0) => true, // closed before a whole request
            Ok(n) => {
                c.request.extend_from_slice(&buf[..n]);
                if let Some(req) = complete(c.kind, &c.request) {
                    let _ = c.stream.answer(&respond(c.kind, &req));
                    true
                } else {
                    c.request.len() > MAX_REQUEST
                }
            }
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
        };
        if done {
            self.clients.swap_remove(i);
        }
    }

    /// Drops clients that have not sent a whole request in time.
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
        assert_eq!(srv.clients.len(), 1, "the slow one waits");
        srv.clients[0].since -= CLIENT_TIMEOUT;
        srv.expire();
        assert!(srv.clients.is_empty());
        drop(srv);
        assert!(!path.exists(), "the socket is removed with the server");
        let _ = std::fs::remove_dir(&dir);
        let _ = slow.write_all(b"tus\n");
    }
}
