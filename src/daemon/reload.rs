//! Reloading: re-read the configuration file and apply the difference. A bad
//! file changes nothing; the answer says what changed or why nothing did.

use std::fmt;

use anyhow::anyhow;

use crate::config::{file, Config};
use crate::datapath::Datapath;
use crate::plan::State;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The file describes what is already running.
    Unchanged,
    /// The changes applied, one line each.
    Changed(Vec<String>),
}

/// Why a reload did not take effect.
#[derive(Debug)]
pub enum ReloadError {
    /// The file is bad: nothing was touched.
    Rejected(anyhow::Error),
    /// Writing the maps failed part-way.
    Failed(anyhow::Error),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Rejected(e) => {
                write!(f, "reload rejected, configuration unchanged: {e:#}")
            }
            ReloadError::Failed(e) => write!(f, "reload failed while writing the maps: {e:#}"),
        }
    }
}

/// Re-reads `path` and applies it. On success `state` and `config` describe
/// the new configuration; on any error they are untouched.
pub fn reload(
    path: &str,
    iface: &str,
    datapath: &Datapath,
    state: &mut State,
    config: &mut Config,
) -> Result<Reloaded, ReloadError> {
    let f = file::load(path).map_err(|e| ReloadError::Rejected(e.into()))?;
    if f.interface != iface {
        return Err(ReloadError::Rejected(anyhow!(
            "{path}: the interface changed from {iface} to {}; that needs a restart",
            f.interface
        )));
    }
    let (plan, next) = state.plan(&f.config);
    if plan.is_empty() {
        return Ok(Reloaded::Unchanged);
    }
    datapath.apply(&plan).map_err(ReloadError::Failed)?;
    *state = next;
    *config = f.config;
    Ok(Reloaded::Changed(
        plan.changes.iter().map(|c| c.to_string()).collect(),
    ))
}
