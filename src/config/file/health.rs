//! `[frontend.health]` and `[frontend.health.backend."BACKEND"]`: a
//! frontend's check, what it does when every backend is down, and each
//! backend's own check, read step by step so that every error points at
//! its key.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawCheck, Text};
use super::spans::Lines;
use crate::config::health::{self, parse_duration, Check, CheckKind, FrontendHealth, OnAllDown};
use crate::config::names::{check_kind_names, one_of};
use crate::config::BackendConfig;
use crate::error::UsageError;

/// The frontend's health settings: its check over the defaults, then each
/// backend's over the frontend's.
pub(super) fn frontend_health(
    h: &Spanned<RawCheck>,
    backends: &[BackendConfig],
    frontend: &str,
    at: &Lines,
) -> Result<FrontendHealth, UsageError> {
    let raw = h.get_ref();
    let mut out = FrontendHealth::new(check(raw, &Check::default(), h.span(), at)?);
    if let Some(v) = &raw.on_all_down {
        out.on_all_down = on_all_down(v, at)?;
    }
    if let Some(v) = &raw.sockets {
        out.sockets = *v.get_ref();
    }
    for (name, b) in raw.backend.iter().flatten() {
        frontend_only_keys(b, at)?;
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

fn on_all_down(v: &Spanned<String>, at: &Lines) -> Result<OnAllDown, UsageError> {
    match v.get_ref().as_str() {
        "open" => Ok(OnAllDown::Open),
        "drop" => Ok(OnAllDown::Drop),
        other => Err(at.error(
            v.span(),
            "on_all_down",
            format!("'{other}' is not open or drop"),
        )),
    }
}

/// A backend's section has the check keys only.
fn frontend_only_keys(b: &Spanned<RawCheck>, at: &Lines) -> Result<(), UsageError> {
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
    Ok(())
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
        c.kind = kind(k, base).ok_or_else(|| {
            at.error(
                k.span(),
                "check",
                format!("'{}' is not {}", k.get_ref(), one_of(&check_kind_names())),
            )
        })?;
    }
    timing(raw, &mut c, at)?;
    kind_settings(raw, &mut c.kind, at)?;
    foreign_keys(raw, c.kind.code(), at)?;
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

/// `check = "KIND"`: the kind with its defaults, or `base`'s own settings
/// if it is the same kind. `None`: no such kind.
fn kind(k: &Spanned<String>, base: &Check) -> Option<CheckKind> {
    match CheckKind::with_defaults(k.get_ref()) {
        // The same kind keeps the settings it inherited.
        Some(kind) if kind.code() == base.kind.code() => Some(base.kind.clone()),
        other => other,
    }
}

/// `interval`, `timeout`, `rise` and `fall`.
fn timing(raw: &RawCheck, c: &mut Check, at: &Lines) -> Result<(), UsageError> {
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
    Ok(())
}

/// The keys of the check's own kind (the others are refused by
/// [`foreign_keys`]).
fn kind_settings(raw: &RawCheck, kind: &mut CheckKind, at: &Lines) -> Result<(), UsageError> {
    match kind {
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
        } => dns_settings(raw, name, qtype, noerror, at)?,
        CheckKind::Tcp { port: p } => {
            if let Some(v) = &raw.port {
                *p = Some(port(v, at)?);
            }
        }
        CheckKind::Http { port: p, path } => {
            if let Some(v) = &raw.port {
                *p = Some(port(v, at)?);
            }
            if let Some(v) = &raw.path {
                *path = v.get_ref().clone();
            }
        }
        CheckKind::None => {}
    }
    Ok(())
}

/// `name`, `type` and `rcode` of a dns check, each checked where it is
/// written.
fn dns_settings(
    raw: &RawCheck,
    name: &mut String,
    qtype: &mut String,
    noerror: &mut bool,
    at: &Lines,
) -> Result<(), UsageError> {
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
    Ok(())
}

/// Refuses the keys of kinds other than `code`.
fn foreign_keys(raw: &RawCheck, code: &str, at: &Lines) -> Result<(), UsageError> {
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
            return Err(at.error(span, field, format!("is not a setting of a {code} check")));
        }
    }
    Ok(())
}

fn port(v: &Spanned<i64>, at: &Lines) -> Result<u16, UsageError> {
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
}

/// A duration with its unit; a bare number is refused with the fix.
fn duration(value: &Spanned<Text>, field: &str, at: &Lines) -> Result<Duration, UsageError> {
    match value.get_ref() {
        Text::Str(s) => parse_duration(s).map_err(|e| at.error(value.span(), field, e)),
        Text::Number(n) => Err(at.error(
            value.span(),
            field,
            format!("{n} needs a unit: write \"{n}ms\" or \"{n}s\""),
        )),
    }
}

/// `rise` or `fall`: 1 to MAX_RISE_FALL.
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
