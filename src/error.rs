//! The one error type every layer shares: input the user has to fix.

use std::fmt;

/// An input the user has to fix (command line, config file, interface name,
/// privileges). `main` prints it on one line and exits 2; every other error
/// exits 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `usage!("...", args)`: a [`UsageError`] from a format string.
#[macro_export]
macro_rules! usage {
    ($($arg:tt)*) => { $crate::error::UsageError(format!($($arg)*)) };
}
