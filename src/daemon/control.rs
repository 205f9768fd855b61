//! The control socket: where it lives, what it says, and the client side of
//! `udplb status` and `udplb reload`.
//!
//! One socket per running balancer, `/run/udplb/IFACES@NETNS.sock` (IFACES
//! as given on its command line or in its file, e.g. `eth0` or `eth0,eth1`;
//! NETNS the inode of its network namespace, as `ip netns identify` and
//! `ls -l /proc/PID/ns/net` show it), mode 0600 in a 0700 directory: root
//! only. Balancers on the `lo` of two namespaces do not collide, and
//! `udplb status` run in a namespace finds the balancer of that namespace.
//! Where that path would not fit a socket address (`sun_path`: 107 bytes
//! and the NUL; many long interface names), IFACES is replaced by a hash of
//! it, 16 hex digits: `udplb status IFACES` computes the same name, and
//! the interfaces are in the status answer.
//!
//! Protocol: one line in (`status` or `reload`), one JSON document out, then
//! the connection closes.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::status::Status;

pub const DIR: &str = "/run/udplb";

/// The answer to a control request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    /// `status`: the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// `reload`: one line per change (empty: the file changed nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<String>>,
    /// Why not, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The request was refused for input the user must fix (a bad file):
    /// `udplb reload` exits 2 rather than 1.
    #[serde(default)]
    pub refused: bool,
}

impl Answer {
    pub fn error(msg: impl Into<String>) -> Answer {
        Answer {
            ok: false,
            status: None,
            changes: None,
            error: Some(msg.into()),
            refused: true,
        }
    }

    pub fn changes(changes: Vec<String>) -> Answer {
        Answer {
            ok: true,
            status: None,
            changes: Some(changes),
            error: None,
            refused: false,
        }
    }

    pub fn status(status: Status) -> Answer {
        Answer {
            status: Some(status),
            changes: None,
            ..Answer::changes(Vec::new())
        }
    }

    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        v.push(b'\n');
        v
    }
}

/// The inode of this process's network namespace (0 without /proc).
fn own_netns() -> u64 {
    std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino())
}

/// True if a udplb listens on `path`.
pub fn answers(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// The socket of the balancer on `ifaces` in this network namespace.
pub fn socket_path(ifaces: &str) -> PathBuf {
    path_in(ifaces, own_netns())
}

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes
/// with the terminating NUL).
const SUN_PATH_MAX: usize = 107;

/// [`socket_path`] in network namespace `netns`: the readable name where
/// it fits, else one named by a hash of `ifaces`.
fn path_in(ifaces: &str, netns: u64) -> PathBuf {
    let plain = Path::new(DIR).join(format!("{ifaces}@{netns}.sock"));
    if plain.as_os_str().len() <= SUN_PATH_MAX {
        return plain;
    }
    Path::new(DIR).join(format!("{:016x}@{netns}.sock", fnv1a(ifaces.as_bytes())))
}

/// FNV-1a, 64 bits: the same in every build and release (the client and
/// the balancer may be different binaries), unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `udplb status|reload [IFACES]`: the socket to talk to. Without IFACES,
/// the one balancer of this namespace; more than one is a usage error.
fn find(ifaces: Option<&str>, request: &str) -> Result<PathBuf> {
    if let Some(i) = ifaces {
        return Ok(socket_path(i));
    }
    let suffix = format!("@{}.sock", own_netns());
    let dir = match std::fs::read_dir(DIR) {
        // The 0700 directory hides from other users whether a balancer runs.
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Err(needs_root(
                request,
                &format!("the control sockets under {DIR} are"),
            ))
        }
        dir => dir,
    };
    let mut found: Vec<PathBuf> = dir
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    // A socket nobody listens on was left by a udplb that
                    // was killed (SIGKILL leaves its file behind); one this
                    // user may not open is a balancer all the same.
                    let refused = matches!(UnixStream::connect(p),
                        Err(e) if e.kind() != ErrorKind::PermissionDenied);
                    n.ends_with(&suffix) && !refused
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    match found.len() {
        0 => Err(anyhow!(NotRunning(format!(
            "no udplb is running in this network namespace (no control socket under {DIR} answers)"
        )))),
        1 => Ok(found.remove(0)),
        _ => {
            let names: Vec<String> = found
                .iter()
                .filter_map(|p| {
                    p.file_stem()?
                        .to_str()
                        .map(|s| s.split('@').next().unwrap_or(s).to_string())
                })
                .collect();
            Err(crate::usage!(
                "several udplb instances are running ({}): name one, e.g. `udplb status {}`",
                names.join(", "),
                names[0]
            )
            .into())
        }
    }
}

