//! The unit tests of the benchmark's helpers (tests/bench/), under `cargo
//! test`. They need no privileges; the benchmark itself runs only under
//! `make bench` (`cargo bench --bench bench`). The helpers name their
//! siblings with `super::`, which is bench.rs's module in both builds.

// Here bench.rs's `main`, and what only it reaches, is never called.
#[path = "bench/bench.rs"]
#[allow(dead_code)]
mod bench;
