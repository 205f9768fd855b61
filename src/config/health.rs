//! Health-check settings: what each frontend checks its backends with, and
//! what it does when they are all down. Pure: the daemon runs the checks
//! (src/daemon/health/), the plan takes their verdicts.
//!
//! Vocabulary as keepalived's and HAProxy's: a check runs every `interval`,
//! fails after `timeout`; a backend goes down after `fall` failures in a
//! row and comes back after `rise` successes in a row. Every backend starts
//! up.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::error::UsageError;
use crate::usage;

/// The active check of a backend.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CheckKind {
    /// No active check (local backends still get socket-table liveness).
    #[default]
    None,
    /// Send `payload`; up on a reply from the backend that starts with
    /// `expect` (empty: any reply).
    Udp { payload: Vec<u8>, expect: Vec<u8> },
    /// A query for `name`/`qtype`; up on a response with the query's ID
    /// (and, with `noerror`, RCODE NOERROR).
    Dns {
        name: String,
        qtype: String,
        noerror: bool,
    },
    /// Up when a TCP connection to `port` (default: the backend's) opens.
    Tcp { port: Option<u16> },
    /// Up when `GET path` on `port` (default: the backend's) returns 2xx.
    Http { port: Option<u16>, path: String },
}

impl CheckKind {
    /// "none", "udp", "dns", "tcp" or "http": its name in [`CHECK_KINDS`].
    pub fn code(&self) -> &'static str {
        // CHECK_KINDS is in declaration order (a test below checks it).
        let i = match self {
            CheckKind::None => 0,
            CheckKind::Udp { .. } => 1,
            CheckKind::Dns { .. } => 2,
            CheckKind::Tcp { .. } => 3,
            CheckKind::Http { .. } => 4,
        };
        CHECK_KINDS[i].0
    }

    /// The kind named `code` with its default settings.
    pub fn with_defaults(code: &str) -> Option<CheckKind> {
        (CHECK_KINDS.iter())
            .find(|(name, _)| *name == code)
            .map(|(_, defaults)| defaults())
    }
}

/// A check kind with its default settings.
pub type Defaults = fn() -> CheckKind;

/// Every health-check kind: its name and its default settings, in the
/// order `CheckKind` declares them ([`CheckKind::code`] indexes it; a test
/// checks that each entry's kind has that entry's name).
pub const CHECK_KINDS: [(&str, Defaults); 5] = [
    ("none", || CheckKind::None),
    ("udp", || CheckKind::Udp {
        payload: DEFAULT_UDP_PAYLOAD.to_vec(),
        expect: Vec::new(),
    }),
    ("dns", || CheckKind::Dns {
        name: ".".into(),
        qtype: "NS".into(),
        noerror: false,
    }),
    ("tcp", || CheckKind::Tcp { port: None }),
    ("http", || CheckKind::Http {
        port: None,
        path: "/".into(),
    }),
];

pub const DEFAULT_UDP_PAYLOAD: &[u8] = b"udplb health check\n";

/// One backend's check: a kind and its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Default for Check {
    fn default() -> Self {
        Check {
            kind: CheckKind::None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 3,
        }
    }
}

/// What a frontend does when every backend that has weight is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnAllDown {
    /// Keep sending to all of them (a check that is wrong must not take a
    /// whole service away), and say so.
    #[default]
    Open,
    /// Send nowhere: datagrams are dropped until one comes back.
    Drop,
}

impl OnAllDown {
    pub fn code(self) -> &'static str {
        match self {
            OnAllDown::Open => "open",
            OnAllDown::Drop => "drop",
        }
    }
}

/// A frontend's health settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrontendHealth {
    pub check: Check,
    /// Per-backend overrides, by backend name (`5302`, `198.18.1.2:53`).
    pub backends: BTreeMap<String, Check>,
    pub on_all_down: OnAllDown,
    /// Local backends with no UDP socket bound to their port are down
    /// (socket-table liveness; no probe traffic). On by default.
    pub sockets: bool,
}

impl FrontendHealth {
    /// The defaults: no active check, socket liveness on, fail open.
    pub fn new(check: Check) -> FrontendHealth {
        FrontendHealth {
            check,
            backends: BTreeMap::new(),
            on_all_down: OnAllDown::Open,
            sockets: true,
        }
    }

