//! udplb: parse and check the command line (or the config file), load the
//! datapath, attach it, report counters, reload on SIGHUP, and detach on
//! SIGINT/SIGTERM (or leave it pinned with --pin).
//!
//! Exit status: 0 after a clean stop, 2 for input the user must fix (bad
//! command line or config file, unknown interface, missing privileges, an
//! XDP program already there), 1 for anything else.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use libbpf_rs::PrintLevel;

use udplb::attach::{self, EgressAttachment, XdpAttachment};
use udplb::cli::Args;
use udplb::config::{Config, UsageError};
use udplb::config_file;
use udplb::datapath::Datapath;
use udplb::pin;
use udplb::privileges;
use udplb::report;

/// Loopback is ifindex 1 in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sighup(_: std::ffi::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

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

fn libbpf_print(_level: PrintLevel, msg: String) {
    eprint!("{msg}");
}

fn run(args: &Args) -> Result<()> {
    if let Some(iface) = &args.unpin {
        privileges::check_self()?;
        let removed = pin::unpin(iface)?;
        println!(
            "udplb: unpinned {iface} ({}); its programs are detached",
            removed.join(", ")
        );
        return Ok(());
    }
    let (iface, mut config) = match &args.config {
        Some(path) => {
            let f = config_file::load(path)?;
            (f.interface, f.config)
        }
        None => {
            let iface = args.iface.clone().context("no interface given")?;
            (
                iface,
                Config::from_specs_with(&args.frontends, args.defaults())?,
            )
        }
    };
    let ifaces = interfaces(&iface)?;
    privileges::check_self()?;

    let level = match args.verbose {
        0 => PrintLevel::Warn,
        1 => PrintLevel::Info,
        _ => PrintLevel::Debug,
    };
    libbpf_rs::set_print(Some((level, libbpf_print)));

    let mut datapath = Datapath::load()?;
    let mut state = datapath
        .configure(&config)
        .context("writing the backend tables")?;

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the SIGINT/SIGTERM handler")?;
    let hup = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_sighup),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGHUP, &hup) }
        .context("installing the SIGHUP handler")?;

    let mut attached = Vec::new();
    for (name, ifindex) in &ifaces {
        let (xdp, egress) = attach_one(args, &mut datapath, name, *ifindex)?;
        if *ifindex != LOOPBACK_IFINDEX {
            datapath.add_tx_port(*ifindex)?;
        }
        let replies = egress
            .as_ref()
            .map_or("XDP".to_string(), |e| e.kind().to_string());
        println!(
            "udplb: attached to {} ({} XDP, program id {}; replies: {replies}){}; Ctrl-C to stop",
            xdp.ifname,
            xdp.mode,
            xdp.prog_id,
            if args.pin {
                format!("; pinned under {}", pin::dir(name).display())
            } else {
                String::new()
            }
        );
        attached.push((xdp, egress));
    }
    if args.pin {
        pin_all(&mut datapath, &attached)?;
    }
    print_frontends(&config);
    warn_if_not_forwarding(&config);

    let interval = args.stats.map(Duration::from_secs);
    let mut next = interval.map(|i| Instant::now() + i);
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if RELOAD.swap(false, Ordering::SeqCst) {
            reload(args, &iface, &datapath, &mut state, &mut config);
        }
        if let (Some(due), Some(i)) = (next, interval) {
            if Instant::now() >= due {
                // A failed read is reported, not fatal: the datapath runs on.
                match datapath.counters(&state.layout(&config)) {
                    Ok(c) => print!("{}", report::render(&config, &c)),
                    Err(e) => eprintln!("udplb: reading counters: {e:#}"),
                }
                next = Some(due + i);
            }
        }
    }

    let counters = datapath.counters(&state.layout(&config))?;
    for (xdp, egress) in attached {
        let name = xdp.ifname.clone();
        if args.pin {
            if let Some(e) = egress {
                e.keep();
            }
            drop(xdp);
            println!(
                "udplb: left attached to {name}, pinned under {}; `udplb --unpin {name}` removes it",
                pin::dir(&name).display()
            );
        } else {
            drop(egress);
            drop(xdp);
            println!("udplb: detached from {name}");
        }
    }
    println!("udplb: final counters:");
    print!("{}", report::render(&config, &counters));
    Ok(())
}

/// `eth0` or `eth0,eth1`: names and indexes, each once.
fn interfaces(list: &str) -> Result<Vec<(String, u32)>, UsageError> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for name in list.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(UsageError(format!("empty interface name in '{list}'")));
        }
        let ifindex = nix::net::if_::if_nametoindex(name)
            .map_err(|_| UsageError(format!("unknown interface '{name}'")))?;
        if out.iter().any(|(n, _)| n == name) {
            return Err(UsageError(format!("interface {name} is listed twice")));
        }
        out.push((name.to_string(), ifindex));
    }
    Ok(out)
}

