//! Scheduling priority of the end-to-end measurements on a shared machine.
//!
//! With autogroup scheduling (kernel.sched_autogroup_enabled = 1, the
//! default here) the CPU is shared fairly between *sessions* first, and a
//! thread's nice value only counts against threads of its own session. So
//! a busy test suite in another session takes half of a CPU from the
//! sender whatever its nice value, and a run's figure halves. [`Raised`]
//! sets the nice value of the bench's own autogroup (this session) to
//! `NICE` for as long as it lives and restores it after; the sender,
//! receivers and nginx also run at `NICE` (netns.rs) for when autogroup is
//! off. Other processes still run (a nice -10 group gets ~90 % of a CPU
//! against one at 0), and the per-CPU-second figures account for the rest.

use std::fs;

use super::netns::NICE;

const AUTOGROUP: &str = "/proc/self/autogroup";

/// The session's autogroup nice value as it was, restored on drop.
pub struct Raised {
    before: Option<i32>,
}

impl Raised {
    pub fn new() -> Raised {
        let before = fs::read_to_string(AUTOGROUP).ok().and_then(|s| parse(&s));
        if before.is_some() && fs::write(AUTOGROUP, NICE.to_string()).is_ok() {
            println!(
                "bench: this session's scheduling group at nice {NICE} during the measurements"
            );
            return Raised { before };
        }
        Raised { before: None }
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        if let Some(n) = self.before {
            let _ = fs::write(AUTOGROUP, n.to_string());
        }
    }
}

/// The nice value in "/autogroup-18 nice 0".
fn parse(s: &str) -> Option<i32> {
    s.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_autogroup_nice() {
        assert_eq!(super::parse("/autogroup-18 nice 0\n"), Some(0));
        assert_eq!(super::parse("/autogroup-3 nice -10"), Some(-10));
        assert_eq!(super::parse(""), None);
    }
}
