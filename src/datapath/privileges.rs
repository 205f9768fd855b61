//! Telling a user without the needed capabilities so, in words, before
//! anything is loaded.
//!
//! What udplb needs, as found on Linux 6.18:
//! - CAP_BPF to load programs and create maps;
//! - CAP_PERFMON as well: without it the verifier refuses udplb's program
//!   ("pointer -= pointer prohibited": the packet parser subtracts packet
//!   pointers, which only a perfmon-capable loader may do);
//! - CAP_NET_ADMIN to attach to an interface (XDP, tcx/clsact);
//! - with `--force`, CAP_SYS_ADMIN too: finding the bpf_links that hold
//!   another program walks link ids (bpf_link_get_fd_by_id).
//!
//! CAP_SYS_ADMIN also stands in for CAP_BPF and CAP_PERFMON, as the kernel
//! lets it (bpf_capable(), perfmon_capable()).

use crate::error::UsageError;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What udplb is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Load and attach.
    Start,
    /// Load and attach, replacing another program (`--force`).
    Force,
    /// `--unpin`: open pinned links, detach, remove a clsact filter.
    Unpin,
}

impl Task {
    fn who(self) -> &'static str {
        match self {
            Task::Start => "udplb",
            Task::Force => "udplb --force",
            Task::Unpin => "udplb --unpin",
        }
    }

    fn needs(self) -> &'static [u32] {
        match self {
            Task::Start => &[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON],
            Task::Force => &[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN],
            Task::Unpin => &[CAP_BPF, CAP_NET_ADMIN],
        }
    }
}

fn name(cap: u32) -> &'static str {
    match cap {
        CAP_NET_ADMIN => "CAP_NET_ADMIN",
        CAP_SYS_ADMIN => "CAP_SYS_ADMIN",
        CAP_PERFMON => "CAP_PERFMON",
        CAP_BPF => "CAP_BPF",
        _ => "a capability",
    }
}

/// "A, B and C".
fn list(caps: &[u32]) -> String {
    let names: Vec<&str> = caps.iter().map(|&c| name(c)).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// The effective capability set from a /proc/<pid>/status text.
pub fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Checks the effective set `caps` against what `task` needs; the error
/// names what is missing.
pub fn check(caps: u64, task: Task) -> Result<(), UsageError> {
    let has = |c: u32| caps & (1u64 << c) != 0;
    let missing: Vec<u32> = task
        .needs()
        .iter()
        .copied()
        .filter(|&c| !(has(c) || (c != CAP_NET_ADMIN && has(CAP_SYS_ADMIN))))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(UsageError(format!(
        "{} needs {} (missing: {}); run as root",
        task.who(),
        list(task.needs()),
        missing
            .iter()
            .map(|&c| name(c))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Checks this process.
pub fn check_self(task: Task) -> Result<(), UsageError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    match effective_caps(&status) {
        Some(caps) => check(caps, task),
        // No /proc: let the kernel decide, and explain EPERM if it comes.
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[u32]) -> u64 {
        caps.iter().map(|c| 1u64 << c).sum()
    }

    #[test]
    fn capability_sets() {
        let root = "Name:\tudplb\nCapEff:\t000001ffffffffff\n";
        for task in [Task::Start, Task::Force, Task::Unpin] {
            assert!(check(effective_caps(root).unwrap(), task).is_ok());
        }
        let user = "CapEff:\t0000000000000000\n";
        let e = check(effective_caps(user).unwrap(), Task::Start).unwrap_err();
        assert_eq!(
            e.0,
            "udplb needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (missing: CAP_BPF, \
             CAP_NET_ADMIN, CAP_PERFMON); run as root"
        );
        let three = set(&[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON]);
        assert!(check(three, Task::Start).is_ok());
        let e = check(set(&[CAP_BPF, CAP_NET_ADMIN]), Task::Start).unwrap_err();
        assert!(e.0.ends_with("(missing: CAP_PERFMON); run as root"), "{e}");
        let e = check(three, Task::Force).unwrap_err();
        assert_eq!(
            e.0,
            "udplb --force needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON and CAP_SYS_ADMIN \
             (missing: CAP_SYS_ADMIN); run as root"
        );
        // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, not CAP_NET_ADMIN.
        assert!(check(set(&[CAP_SYS_ADMIN, CAP_NET_ADMIN]), Task::Force).is_ok());
        assert!(check(set(&[CAP_SYS_ADMIN]), Task::Start).is_err());
        assert!(check(set(&[CAP_BPF, CAP_NET_ADMIN]), Task::Unpin).is_ok());
        assert_eq!(effective_caps("no caps here"), None);
    }
}
