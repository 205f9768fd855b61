//! The TOML configuration file (`udplb --config FILE`), equivalent to the
//! command line. An example (src/config/file/example.toml, which a test
//! parses):
//!
//! ```toml
#![doc = include_str!("example.toml")]
//! ```
//!
//! Announcing frontend addresses (README "Several balancers behind ECMP"): top-level
//! `announce_interface = "udplb0"`, `announce_grace = "2s"`,
//! `announce_lease = "10s"`; `announce = false` in a frontend leaves it out.
//!
//! Every error names the file; one about a value also its line and field.
//! Pure: no kernel access.
//! The parts: `raw.rs` (the file as serde reads it), `spans.rs` (error
//! positions and hints), `health.rs` (the health sections); the steps over
//! the whole file and each frontend are here.

mod health;
mod raw;
mod spans;

use toml::Spanned;

use crate::config::announce::{self, Announce};
use crate::config::{
    check_interface_name, parse_backend, parse_listen, BackendConfig, Check, Config, Defaults,
    FrontendConfig, FrontendHealth, Hash, QuicSettings, Sched,
};
use crate::error::UsageError;
use raw::{RawFile, RawFrontend, RawQuic, Text};
use spans::{flow_timeout, hash, mode, sched, table_size, tunnels, Lines};

/// A parsed, validated configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    pub interface: String,
    pub config: Config,
    /// `metrics = "ADDR:PORT"`: where to serve /metrics and the status page.
    pub metrics: Option<std::net::SocketAddr>,
    /// `announce_interface` and friends; off when absent.
    pub announce: Announce,
}

