//! Reloading: re-read the configuration file and apply the difference. A bad
//! file changes nothing; the answer says what changed or why nothing did.

use std::fmt;

use anyhow::anyhow;

use crate::config::{file, Config};
use crate::datapath::Datapath;
use crate::plan::Tables;

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
    /// Writing the maps failed part-way: the next reload finishes it.
    Failed(anyhow::Error),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Rejected(e) => {
                write!(f, "reload rejected, configuration unchanged: {e:#}")
            }
            ReloadError::Failed(e) => write!(
                f,
                "reload failed while writing the maps: {e:#}; the next reload finishes it"
            ),
        }
    }
}

/// Re-reads `path` and applies it. A file that is rejected changes nothing.
/// Otherwise `tables` and `config` describe the new configuration, even if
/// writing the maps failed part-way: the next reload finishes that first.
pub fn reload(
    path: &str,
    iface: &str,
    datapath: &Datapath,
    tables: &mut Tables,
    config: &mut Config,
) -> Result<Reloaded, ReloadError> {
    let f = file::load(path).map_err(|e| ReloadError::Rejected(e.into()))?;
    if f.interface != iface {
        return Err(ReloadError::Rejected(anyhow!(
            "{path}: the interface changed from {iface} to {}; that needs a restart",
            f.interface
        )));
    }
    // Whatever happens now, the maps are on their way to the new
    // configuration (see `Tables`): the counters are laid out by it.
    let result = tables.apply(datapath, &f.config);
    *config = f.config;
    match result.map_err(ReloadError::Failed)? {
        changes if changes.is_empty() => Ok(Reloaded::Unchanged),
        changes => Ok(Reloaded::Changed(changes)),
    }
}
