//! udplb: a UDP load balancer whose datapath is an XDP program.
//!
//! Layers, each using only those below it:
//!
//! - [`cli`]: the command line (clap), turned into a
//!   [`Settings`](config::settings::Settings): the daemon never sees clap.
//! - [`daemon`]: the running balancer — one event loop over signals, timers
//!   and sockets; reload, reports.
//! - [`datapath`]: the kernel's BPF and netlink interfaces, and the
//!   `unsafe` blocks that make syscalls (the crate denies `unsafe_code`
//!   but here, in [`abi`] and in the generated skeleton): load, maps,
//!   counters, attach, pin, privileges. Plain socket I/O (the control
//!   socket, HTTP, probes) stays with the daemon, through std and nix.
//! - [`plan`]: configuration to map operations; rings (round robin, Maglev)
//!   and the flow hash. Pure.
//! - [`config`]: grammar, validation, the TOML file, the settings a run
//!   takes. Pure but for reading the file. [`dns`] (the DNS probe's query
//!   and answer check) sits beside it.
//! - [`abi`] (the C structs of include/udplb.h), [`error`], [`log`] (the
//!   output that never holds the event loop; main, the daemon and the
//!   datapath write through it).
//!
//! Words: a *ring* is a frontend's list of backend slots that the flow
//! hash or the round-robin cursor indexes (Maglev's paper calls it the
//! lookup table, hence `--table-size` and `table_fingerprint`); a frontend
//! has two ring ids, the live one and the one the next plan writes. The
//! *flow table* is the LRU map of pinned flows; the *socket table* is the
//! kernel's list of bound UDP sockets (sock_diag). `table` alone names
//! none of them in the code.

// `unsafe` only where the kernel's ABI is: the datapath (syscalls), the
// C struct mirrors (`Plain`) and the generated skeleton. Each block says
// why it is sound.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[allow(unsafe_code)]
pub mod abi;
pub mod cli;
pub mod config;
pub mod daemon;
#[allow(unsafe_code)]
pub mod datapath;
pub mod dns;
pub mod error;
pub mod log;
pub mod plan;

/// The libbpf-cargo skeleton of bpf/udplb.bpf.c.
#[allow(unsafe_code)]
pub mod bpf {
    #![allow(clippy::all, non_camel_case_types, non_snake_case, dead_code)]
    #![allow(clippy::undocumented_unsafe_blocks)]
    include!(concat!(env!("OUT_DIR"), "/udplb.skel.rs"));
}
