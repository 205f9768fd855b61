//! The balancer's configuration: the `FRONTEND=BACKENDS` grammar and every
//! validation rule. Pure logic, no kernel access.
//!
//!   FRONTEND  = PORT | IPv4:PORT | [IPv6]:PORT
//!   BACKENDS  = BACKEND[,BACKEND...]
//!   BACKEND   = TARGET[#SERVER_ID][@WEIGHT]  (weight 0..=1000, default 1; 0 drains it)
//!   TARGET    = PORT                      (a port on this host)
//!             | IPv4:PORT | [IPv6]:PORT   (another host: forwarded in XDP)
//!   SERVER_ID = 1 to 15 bytes in hex (`0a01`): the backend's QUIC-LB server
//!               ID, on quic frontends only (`--sched quic`), where every
//!               backend has one, all of the same length, each once
//!
//! A port-only frontend listens on every local address of both families;
//! `0.0.0.0:PORT` and `[::]:PORT` are the wildcard of one family.
//!
//! One file per part: `listen.rs` (interfaces and frontend addresses),
//! `backend.rs`, `quic.rs` (server IDs), `sched.rs` (schedulers and their
//! settings), `names.rs` (the names of schedulers and check kinds),
//! `check.rs` (the rules over a whole configuration), `health.rs`,
//! `announce.rs`, `file/` (the TOML file) and `settings.rs` (all the
//! daemon takes from the command line and the file). This file holds what ties
//! them together: a frontend, the configuration and its checks in order.

pub mod announce;
mod backend;
mod check;
pub mod file;
pub mod health;
mod listen;
mod mode;
pub mod names;
mod quic;
mod sched;
pub mod settings;

pub use backend::{parse_backend, weights, BackendConfig};
pub use health::{Check, CheckKind, FrontendHealth, OnAllDown};
pub use listen::{check_interface_name, parse_listen, Listen};
pub use mode::{Mode, Tunnel, Tunnels};
pub use quic::{QuicParams, QuicSettings, ServerId};
pub use sched::{
    cycle_len, is_prime, parse_flow_table_size, parse_flow_timeout, parse_table_size, ring_len,
    rr_turns, Hash, Sched,
};

use crate::error::UsageError;
use crate::usage;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendConfig {
    pub listen: Listen,
    /// In the order given (round robin follows it).
    pub backends: Vec<BackendConfig>,
    pub sched: Sched,
    /// Maglev table size (a prime); unused by round robin.
    pub table_size: u32,
    /// Checks and what to do when every backend is down. The plan reads
    /// only `on_all_down`: the checks reach it as their verdicts.
    pub health: FrontendHealth,
    /// Idle timeout of pinned flows in seconds (maglev and quic; 0: no flow
    /// table for this frontend).
    pub flow_timeout: u32,
    /// QUIC-LB settings (quic frontends).
    pub quic_settings: QuicSettings,
    /// What maglev (and quic's fallback) hashes: the flow or the client.
    pub hash: Hash,
    /// How requests reach the backends: NAT, or direct server return.
    pub mode: Mode,
    /// The outer source addresses of ipip and gue.
    pub tunnels: Tunnels,
}

/// A configuration that passed every check in [`Config::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub frontends: Vec<FrontendConfig>,
}

/// Scheduler settings that apply to frontends that do not set their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub sched: Sched,
    pub table_size: u32,
    pub flow_timeout: u32,
    pub quic: QuicSettings,
    pub hash: Hash,
    pub mode: Mode,
    pub tunnels: Tunnels,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            sched: Sched::Rr,
            table_size: crate::abi::UDPLB_DEFAULT_MAGLEV_SIZE,
            flow_timeout: crate::abi::UDPLB_DEFAULT_FLOW_TIMEOUT,
            quic: QuicSettings::default(),
            hash: Hash::Flow,
            mode: Mode::Nat,
            tunnels: Tunnels::default(),
        }
    }
}