    /// The check of backend `name`.
    pub fn check_of(&self, name: &str) -> &Check {
        self.backends.get(name).unwrap_or(&self.check)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            CheckKind::None => write!(f, "none"),
            _ => write!(
                f,
                "{} every {:?}, timeout {:?}, rise {}, fall {}",
                self.kind.code(),
                self.interval,
                self.timeout,
                self.rise,
                self.fall
            ),
        }
    }
}

/// `200ms`, `1s`, `1.5s`: a duration with its unit.
pub fn parse_duration(s: &str) -> Result<Duration, UsageError> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(usage!("'{s}' needs a unit: e.g. 200ms or 1s"));
    };
    let v: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| usage!("'{s}' is not a duration (e.g. 200ms or 1s)"))?;
    Ok(Duration::from_secs_f64(v * scale))
}

pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
pub const MAX_RISE_FALL: u32 = 100;

/// Checks one check's numbers; the error names the field.
pub fn validate(check: &Check) -> Result<(), (&'static str, UsageError)> {
    if check.interval < MIN_INTERVAL || check.interval > MAX_INTERVAL {
        return Err((
            "interval",
            usage!("{:?} is out of range: 10ms to 3600s", check.interval),
        ));
    }
    if check.timeout.is_zero() || check.timeout > check.interval {
        return Err((
            "timeout",
            usage!(
                "{:?} must be more than 0 and at most the interval ({:?})",
                check.timeout,
                check.interval
            ),
        ));
    }
    for (field, v) in [("rise", check.rise), ("fall", check.fall)] {
        if !(1..=MAX_RISE_FALL).contains(&v) {
            return Err((field, usage!("{v} is out of range: 1 to {MAX_RISE_FALL}")));
        }
    }
    match &check.kind {
        CheckKind::Udp { payload, .. } if payload.is_empty() => {
            Err(("payload", usage!("a udp check needs a payload to send")))
        }
        CheckKind::Dns { name, qtype, .. } => {
            crate::dns::query(0, name, qtype).map_err(|e| ("name", e))?;
            Ok(())
        }
        CheckKind::Http { path, .. }
            if !path.starts_with('/') || path.contains(char::is_whitespace) =>
        {
            Err((
                "path",
                usage!("'{path}' is not a URL path (it starts with '/', no spaces)"),
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("200")
            .unwrap_err()
            .0
            .contains("needs a unit"));
        assert!(parse_duration("xs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Check::default();
        assert_eq!(
            (c.interval, c.timeout, c.rise, c.fall),
            (Duration::from_secs(1), Duration::from_millis(500), 2, 3)
        );
        for (code, defaults) in CHECK_KINDS {
            let kind = CheckKind::with_defaults(code).unwrap();
            assert_eq!((kind.code(), defaults().code()), (code, code));
            validate(&Check { kind, ..c.clone() }).unwrap();
        }
        assert_eq!(CheckKind::with_defaults("icmp"), None);
    }

    #[test]
    fn bad_numbers_name_their_field() {
        let bad = |f: fn(&mut Check)| {
            let mut c = Check {
                kind: CheckKind::with_defaults("dns").unwrap(),
                ..Check::default()
            };
            f(&mut c);
            validate(&c).unwrap_err().0
        };
        assert_eq!(bad(|c| c.interval = Duration::from_millis(1)), "interval");
        assert_eq!(bad(|c| c.timeout = Duration::from_secs(2)), "timeout");
        assert_eq!(bad(|c| c.timeout = Duration::ZERO), "timeout");
        assert_eq!(bad(|c| c.rise = 0), "rise");
        assert_eq!(bad(|c| c.fall = 101), "fall");
        assert_eq!(
            bad(|c| c.kind = CheckKind::Dns {
                name: "a..b".into(),
                qtype: "NS".into(),
                noerror: false
            }),
            "name"
        );
        assert_eq!(
            bad(|c| c.kind = CheckKind::Http {
                port: None,
                path: "health".into()
            }),
            "path"
        );
    }
}
