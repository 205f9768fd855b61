//! The NIC-speed section's own XDP programs (tests/bench/bpf/bench_nic.bpf.c,
//! compiled by build.rs): the traffic generator, the sink on the backend
//! host, and the bare forwarder. One loaded object per case, so each case's
//! frames and counters are its own; dropping it detaches what it attached.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

use super::cpu::thread_secs;
use super::netns::Netns;

mod skel {
    #![allow(clippy::all, non_camel_case_types, non_snake_case, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/bench_nic.skel.rs"));
}
use skel::{BenchNicSkel, BenchNicSkelBuilder};

/// The generator's limits, as in bench_nic.bpf.c.
pub const GEN_MAX_FLOWS: usize = 256;
pub const GEN_FRAME_LEN: usize = 106;
const GEN_SLOT: usize = 112;

/// Counter indices, as in bench_nic.bpf.c.
const SINK_DROPPED: u32 = 0;
const FWD_REDIRECTED: u32 = 1;

/// BPF_F_TEST_XDP_LIVE_FRAMES (the kernel's linux/bpf.h): the test run
/// transmits each frame for real.
const LIVE_FRAMES: u32 = 1 << 1;
/// Frames in the first BPF_PROG_RUN call of a run. Every call ends with an
/// RCU grace period (the test run's page pool is destroyed: 10-30 ms seen
/// here, with the thread asleep), so later calls are sized to take about
/// `CALL_TIME` each, or what is left of the run.
const FIRST_CALL_FRAMES: u32 = 1 << 16;
const CALL_TIME: Duration = Duration::from_millis(250);
const MIN_CALL_FRAMES: u32 = 1 << 12;
const MAX_CALL_FRAMES: u32 = 1 << 24;
/// Frames the kernel runs between two flushes of the redirect queues
/// (its default, NAPI_POLL_WEIGHT).
const BATCH: u32 = 64;

/// One case's loaded programs.
pub struct NicProgs {
    skel: BenchNicSkel<'static>,
    /// bpf_link file descriptors: closing one detaches its program.
    links: Vec<OwnedFd>,
}

impl NicProgs {
    pub fn load() -> Result<NicProgs> {
        // The skeleton borrows its object storage for as long as it lives
        // (as in src/datapath/mod.rs): one small leak per case.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let skel = BenchNicSkelBuilder::default()
            .open(storage)
            .context("opening the bench's BPF object")?
            .load()
            .context("loading the bench's BPF programs (bench_nic.bpf.c)")?;
        Ok(NicProgs {
            skel,
            links: Vec::new(),
        })
    }

    /// The frames the generator sends, one per flow, in turn. Each must be
    /// `GEN_FRAME_LEN` bytes.
    pub fn set_frames(&mut self, frames: &[Vec<u8>]) -> Result<()> {
        if frames.is_empty() || frames.len() > GEN_MAX_FLOWS {
            bail!(
                "{} frames: the generator takes 1 to {GEN_MAX_FLOWS}",
                frames.len()
            );
        }
        let bss = self
            .skel
            .maps
            .bss_data
            .as_deref_mut()
            .context("the generator's .bss is not mapped")?;
        for (slot, frame) in bss.gen_frames.iter_mut().zip(frames) {
            if frame.len() != GEN_FRAME_LEN {
                bail!(
                    "a {}-byte frame; the generator sends {GEN_FRAME_LEN}",
                    frame.len()
                );
            }
            let mut bytes = [0u8; GEN_SLOT];
            bytes[..GEN_FRAME_LEN].copy_from_slice(frame);
            for (w, chunk) in slot.words.iter_mut().zip(bytes.chunks_exact(8)) {
                *w = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            }
        }
        bss.gen_flows = frames.len() as u32;
        bss.gen_next = 0;
        Ok(())
    }

    /// The generator's program, as a file descriptor the sending thread can
    /// own.
    pub fn generator(&self) -> Result<OwnedFd> {
        Ok(self.skel.progs.bench_gen.as_fd().try_clone_to_owned()?)
    }

    /// Attaches the sink (XDP_DROP) to `dev` in `ns`, native mode.
    pub fn attach_sink(&mut self, ns: &Netns, dev: &str) -> Result<()> {
        let prog = self.skel.progs.bench_sink.as_fd().try_clone_to_owned()?;
        let link = in_netns(ns, || attach_xdp(&prog, dev))?;
        self.links.push(link);
        Ok(())
    }

    /// Attaches the bare forwarder to `input` in `ns`, native mode, and lets
    /// it redirect out of `output`.
    pub fn attach_forwarder(&mut self, ns: &Netns, input: &str, output: &str) -> Result<()> {
        let prog = self.skel.progs.bench_fwd.as_fd().try_clone_to_owned()?;
        let ports = self.skel.maps.bench_tx_ports.as_fd().try_clone_to_owned()?;
        let link = in_netns(ns, || {
            // The devmap resolves the ifindex in the caller's namespace.
            let out = ifindex(output)?;
            // SAFETY: key and value are u32s that outlive the call.
            let rc = unsafe {
                libbpf_sys::bpf_map_update_elem(
                    ports.as_raw_fd(),
                    (&out as *const u32).cast(),
                    (&out as *const u32).cast(),
                    0,
                )
            };
            if rc != 0 {
                bail!(
                    "adding {output} to the forwarder's ports: {}",
                    std::io::Error::last_os_error()
                );
            }
            attach_xdp(&prog, input)
        })?;
        self.links.push(link);
        Ok(())
    }

