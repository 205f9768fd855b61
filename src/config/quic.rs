//! QUIC frontends (`--sched quic`): the backends' QUIC-LB server IDs and
//! the connection ID layout, and the rules that tie them together.

use std::collections::HashMap;
use std::fmt;

use super::{BackendConfig, FrontendConfig, Listen, Sched};

/// A QUIC-LB server ID: 1 to 15 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId {
    len: u8,
    bytes: [u8; crate::abi::UDPLB_QUIC_MAX_SERVER_ID_LEN as usize],
}

impl ServerId {
    /// From hex: an even number of digits, 1 to 15 bytes.
    pub fn parse(hex: &str) -> Option<ServerId> {
        let hex = hex.trim();
        let n = hex.len() / 2;
        if hex.len() % 2 != 0 || !(1..=QUIC_MAX_SID).contains(&n) {
            return None;
        }
        let mut id = ServerId {
            len: n as u8,
            bytes: [0; QUIC_MAX_SID],
        };
        for (i, b) in id.bytes[..n].iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(id)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_bytes()
            .iter()
            .try_for_each(|b| write!(f, "{b:02x}"))
    }
}

pub(super) const QUIC_MAX_SID: usize = crate::abi::UDPLB_QUIC_MAX_SERVER_ID_LEN as usize;
const QUIC_MIN_NONCE: u8 = crate::abi::UDPLB_QUIC_MIN_NONCE_LEN as u8;
const QUIC_MAX_CID: u8 = crate::abi::UDPLB_QUIC_MAX_CID_LEN as u8;

/// A quic frontend's QUIC-LB settings as given (`[frontend.quic]`,
/// `--quic-cid-len`, `--quic-config-id`); [`FrontendConfig::quic`] resolves
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuicSettings {
    /// Server ID bytes; default: the length of the backends' server IDs.
    pub server_id_len: Option<u8>,
    /// The connection ID length of short headers (which do not carry it);
    /// default max(8, server_id_len + 5).
    pub cid_len: Option<u8>,
    /// The config rotation codepoint the servers use (0-6).
    pub config_id: u8,
}

/// A quic frontend's resolved QUIC-LB parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicParams {
    pub server_id_len: u8,
    pub cid_len: u8,
    pub config_id: u8,
}

impl FrontendConfig {
    /// The QUIC-LB parameters of a quic frontend (`None` for the others),
    /// once [`Config::check`](super::Config::check) has accepted it.
    pub fn quic(&self) -> Option<QuicParams> {
        if self.sched != Sched::Quic {
            return None;
        }
        let s = self.quic_settings;
        let server_id_len = s.server_id_len.unwrap_or_else(|| {
            (self.backends.iter())
                .find_map(|b| b.server_id.map(|i| i.len))
                .unwrap_or(1)
        });
        Some(QuicParams {
            server_id_len,
            cid_len: s
                .cid_len
                .unwrap_or((1 + server_id_len + QUIC_MIN_NONCE).max(8)),
            config_id: s.config_id,
        })
    }

    /// The QUIC-LB rules: on a quic frontend every backend has a server ID
    /// of the configured length, each once, and the CID length leaves room
    /// for the first octet, the server ID and a 4-byte nonce; elsewhere no
    /// backend has one. An error names the backend (its index) if it is
    /// about one.
    pub fn check_quic(&self) -> Result<(), (Option<usize>, String)> {
        let Some(q) = self.quic() else {
            return no_server_ids(self);
        };
        q.check(self.listen).map_err(|e| (None, e))?;
        server_ids(self, q)
    }
}

/// A frontend that is not quic: no backend has a server ID.
fn no_server_ids(fe: &FrontendConfig) -> Result<(), (Option<usize>, String)> {
    let listen = fe.listen;
    match fe.backends.iter().position(|b| b.server_id.is_some()) {
        Some(i) => Err((
            Some(i),
            format!(
                "frontend {listen}: backend {} has a server ID, which only a quic \
                 frontend uses (--sched quic, or sched = \"quic\")",
                fe.backends[i]
            ),
        )),
        None => Ok(()),
    }
}

