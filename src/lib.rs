//! udplb: a UDP load balancer whose datapath is an XDP program.
//!
//! Layers, each using only those below it:
//!
//! - [`daemon`]: the running balancer — one event loop over signals, timers
//!   and sockets; reload, reports.
//! - [`cli`]: the command line (clap).
//! - [`datapath`]: every syscall and every `unsafe`: load, maps, counters,
//!   attach, pin, privileges.
//! - [`plan`]: configuration to map operations; rings (round robin, Maglev)
//!   and the flow hash. Pure.
//! - [`config`]: grammar, validation, the TOML file. Pure.
//! - [`abi`] (the C structs of include/udplb.h), [`error`].

pub mod abi;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod datapath;
pub mod dns;
pub mod error;
pub mod plan;

/// The libbpf-cargo skeleton of bpf/udplb.bpf.c.
pub mod bpf {
    #![allow(clippy::all, non_camel_case_types, non_snake_case, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/udplb.skel.rs"));
}
