//! Output that can never stop the balancer. `println!` panics when stdout is
//! a closed pipe (`udplb --stats 1 ... | head -3`, a log reader that went
//! away); these write what they can and ignore the rest.

use std::fmt;
use std::io::Write;

/// One line (or block) on stdout; write errors are ignored.
pub fn out(args: fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_fmt(args);
    let _ = o.write_all(b"\n");
    let _ = o.flush();
}

/// One line on stderr; write errors are ignored.
pub fn err(args: fmt::Arguments<'_>) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_fmt(args);
    let _ = e.write_all(b"\n");
}

/// `say!("...")`: a line on stdout that cannot panic.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::daemon::log::out(format_args!($($arg)*)) };
}

/// `warn!("...")`: a line on stderr that cannot panic.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::daemon::log::err(format_args!($($arg)*)) };
}
