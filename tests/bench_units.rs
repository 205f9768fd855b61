//! The unit tests of the benchmark's helpers (tests/bench/), under `cargo
//! test`. They need no privileges; the benchmark itself runs only under
//! `make bench` (`cargo bench --bench bench`). The helpers name their
//! siblings with `super::`, which is bench.rs's module in both builds.

#[path = "bench/bench.rs"]
mod bench;

// bench.rs's `main` is never called here; named, it keeps what only it
// reaches from counting as dead code, as in the bench itself.
const _: fn() -> std::process::ExitCode = bench::main;