impl QuicParams {
    /// The lengths and the codepoint are in range.
    fn check(&self, listen: Listen) -> Result<(), String> {
        let q = self;
        if !(1..=QUIC_MAX_SID as u8).contains(&q.server_id_len) {
            return Err(format!(
                "frontend {listen}: a server ID length of {} bytes is out of range: 1 to \
                 {QUIC_MAX_SID}",
                q.server_id_len
            ));
        }
        let least = 1 + q.server_id_len + QUIC_MIN_NONCE;
        if !(least..=QUIC_MAX_CID).contains(&q.cid_len) {
            return Err(format!(
                "frontend {listen}: a connection ID of {} bytes cannot hold the first \
                 octet, a {}-byte server ID and a {QUIC_MIN_NONCE}-byte nonce: use {least} \
                 to {QUIC_MAX_CID}",
                q.cid_len, q.server_id_len
            ));
        }
        if q.config_id >= crate::abi::UDPLB_QUIC_CR_UNROUTABLE as u8 {
            return Err(format!(
                "frontend {listen}: config ID {} is out of range: 0 to 6 (7 is the \
                 unroutable codepoint)",
                q.config_id
            ));
        }
        Ok(())
    }
}

/// A quic frontend: every backend has a server ID of `q`'s length, each
/// once. The error names the backend's index.
fn server_ids(fe: &FrontendConfig, q: QuicParams) -> Result<(), (Option<usize>, String)> {
    let listen = fe.listen;
    let mut seen: HashMap<ServerId, &BackendConfig> = HashMap::new();
    for (i, b) in fe.backends.iter().enumerate() {
        let Some(id) = b.server_id else {
            return Err((
                Some(i),
                format!(
                    "frontend {listen}: backend {b} needs a server ID on a quic frontend: \
                     write {}#HEX",
                    b.name()
                ),
            ));
        };
        if id.len != q.server_id_len {
            return Err((
                Some(i),
                format!(
                    "frontend {listen}: backend {b}: server ID {id} is {} bytes long, not \
                     {} like the others",
                    id.len, q.server_id_len
                ),
            ));
        }
        if let Some(other) = seen.insert(id, b) {
            return Err((
                Some(i),
                format!(
                    "frontend {listen}: backends {} and {} have the same server ID {id}",
                    other.name(),
                    b.name()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Defaults};

    #[test]
    fn quic_frontends() {
        let quic = Defaults {
            sched: Sched::Quic,
            ..Defaults::default()
        };
        let c = Config::from_specs_with(&["443=9876#0a01,9877#0A02@2,9878@3#0a03"], quic).unwrap();
        let fe = &c.frontends[0];
        let ids: Vec<String> = fe.backends.iter().map(|b| b.to_string()).collect();
        assert_eq!(ids, ["9876#0a01", "9877#0a02@2", "9878#0a03@3"]);
        assert_eq!(
            fe.quic(),
            Some(QuicParams {
                server_id_len: 2,
                cid_len: 8,
                config_id: 0
            })
        );
        let long = Config::from_specs_with(&["443=1#00112233445566"], quic).unwrap();
        assert_eq!(long.frontends[0].quic().unwrap().cid_len, 12, "1 + 7 + 4");
        let e = |spec: &str, d: Defaults| Config::from_specs_with(&[spec], d).unwrap_err().0;
        for (spec, why) in [
            ("443=9876#0a01,9877", "backend 9877 needs a server ID"),
            (
                "443=9876#0a01,9877#0a01",
                "backends 9876 and 9877 have the same server ID 0a01",
            ),
            ("443=9876#0a01,9877#0a0102", "is 3 bytes long, not 2"),
            (
                "443=9876#0a1",
                "server ID '0a1' is not 1 to 15 bytes in hex",
            ),
            ("443=9876#zz", "server ID 'zz' is not"),
            ("443=9876#", "server ID '' is not"),
            (
                "443=9876#00112233445566778899aabbccddeeff",
                "is not 1 to 15 bytes",
            ),
        ] {
            let m = e(spec, quic);
            assert!(m.contains(why), "{spec}: {m}");
        }
        let m = e("443=9876#0a01", Defaults::default());
        assert!(m.contains("only a quic frontend uses"), "{m}");
        let short = Defaults {
            quic: QuicSettings {
                cid_len: Some(6),
                ..QuicSettings::default()
            },
            ..quic
        };
        assert!(e("443=9876#0a01", short).contains("use 7 to 20"));
        let cr7 = Defaults {
            quic: QuicSettings {
                config_id: 7,
                ..QuicSettings::default()
            },
            ..quic
        };
        assert!(e("443=9876#0a01", cr7).contains("config ID 7 is out of range"));
    }
}