/// Attaches XDP (and, except on lo, the egress program), or with `--pin`
/// takes over the links a previous `udplb --pin` left, and pins them.
fn attach_one(
    args: &Args,
    datapath: &mut Datapath,
    iface: &str,
    ifindex: u32,
) -> Result<(XdpAttachment, Option<EgressAttachment>)> {
    let dir = pin::dir(iface);
    if args.pin {
        pin::prepare(&dir)?;
    }
    let adopted = match args.pin {
        true => attach::adopt_xdp(
            &dir.join(pin::XDP_LINK),
            datapath.xdp_prog(),
            iface,
            ifindex,
        )?,
        false => None,
    };
    let xdp = match adopted {
        Some(x) => x,
        None => attach::attach(
            datapath.xdp_prog(),
            iface,
            ifindex,
            args.xdp_mode,
            args.force,
        )?,
    };
    // On lo, replies from local backends come back in through the receive
    // path and XDP rewrites them; elsewhere they leave through egress.
    let egress = if ifindex == LOOPBACK_IFINDEX {
        None
    } else {
        let adopted = match args.pin {
            true => attach::adopt_egress(&dir.join(pin::EGRESS_LINK), datapath.egress_prog())?,
            false => None,
        };
        match adopted {
            Some(e) => Some(e),
            None => Some(attach::attach_egress(
                datapath.egress_prog(),
                iface,
                ifindex,
            )?),
        }
    };
    Ok((xdp, egress))
}

/// `--pin`: pins links and maps under each interface's directory, once every
/// interface is attached (an error before leaves nothing pinned).
fn pin_all(
    datapath: &mut Datapath,
    attached: &[(XdpAttachment, Option<EgressAttachment>)],
) -> Result<()> {
    for (xdp, egress) in attached {
        let dir = pin::dir(&xdp.ifname);
        xdp.pin(&dir.join(pin::XDP_LINK))?;
        if let Some(e) = egress {
            e.pin(&dir.join(pin::EGRESS_LINK))?;
        }
        datapath.pin_maps(&dir)?;
    }
    Ok(())
}

/// Remote backends need the kernel to forward (bpf_fib_lookup refuses
/// otherwise): say so at once rather than let datagrams pile up in the
/// `fib_fwd_disabled` counter.
fn warn_if_not_forwarding(config: &Config) {
    let forwarding = |knob: &str| {
        std::fs::read_to_string(format!("/proc/sys/{knob}")).is_ok_and(|v| v.trim() == "1")
    };
    if forwarding("net/ipv4/ip_forward") || forwarding("net/ipv6/conf/all/forwarding") {
        for fe in config
            .frontends
            .iter()
            .filter(|f| f.listen.addr.is_none_or(|a| a.is_unspecified()))
        {
            eprintln!(
                "udplb: warning: this host forwards packets, and frontend {} matches its port on \
                 every address, also in datagrams passing through; give it an address",
                fe.listen
            );
        }
    }
    let remote_v4 = config
        .frontends
        .iter()
        .flat_map(|f| &f.backends)
        .any(|b| b.addr.is_some_and(|a| a.is_ipv4()));
    if remote_v4 && !forwarding("net/ipv4/conf/all/accept_local") {
        eprintln!(
            "udplb: warning: net.ipv4.conf.all.accept_local is off: a reply the datapath hands to \
             the kernel (neighbour not resolved yet, MTU exceeded) has the frontend's local \
             address as its source and is dropped (sysctl -w net.ipv4.conf.all.accept_local=1)"
        );
    }
    let families = config
        .frontends
        .iter()
        .flat_map(|f| f.backends.iter())
        .filter_map(|b| b.addr);
    for (v4, knob) in [
        (true, "net/ipv4/ip_forward"),
        (false, "net/ipv6/conf/all/forwarding"),
    ] {
        let needed = families.clone().any(|a| a.is_ipv4() == v4);
        let on =
            std::fs::read_to_string(format!("/proc/sys/{knob}")).is_ok_and(|v| v.trim() == "1");
        if needed && !on {
            eprintln!(
                "udplb: warning: {} is off: datagrams for remote backends go to the kernel, which \
                 will not forward them (sysctl -w {}=1)",
                knob.replace('/', "."),
                knob.replace('/', ".")
            );
        }
    }
}

fn print_frontends(config: &Config) {
    for fe in &config.frontends {
        let backends: Vec<String> = fe.backends.iter().map(|b| b.to_string()).collect();
        println!(
            "  {} -> {} ({})",
            fe.listen,
            backends.join(", "),
            fe.sched.name()
        );
    }
}

/// SIGHUP: re-read the config file and apply the difference. A bad file
/// changes nothing.
fn reload(
    args: &Args,
    iface: &str,
    datapath: &Datapath,
    state: &mut udplb::state::State,
    config: &mut Config,
) {
    let Some(path) = &args.config else {
        eprintln!("udplb: SIGHUP ignored: started without --config, there is no file to re-read");
        return;
    };
    let file = match config_file::load(path) {
        Ok(f) if f.interface != iface => {
            eprintln!(
                "udplb: reload rejected, configuration unchanged: {path}: the interface changed \
                 from {iface} to {}; that needs a restart",
                f.interface
            );
            return;
        }
        Ok(f) => f,
        Err(e) => {
            eprintln!("udplb: reload rejected, configuration unchanged: {e}");
            return;
        }
    };
    let (plan, next) = state.plan(&file.config);
    if plan.is_empty() {
        println!("udplb: reloaded {path}: no change");
        return;
    }
    match datapath.apply(&plan) {
        Ok(()) => {
            *state = next;
            *config = file.config;
            println!("udplb: reloaded {path}:");
            for change in &plan.changes {
                println!("  {change}");
            }
        }
        Err(e) => eprintln!("udplb: reload failed while writing the maps: {e:#}"),
    }
}
