//! Configurations written short, for the plan's unit tests.

use super::Down;
use crate::config::{Config, Defaults, Sched};

pub fn cfg(specs: &[&str]) -> Config {
    Config::from_specs(specs).unwrap()
}

pub fn cfg_owned(specs: Vec<String>) -> Config {
    Config::from_specs(&specs).unwrap()
}

/// Maglev frontends with a table of 13 entries.
pub fn maglev(specs: &[&str]) -> Config {
    Config::from_specs_with(
        specs,
        Defaults {
            sched: Sched::Maglev,
            table_size: 13,
            ..Defaults::default()
        },
    )
    .unwrap()
}

/// quic frontends with a table of 13 entries.
pub fn quic(specs: &[&str]) -> Config {
    let defaults = Defaults {
        sched: Sched::Quic,
        table_size: 13,
        ..Defaults::default()
    };
    Config::from_specs_with(specs, defaults).unwrap()
}

/// The backends on `ports` of the `fe`th frontend of `c`, held down.
pub fn down(c: &Config, fe: usize, ports: &[u16]) -> Down {
    let listen = c.frontends[fe].listen;
    ports.iter().map(|&p| (listen, (None, p))).collect()
}