/// No balancer to talk to: `udplb status` exits 1 with this.
#[derive(Debug)]
pub struct NotRunning(pub String);

impl std::fmt::Display for NotRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotRunning {}

/// `udplb status` (`reload`) run by a user the control socket refuses:
/// a usage error (exit 2) that names the fix.
fn needs_root(request: &str, what: &str) -> anyhow::Error {
    crate::usage!("udplb {request} needs root: {what} root's (sudo udplb {request})").into()
}

/// Sends `request` to the balancer on `ifaces` and returns its answer.
pub fn ask(ifaces: Option<&str>, request: &str, timeout: Duration) -> Result<Answer> {
    ask_at(&find(ifaces, request)?, request, timeout)
}

/// [`ask`] the balancer whose control socket is `path`.
fn ask_at(path: &Path, request: &str, timeout: Duration) -> Result<Answer> {
    let mut s = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            let what = format!("the control socket {} is", path.display());
            return Err(needs_root(request, &what));
        }
        Err(e) => {
            return Err(anyhow!(NotRunning(format!(
                "no udplb answers on {} ({e})",
                path.display()
            ))))
        }
    };
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(format!("{request}\n").as_bytes())?;
    let mut text = String::new();
    match s.read_to_string(&mut text) {
        Ok(_) => {}
        // The read timeout: a udplb that holds its socket open without
        // answering (busy, or stopped under a debugger).
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            bail!(
                "the udplb on {} did not answer within {timeout:?}",
                path.display()
            )
        }
        Err(e) => {
            return Err(e).with_context(|| format!("reading the answer from {}", path.display()))
        }
    }
    serde_json::from_str(&text).with_context(|| format!("a garbled answer from {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A balancer that holds its socket without answering (busy, or
    /// stopped under a debugger) is named with the wait, not reported as
    /// EAGAIN ("Resource temporarily unavailable").
    #[test]
    fn a_silent_balancer_is_named_with_the_wait() {
        let dir = std::env::temp_dir().join(format!("udplb-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("silent.sock");
        let _ = std::fs::remove_file(&path);
        // Listening, never accepting: the connect succeeds (the backlog),
        // no answer ever comes.
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = ask_at(&path, "status", Duration::from_millis(200)).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            format!(
                "the udplb on {} did not answer within 200ms",
                path.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn answers_round_trip_as_one_json_line() {
        let a = Answer::changes(vec!["frontend *:53: backends 1 -> 2".into()]);
        let line = a.to_line();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(serde_json::from_slice::<Answer>(&line).unwrap(), a);
        let e = Answer::error("lb.toml:3: backends: bad");
        assert!(String::from_utf8(e.to_line())
            .unwrap()
            .contains("\"ok\":false"));
    }

    #[test]
    fn socket_names_carry_the_interfaces() {
        let p = socket_path("eth0,eth1");
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(p.starts_with(DIR));
        assert!(name.starts_with("eth0,eth1"), "{name}");
        assert!(name.ends_with(".sock"), "{name}");
    }

    #[test]
    fn socket_paths_fit_sun_path_whatever_the_interfaces() {
        let netns = 4026531840;
        let plain = path_in("eth0,eth1", netns);
        assert_eq!(plain, Path::new("/run/udplb/eth0,eth1@4026531840.sock"));
        // Six interfaces with 15-byte names: 95 bytes of IFACES.
        let six: Vec<String> = (0..6).map(|i| format!("ul-abcdefghij-{i}")).collect();
        let six = six.join(",");
        let p = path_in(&six, netns);
        let len = p.as_os_str().len();
        assert!(len <= SUN_PATH_MAX, "{} is {len} bytes", p.display());
        assert!(p.starts_with(DIR), "{}", p.display());
        // The same interfaces give the same name (the client finds it), and
        // other ones another.
        assert_eq!(path_in(&six, netns), p);
        assert_ne!(path_in(&six.replace("-5", "-6"), netns), p);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        // The longest readable name still fits as it is.
        let fits = "x".repeat(SUN_PATH_MAX - "/run/udplb/@4026531840.sock".len());
        assert_eq!(
            path_in(&fits, netns).as_os_str().len(),
            SUN_PATH_MAX,
            "readable up to the limit"
        );
        assert!(path_in(&format!("{fits}x"), netns)
            .to_str()
            .unwrap()
            .ends_with("@4026531840.sock"));
        assert_eq!(path_in(&format!("{fits}x"), netns).as_os_str().len(), 43);
    }
}
