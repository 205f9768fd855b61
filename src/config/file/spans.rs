//! Where an error is: every error names the file; one about a value also
//! its line and field (`PATH:LINE: FIELD: MSG`), a TOML syntax error its
//! line.
//! [`Lines`] turns a value's span into its line; the readers of single
//! fields here put that position in their errors; [`Lines::toml_error`]
//! adds the likely fix to a table header with the wrong brackets.

use std::ops::Range;

use toml::Spanned;

use crate::config::names::{one_of, sched_names};
use crate::config::{parse_flow_timeout, parse_table_size, Hash, Mode, Sched, Tunnels};
use crate::error::UsageError;

/// Line numbers (1-based) of byte offsets in the file.
pub(super) struct Lines<'a> {
    pub(super) path: &'a str,
    pub(super) text: &'a str,
}

impl Lines<'_> {
    pub(super) fn line(&self, span: Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// `PATH:LINE: FIELD: MSG`, LINE the line of `span`.
    pub(super) fn error(
        &self,
        span: Range<usize>,
        field: &str,
        msg: impl std::fmt::Display,
    ) -> UsageError {
        UsageError(format!("{}:{}: {field}: {msg}", self.path, self.line(span)))
    }

    /// `PATH:LINE: MSG` for a file serde could not read, with the fix when
    /// the line is a table header with the wrong brackets.
    pub(super) fn toml_error(&self, e: &toml::de::Error) -> UsageError {
        let line = e.span().map(|s| self.line(s)).unwrap_or(1);
        let msg = e.message().trim().replace('\n', "; ");
        let hint = (self.text.lines())
            .nth(line - 1)
            .and_then(|l| table_hint(l, &msg))
            .unwrap_or_default();
        UsageError(format!("{}:{line}: {msg}{hint}", self.path))
    }
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

pub(super) fn sched(value: &Spanned<String>, field: &str, at: &Lines) -> Result<Sched, UsageError> {
    Sched::parse(value.get_ref()).ok_or_else(|| {
        at.error(
            value.span(),
            field,
            format!("'{}' is not {}", value.get_ref(), one_of(&sched_names())),
        )
    })
}

pub(super) fn hash(value: &Spanned<String>, field: &str, at: &Lines) -> Result<Hash, UsageError> {
    Hash::parse(value.get_ref()).map_err(|e| at.error(value.span(), field, e.0))
}

pub(super) fn mode(value: &Spanned<String>, field: &str, at: &Lines) -> Result<Mode, UsageError> {
    Mode::parse(value.get_ref()).map_err(|e| at.error(value.span(), field, e.0))
}

pub(super) fn tunnels(
    value: &Spanned<Vec<String>>,
    field: &str,
    at: &Lines,
) -> Result<Tunnels, UsageError> {
    Tunnels::parse(value.get_ref()).map_err(|e| at.error(value.span(), field, e.0))
}

pub(super) fn table_size(value: &Spanned<i64>, field: &str, at: &Lines) -> Result<u32, UsageError> {
    parse_table_size(&value.get_ref().to_string()).map_err(|e| at.error(value.span(), field, e))
}

pub(super) fn flow_timeout(
    value: &Spanned<i64>,
    field: &str,
    at: &Lines,
) -> Result<u32, UsageError> {
    parse_flow_timeout(&value.get_ref().to_string()).map_err(|e| at.error(value.span(), field, e))
}