    fn counter(&self, index: u32) -> Result<u64> {
        let values = self
            .skel
            .maps
            .bench_counters
            .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)?
            .context("no bench counter")?;
        Ok(values
            .iter()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().expect("8 bytes")))
            .sum())
    }

    /// Frames the sink dropped so far.
    pub fn sink_dropped(&self) -> Result<u64> {
        self.counter(SINK_DROPPED)
    }

    /// Frames the forwarder redirected so far.
    pub fn forwarded(&self) -> Result<u64> {
        self.counter(FWD_REDIRECTED)
    }
}

/// Runs `f` on a thread that joined `ns`, and returns what it returned.
pub fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.join()?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in {} panicked", ns.name))?
    })
}

/// A bpf_link attaching `prog` to `dev` (of the caller's namespace) in
/// native XDP mode; closing it detaches.
fn attach_xdp(prog: &OwnedFd, dev: &str) -> Result<OwnedFd> {
    let ifindex = ifindex(dev)?;
    // SAFETY: plain system call on integers; null options.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_raw_fd(),
            ifindex as i32,
            libbpf_sys::BPF_XDP,
            std::ptr::null(),
        )
    };
    if fd < 0 {
        bail!(
            "attaching an XDP program to {dev}: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifindex(dev: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(dev).with_context(|| format!("no {dev} here"))
}

/// What one generator run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Generated {
    /// Frames the program ran on (each returned XDP_TX; the veth may still
    /// have refused some when its peer's ring was full).
    pub frames: u64,
    pub secs: f64,
    /// CPU time of the generating thread.
    pub cpu_secs: f64,
    /// Time it waited for its CPU while runnable.
    pub wait_secs: f64,
}

/// The generator loop, on the calling thread (which has joined the client's
/// namespace and is pinned to its CPU): BPF_PROG_RUN with live frames on
/// `dev`, `FRAMES_PER_CALL` at a time, until `duration` has passed or
/// `max_frames` were sent. The kernel looks `dev` up in the caller's
/// namespace.
pub fn generate(
    prog: &OwnedFd,
    dev: &str,
    duration: Duration,
    max_frames: u64,
) -> Result<Generated> {
    let ifindex = ifindex(dev)?;
    // The frame's initial content does not matter: the program writes it.
    let data = [0u8; GEN_FRAME_LEN];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex.
    let ctx: [u32; 6] = [0, GEN_FRAME_LEN as u32, 0, ifindex, 0, 0];
    let start = Instant::now();
    let cpu_start = thread_secs();
    let wait_start = own_wait_secs();
    let mut frames = 0u64;
    let mut per_call = FIRST_CALL_FRAMES;
    while frames < max_frames && start.elapsed() < duration {
        let call_start = Instant::now();
        // SAFETY: an all-zero bpf_test_run_opts is valid; every pointer set
        // below points at a local that outlives the call, which only reads
        // data_in and ctx_in (data_out and ctx_out stay null, as live frames
        // require).
        let rc = unsafe {
            let mut opts: libbpf_sys::bpf_test_run_opts = std::mem::zeroed();
            opts.sz = std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _;
            opts.data_in = data.as_ptr().cast();
            opts.data_size_in = data.len() as u32;
            opts.ctx_in = ctx.as_ptr().cast();
            opts.ctx_size_in = std::mem::size_of_val(&ctx) as u32;
            opts.repeat = per_call as i32;
            opts.batch_size = BATCH;
            opts.flags = LIVE_FRAMES;
            libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts)
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(nix::libc::EPERM) {
                return Err(super::report::HostRefused(format!(
                    "this kernel refuses BPF_PROG_RUN with live frames ({e}), which the NIC-speed \
                     generator needs"
                ))
                .into());
            }
            bail!(
                "BPF_PROG_RUN with live frames on {dev} failed: {e} (needs Linux ≥ 5.18 and a \
                 peer veth with NAPI)"
            );
        }
        frames += per_call as u64;
        let rate = per_call as f64 / call_start.elapsed().as_secs_f64();
        let left = duration.saturating_sub(start.elapsed()).min(CALL_TIME);
        per_call = ((rate * left.as_secs_f64()) as u32).clamp(MIN_CALL_FRAMES, MAX_CALL_FRAMES);
    }
    Ok(Generated {
        frames,
        secs: start.elapsed().as_secs_f64(),
        cpu_secs: thread_secs() - cpu_start,
        wait_secs: own_wait_secs() - wait_start,
    })
}

/// Time the calling thread waited for a CPU while runnable, seconds
/// (/proc/thread-self/schedstat: run ns, wait ns, slices).
fn own_wait_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 * 1e-9)
}
