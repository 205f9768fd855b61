//! The datapath's clock: pins keep their time in jiffies, which only the
//! kernel reads, and the jiffies per second (CONFIG_HZ) measured at load.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use super::Datapath;
use crate::abi;

impl Datapath {
    /// The kernel's CONFIG_HZ, measured: jiffies counted between two of
    /// their edges against CLOCK_MONOTONIC (as Cilium does), rather than
    /// read from a kernel configuration file that containers and Debian's
    /// kernels do not have. Two measures that agree: over 20 ms first, then,
    /// where those disagree (a loaded or emulated machine, whose system
    /// calls and ticks come late by milliseconds), over 250 ms and 1 s,
    /// where such delays weigh less.
    pub(super) fn measure_hz(&self) -> Result<u64> {
        let jiffies = || self.clock().map(|c| c.jiffies);
        let once = |window: Duration| -> Result<f64> {
            let deadline = Instant::now() + Duration::from_secs(2);
            let edge = |from: u64| -> Result<(u64, Instant)> {
                loop {
                    let j = jiffies()?;
                    if j != from {
                        return Ok((j, Instant::now()));
                    }
                    if Instant::now() > deadline {
                        anyhow::bail!("the kernel's jiffies did not move for 2 s");
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
            };
            let (j0, t0) = edge(jiffies()?)?;
            let (mut j, mut t) = edge(j0)?;
            // At least 5 ticks and the window: an edge seen 0.1 ms late is
            // then a 0.5 % error at most over 20 ms.
            while j - j0 < 5 || t - t0 < window {
                (j, t) = edge(j)?;
            }
            Ok((j - j0) as f64 / (t - t0).as_secs_f64())
        };
        let mut seen = Vec::new();
        let ms = Duration::from_millis;
        for window in [ms(20), ms(20), ms(20), ms(250), ms(250), ms(1000), ms(1000)] {
            let hz = snap_hz(once(window).context("measuring the kernel's clock (jiffies)")?);
            if seen.contains(&hz) {
                return Ok(hz);
            }
            seen.push(hz);
        }
        anyhow::bail!(
            "the kernel's clock measured differently each time: {seen:?} jiffies a second"
        )
    }

    /// The datapath's clock: jiffies now, and the jiffies per second
    /// measured at load. Pins keep their time in jiffies, which only the
    /// kernel can read; this runs `udplb_clock` once.
    pub fn clock(&self) -> Result<abi::Clock> {
        // A minimum-size Ethernet frame (BPF_PROG_TEST_RUN needs at least
        // ETH_HLEN, 14 bytes).
        let frame = [0u8; 64];
        let input = libbpf_rs::ProgramInput {
            data_in: Some(&frame),
            repeat: 1,
            ..Default::default()
        };
        self.skel
            .progs
            .udplb_clock
            .test_run(input)
            .context("reading the datapath's clock (BPF_PROG_TEST_RUN of udplb_clock)")?;
        let value = self
            .skel
            .maps
            .clock
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)?
            .context("the clock map has no entry")?;
        abi::from_bytes(&value).context("the clock map's value")
    }
}

/// A measured rate of jiffies, as the CONFIG_HZ it is: the nearest of the
/// values x86 kernels are built with, when within 10 %; else the measure
/// itself, rounded (another architecture's value).
pub fn snap_hz(measured: f64) -> u64 {
    const BUILT: [u64; 4] = [100, 250, 300, 1000];
    let near = BUILT
        .iter()
        .min_by(|a, b| {
            let d = |x: &&u64| (measured / **x as f64 - 1.0).abs();
            d(a).total_cmp(&d(b))
        })
        .copied()
        .unwrap_or(0);
    match (measured / near as f64 - 1.0).abs() <= 0.10 {
        true => near,
        false => measured.round().max(1.0) as u64,
    }
}

#[cfg(test)]
mod hz_tests {
    use super::snap_hz;

    #[test]
    fn measured_rates_snap_to_the_configured_hz() {
        for (measured, hz) in [
            (99.0, 100),
            (104.0, 100),
            (245.0, 250),
            (262.0, 250),
            (290.0, 300),
            (310.0, 300),
            (960.0, 1000),
            (1030.0, 1000),
            (24.2, 24),
            (1500.4, 1500),
        ] {
            assert_eq!(snap_hz(measured), hz, "{measured}");
        }
    }
}
