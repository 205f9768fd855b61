//! udplb: parse and check the command line, load the datapath, attach it,
//! report counters until SIGINT/SIGTERM, detach.
//!
//! Exit status: 0 after a clean stop, 2 for input the user must fix (bad
//! command line, unknown interface, missing privileges, an XDP program
//! already there), 1 for anything else.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use libbpf_rs::PrintLevel;

use udplb::attach;
use udplb::cli::Args;
use udplb::config::{Config, UsageError};
use udplb::datapath::Datapath;
use udplb::privileges;
use udplb::report;
use udplb::tables::Tables;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udplb: error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Loopback is ifindex 1 in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

fn libbpf_print(level: PrintLevel, msg: String) {
    let _ = level;
    eprint!("{msg}");
}

fn run(args: &Args) -> Result<()> {
    let config = Config::from_specs(&args.frontends)?;
    let ifindex = nix::net::if_::if_nametoindex(args.iface.as_str())
        .map_err(|_| UsageError(format!("unknown interface '{}'", args.iface)))?;
    privileges::check_self()?;

    let level = match args.verbose {
        0 => PrintLevel::Warn,
        1 => PrintLevel::Info,
        _ => PrintLevel::Debug,
    };
    libbpf_rs::set_print(Some((level, libbpf_print)));

    let datapath = Datapath::load()?;
    datapath
        .write(&Tables::build(&config, 0))
        .context("writing the backend tables")?;

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the SIGINT/SIGTERM handler")?;

    let attachment = attach::attach(
        datapath.xdp_prog(),
        &args.iface,
        ifindex,
        args.xdp_mode,
        args.force,
    )?;
    // On lo, replies from local backends come back in through the receive
    // path and XDP rewrites them; elsewhere they leave through egress.
    let egress = if ifindex == LOOPBACK_IFINDEX {
        None
    } else {
        Some(attach::attach_egress(
            datapath.egress_prog(),
            &args.iface,
            ifindex,
        )?)
    };
    let replies = egress
        .as_ref()
        .map_or("XDP".to_string(), |e| e.kind().to_string());
    println!(
        "udplb: attached to {} ({} XDP, program id {}; replies: {replies}); Ctrl-C to stop",
        attachment.ifname, attachment.mode, attachment.prog_id
    );
    for fe in &config.frontends {
        let ports: Vec<String> = fe.backends.iter().map(u16::to_string).collect();
        println!("  {} -> {} (round robin)", fe.listen, ports.join(", "));
    }

    let sizes: Vec<usize> = config.frontends.iter().map(|f| f.backends.len()).collect();
    let interval = args.stats.map(Duration::from_secs);
    let mut next = interval.map(|i| Instant::now() + i);
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if let (Some(due), Some(i)) = (next, interval) {
            if Instant::now() >= due {
                print!("{}", report::render(&config, &datapath.counters(&sizes)?));
                next = Some(due + i);
            }
        }
    }

    drop(egress);
    drop(attachment);
    println!("udplb: detached from {}; final counters:", args.iface);
    print!("{}", report::render(&config, &datapath.counters(&sizes)?));
    Ok(())
}
