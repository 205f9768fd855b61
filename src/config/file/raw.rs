//! The file as serde reads it: every key with its position (`Spanned`), no
//! key unknown, nothing checked yet.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A value written as a number or a string: a port (`9876` or `"9876@2"`),
/// a listen address, a duration (`"500ms"`, or a number where seconds are
/// meant).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Text {
    Number(i64),
    Str(String),
}

impl Text {
    pub(super) fn as_string(&self) -> String {
        match self {
            Text::Number(n) => n.to_string(),
            Text::Str(s) => s.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) interface: Spanned<String>,
    pub(super) sched: Option<Spanned<String>>,
    pub(super) table_size: Option<Spanned<i64>>,
    pub(super) flow_timeout: Option<Spanned<i64>>,
    pub(super) hash: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) tunnel_source: Option<Spanned<Vec<String>>>,
    pub(super) metrics: Option<Spanned<String>>,
    pub(super) announce_interface: Option<Spanned<String>>,
    pub(super) announce_grace: Option<Spanned<Text>>,
    pub(super) announce_lease: Option<Spanned<Text>>,
    #[serde(default)]
    pub(super) frontend: Vec<Spanned<RawFrontend>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFrontend {
    pub(super) listen: Spanned<Text>,
    pub(super) backends: Spanned<Vec<Spanned<Text>>>,
    pub(super) sched: Option<Spanned<String>>,
    pub(super) table_size: Option<Spanned<i64>>,
    pub(super) flow_timeout: Option<Spanned<i64>>,
    pub(super) hash: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) tunnel_source: Option<Spanned<Vec<String>>>,
    pub(super) health: Option<Spanned<RawCheck>>,
    pub(super) announce: Option<Spanned<bool>>,
    pub(super) quic: Option<Spanned<RawQuic>>,
}

/// `[frontend.quic]`: QUIC-LB settings of a quic frontend.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuic {
    pub(super) server_id_len: Option<Spanned<i64>>,
    pub(super) cid_len: Option<Spanned<i64>>,
    pub(super) config_id: Option<Spanned<i64>>,
}

/// `[frontend.health]`: the frontend's check, what to do when all are down,
/// and per-backend overrides (`[frontend.health.backend."BACKEND"]`, BACKEND
/// as in `backends` without server ID and weight) with the check keys only.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) on_all_down: Option<Spanned<String>>,
    pub(super) sockets: Option<Spanned<bool>>,
    pub(super) backend: Option<BTreeMap<String, Spanned<RawCheck>>>,
    pub(super) check: Option<Spanned<String>>,
    pub(super) interval: Option<Spanned<Text>>,
    pub(super) timeout: Option<Spanned<Text>>,
    pub(super) rise: Option<Spanned<i64>>,
    pub(super) fall: Option<Spanned<i64>>,
    /// udp
    pub(super) payload: Option<Spanned<String>>,
    pub(super) expect: Option<Spanned<String>>,
    /// dns
    pub(super) name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    pub(super) qtype: Option<Spanned<String>>,
    pub(super) rcode: Option<Spanned<String>>,
    /// tcp, http
    pub(super) port: Option<Spanned<i64>>,
    pub(super) path: Option<Spanned<String>>,
}
