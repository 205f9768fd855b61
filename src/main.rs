//! udplb: parse the command line and hand what it says to the daemon.
//!
//! Exit status: 0 after a clean stop, 2 for input the user must fix (bad
//! command line or config file, unknown interface, missing privileges, an
//! XDP program already there), 1 for anything else.

use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;

use udplb::cli::{Args, Command};
use udplb::error::UsageError;
use udplb::{daemon, warn};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return command_line_error(e),
    };
    let result = match (&args.command, &args.unpin) {
        (Some(Command::Status { iface, json }), _) => daemon::status(iface.as_deref(), *json),
        (Some(Command::Reload { iface }), _) => daemon::reload(iface.as_deref()),
        (None, Some(iface)) => daemon::unpin(iface),
        (None, None) => args.settings().map_err(Into::into).and_then(daemon::run),
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn!("udplb: error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    };
    // The daemon's last lines, if a reader takes them soon; an output
    // nobody reads does not keep udplb from exiting.
    udplb::log::finish(Duration::from_secs(2));
    code
}

/// `--help` and `--version` as clap prints them (stdout, exit 0); a bad
/// command line as clap words it, with the usage lines, but under the
/// `udplb: error:` prefix of every other error, exit 2.
fn command_line_error(e: clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let text = e.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    warn!("udplb: error: {}", text.trim_end());
    ExitCode::from(2)
}
