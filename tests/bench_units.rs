//! The unit tests of the benchmark's helpers (tests/bench/), under `cargo
//! test`. They need no privileges; the benchmark itself runs only under
//! `make bench` (`cargo bench --bench bench`).

#[path = "bench/bench.rs"]
#[allow(dead_code)]
mod bench;
