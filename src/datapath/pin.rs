//! `--pin` and `--unpin`: keeping the programs attached after udplb exits.
//!
//! Under /sys/fs/bpf/udplb/<iface>/ udplb pins its XDP link (`xdp_link`),
//! its egress link (`egress_link`, where the egress program is a tcx link:
//! not on lo, not with clsact) and its maps. A pinned link keeps its program attached
//! after the process is gone. A later `udplb --pin` on the same interface
//! loads its own program and maps, writes its configuration, then swaps its
//! program into the pinned links (bpf_link_update): the interface is never
//! without a balancer, and the pinned maps are replaced by the new ones,
//! but for the flow table, which the new udplb keeps using when it has the
//! same size (its flows stay on their backends).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::check_interface_name;
use crate::error::UsageError;

pub const ROOT: &str = "/sys/fs/bpf/udplb";
pub const XDP_LINK: &str = "xdp_link";
pub const EGRESS_LINK: &str = "egress_link";

pub fn dir(iface: &str) -> PathBuf {
    Path::new(ROOT).join(iface)
}

/// Where /sys/fs/bpf stands for `--pin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bpffs {
    /// A BPF filesystem that pins outlive udplb in.
    Usable,
    /// Nothing mounted there, in a mount namespace udplb shares with the
    /// process that started it: udplb mounts one (as bpftool and Cilium do).
    NotMounted,
    /// udplb runs in a mount namespace of its own (as under `ip netns exec`,
    /// which unshares it and mounts /sys afresh) and /sys/fs/bpf is not the
    /// BPF filesystem its parent sees: pins would vanish with udplb.
    Private,
}

/// Judges /sys/fs/bpf by the mount namespace of the process that started
/// udplb (a shell, systemd, `ip`, which execs its command): that namespace
/// outlives udplb, udplb's own may not. Not init's: a fresh host or a
/// container may hide /proc/1/ns even from root, and a shell in a mount
/// namespace of its own keeps the pins made there for as long as it runs.
fn bpffs() -> Bpffs {
    let here = Path::new("/sys/fs/bpf");
    let parent = nix::unistd::getppid();
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let (own, theirs) = (ns("self"), ns(&parent.to_string()));
    let private = matches!((&own, &theirs), (Some(a), Some(b)) if a != b);
    if !private {
        return match is_bpffs(here) {
            true => Bpffs::Usable,
            false => Bpffs::NotMounted,
        };
    }
    // A namespace of its own: usable only if its /sys/fs/bpf is the very
    // filesystem the parent has there (a service's namespace that sees the
    // host's mounts, as systemd's sandboxing options make).
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &str| std::fs::metadata(p).map(|m| m.dev()).ok();
    let theirs = format!("/proc/{parent}/root/sys/fs/bpf");
    match is_bpffs(here) && dev("/sys/fs/bpf") == dev(&theirs) {
        true => Bpffs::Usable,
        false => Bpffs::Private,
    }
}

/// `--pin` and `--unpin` must work on the host's BPF filesystem: refuses
/// them in a mount namespace of udplb's own rather than claim pins that
/// will not last. An unmounted /sys/fs/bpf is fine: [`prepare`] mounts one.
pub fn check_shared_bpffs() -> Result<(), UsageError> {
    match bpffs() {
        Bpffs::Usable | Bpffs::NotMounted => Ok(()),
        Bpffs::Private => Err(UsageError(
            "--pin/--unpin: /sys/fs/bpf here is not the host's BPF filesystem (udplb runs in a \
             mount namespace of its own, as under `ip netns exec`): pins would vanish when \
             udplb exits; enter only the network namespace (nsenter --net=/run/netns/NAME \
             udplb ...)"
                .into(),
        )),
    }
}

fn is_bpffs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p)
        .map(|s| s.filesystem_type())
        .ok()
        == Some(nix::sys::statfs::BPF_FS_MAGIC)
}

/// Makes sure `dir` exists on a BPF filesystem, mounting one at
/// /sys/fs/bpf if nothing is mounted there (as bpftool does). Returns the
/// directories it created, parents first, for [`remove_created`].
pub fn prepare(dir: &Path) -> Result<Vec<PathBuf>> {
    let bpffs = Path::new("/sys/fs/bpf");
    if !is_bpffs(bpffs) {
        nix::mount::mount(
            Some("bpf"),
            bpffs,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .context("mounting a BPF filesystem on /sys/fs/bpf for --pin")?;
        crate::say!("udplb: nothing was mounted on /sys/fs/bpf: mounted a BPF filesystem there");
    }
    let mut created = Vec::new();
    for d in [Path::new(ROOT), dir] {
        match std::fs::create_dir(d) {
            Ok(()) => created.push(d.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", d.display())),
        }
    }
    Ok(created)
}

/// Undoes [`prepare`] after a start that failed: removes the directories
/// it created (with the pins made in them since), children first, so that
/// no empty pin directory is left behind.
pub fn remove_created(created: &[PathBuf]) {
    for d in created.iter().rev() {
        if d == Path::new(ROOT) {
            let _ = std::fs::remove_dir(d); // only if no one else's pins are there
        } else {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// `udplb --unpin IFACE`: detaches the pinned programs of IFACE (XDP and
/// egress, even while the udplb that pinned them still runs) and removes
/// every pin.
pub fn unpin(iface: &str) -> Result<Vec<String>> {
    // The name becomes a path: `..` would empty /sys/fs/bpf, and
    // `../../../../srv/data` any directory on the host.
    check_interface_name(iface)?;
    check_shared_bpffs()?;
    let dir = dir(iface);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(
                UsageError(format!("nothing pinned for {iface} (no {})", dir.display())).into(),
            )
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    // Detach the pinned links first: removing a pin detaches only when no
    // one else holds the link, and a udplb --pin may still run.
    let mut tcx_pinned = false;
    for name in [XDP_LINK, EGRESS_LINK] {
        let path = dir.join(name);
        let detached = super::attach::detach_pinned(&path)
            .with_context(|| format!("detaching {}", path.display()))?;
        tcx_pinned |= detached && name == EGRESS_LINK;
    }
    // Without tcx the egress program was a clsact filter, which cannot be
    // pinned: remove it from IFACE in this namespace.
    if !tcx_pinned {
        if let Ok(ifindex) = nix::net::if_::if_nametoindex(iface) {
            super::attach::remove_clsact_egress(ifindex, None)?;
        }
    }
    let mut removed = Vec::new();
    for entry in entries {
        let path = entry?.path();
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        removed.push(
            path.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
    }
    std::fs::remove_dir(&dir).with_context(|| format!("removing {}", dir.display()))?;
    let _ = std::fs::remove_dir(ROOT); // only if empty
    removed.sort();
    Ok(removed)
}
