//! Helpers for tests/datapath.rs: packet building and the fixture runner.

pub mod fixture;
pub mod packets;
