//! A local backend that moves from one frontend to another in one reload:
//! at every step of the plan, a datagram that a frontend sends to it must
//! be answered from that frontend's port. The plan used to write the moved
//! backend's reply entry (to the new frontend) with the other reply
//! entries, before any ring and frontend switch, so for the whole reload
//! (every ring installation waits for an RCU grace period: about 100 ms
//! with a handful of frontends, measured under real traffic) the old
//! frontend still sent requests to the backend while its answers already
//! went back from the new frontend's port, where the client dropped them.
//! Now the entry is written between the two frontends' switches
//! (Plan::moves; src/plan/moves.rs tests the order of chains of moves).

use udplb_testkit as support;

use std::cell::RefCell;

use support::packets::{udp, Port};
use support::runner::{run_once, Reloads, LOOPBACK};
use udplb::config::Config;
use udplb::datapath::Datapath;
use udplb::plan::{apply_from, Maps, Op};

const CLIENT: &str = "192.0.2.10:40000";

/// The datapath, probed after every map write of a plan.
struct Probe<'a> {
    dp: &'a Datapath,
    step: RefCell<usize>,
    bad: RefCell<Vec<String>>,
}

impl Probe<'_> {
    /// A request to `frontend`; if it reaches `backend`, the backend's
    /// answer must go back from `frontend`.
    fn check(&self, frontend: u16, backend: u16) {
        let req = udp(CLIENT, &format!("192.0.2.1:{frontend}")).build();
        let (_, out) = run_once(self.dp.xdp_program(), &req.bytes, Some(LOOPBACK)).unwrap();
        if out != req.rewritten(Port::Destination, backend) {
            return; // balanced elsewhere (or not yet / no longer a frontend)
        }
        let reply = udp(&format!("192.0.2.1:{backend}"), CLIENT).build();
        let (_, out) = run_once(self.dp.xdp_program(), &reply.bytes, Some(LOOPBACK)).unwrap();
        if out != reply.rewritten(Port::Source, frontend) {
            let from = u16::from_be_bytes([out[reply.l4()], out[reply.l4() + 1]]);
            self.bad.borrow_mut().push(format!(
                "after op {}: *:{frontend} sends to {backend}, whose answer leaves from port {from}",
                self.step.borrow()
            ));
        }
    }
}

impl Maps for Probe<'_> {
    fn write(&self, op: Op<'_>) -> anyhow::Result<()> {
        self.dp.write(op)?;
        *self.step.borrow_mut() += 1;
        self.check(9875, 9010);
        self.check(9885, 9010);
        Ok(())
    }
}

#[test]
fn a_moved_backend_answers_from_the_frontend_that_sent_to_it() {
    let mut r = Reloads::new();
    // 9010 is the only backend of *:9875, then the only one of *:9885, so
    // every request of either frontend reaches it while it is theirs.
    r.to(&["9875=9010", "9885=9301"]);
    let probe = Probe {
        dp: &r.dp,
        step: RefCell::new(0),
        bad: RefCell::new(Vec::new()),
    };
    probe.check(9875, 9010);
    assert!(probe.bad.borrow().is_empty(), "{:?}", probe.bad.borrow());
    let after = Config::from_specs(&["9875=9001", "9885=9010"]).unwrap();
    let (plan, _) = r.state.plan(&after);
    apply_from(&probe, &plan, 0)
        .map_err(|i| i.error)
        .expect("applying the reload");
    let bad = probe.bad.borrow();
    assert!(
        bad.is_empty(),
        "{} of {} steps of the reload answer from the wrong frontend:\n{}",
        bad.len(),
        plan.ops().count(),
        bad.join("\n")
    );
}
