//! The TOML configuration file (`udplb --config FILE`), equivalent to the
//! command line:
//!
//! ```toml
//! interface = "lo"
//! sched = "maglev"            # default for every frontend: "rr", "maglev" or "quic"
//! table_size = 65537          # Maglev table size (a prime)
//! flow_timeout = 60           # Maglev flow table idle timeout, seconds (0: none)
//!
//! [[frontend]]
//! listen = "9875"             # PORT, "IPv4:PORT" or "[IPv6]:PORT"
//! backends = ["9876", "9877@2", 9878]
//! sched = "rr"                # optional, per frontend
//! flow_timeout = 300          # optional, per frontend
//!
//! [frontend.health]           # optional; see README "Health checks"
//! check = "dns"               # none, udp, dns, tcp or http
//! interval = "1s"             # timeout = "500ms", rise = 2, fall = 3
//! on_all_down = "open"        # or "drop"
//! sockets = true              # local backends: down with no socket bound
//! [frontend.health.backend."9877"]
//! check = "tcp"               # a backend's own check (same keys)
//! port = 8080
//!
//! [[frontend]]
//! listen = "443"
//! sched = "quic"              # QUIC-LB: route by the server ID in the CID
//! backends = ["4431#0a01", "4432#0a02@2"]   # PORT#SERVER_ID[@WEIGHT]
//! [frontend.quic]             # optional; see README "QUIC"
//! server_id_len = 2           # default: the length of the server IDs
//! cid_len = 8                 # short header CID length; default max(8, server_id_len + 5)
//! config_id = 0               # config rotation codepoint, 0-6
//! ```
//!
//! Announcing frontend addresses (README "Several balancers behind ECMP"): top-level
//! `announce_interface = "udplb0"`, `announce_grace = "2s"`,
//! `announce_lease = "10s"`; `announce = false` in a frontend leaves it out.
//!
//! Every error names the file, the line and the field. Pure: no kernel access.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::config::announce::{self, Announce};
use crate::config::health::{self, parse_duration, Check, CheckKind, FrontendHealth, OnAllDown};
use crate::config::{
    check_interface_name, parse_backend, parse_flow_timeout, parse_listen, parse_table_size,
    Config, Defaults, FrontendConfig, QuicSettings, Sched,
};
use crate::error::UsageError;

/// A parsed, validated configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    pub interface: String,
    pub config: Config,
    /// `metrics = "ADDR:PORT"`: where to serve /metrics.
    pub metrics: Option<std::net::SocketAddr>,
    /// `announce_interface` and friends; off when absent.
    pub announce: Announce,
}

/// A port may be written as a number or a string (`9876` or `"9876@2"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    Number(i64),
    Str(String),
}

impl Text {
    fn as_string(&self) -> String {
        match self {
            Text::Number(n) => n.to_string(),
            Text::Str(s) => s.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    interface: Spanned<String>,
    sched: Option<Spanned<String>>,
    table_size: Option<Spanned<i64>>,
    flow_timeout: Option<Spanned<i64>>,
    metrics: Option<Spanned<String>>,
    announce_interface: Option<Spanned<String>>,
    announce_grace: Option<Spanned<Text>>,
    announce_lease: Option<Spanned<Text>>,
    #[serde(default)]
    frontend: Vec<Spanned<RawFrontend>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrontend {
    listen: Spanned<Text>,
    backends: Spanned<Vec<Spanned<Text>>>,
    sched: Option<Spanned<String>>,
    table_size: Option<Spanned<i64>>,
    flow_timeout: Option<Spanned<i64>>,
    health: Option<Spanned<RawCheck>>,
    announce: Option<Spanned<bool>>,
    quic: Option<Spanned<RawQuic>>,
}

/// `[frontend.quic]`: QUIC-LB settings of a quic frontend.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuic {
    server_id_len: Option<Spanned<i64>>,
    cid_len: Option<Spanned<i64>>,
    config_id: Option<Spanned<i64>>,
}

/// `[frontend.health]`: the frontend's check, what to do when all are down,
/// and per-backend overrides (`[frontend.health.backend."PORT"]`) with the
/// check keys only.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    on_all_down: Option<Spanned<String>>,
    sockets: Option<Spanned<bool>>,
    backend: Option<std::collections::BTreeMap<String, Spanned<RawCheck>>>,
    check: Option<Spanned<String>>,
    interval: Option<Spanned<Text>>,
    timeout: Option<Spanned<Text>>,
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    /// udp
    payload: Option<Spanned<String>>,
    expect: Option<Spanned<String>>,
    /// dns
    name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    qtype: Option<Spanned<String>>,
    rcode: Option<Spanned<String>>,
    /// tcp, http
    port: Option<Spanned<i64>>,
    path: Option<Spanned<String>>,
}

/// Line numbers (1-based) of byte offsets in the file.
struct Lines<'a> {
    path: &'a str,
    text: &'a str,
}

