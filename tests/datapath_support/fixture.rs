//! The fixture runner: a loaded datapath with a configuration, a table of
//! cases (input, expected verdict, expected output bytes, expected counter
//! deltas), and failure messages that name the case and show a hex diff.
//! In the shape of Katran's test fixtures and the kernel's prog_tests.

use std::fmt::Write as _;

use udplb::abi::{REASON_NAMES, UDPLB_REASON_BALANCED, UDPLB_REASON_REPLY};
use udplb::config::Config;
use udplb::datapath::{Counters, Datapath};
use udplb::plan::Layout;

use super::packets::{Frame, Port};

/// The only verdict this datapath returns: the kernel delivers every frame.
pub const XDP_PASS: u32 = 2;
/// Loopback, the one interface where port-only reply keys are matched.
pub const LOOPBACK: u32 = 1;

/// Which counters besides the reason counter a case moves (by one packet,
/// and by the full frame length in bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    Nothing,
    /// Frontend and backend index, in configuration order.
    Backend(usize, usize),
    /// Frontend index.
    Reply(usize),
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub input: Vec<u8>,
    /// `None`: plain BPF_PROG_TEST_RUN without a context, which the kernel
    /// runs on the loopback device's rx queue (ingress_ifindex 1, lo).
    /// `Some(i)`: with an xdp_md context whose ingress_ifindex is `i` (0
    /// keeps the default, lo).
    pub ingress_ifindex: Option<u32>,
    pub verdict: u32,
    pub output: Vec<u8>,
    pub reason: u32,
    pub hit: Hit,
}

impl Case {
    /// The frame must come out exactly as it went in.
    pub fn untouched(name: impl Into<String>, input: &[u8], reason: u32) -> Case {
        Case {
            name: name.into(),
            input: input.to_vec(),
            ingress_ifindex: None,
            verdict: XDP_PASS,
            output: input.to_vec(),
            reason,
            hit: Hit::Nothing,
        }
    }

    /// A request balanced to `port`, backend `backend` of frontend `frontend`.
    pub fn balanced(
        name: impl Into<String>,
        f: &Frame,
        port: u16,
        (frontend, backend): (usize, usize),
    ) -> Case {
        Case {
            output: f.rewritten(Port::Destination, port),
            reason: UDPLB_REASON_BALANCED,
            hit: Hit::Backend(frontend, backend),
            ..Case::untouched(name, &f.bytes, 0)
        }
    }

    /// A reply whose source port goes back to frontend `frontend`'s `port`.
    pub fn reply(name: impl Into<String>, f: &Frame, port: u16, frontend: usize) -> Case {
        Case {
            output: f.rewritten(Port::Source, port),
            reason: UDPLB_REASON_REPLY,
            hit: Hit::Reply(frontend),
            ..Case::untouched(name, &f.bytes, 0)
        }
    }

    /// Runs the case with an xdp_md context arriving on `ifindex`.
    pub fn on(mut self, ifindex: u32) -> Case {
        self.ingress_ifindex = Some(ifindex);
        self
    }
}

/// Fails, loudly, without the privileges BPF_PROG_TEST_RUN needs: a
/// datapath test that passes because it did not run would be a lie.
pub fn require_privileges() {
    if let Err(e) =
        udplb::datapath::privileges::check_self(udplb::datapath::privileges::Task::Start)
    {
        panic!(
            "datapath tests need root (CAP_BPF): run `sudo make test` \
             or `sudo cargo test --test datapath` ({e})"
        );
    }
}

/// Pins the calling test thread to one CPU. BPF_PROG_TEST_RUN runs the
/// program on the caller's CPU and the round-robin cursor is per-CPU, so a
/// migration between two runs would restart the rotation.
pub fn pin_to_one_cpu() {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let allowed = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    let cpu = (0..CpuSet::count())
        .find(|&c| allowed.is_set(c).unwrap_or(false))
        .expect("no CPU allowed");
    let mut one = CpuSet::new();
    one.set(cpu).unwrap();
    sched_setaffinity(Pid::from_raw(0), &one).expect("sched_setaffinity");
}

pub struct Fixture {
    pub dp: Datapath,
    /// Where the counters of each frontend and backend are.
    pub layout: Layout,
}

impl Fixture {
    /// A freshly loaded datapath (its own maps, all counters zero) holding
    /// the configuration `specs`, on a thread pinned to one CPU.
    pub fn new(specs: &[&str]) -> Fixture {
        require_privileges();
        pin_to_one_cpu();
        let config = Config::from_specs(specs).expect("test configuration");
        let dp = Datapath::load().expect("loading the datapath");
        let state = dp.configure(&config).expect("writing the tables");
        let layout = state.layout(&config);
        Fixture { dp, layout }
    }

    pub fn counters(&self) -> Counters {
        self.dp.counters(&self.layout).expect("reading counters")
    }

    /// One BPF_PROG_TEST_RUN; see [`Case::ingress_ifindex`].
    pub fn run(&self, ingress_ifindex: Option<u32>, packet: &[u8]) -> (u32, Vec<u8>) {
        match ingress_ifindex {
            None => self.dp.test_run(packet).expect("BPF_PROG_TEST_RUN"),
            Some(ifindex) => test_run_on(&self.dp, ifindex, packet),
        }
    }

