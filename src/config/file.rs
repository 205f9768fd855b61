//! The TOML configuration file (`udplb --config FILE`), equivalent to the
//! command line:
//!
//! ```toml
//! interface = "lo"
//! sched = "maglev"            # default for every frontend: "rr" or "maglev"
//! table_size = 65537          # Maglev table size (a prime)
//! flow_timeout = 60           # Maglev flow table idle timeout, seconds (0: none)
//!
//! [[frontend]]
//! listen = "9875"             # PORT, "IPv4:PORT" or "[IPv6]:PORT"
//! backends = ["9876", "9877@2", 9878]
//! sched = "rr"                # optional, per frontend
//! flow_timeout = 300          # optional, per frontend
//! ```
//!
//! Every error names the file, the line and the field. Pure: no kernel access.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{
    check_interface_name, parse_backend, parse_flow_timeout, parse_listen, parse_table_size,
    Config, Defaults, FrontendConfig, Sched,
};
use crate::error::UsageError;

/// A parsed, validated configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    pub interface: String,
    pub config: Config,
    /// `metrics = "ADDR:PORT"`: where to serve /metrics.
    pub metrics: Option<std::net::SocketAddr>,
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
            format!("'{}' is not rr or maglev", value.get_ref()),
        )
    })
}

fn table_size(value: &Spanned<i64>, field: &str, at: &Lines) -> Result<u32, UsageError> {
    parse_table_size(&value.get_ref().to_string()).map_err(|e| at.error(value.span(), field, e))
}

fn flow_timeout(value: &Spanned<i64>, field: &str, at: &Lines) -> Result<u32, UsageError> {
    parse_flow_timeout(&value.get_ref().to_string()).map_err(|e| at.error(value.span(), field, e))
}

/// Parses and validates the text of a configuration file named `path`.
pub fn parse(text: &str, path: &str) -> Result<FileConfig, UsageError> {
    let at = Lines { path, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| at.line(s)).unwrap_or(1);
        UsageError(format!(
            "{path}:{line}: {}",
            e.message().trim().replace('\n', "; ")
        ))
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
        let flow_timeout = match &f.flow_timeout {
            Some(t) => flow_timeout(t, "flow_timeout", &at)?,
            None => defaults.flow_timeout,
        };
        frontends.push(FrontendConfig {
            listen,
            backends,
            sched,
            table_size,
            flow_timeout,
        });
    }
    let config = Config::check(frontends).map_err(|(i, e)| match i {
        Some(i) => at.error(raw.frontend[i].span(), "frontend", e),
        None => UsageError(format!("{path}: {e}")),
    })?;
    Ok(FileConfig {
        interface,
        config,
        metrics,
    })
}

/// Reads and parses `path`.
pub fn load(path: &str) -> Result<FileConfig, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| UsageError(format!("{path}: {e}")))?;
    parse(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            e.starts_with("lb.toml:2: sched: 'random' is not rr or maglev"),
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

    #[test]
    fn unreadable_file() {
        let e = load("/nonexistent/udplb.toml").unwrap_err().0;
        assert!(
            e.starts_with("/nonexistent/udplb.toml: No such file"),
            "{e}"
        );
    }
}