impl Lines<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn error(&self, span: Range<usize>, field: &str, msg: impl std::fmt::Display) -> UsageError {
        UsageError(format!("{}:{}: {field}: {msg}", self.path, self.line(span)))
    }
}

fn sched(value: &Spanned<String>, field: &str, at: &Lines) -> Result<Sched, UsageError> {
    Sched::parse(value.get_ref()).ok_or_else(|| {
        at.error(
            value.span(),
            field,
            format!("'{}' is not rr, maglev or quic", value.get_ref()),
        )
    })
}

fn table_size(value: &Spanned<i64>, field: &str, at: &Lines) -> Result<u32, UsageError> {
    parse_table_size(&value.get_ref().to_string()).map_err(|e| at.error(value.span(), field, e))
}

fn duration(
    value: &Spanned<Text>,
    field: &str,
    at: &Lines,
) -> Result<std::time::Duration, UsageError> {
    match value.get_ref() {
        Text::Str(s) => parse_duration(s).map_err(|e| at.error(value.span(), field, e)),
        Text::Number(n) => Err(at.error(
            value.span(),
            field,
            format!("{n} needs a unit: write \"{n}ms\" or \"{n}s\""),
        )),
    }
}

fn count(value: &Spanned<i64>, field: &str, at: &Lines) -> Result<u32, UsageError> {
    u32::try_from(*value.get_ref())
        .ok()
        .filter(|v| (1..=health::MAX_RISE_FALL).contains(v))
        .ok_or_else(|| {
            at.error(
                value.span(),
                field,
                format!(
                    "{} is out of range: 1 to {}",
                    value.get_ref(),
                    health::MAX_RISE_FALL
                ),
            )
        })
}

/// A check: `raw`'s keys over `base` (the frontend's check, or the
/// defaults). Keys that belong to another kind are refused.
fn check(
    raw: &RawCheck,
    base: &Check,
    whole: Range<usize>,
    at: &Lines,
) -> Result<Check, UsageError> {
    let mut c = base.clone();
    if let Some(k) = &raw.check {
        c.kind = match CheckKind::with_defaults(k.get_ref()) {
            // The same kind keeps the settings it inherited.
            Some(kind) if kind.code() == base.kind.code() => base.kind.clone(),
            Some(kind) => kind,
            None => {
                return Err(at.error(
                    k.span(),
                    "check",
                    format!("'{}' is not none, udp, dns, tcp or http", k.get_ref()),
                ))
            }
        };
    }
    if let Some(v) = &raw.interval {
        c.interval = duration(v, "interval", at)?;
        // A shorter interval brings the default timeout down with it.
        if raw.timeout.is_none() && c.timeout > c.interval {
            c.timeout = c.interval;
        }
    }
    if let Some(v) = &raw.timeout {
        c.timeout = duration(v, "timeout", at)?;
    }
    if let Some(v) = &raw.rise {
        c.rise = count(v, "rise", at)?;
    }
    if let Some(v) = &raw.fall {
        c.fall = count(v, "fall", at)?;
    }
    let code = c.kind.code();
    let wrong = |field: &str, span: Range<usize>| {
        at.error(span, field, format!("is not a setting of a {code} check"))
    };
    let port = |v: &Spanned<i64>| {
        u16::try_from(*v.get_ref())
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                at.error(
                    v.span(),
                    "port",
                    format!("{} is out of range: ports are 1-65535", v.get_ref()),
                )
            })
    };
    match &mut c.kind {
        CheckKind::Udp { payload, expect } => {
            if let Some(v) = &raw.payload {
                *payload = v.get_ref().clone().into_bytes();
            }
            if let Some(v) = &raw.expect {
                *expect = v.get_ref().clone().into_bytes();
            }
        }
        CheckKind::Dns {
            name,
            qtype,
            noerror,
        } => {
            if let Some(v) = &raw.name {
                *name = v.get_ref().clone();
                crate::dns::query(0, name, "A").map_err(|e| at.error(v.span(), "name", e))?;
            }
            if let Some(v) = &raw.qtype {
                *qtype = v.get_ref().clone();
                crate::dns::query(0, ".", qtype).map_err(|e| at.error(v.span(), "type", e))?;
            }
            if let Some(v) = &raw.rcode {
                *noerror = match v.get_ref().to_ascii_lowercase().as_str() {
                    "any" => false,
                    "noerror" => true,
                    other => {
                        return Err(at.error(
                            v.span(),
                            "rcode",
                            format!("'{other}' is not any or noerror"),
                        ))
                    }
                };
            }
        }
        CheckKind::Tcp { port: p } => {
            if let Some(v) = &raw.port {
                *p = Some(port(v)?);
            }
        }
        CheckKind::Http { port: p, path } => {
            if let Some(v) = &raw.port {
                *p = Some(port(v)?);
            }
            if let Some(v) = &raw.path {
                *path = v.get_ref().clone();
            }
        }
        CheckKind::None => {}
    }
    let fields: [(&str, Option<Range<usize>>); 7] = [
        ("payload", raw.payload.as_ref().map(|v| v.span())),
        ("expect", raw.expect.as_ref().map(|v| v.span())),
        ("name", raw.name.as_ref().map(|v| v.span())),
        ("type", raw.qtype.as_ref().map(|v| v.span())),
        ("rcode", raw.rcode.as_ref().map(|v| v.span())),
        ("port", raw.port.as_ref().map(|v| v.span())),
        ("path", raw.path.as_ref().map(|v| v.span())),
    ];
    let allowed: &[&str] = match code {
        "udp" => &["payload", "expect"],
        "dns" => &["name", "type", "rcode"],
        "tcp" => &["port"],
        "http" => &["port", "path"],
        _ => &[],
    };
    for (field, span) in fields {
        if let Some(span) = span.filter(|_| !allowed.contains(&field)) {
            return Err(wrong(field, span));
        }
    }
    health::validate(&c).map_err(|(field, e)| {
        let span = match field {
            "interval" => raw.interval.as_ref().map(|v| v.span()),
            "timeout" => raw.timeout.as_ref().map(|v| v.span()),
            "path" => raw.path.as_ref().map(|v| v.span()),
            "payload" => raw.payload.as_ref().map(|v| v.span()),
            _ => None,
        };
        at.error(span.unwrap_or(whole), field, e)
    })?;
    Ok(c)
}