/// `FRONTEND=BACKENDS`, with the scheduler settings of `defaults`.
pub fn parse_frontend(spec: &str, defaults: Defaults) -> Result<FrontendConfig, UsageError> {
    let (front, backs) = spec
        .split_once('=')
        .ok_or_else(|| usage!("'{spec}': expected FRONTEND=BACKENDS, e.g. 9875=9876,9877"))?;
    let listen = parse_listen(front.trim())?;
    if backs.trim().is_empty() {
        return Err(usage!("frontend {listen}: no backends given after '='"));
    }
    let backends = backs
        .split(',')
        .map(|b| parse_backend(b, &listen.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FrontendConfig {
        listen,
        backends,
        sched: defaults.sched,
        table_size: defaults.table_size,
        health: FrontendHealth::new(Check::default()),
        flow_timeout: defaults.flow_timeout,
        quic_settings: defaults.quic,
        hash: defaults.hash,
        mode: defaults.mode,
        tunnels: defaults.tunnels,
    })
}

impl FrontendConfig {
    /// How it picks a backend, as a person reads it: "round robin",
    /// "maglev", "quic", with a client hash "maglev, by client/64", with
    /// direct server return "maglev, gue:6080".
    pub fn scheme(&self) -> String {
        let mut s = String::from(self.sched.name());
        if let Hash::Client { .. } = self.hash {
            s += &format!(", by {}", self.hash.code());
        }
        if self.mode.is_dsr() {
            s += &format!(", {}", self.mode);
        }
        s
    }
}

impl Config {
    /// Checks everything the datapath relies on. See README "Limits".
    pub fn new(frontends: Vec<FrontendConfig>) -> Result<Config, UsageError> {
        Config::check(frontends).map_err(|(_, e)| e)
    }

    /// As [`Config::new`]; an error also names the index of the frontend it
    /// is about, when it is about one (the config file adds its line).
    pub fn check(frontends: Vec<FrontendConfig>) -> Result<Config, (Option<usize>, UsageError)> {
        check::frontend_count(&frontends).map_err(|e| (None, e))?;
        let listening = check::Listening::of(&frontends)?;
        let mut owners = check::Owners::default();
        for (i, fe) in frontends.iter().enumerate() {
            check::frontend(fe, &listening, &mut owners).map_err(|e| (Some(i), e))?;
        }
        check::gue_ports(&frontends)?;
        check::totals(&frontends).map_err(|e| (None, e))?;
        Ok(Config { frontends })
    }

    /// The command line's `--health KIND`: every frontend checks its
    /// backends with KIND at the default timing.
    pub fn set_check(&mut self, kind: &CheckKind) {
        for fe in &mut self.frontends {
            fe.health.check.kind = kind.clone();
        }
    }

    /// Parses and checks a list of `FRONTEND=BACKENDS` arguments with the
    /// default scheduler (round robin).
    pub fn from_specs<S: AsRef<str>>(specs: &[S]) -> Result<Config, UsageError> {
        Config::from_specs_with(specs, Defaults::default())
    }

    pub fn from_specs_with<S: AsRef<str>>(
        specs: &[S],
        defaults: Defaults,
    ) -> Result<Config, UsageError> {
        let frontends = specs
            .iter()
            .map(|s| parse_frontend(s.as_ref(), defaults))
            .collect::<Result<Vec<_>, _>>()?;
        Config::new(frontends)
    }
}

/// The message [`Config::from_specs`] refuses `specs` with (the tests of
/// every part use it).
#[cfg(test)]
fn refused(specs: &[&str]) -> String {
    Config::from_specs(specs).expect_err("should be rejected").0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_line() {
        let c = Config::from_specs(&["9875=9876,9877,9878"]).unwrap();
        assert_eq!(c.frontends.len(), 1);
        assert_eq!(
            c.frontends[0].listen,
            Listen {
                addr: None,
                port: 9875
            }
        );
        let ports: Vec<u16> = c.frontends[0].backends.iter().map(|b| b.port).collect();
        assert_eq!(ports, vec![9876, 9877, 9878]);
        assert!(c.frontends[0].backends.iter().all(|b| b.weight == 1));
        assert_eq!(c.frontends[0].sched, Sched::Rr);
        assert_eq!(c.frontends[0].listen.endpoints().len(), 2, "both families");
    }
}
