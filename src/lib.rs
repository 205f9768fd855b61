//! udplb: a UDP load balancer whose datapath is an XDP program.
//!
//! Pure logic (no privileges): [`config`] (grammar and validation),
//! [`state`] (config to map operations), [`rr`] and [`maglev`] (rings),
//! [`flow_hash`], [`report`], [`abi`] (the C structs).
//! Kernel access: [`datapath`] (load, maps, counters, test runs) and
//! [`attach`] (bpf_link to an interface).

pub mod abi;
pub mod attach;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod datapath;
pub mod flow_hash;
pub mod maglev;
pub mod model;
pub mod pin;
pub mod privileges;
pub mod report;
pub mod rr;
pub mod state;

/// The libbpf-cargo skeleton of bpf/udplb.bpf.c.
pub mod bpf {
    #![allow(clippy::all, non_camel_case_types, non_snake_case, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/udplb.skel.rs"));
}