fn frontend_health(
    h: &Spanned<RawCheck>,
    backends: &[crate::config::BackendConfig],
    frontend: &str,
    at: &Lines,
) -> Result<FrontendHealth, UsageError> {
    let raw = h.get_ref();
    let mut out = FrontendHealth::new(check(raw, &Check::default(), h.span(), at)?);
    if let Some(v) = &raw.on_all_down {
        out.on_all_down = match v.get_ref().as_str() {
            "open" => OnAllDown::Open,
            "drop" => OnAllDown::Drop,
            other => {
                return Err(at.error(
                    v.span(),
                    "on_all_down",
                    format!("'{other}' is not open or drop"),
                ))
            }
        };
    }
    if let Some(v) = &raw.sockets {
        out.sockets = *v.get_ref();
    }
    for (name, b) in raw.backend.iter().flatten() {
        let r = b.get_ref();
        let frontend_only = [
            ("on_all_down", r.on_all_down.as_ref().map(|v| v.span())),
            ("sockets", r.sockets.as_ref().map(|v| v.span())),
            ("backend", r.backend.as_ref().map(|_| b.span())),
        ];
        for (field, span) in frontend_only {
            if let Some(span) = span {
                return Err(at.error(
                    span,
                    field,
                    "is a setting of the frontend, not of one backend",
                ));
            }
        }
        let Some(backend) = backends.iter().find(|x| x.name() == *name) else {
            return Err(at.error(
                b.span(),
                "backend",
                format!("'{name}' is not a backend of frontend {frontend}"),
            ));
        };
        let c = check(b.get_ref(), &out.check, b.span(), at)?;
        out.backends.insert(backend.name(), c);
    }
    Ok(out)
}

fn quic_settings(raw: &RawQuic, at: &Lines) -> Result<QuicSettings, UsageError> {
    let byte =
        |v: &Option<Spanned<i64>>, field: &str, max: i64| -> Result<Option<u8>, UsageError> {
            match v {
                None => Ok(None),
                Some(v) if (0..=max).contains(v.get_ref()) => Ok(Some(*v.get_ref() as u8)),
                Some(v) => Err(at.error(
                    v.span(),
                    field,
                    format!("{} is out of range: 0 to {max}", v.get_ref()),
                )),
            }
        };
    Ok(QuicSettings {
        server_id_len: byte(&raw.server_id_len, "server_id_len", 255)?,
        cid_len: byte(&raw.cid_len, "cid_len", 255)?,
        config_id: byte(&raw.config_id, "config_id", 6)?.unwrap_or(0),
    })
}

