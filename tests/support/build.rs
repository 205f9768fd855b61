//! Where cargo puts this build's udplb binary, for `process::BIN`:
//! `CARGO_BIN_EXE_udplb` is set only when cargo compiles the root package's
//! own tests and bench, not a library they depend on. A build script's
//! OUT_DIR is `<dir>/build/<package>-<hash>/out` and a binary is
//! `<dir>/<name>`, with the same `<dir>` (`target/release`, or
//! `target/<triple>/release` under --target) for both: tests/cli.rs checks
//! that the path is the one cargo gives its tests.

use std::path::Path;

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for a build script");
    let dir = Path::new(&out)
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is <dir>/build/<package>-<hash>/out");
    println!(
        "cargo:rustc-env=UDPLB_TESTKIT_BIN={}",
        dir.join("udplb").display()
    );
    println!("cargo:rerun-if-changed=build.rs");
}