    /// Runs one case; the error names what differed.
    pub fn check(&self, case: &Case) -> Result<(), String> {
        let before = self.counters();
        let (verdict, output) = self.run(case.ingress_ifindex, &case.input);
        let after = self.counters();

        let mut want = before.clone();
        want.reasons[case.reason as usize] += 1;
        let frame_len = case.input.len() as u64;
        match case.hit {
            Hit::Nothing => {}
            Hit::Backend(f, b) => {
                want.backends[f][b].packets += 1;
                want.backends[f][b].bytes += frame_len;
            }
            Hit::Reply(f) => {
                want.replies[f].packets += 1;
                want.replies[f].bytes += frame_len;
            }
        }

        let mut err = String::new();
        if verdict != case.verdict {
            let _ = writeln!(err, "  verdict: expected {}, got {verdict}", case.verdict);
        }
        if output != case.output {
            let _ = writeln!(
                err,
                "  output differs ({} bytes expected, {} got):\n{}",
                case.output.len(),
                output.len(),
                hex_diff(&case.output, &output)
            );
        }
        if after != want {
            let _ = writeln!(
                err,
                "  counters: expected {}\n            got      {}",
                delta(&before, &want),
                delta(&before, &after)
            );
        }
        if err.is_empty() {
            return Ok(());
        }
        let on = match case.ingress_ifindex {
            None => "no context".to_string(),
            Some(i) => format!("ingress_ifindex {i}"),
        };
        Err(format!(
            "case {:?} ({on}):\n{err}  input:\n{}",
            case.name,
            hex_dump(&case.input)
        ))
    }

    /// Runs every case in order (later cases may depend on the round-robin
    /// position earlier ones left) and fails listing every mismatch.
    pub fn check_all(&self, cases: &[Case]) {
        assert!(!cases.is_empty());
        let failures: Vec<String> = cases.iter().filter_map(|c| self.check(c).err()).collect();
        if !failures.is_empty() {
            panic!(
                "{} of {} cases failed:\n\n{}",
                failures.len(),
                cases.len(),
                failures.join("\n")
            );
        }
    }
}

/// BPF_PROG_TEST_RUN with an xdp_md context, so the program sees
/// `ingress_ifindex` (the kernel accepts only an existing device; lo is 1 in
/// every network namespace). Reaches the program through
/// `Datapath::xdp_prog()`, the same program `Datapath::test_run` runs.
pub fn test_run_on(dp: &Datapath, ingress_ifindex: u32, packet: &[u8]) -> (u32, Vec<u8>) {
    dp.test_run_on(ingress_ifindex, packet).unwrap_or_else(|e| {
        panic!("BPF_PROG_TEST_RUN with ingress_ifindex {ingress_ifindex}: {e:#}")
    })
}

/// Moves the calling thread into a network namespace of its own, freed
/// with the thread, holding a veth pair, and returns the ifindex of one end:
/// an interface that is not lo, for the ingress_ifindex of a test run (the
/// kernel looks it up in the caller's namespace). Uses iproute2, like the
/// netns tests; the namespace keeps the host's interfaces out of the test.
pub fn private_netns_with_veth() -> u32 {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    // The child inherits the namespace of the thread that spawns it.
    let status = std::process::Command::new("ip")
        .args([
            "link", "add", "udplb-t0", "type", "veth", "peer", "name", "udplb-t1",
        ])
        .status()
        .expect("running ip (iproute2)");
    assert!(status.success(), "ip link add ... type veth: {status}");
    let ifindex = nix::net::if_::if_nametoindex("udplb-t0").expect("if_nametoindex udplb-t0");
    assert_ne!(ifindex, LOOPBACK);
    ifindex
}

/// Nonzero counter changes from `a` to `b`, by name.
fn delta(a: &Counters, b: &Counters) -> String {
    let mut parts = Vec::new();
    for (i, (x, y)) in a.reasons.iter().zip(&b.reasons).enumerate() {
        if x != y {
            parts.push(format!("{} {:+}", REASON_NAMES[i], *y as i64 - *x as i64));
        }
    }
    for (f, (xs, ys)) in a.backends.iter().zip(&b.backends).enumerate() {
        for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
            if x != y {
                parts.push(format!(
                    "backend[{f}][{i}] {:+} pkt {:+} B",
                    y.packets as i64 - x.packets as i64,
                    y.bytes as i64 - x.bytes as i64
                ));
            }
        }
    }
    for (f, (x, y)) in a.replies.iter().zip(&b.replies).enumerate() {
        if x != y {
            parts.push(format!(
                "reply[{f}] {:+} pkt {:+} B",
                y.packets as i64 - x.packets as i64,
                y.bytes as i64 - x.bytes as i64
            ));
        }
    }
    if parts.is_empty() {
        "(no change)".into()
    } else {
        parts.join(", ")
    }
}

fn hex_row(bytes: &[u8], row: usize) -> String {
    (row..row + 16)
        .map(|i| bytes.get(i).map_or("--".into(), |b| format!("{b:02x}")))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn hex_dump(bytes: &[u8]) -> String {
    (0..bytes.len())
        .step_by(16)
        .map(|row| format!("    {row:04x}  {}\n", hex_row(bytes, row)))
        .collect()
}

/// The 16-byte rows where `want` and `got` differ, with a caret under each
/// differing byte ("--" is a byte past the end).
pub fn hex_diff(want: &[u8], got: &[u8]) -> String {
    let mut s = String::new();
    for row in (0..want.len().max(got.len())).step_by(16) {
        let differs: Vec<bool> = (row..row + 16).map(|i| want.get(i) != got.get(i)).collect();
        if !differs.contains(&true) {
            continue;
        }
        let marks: String = differs
            .iter()
            .map(|&d| if d { "^^" } else { "  " })
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(s, "    {row:04x}  want {}", hex_row(want, row));
        let _ = writeln!(s, "          got  {}", hex_row(got, row));
        let _ = writeln!(s, "               {}", marks.trim_end());
    }
    s
}
