//! Telling a user without the needed capabilities so, in words, before
//! anything is loaded.

use crate::error::UsageError;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The effective capability set from a /proc/<pid>/status text.
pub fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Loading needs CAP_BPF (or CAP_SYS_ADMIN on older kernels); attaching
/// to an interface needs CAP_NET_ADMIN.
pub fn check(caps: u64) -> Result<(), UsageError> {
    let has = |c: u32| caps & (1u64 << c) != 0;
    if (has(CAP_BPF) || has(CAP_SYS_ADMIN)) && has(CAP_NET_ADMIN) {
        return Ok(());
    }
    Err(UsageError(
        "insufficient privileges: udplb must run as root, or with CAP_BPF and CAP_NET_ADMIN \
         (e.g. sudo udplb ...)"
            .into(),
    ))
}

/// Checks this process.
pub fn check_self() -> Result<(), UsageError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    match effective_caps(&status) {
        Some(caps) => check(caps),
        // No /proc: let the kernel decide, and explain EPERM if it comes.
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets() {
        let root = "Name:\tudplb\nCapEff:\t000001ffffffffff\n";
        assert!(check(effective_caps(root).unwrap()).is_ok());
        let user = "CapEff:\t0000000000000000\n";
        let e = check(effective_caps(user).unwrap()).unwrap_err();
        assert!(e.0.contains("root") && e.0.contains("CAP_BPF") && e.0.contains("CAP_NET_ADMIN"));
        let bpf_and_net = (1u64 << CAP_BPF) | (1u64 << CAP_NET_ADMIN);
        assert!(check(bpf_and_net).is_ok());
        assert!(
            check(1u64 << CAP_BPF).is_err(),
            "CAP_NET_ADMIN is needed too"
        );
        assert!(
            check(1u64 << CAP_NET_ADMIN).is_err(),
            "CAP_BPF is needed too"
        );
        assert_eq!(effective_caps("no caps here"), None);
    }
}
