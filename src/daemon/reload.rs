//! Reloading: re-read the configuration file and apply the difference. A bad
//! file changes nothing; the answer says what changed or why nothing did.

use std::fmt;

use anyhow::anyhow;

use crate::config::{file, Config};
use crate::datapath::Datapath;
use crate::plan::MapWriter;

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
    /// Writing the maps failed part-way: the next write to the maps (a
    /// health transition, the end of the reply grace, a reload) finishes it
    /// first.
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
                "reload failed while writing the maps: {e:#}; the next change to the maps finishes it"
            ),
        }
    }
}

/// Re-reads `path` and applies it, with the backends in `down` (health)
/// out of their rings; new backends start up. A file that is rejected changes nothing.
/// Otherwise `writer` and `config` describe the new configuration, even if
/// writing the maps failed part-way: the next write to the maps finishes
/// that first.
pub fn reload(
    path: &str,
    iface: &str,
    datapath: &Datapath,
    writer: &mut MapWriter,
    config: &mut Config,
    down: &crate::plan::Down,
    announce: &mut crate::config::announce::Announce,
) -> Result<Reloaded, ReloadError> {
    let f = file::load(path).map_err(|e| ReloadError::Rejected(e.into()))?;
    if f.interface != iface {
        return Err(ReloadError::Rejected(anyhow!(
            "{path}: the interface changed from {iface} to {}; that needs a restart",
            f.interface
        )));
    }
    if f.announce.interface != announce.interface {
        let name = |i: &Option<String>| i.clone().unwrap_or_else(|| "none".into());
        return Err(ReloadError::Rejected(anyhow!(
            "{path}: announce_interface changed from {} to {}; that needs a restart",
            name(&announce.interface),
            name(&f.announce.interface)
        )));
    }
    let announced = announce_changes(announce, &f.announce);
    *announce = f.announce;
    // Whatever happens now, the maps are on their way to the new
    // configuration (see `MapWriter`): the counters are laid out by it.
    let result = writer.apply_with(datapath, &f.config, down);
    let health = health_changes(config, &f.config);
    *config = f.config;
    match result
        .map_err(ReloadError::Failed)?
        .into_iter()
        .chain(health)
        .chain(announced)
        .collect::<Vec<_>>()
    {
        changes if changes.is_empty() => Ok(Reloaded::Unchanged),
        changes => Ok(Reloaded::Changed(changes)),
    }
}

/// One line per frontend that starts or stops being announced, and one
/// for new delays.
fn announce_changes(
    old: &crate::config::announce::Announce,
    new: &crate::config::announce::Announce,
) -> Vec<String> {
    let mut out: Vec<String> = (new.frontends.difference(&old.frontends))
        .map(|l| format!("frontend {l}: announced"))
        .chain(
            (old.frontends.difference(&new.frontends))
                .map(|l| format!("frontend {l}: no longer announced")),
        )
        .collect();
    if (old.grace, old.lease) != (new.grace, new.lease) {
        out.push(format!(
            "announce: grace {:?}, lease {:?}",
            new.grace, new.lease
        ));
    }
    out
}

/// One line per frontend whose health settings changed (the plan does not
/// see them: they change no ring by themselves).
fn health_changes(old: &Config, new: &Config) -> Vec<String> {
    new.frontends
        .iter()
        .filter_map(|fe| {
            let before = old.frontends.iter().find(|o| o.listen == fe.listen)?;
            (before.health != fe.health).then(|| {
                format!(
                    "frontend {}: health check {} -> {}",
                    fe.listen, before.health.check, fe.health.check
                )
            })
        })
        .collect()
}