fn flow_timeout(value: &Spanned<i64>, field: &str, at: &Lines) -> Result<u32, UsageError> {
    parse_flow_timeout(&value.get_ref().to_string()).map_err(|e| at.error(value.span(), field, e))
}

/// The likely fix when a table header has the wrong number of brackets:
/// `[frontend]` for the list `[[frontend]]` (one per frontend), or the
/// other way round for a table such as `[frontend.health]`. (serde names
/// the type it wanted, not the header: "expected a sequence" for the first,
/// an "invalid type" of whatever the table holds for the second.)
fn table_hint(line: &str, msg: &str) -> Option<String> {
    let l = line.trim();
    if let Some(name) = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
        return msg
            .contains("invalid type")
            .then(|| format!(" (if there is one {name}, write [{name}])"));
    }
    let name = l.strip_prefix('[')?.strip_suffix(']')?;
    msg.contains("expected a sequence")
        .then(|| format!(" (write [[{name}]]: a list, one [[{name}]] per entry)"))
}

/// Parses and validates the text of a configuration file named `path`.
pub fn parse(text: &str, path: &str) -> Result<FileConfig, UsageError> {
    let at = Lines { path, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| at.line(s)).unwrap_or(1);
        let msg = e.message().trim().replace('\n', "; ");
        let hint = text
            .lines()
            .nth(line - 1)
            .and_then(|l| table_hint(l, &msg))
            .unwrap_or_default();
        UsageError(format!("{path}:{line}: {msg}{hint}"))
    })?;

    let mut defaults = Defaults::default();
    if let Some(s) = &raw.sched {
        defaults.sched = sched(s, "sched", &at)?;
    }
    if let Some(t) = &raw.table_size {
        defaults.table_size = table_size(t, "table_size", &at)?;
    }
    if let Some(t) = &raw.flow_timeout {
        defaults.flow_timeout = flow_timeout(t, "flow_timeout", &at)?;
    }
    let interface = raw.interface.get_ref().trim().to_string();
    for name in interface.split(',').map(str::trim) {
        check_interface_name(name).map_err(|e| at.error(raw.interface.span(), "interface", e))?;
    }
    let metrics = match &raw.metrics {
        None => None,
        Some(m) => Some(m.get_ref().parse().map_err(|_| {
            at.error(
                m.span(),
                "metrics",
                format!(
                    "'{}' is not ADDRESS:PORT (e.g. 127.0.0.1:9100 or [::1]:9100)",
                    m.get_ref()
                ),
            )
        })?),
    };
    if raw.frontend.is_empty() {
        return Err(UsageError(format!("{path}: no [[frontend]] sections")));
    }

    let mut frontends = Vec::new();
    for f in &raw.frontend {
        let f = f.get_ref();
        let listen_text = f.listen.get_ref().as_string();
        let listen =
            parse_listen(&listen_text).map_err(|e| at.error(f.listen.span(), "listen", e))?;
        let name = listen.to_string();
        if f.backends.get_ref().is_empty() {
            return Err(at.error(
                f.backends.span(),
                "backends",
                format!("frontend {name} has no backends"),
            ));
        }
        let backends = f
            .backends
            .get_ref()
            .iter()
            .map(|b| {
                parse_backend(&b.get_ref().as_string(), &name)
                    .map_err(|e| at.error(b.span(), "backends", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sched = match &f.sched {
            Some(s) => sched(s, "sched", &at)?,
            None => defaults.sched,
        };
        let table_size = match &f.table_size {
            Some(t) => table_size(t, "table_size", &at)?,
            None => defaults.table_size,
        };
        let health = match &f.health {
            None => FrontendHealth::new(Check::default()),
            Some(h) => frontend_health(h, &backends, &name, &at)?,
        };
        let flow_timeout = match &f.flow_timeout {
            Some(t) => flow_timeout(t, "flow_timeout", &at)?,
            None => defaults.flow_timeout,
        };
        let quic_settings = match &f.quic {
            None => QuicSettings::default(),
            Some(q) if sched != Sched::Quic => {
                return Err(at.error(
                    q.span(),
                    "quic",
                    format!("frontend {name} is not a quic frontend (sched = \"quic\")"),
                ))
            }
            Some(q) => quic_settings(q.get_ref(), &at)?,
        };
        let fe = FrontendConfig {
            listen,
            backends,
            sched,
            table_size,
            health,
            flow_timeout,
            quic_settings,
        };
        // Server ID errors name the backend's line, the others the section's.
        fe.check_quic().map_err(|(i, e)| match (i, &f.quic) {
            (Some(i), _) => at.error(f.backends.get_ref()[i].span(), "backends", e),
            (None, Some(q)) => at.error(q.span(), "quic", e),
            (None, None) => at.error(f.backends.span(), "backends", e),
        })?;
        frontends.push(fe);
    }
    let config = Config::check(frontends).map_err(|(i, e)| match i {
        Some(i) => at.error(raw.frontend[i].span(), "frontend", e),
        None => UsageError(format!("{path}: {e}")),
    })?;
    let announce = announcements(&raw, &config, &at)?;
    Ok(FileConfig {
        interface,
        config,
        metrics,
        announce,
    })
}

/// The announce settings: every frontend with an address unless it says
/// `announce = false`; one without an address must say so.
fn announcements(raw: &RawFile, config: &Config, at: &Lines) -> Result<Announce, UsageError> {
    let mut out = Announce::default();
    type Parse = fn(&str) -> Result<std::time::Duration, UsageError>;
    let delay = |v: &Option<Spanned<Text>>, field: &str, parse: Parse| match v {
        None => Ok(None),
        Some(v) => parse(&v.get_ref().as_string())
            .map(Some)
            .map_err(|e| at.error(v.span(), field, e)),
    };
    if let Some(g) = delay(&raw.announce_grace, "announce_grace", announce::parse_grace)? {
        out.grace = g;
    }
    if let Some(l) = delay(&raw.announce_lease, "announce_lease", announce::parse_lease)? {
        out.lease = l;
    }
    let Some(iface) = &raw.announce_interface else {
        if let Some(a) = raw
            .frontend
            .iter()
            .find_map(|f| f.get_ref().announce.as_ref())
        {
            return Err(at.error(
                a.span(),
                "announce",
                "needs announce_interface at the top of the file (the interface the addresses go on)",
            ));
        }
        return Ok(out);
    };
    let name = iface.get_ref().trim();
    check_interface_name(name).map_err(|e| at.error(iface.span(), "announce_interface", e))?;
    out.interface = Some(name.to_string());
    // `Config::check` keeps the frontends in the file's order.
    for (f, fe) in raw.frontend.iter().zip(&config.frontends) {
        let wanted = f.get_ref().announce.as_ref();
        if wanted.is_some_and(|a| !*a.get_ref()) {
            continue;
        }
        if let Some(msg) = announce::refusal(&fe.listen, "set announce = false") {
            let span = wanted.map_or(f.get_ref().listen.span(), |a| a.span());
            return Err(at.error(span, "announce", msg));
        }
        out.frontends.insert(fe.listen);
    }
    Ok(out)
}

/// Reads and parses `path`.
pub fn load(path: &str) -> Result<FileConfig, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| UsageError(format!("{path}: {e}")))?;
    parse(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_with_the_wrong_brackets_gets_the_fix() {
        let one = "interface = \"lo\"\n[frontend]\nlisten = \"9875\"\nbackends = [\"9876\"]\n";
        let e = parse(one, "f.toml").unwrap_err().0;
        assert!(e.starts_with("f.toml:2: "), "{e}");
        assert!(
            e.ends_with("(write [[frontend]]: a list, one [[frontend]] per entry)"),
            "{e}"
        );
        let many = "interface = \"lo\"\n[[frontend]]\nlisten = \"9875\"\nbackends = [\"9876\"]\n\
                    [[frontend.health]]\ncheck = \"udp\"\n";
        let e = parse(many, "f.toml").unwrap_err().0;
        assert!(e.starts_with("f.toml:5: "), "{e}");
        assert!(
            e.ends_with("(if there is one frontend.health, write [frontend.health])"),
            "{e}"
        );
        // Other errors get no hint.
        let e = parse("interface = 3\n", "f.toml").unwrap_err().0;
        assert!(!e.contains("write ["), "{e}");
    }

    fn err(text: &str) -> String {
        parse(text, "lb.toml").expect_err("should be rejected").0
    }

    const EXAMPLE: &str = r#"
interface = "lo"
sched = "maglev"
[[frontend]]
listen = "9875"
backends = ["9876", "9877@2", "9878"]
"#;

    #[test]
    fn the_issue_example_equals_the_command_line() {
        let f = parse(EXAMPLE, "lb.toml").unwrap();
        assert_eq!(f.interface, "lo");
        let cli = Config::from_specs_with(
            &["9875=9876,9877@2,9878"],
            Defaults {
                sched: Sched::Maglev,
                ..Defaults::default()
            },
        )
        .unwrap();
        assert_eq!(f.config, cli);
    }

    #[test]
    fn numbers_per_frontend_settings_and_ipv6() {
        let f = parse(
            r#"
interface = "eth0"
table_size = 16381
[[frontend]]
listen = 53
backends = [5301, "5302@0"]
[[frontend]]
listen = "[2001:2::1]:443"
backends = ["4433"]
sched = "maglev"
"#,
            "x",
        )
        .unwrap();
        let fe = &f.config.frontends;
        assert_eq!((fe[0].sched, fe[0].backends[1].weight), (Sched::Rr, 0));
        assert_eq!((fe[1].sched, fe[1].table_size), (Sched::Maglev, 16381));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = err(
            "interface = \"lo\"\n[[frontend]]\nlisten = \"9875\"\nbackends = [\"9876\", \"0\"]\n",
        );
        assert!(e.starts_with("lb.toml:4: backends: "), "{e}");
        assert!(e.contains("out of range"), "{e}");
        let e =
            err("interface = \"lo\"\n[[frontend]]\nlisten = \"1.2.3:53\"\nbackends = [\"9876\"]\n");
        assert!(e.starts_with("lb.toml:3: listen: "), "{e}");
        let e = err(
            "interface = \"lo\"\nsched = \"random\"\n[[frontend]]\nlisten = 1\nbackends = [2]\n",
        );
        assert!(
            e.starts_with("lb.toml:2: sched: 'random' is not rr, maglev or quic"),
            "{e}"
        );
        let e =
            err("interface = \"lo\"\ntable_size = 100\n[[frontend]]\nlisten = 1\nbackends = [2]\n");
        assert!(
            e.starts_with("lb.toml:2: table_size: table size 100 must be a prime"),
            "{e}"
        );
        let e = err("interface = \"lo\"\n[[frontend]]\nlisten = 1\nbackends = [2]\nweight = 3\n");
        assert!(
            e.starts_with("lb.toml:") && e.contains("unknown field `weight`"),
            "{e}"
        );
        let e = err("interface = \"lo\"\n[[frontend]]\nlisten = 1\nbackends = []\n");
        assert!(
            e.starts_with("lb.toml:4: backends: frontend *:1 has no backends"),
            "{e}"
        );
        let e = err("interface = \"lo\"\n[[frontend]]\nlisten = \"9875\n");
        assert!(e.starts_with("lb.toml:3: "), "{e}");
        let e = err("[[frontend]]\nlisten = 1\nbackends = [2]\n");
        assert!(e.contains("interface"), "{e}");
        let e = err("interface = \"lo\"\n");
        assert_eq!(e, "lb.toml: no [[frontend]] sections");
        let e = err("interface = \"lo\"\n[[frontend]]\nlisten = 1\nbackends = [2]\n[[frontend]]\nlisten = 3\nbackends = [2]\n");
        assert!(
            e.starts_with("lb.toml:5: frontend: backend 2 serves both"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "one line: {e}");
    }

    #[test]
    fn unusable_addresses_name_file_line_and_field() {
        let e = err("interface = \"lo\"\n[[frontend]]\nlisten = \"[::ffff:198.18.0.1]:53\"\nbackends = [9876]\n");
        assert!(
            e.starts_with("lb.toml:2: frontend: frontend [::ffff:198.18.0.1]:53"),
            "{e}"
        );
        assert!(e.contains("IPv4-mapped"), "{e}");
        let e = err("interface = \"lo\"\n[[frontend]]\nlisten = \"198.18.0.1:53\"\nbackends = [\"255.255.255.255:53\"]\n");
        assert!(
            e.starts_with(
                "lb.toml:2: frontend: frontend 198.18.0.1:53: backend 255.255.255.255:53"
            ),
            "{e}"
        );
    }

    const HEALTH: &str = "interface = \"lo\"\n[[frontend]]\nlisten = 53\nbackends = [5301, 5302]\n[frontend.health]\n";

    #[test]
    fn health_sections() {
        let f = parse(
            &format!(
                "{HEALTH}check = \"dns\"\nname = \"example.org\"\ntype = \"SOA\"\nrcode = \"noerror\"\n\
                 interval = \"200ms\"\nrise = 1\nfall = 2\non_all_down = \"drop\"\nsockets = false\n\
                 [frontend.health.backend.\"5302\"]\ncheck = \"http\"\nport = 8080\npath = \"/health\"\n"
            ),
            "x",
        )
        .unwrap();
        let h = &f.config.frontends[0].health;
        assert_eq!(
            h.check,
            Check {
                kind: CheckKind::Dns {
                    name: "example.org".into(),
                    qtype: "SOA".into(),
                    noerror: true
                },
                interval: std::time::Duration::from_millis(200),
                // The default timeout (500ms) comes down to the interval.
                timeout: std::time::Duration::from_millis(200),
                rise: 1,
                fall: 2,
            }
        );
        assert_eq!((h.on_all_down, h.sockets), (OnAllDown::Drop, false));
        let b = h.check_of("5302");
        assert_eq!(
            b.kind,
            CheckKind::Http {
                port: Some(8080),
                path: "/health".into()
            }
        );
        assert_eq!((b.interval, b.fall), (h.check.interval, 2), "inherited");
        assert_eq!(h.check_of("5301"), &h.check);
        // No section: no active check, socket liveness on, fail open.
        let f = parse(EXAMPLE, "x").unwrap();
        assert_eq!(
            f.config.frontends[0].health,
            FrontendHealth::new(Check::default())
        );
    }

    #[test]
    fn bad_health_sections_name_file_line_and_field() {
        for (body, start) in [
            (
                "check = \"icmp\"\n",
                "lb.toml:6: check: 'icmp' is not none, udp, dns, tcp or http",
            ),
            ("interval = 200\n", "lb.toml:6: interval: 200 needs a unit"),
            (
                "interval = \"5ms\"\n",
                "lb.toml:6: interval: 5ms is out of range",
            ),
            (
                "check = \"udp\"\ntimeout = \"2s\"\n",
                "lb.toml:7: timeout: 2s must be more than 0",
            ),
            ("rise = 0\n", "lb.toml:6: rise: 0 is out of range"),
            ("fall = 1000\n", "lb.toml:6: fall: 1000 is out of range"),
            (
                "on_all_down = \"close\"\n",
                "lb.toml:6: on_all_down: 'close' is not open or drop",
            ),
            (
                "check = \"dns\"\nname = \"a..b\"\n",
                "lb.toml:7: name: 'a..b' is not a DNS name",
            ),
            (
                "check = \"dns\"\ntype = \"XX\"\n",
                "lb.toml:7: type: 'XX' is not a DNS record type",
            ),
            (
                "check = \"dns\"\nrcode = \"some\"\n",
                "lb.toml:7: rcode: 'some' is not any or noerror",
            ),
            (
                "check = \"tcp\"\nport = 70000\n",
                "lb.toml:7: port: 70000 is out of range",
            ),
            (
                "check = \"tcp\"\npath = \"/\"\n",
                "lb.toml:7: path: is not a setting of a tcp check",
            ),
            (
                "check = \"http\"\npath = \"x\"\n",
                "lb.toml:7: path: 'x' is not a URL path",
            ),
            (
                "[frontend.health.backend.\"5303\"]\nrise = 1\n",
                "lb.toml:6: backend: '5303' is not a backend of frontend *:53",
            ),
            (
                "[frontend.health.backend.\"5302\"]\non_all_down = \"drop\"\n",
                "lb.toml:7: on_all_down: is a setting of the frontend",
            ),
            (
                "[frontend.health.backend.\"5302\"]\nfall = 0\n",
                "lb.toml:7: fall: 0 is out of range",
            ),
        ] {
            let e = err(&format!("{HEALTH}{body}"));
            assert!(e.starts_with(start), "{body:?}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let e = err(&format!("{HEALTH}bogus = 1\n"));
        assert!(
            e.starts_with("lb.toml:") && e.contains("unknown field `bogus`"),
            "{e}"
        );
    }

    #[test]
    fn announce_settings() {
        let f = parse(EXAMPLE, "x").unwrap();
        assert!(!f.announce.on(), "off unless asked");
        let text = "interface = \"eth0\"\nannounce_interface = \"udplb0\"\nannounce_grace = \"500ms\"\n\
                    announce_lease = 4\n[[frontend]]\nlisten = \"198.18.100.1:53\"\nbackends = [5301]\n\
                    [[frontend]]\nlisten = \"198.18.100.2:53\"\nbackends = [5302]\nannounce = false\n\
                    [[frontend]]\nlisten = 54\nbackends = [5303]\nannounce = false\n";
        let a = parse(text, "x").unwrap().announce;
        assert_eq!(a.interface.as_deref(), Some("udplb0"));
        assert_eq!(a.grace, std::time::Duration::from_millis(500));
        assert_eq!(a.lease, std::time::Duration::from_secs(4));
        let listed: Vec<String> = a.frontends.iter().map(|l| l.to_string()).collect();
        assert_eq!(listed, ["198.18.100.1:53"]);
    }

    #[test]
    fn bad_announce_settings_name_file_line_and_field() {
        const TOP: &str = "interface = \"eth0\"\nannounce_interface = \"udplb0\"\n";
        for (text, start) in [
            (
                format!("{TOP}[[frontend]]\nlisten = 53\nbackends = [5301]\n"),
                "lb.toml:4: announce: frontend *:53 has no address to announce",
            ),
            (
                format!("{TOP}[[frontend]]\nlisten = \"0.0.0.0:53\"\nbackends = [5301]\nannounce = true\n"),
                "lb.toml:6: announce: frontend 0.0.0.0:53 has no address to announce",
            ),
            (
                format!("{TOP}[[frontend]]\nlisten = \"224.0.0.1:53\"\nbackends = [5301]\n"),
                "lb.toml:4: announce: frontend 224.0.0.1:53: 224.0.0.1 is a multicast address",
            ),
            (
                format!("{TOP}[[frontend]]\nlisten = \"[fe80::1]:53\"\nbackends = [5301]\nannounce = true\n"),
                "lb.toml:6: announce: frontend [fe80::1]:53: fe80::1 is a link-local address",
            ),
            (
                "interface = \"eth0\"\n[[frontend]]\nlisten = \"198.18.100.1:53\"\nbackends = [5301]\nannounce = true\n".into(),
                "lb.toml:5: announce: needs announce_interface",
            ),
            (
                "interface = \"eth0\"\nannounce_interface = \"a/b\"\n[[frontend]]\nlisten = 1\nbackends = [2]\n".into(),
                "lb.toml:2: announce_interface: 'a/b' is not an interface name",
            ),
            (
                format!("{TOP}announce_grace = \"1h\"\n[[frontend]]\nlisten = \"198.18.100.1:53\"\nbackends = [5301]\n"),
                "lb.toml:3: announce_grace: '1h' is not a number of seconds",
            ),
            (
                format!("{TOP}announce_lease = 1\n[[frontend]]\nlisten = \"198.18.100.1:53\"\nbackends = [5301]\n"),
                "lb.toml:3: announce_lease: 1 is out of range",
            ),
        ] {
            let e = err(&text);
            assert!(e.starts_with(start), "{text:?}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn quic_sections() {
        let f = parse(
            "interface = \"lo\"\n[[frontend]]\nlisten = 443\nsched = \"quic\"\n\
             backends = [\"4431#0a01\", \"4432#0a02@2\"]\n[frontend.quic]\ncid_len = 10\nconfig_id = 2\n",
            "x",
        )
        .unwrap();
        let q = f.config.frontends[0].quic().unwrap();
        assert_eq!((q.server_id_len, q.cid_len, q.config_id), (2, 10, 2));
        const Q: &str = "interface = \"lo\"\n[[frontend]]\nlisten = 443\nsched = \"quic\"\n";
        for (body, start) in [
            (
                "backends = [\"4431#0a01\",\n \"4432#0a01\"]\n",
                "lb.toml:6: backends: frontend *:443: backends 4431 and 4432 have the same server ID 0a01",
            ),
            (
                "backends = [\"4431#0a01\"]\n[frontend.quic]\nserver_id_len = 3\n",
                "lb.toml:5: backends: frontend *:443: backend 4431#0a01: server ID 0a01 is 2 bytes long, not 3",
            ),
            (
                "backends = [\"4431#0a01\"]\n[frontend.quic]\ncid_len = 21\n",
                "lb.toml:6: quic: frontend *:443: a connection ID of 21 bytes",
            ),
            (
                "backends = [\"4431#0a01\"]\n[frontend.quic]\nconfig_id = 7\n",
                "lb.toml:7: config_id: 7 is out of range: 0 to 6",
            ),
            (
                "backends = [\"4431#xyz\"]\n",
                "lb.toml:5: backends: frontend *:443: backend '4431#xyz': server ID 'xyz'",
            ),
        ] {
            let e = err(&format!("{Q}{body}"));
            assert!(e.starts_with(start), "{body:?}: {e}");
        }
        let e = err("interface = \"lo\"\n[[frontend]]\nlisten = 443\nbackends = [1]\n[frontend.quic]\ncid_len = 8\n");
        assert!(
            e.starts_with("lb.toml:5: quic: frontend *:443 is not a quic frontend"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_file() {
        let e = load("/nonexistent/udplb.toml").unwrap_err().0;
        assert!(
            e.starts_with("/nonexistent/udplb.toml: No such file"),
            "{e}"
        );
    }
}