/// Parses and validates the text of a configuration file named `path`.
pub fn parse(text: &str, path: &str) -> Result<FileConfig, UsageError> {
    let at = Lines { path, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| at.toml_error(&e))?;
    let defaults = defaults(&raw, &at)?;
    let interface = raw.interface.get_ref().trim().to_string();
    for name in interface.split(',').map(str::trim) {
        check_interface_name(name).map_err(|e| at.error(raw.interface.span(), "interface", e))?;
    }
    let metrics = match &raw.metrics {
        None => None,
        Some(m) => Some(metrics(m, &at)?),
    };
    if raw.frontend.is_empty() {
        return Err(UsageError(format!("{path}: no [[frontend]] sections")));
    }
    let frontends = (raw.frontend.iter())
        .map(|f| frontend(f.get_ref(), defaults, &at))
        .collect::<Result<Vec<_>, _>>()?;
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

/// The top-level `sched`, `table_size`, `flow_timeout`, `hash`, `mode` and
/// `tunnel_source`: what frontends that do not set their own get.
fn defaults(raw: &RawFile, at: &Lines) -> Result<Defaults, UsageError> {
    let mut defaults = Defaults::default();
    if let Some(s) = &raw.sched {
        defaults.sched = sched(s, "sched", at)?;
    }
    if let Some(t) = &raw.table_size {
        defaults.table_size = table_size(t, "table_size", at)?;
    }
    if let Some(t) = &raw.flow_timeout {
        defaults.flow_timeout = flow_timeout(t, "flow_timeout", at)?;
    }
    if let Some(h) = &raw.hash {
        defaults.hash = hash(h, "hash", at)?;
    }
    if let Some(m) = &raw.mode {
        defaults.mode = mode(m, "mode", at)?;
    }
    if let Some(t) = &raw.tunnel_source {
        defaults.tunnels = tunnels(t, "tunnel_source", at)?;
    }
    Ok(defaults)
}

fn metrics(m: &Spanned<String>, at: &Lines) -> Result<std::net::SocketAddr, UsageError> {
    m.get_ref().parse().map_err(|_| {
        at.error(
            m.span(),
            "metrics",
            format!(
                "'{}' is not ADDRESS:PORT (e.g. 127.0.0.1:9100 or [::1]:9100)",
                m.get_ref()
            ),
        )
    })
}

/// One `[[frontend]]`, its settings over `defaults`. The QUIC-LB rules are
/// checked here, before [`Config::check`] runs them again with the others,
/// so that their errors point at a backend's line or at `[frontend.quic]`.
fn frontend(f: &RawFrontend, defaults: Defaults, at: &Lines) -> Result<FrontendConfig, UsageError> {
    let listen_text = f.listen.get_ref().as_string();
    let listen = parse_listen(&listen_text).map_err(|e| at.error(f.listen.span(), "listen", e))?;
    let name = listen.to_string();
    let backends = backends(f, &name, at)?;
    let sched = match &f.sched {
        Some(s) => sched(s, "sched", at)?,
        None => defaults.sched,
    };
    let table_size = match &f.table_size {
        Some(t) => table_size(t, "table_size", at)?,
        None => defaults.table_size,
    };
    let health = match &f.health {
        None => FrontendHealth::new(Check::default()),
        Some(h) => health::frontend_health(h, &backends, &name, at)?,
    };
    let flow_timeout = match &f.flow_timeout {
        Some(t) => flow_timeout(t, "flow_timeout", at)?,
        None => defaults.flow_timeout,
    };
    // The top-level hash is the default of the frontends that hash; a
    // round-robin frontend keeps the flow's (its own `hash` is refused).
    let hash = match &f.hash {
        Some(h) => hash(h, "hash", at)?,
        None if sched.hashes() => defaults.hash,
        None => Hash::Flow,
    };
    let mode = match &f.mode {
        Some(m) => mode(m, "mode", at)?,
        None => defaults.mode,
    };
    let tunnels = match &f.tunnel_source {
        Some(t) => tunnels(t, "tunnel_source", at)?,
        None => defaults.tunnels,
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
        Some(q) => quic_settings(q.get_ref(), at)?,
    };
    let fe = FrontendConfig {
        listen,
        backends,
        sched,
        table_size,
        health,
        flow_timeout,
        quic_settings,
        hash,
        mode,
        tunnels,
    };
    // Server ID errors name the backend's line, the others the section's.
    fe.check_quic().map_err(|(i, e)| match (i, &f.quic) {
        (Some(i), _) => at.error(f.backends.get_ref()[i].span(), "backends", e),
        (None, Some(q)) => at.error(q.span(), "quic", e),
        (None, None) => at.error(f.backends.span(), "backends", e),
    })?;
    Ok(fe)
}

/// `backends`: at least one, each as on the command line.
fn backends(f: &RawFrontend, frontend: &str, at: &Lines) -> Result<Vec<BackendConfig>, UsageError> {
    if f.backends.get_ref().is_empty() {
        return Err(at.error(
            f.backends.span(),
            "backends",
            format!("frontend {frontend} has no backends"),
        ));
    }
    (f.backends.get_ref().iter())
        .map(|b| {
            parse_backend(&b.get_ref().as_string(), frontend)
                .map_err(|e| at.error(b.span(), "backends", e))
        })
        .collect()
}

/// `[frontend.quic]` of a quic frontend.
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

/// The announce settings, off without `announce_interface`: every frontend
/// unless it says `announce = false`; one whose address cannot be announced
/// (none, or one no router carries to this host) must say so.
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
    use crate::config::{CheckKind, OnAllDown};

    /// The module's example, as its doc shows it.
    const MODULE_EXAMPLE: &str = include_str!("example.toml");

    #[test]
    fn the_module_example_parses() {
        let f = parse(MODULE_EXAMPLE, "example.toml").unwrap();
        assert_eq!(f.interface, "lo");
        let [rr, quic] = &f.config.frontends[..] else {
            panic!("two frontends: {:?}", f.config.frontends)
        };
        let backends: Vec<String> = rr.backends.iter().map(|b| b.to_string()).collect();
        assert_eq!(backends, ["9876", "9877@2", "9878"]);
        assert_eq!((rr.sched, rr.flow_timeout), (Sched::Rr, 60));
        assert_eq!(rr.health.check.kind.code(), "dns");
        assert_eq!(
            rr.health.check_of("9877").kind,
            CheckKind::Tcp { port: Some(8080) }
        );
        assert_eq!((quic.sched, quic.table_size), (Sched::Quic, 65537));
        assert_eq!(quic.flow_timeout, 300);
        let q = quic.quic().unwrap();
        assert_eq!((q.server_id_len, q.cid_len, q.config_id), (2, 8, 0));
    }

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
    fn modes_and_tunnel_sources_per_frontend_or_for_all() {
        let f = parse(
            "interface = \"lo\"\nmode = \"gue:6080\"\ntunnel_source = [\"198.18.0.1\"]\n\
             [[frontend]]\nlisten = \"198.18.0.10:53\"\nbackends = [\"198.18.1.2:53\"]\n\
             [[frontend]]\nlisten = \"198.18.0.10:54\"\nbackends = [\"198.18.1.2:54\"]\n\
             mode = \"ipip\"\ntunnel_source = [\"198.18.200.0/24\"]\n",
            "x",
        )
        .unwrap();
        let fe = &f.config.frontends;
        assert_eq!(
            (fe[0].mode.code(), fe[0].tunnels.code()),
            ("gue:6080".into(), vec!["198.18.0.1".into()])
        );
        assert_eq!(
            (fe[1].mode.code(), fe[1].tunnels.code()),
            ("ipip".into(), vec!["198.18.200.0/24".into()])
        );
        let e = err("interface = \"lo\"\n[[frontend]]\nlisten = \"198.18.0.10:53\"\nbackends = [\"198.18.1.2:53\"]\nmode = \"gue\"\n");
        assert!(e.starts_with("lb.toml:5: mode: "), "{e}");
    }

    #[test]
    fn hash_by_client_per_frontend_or_for_all() {
        let f = parse(
            "interface = \"lo\"\nsched = \"maglev\"\nhash = \"client\"\n\
             [[frontend]]\nlisten = 53\nbackends = [5301]\n\
             [[frontend]]\nlisten = 54\nbackends = [5401]\nhash = \"client/64\"\n\
             [[frontend]]\nlisten = 55\nbackends = [5501]\nhash = \"flow\"\n",
            "x",
        )
        .unwrap();
        let hashes: Vec<String> = f.config.frontends.iter().map(|fe| fe.hash.code()).collect();
        assert_eq!(hashes, ["client", "client/64", "flow"]);
        // The top-level hash is for the frontends that hash: a round-robin
        // one next to them keeps the flow's.
        let g = parse(
            "interface = \"lo\"\nsched = \"maglev\"\nhash = \"client\"\n\
             [[frontend]]\nlisten = 53\nbackends = [5301]\n\
             [[frontend]]\nlisten = 54\nbackends = [5401]\nsched = \"rr\"\n",
            "x",
        )
        .unwrap();
        let hashes: Vec<String> = g.config.frontends.iter().map(|fe| fe.hash.code()).collect();
        assert_eq!(hashes, ["client", "flow"]);
        assert_eq!(f.config.frontends[1].scheme(), "maglev, by client/64");
        let e = err(
            "interface = \"lo\"\n[[frontend]]\nlisten = 53\nbackends = [5301]\nhash = \"client\"\n",
        );
        assert!(e.starts_with("lb.toml:2: frontend: "), "{e}");
        assert!(
            e.contains("needs a scheduler that hashes (maglev or quic), not rr"),
            "{e}"
        );
        let e = err("interface = \"lo\"\nsched = \"maglev\"\n[[frontend]]\nlisten = 53\nbackends = [5301]\nhash = \"client/0\"\n");
        assert!(e.starts_with("lb.toml:6: hash: 'client/0': "), "{e}");
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
