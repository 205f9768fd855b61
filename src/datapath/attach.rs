//! Attaching the XDP program (a bpf_link) and the egress program (a tcx
//! bpf_link, or a clsact filter before Linux 6.6).
//!
//! A bpf_link is owned by a file descriptor: when udplb exits, however it
//! exits (even SIGKILL), the kernel closes the descriptor and detaches the
//! program; nothing is left behind unless pinning is asked for. A clsact
//! filter is not a link: it is removed on a clean exit only, so after a
//! SIGKILL on such a kernel it stays until the next udplb replaces it (or
//! `--unpin` removes it).
//!
//! Everything goes through libbpf-rs's safe API except what it lacks: an XDP
//! link with a chosen mode, a tcx link, the list of tcx programs on one
//! device (also how tcx is detected), detaching a link known only by its
//! id, and pinning a bare link fd. What the host is (kernel release, a
//! driver, an MTU) is [`super::host`]'s.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::query::{LinkInfoIter, LinkTypeInfo, XdpLinkInfo};
use libbpf_rs::{ErrorKind, Link, Program, ProgramHandle, TcHook, TcHookBuilder, Xdp, XdpFlags};
use libbpf_sys as sys;
use nix::errno::Errno;

use crate::config::settings::XdpMode;
use crate::error::UsageError;

/// The attach flags of a mode.
fn flags(mode: XdpMode) -> XdpFlags {
    match mode {
        XdpMode::Auto => XdpFlags::NONE,
        XdpMode::Native => XdpFlags::DRV_MODE,
        XdpMode::Generic => XdpFlags::SKB_MODE,
    }
}

/// An XDP program already on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub prog_id: u32,
    pub name: String,
    /// The bpf_link holding it, if it was attached through one.
    pub link_id: Option<u32>,
}

impl fmt::Display for Existing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XDP program id {} ({})", self.prog_id, self.name)?;
        match self.link_id {
            Some(l) => write!(f, " held by bpf_link id {l}"),
            None => write!(f, " attached through netlink"),
        }
    }
}

/// The program attached to an interface; dropping it detaches.
pub struct XdpAttachment {
    link: OwnedFd,
    pub ifname: String,
    pub ifindex: u32,
    /// "native" or "generic", as the kernel reports it.
    pub mode: &'static str,
    pub prog_id: u32,
}

fn errno(ret: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(ret.abs())
}

/// What netlink reports about XDP on `ifindex`. (`Xdp` wants a program fd;
/// queries and detaches never use it.)
fn query(xdp: &Xdp<'_>, ifindex: u32) -> Result<sys::bpf_xdp_query_opts> {
    xdp.query(ifindex as i32, XdpFlags::NONE)
        .map_err(|e| anyhow!("querying XDP on ifindex {ifindex}: {e}"))
}

/// The name of program `prog_id` (opening it by id needs CAP_SYS_ADMIN).
fn prog_name_of(prog_id: u32) -> Option<String> {
    let prog = ProgramHandle::from_prog_id(prog_id).ok()?;
    Some(prog.name().to_string_lossy().into_owned())
}

fn prog_name(prog_id: u32) -> String {
    match prog_name_of(prog_id) {
        Some(name) => format!("name {name}"),
        None => "name unknown".into(),
    }
}

/// The id of the bpf_link that holds XDP program `prog_id` on `ifindex`, if
/// any. Links of every namespace are listed, and ifindexes repeat across
/// namespaces: the program id tells ours apart.
fn find_xdp_link(ifindex: u32, prog_id: u32) -> Option<u32> {
    LinkInfoIter::default()
        .find(|l| {
            l.prog_id == prog_id
                && matches!(l.info, LinkTypeInfo::Xdp(XdpLinkInfo { ifindex: i, .. }) if i == ifindex)
        })
        .map(|l| l.id)
}

/// Opens the bpf_link with id `id`.
fn link_fd_by_id(id: u32) -> std::io::Result<OwnedFd> {
    // Raw: libbpf-rs opens a link only from a pin, not by id.
    // SAFETY: takes an integer and returns a new fd or -errno; no memory.
    let fd = unsafe { sys::bpf_link_get_fd_by_id(id) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; no one else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Detaches a bpf_link, whoever holds it (a running udplb, a pin): it stays
/// open for them but attaches nothing any more.
fn detach_link_fd(link: &OwnedFd) -> std::io::Result<()> {
    // Raw: libbpf-rs detaches only a `Link` it made or opened from a pin.
    // SAFETY: link is an open fd we borrow for the call; no memory passed.
    let ret = unsafe { sys::bpf_link_detach(link.as_raw_fd()) };
    match ret < 0 {
        true => Err(errno(ret)),
        false => Ok(()),
    }
}

/// The XDP program already attached to `ifindex`, if there is one.
fn existing(xdp: &Xdp<'_>, ifindex: u32) -> Result<Option<Existing>> {
    let q = query(xdp, ifindex)?;
    if q.attach_mode as u32 == sys::XDP_ATTACHED_NONE {
        return Ok(None);
    }
    let prog_id = [q.prog_id, q.drv_prog_id, q.skb_prog_id, q.hw_prog_id]
        .into_iter()
        .find(|&id| id != 0)
        .unwrap_or(0);
    Ok(Some(Existing {
        prog_id,
        name: prog_name(prog_id),
        link_id: find_xdp_link(ifindex, prog_id),
    }))
}

/// Removes whatever XDP program is on `ifindex` (for `--force`).
fn remove_existing(xdp: &Xdp<'_>, ifindex: u32, other: &Existing) -> Result<()> {
    if let Some(id) = other
        .link_id
        .and_then(|_| find_xdp_link(ifindex, other.prog_id))
    {
        // A link gone since the search (ENOENT) needs no detaching.
        let detached = match link_fd_by_id(id) {
            Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => Ok(()),
            fd => fd.and_then(|fd| detach_link_fd(&fd)),
        };
        detached.map_err(|e| anyhow!("detaching bpf_link id {id}: {e}"))?;
    }
    for flags in [XdpFlags::SKB_MODE, XdpFlags::DRV_MODE] {
        if query(xdp, ifindex)?.attach_mode as u32 == sys::XDP_ATTACHED_NONE {
            break;
        }
        match xdp.detach(ifindex as i32, flags) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                bail!("detaching the XDP program from ifindex {ifindex}: {e}")
            }
            _ => {}
        }
    }
    Ok(())
}

/// Attaches `prog` to `ifname`. Without `force`, refuses if another XDP
/// program is there; with it, detaches that program first.
pub fn attach(
    prog: &Program<'_>,
    ifname: &str,
    ifindex: u32,
    mode: XdpMode,
    force: bool,
) -> Result<XdpAttachment> {
    let xdp = Xdp::new(prog.as_fd());
    if let Some(other) = existing(&xdp, ifindex)? {
        if !force {
            return Err(UsageError(format!(
                "{ifname} already has {other}; use --force to replace it"
            ))
            .into());
        }
        remove_existing(&xdp, ifindex, &other)?;
    }
    let mut fd = link_create(prog, ifindex, flags(mode));
    // ERANGE: the driver refuses native XDP at this MTU for a program without
    // multi-buffer (frags) support, as veth does above about 4 KB. Generic
    // mode copes with any MTU.
    if fd == -(Errno::ERANGE as i32) && mode != XdpMode::Generic {
        let mtu = super::host::mtu(ifname).map_or("its MTU".to_string(), |m| format!("MTU {m}"));
        if mode == XdpMode::Native {
            let msg = format!(
                "{ifname}: {mtu} is too large for native XDP (udplb's program has no \
                 multi-buffer support); lower the MTU or use --xdp-mode generic or auto"
            );
            return Err(UsageError(msg).into());
        }
        crate::say!(
            "udplb: {ifname}: native XDP refused at {mtu} (udplb's program has no multi-buffer \
             support); using generic mode"
        );
        fd = link_create(prog, ifindex, flags(XdpMode::Generic));
    }
    if fd < 0 {
        let err = errno(fd);
        let code = Errno::from_raw(-fd);
        if code == Errno::EOPNOTSUPP && mode == XdpMode::Native {
            let msg = format!("{ifname} has no native XDP support; use --xdp-mode generic or auto");
            return Err(UsageError(msg).into());
        }
        let why = match (code, mode) {
            (Errno::EPERM, _) => {
                "permission denied: attaching XDP needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON".into()
            }
            (Errno::EBUSY | Errno::EEXIST, _) => {
                format!("another XDP program was attached to {ifname} meanwhile ({err})")
            }
            _ => err.to_string(),
        };
        bail!("attaching XDP to {ifname}: {why}");
    }
    // SAFETY: link_create returned a new fd that no one else owns.
    let link = unsafe { OwnedFd::from_raw_fd(fd) };
    described(&xdp, link, ifname, ifindex)
}

/// Creates an XDP bpf_link with mode `flags`: the link fd, or -errno.
fn link_create(prog: &Program<'_>, ifindex: u32, flags: XdpFlags) -> i32 {
    let opts = sys::bpf_link_create_opts {
        sz: size_of::<sys::bpf_link_create_opts>() as _,
        flags: flags.bits(),
        ..Default::default()
    };
    // Raw: libbpf-rs's attach_xdp cannot choose native or generic mode.
    // SAFETY: the program's fd is open for the call, and opts is a whole,
    // initialised options struct whose sz says so; libbpf only reads it.
    unsafe {
        sys::bpf_link_create(
            prog.as_fd().as_raw_fd(),
            ifindex as i32,
            sys::BPF_XDP,
            &opts,
        )
    }
}

/// Pins a link fd at `path`, replacing an old pin.
fn pin_fd(fd: std::os::fd::BorrowedFd<'_>, path: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path_c =
        std::ffi::CString::new(path.as_os_str().as_bytes()).context("path with a NUL byte")?;
    let _ = std::fs::remove_file(path);
    // Raw: libbpf-rs pins only a `Link` not pinned yet; udplb's XDP link is a
    // bare fd from bpf_link_create, its adopted tcx link was opened from a pin.
    // SAFETY: fd is open for the call and the path a NUL-terminated string
    // that outlives it; libbpf only reads them.
    let ret = unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), path_c.as_ptr()) };
    if ret < 0 {
        bail!(
            "pinning {}: {}",
            path.display(),
            std::io::Error::from_raw_os_error(-ret)
        );
    }
    Ok(())
}

/// An attachment record for a link now holding our program on `ifindex`.
fn described(xdp: &Xdp<'_>, link: OwnedFd, ifname: &str, ifindex: u32) -> Result<XdpAttachment> {
    let q = query(xdp, ifindex)?;
    let mode = match q.attach_mode as u32 {
        sys::XDP_ATTACHED_DRV => "native",
        sys::XDP_ATTACHED_SKB => "generic",
        sys::XDP_ATTACHED_HW => "offloaded",
        _ => "unknown mode",
    };
    Ok(XdpAttachment {
        link,
        ifname: ifname.to_string(),
        ifindex,
        mode,
        prog_id: q.prog_id,
    })
}

/// Opens the link an earlier `udplb --pin` left at `path`, if there is one.
fn open_pinned(path: &Path) -> Result<Option<Link>> {
    if !path.exists() {
        return Ok(None);
    }
    // Below libbpf-rs's "failed to open link" context is the OS error.
    let os_error = |e: libbpf_rs::Error| match std::error::Error::source(&e) {
        Some(source) => source.to_string(),
        None => e.to_string(),
    };
    let link =
        Link::open(path).map_err(|e| anyhow!("opening {}: {}", path.display(), os_error(e)))?;
    Ok(Some(link))
}

/// Swaps `prog` into a link (bpf_link_update): atomic, no packet sees no
/// program.
fn update_link(link: &mut Link, prog: &Program<'_>) -> Result<()> {
    link.update_prog(prog)
        .map_err(|e| anyhow!("replacing the program in a pinned link: {e}"))
}

/// Takes over the XDP link that an earlier `udplb --pin` left at `path`,
/// swapping `prog` in. The link must hold XDP on `ifindex`.
pub fn adopt_xdp(
    path: &Path,
    prog: &Program<'_>,
    ifname: &str,
    ifindex: u32,
) -> Result<Option<XdpAttachment>> {
    let Some(mut link) = open_pinned(path)? else {
        return Ok(None);
    };
    let on_ifindex = matches!(link.info(), Ok(info)
        if matches!(info.info, LinkTypeInfo::Xdp(XdpLinkInfo { ifindex: i, .. }) if i == ifindex));
    if !on_ifindex {
        bail!(
            "{} is not an XDP link on {ifname}; remove it with udplb --unpin {ifname}",
            path.display()
        );
    }
    update_link(&mut link, prog)?;
    // Our own descriptor of the link: it is pinned again from it.
    let fd = link.as_fd().try_clone_to_owned()?;
    Ok(Some(described(
        &Xdp::new(prog.as_fd()),
        fd,
        ifname,
        ifindex,
    )?))
}

impl XdpAttachment {
    /// False once the link holds the program on no device: it was detached
    /// (another udplb's `--force`, `bpftool link detach`) or its device
    /// went. True if the kernel cannot say.
    pub fn still_attached(&self) -> bool {
        let info = libbpf_rs::query::LinkInfo::from_fd(self.link.as_fd());
        !matches!(info, Ok(i) if matches!(i.info, LinkTypeInfo::Xdp(XdpLinkInfo { ifindex: 0, .. })))
    }

    pub fn pin(&self, path: &Path) -> Result<()> {
        pin_fd(self.link.as_fd(), path)
    }
}

/// How the TC egress program is attached.
enum EgressHook {
    /// A tcx bpf_link (Linux 6.6+), made here or adopted from an earlier
    /// `udplb --pin`: detached when udplb exits, even by SIGKILL, unless pinned.
    Tcx(Link),
    /// A clsact filter (older kernels): detached on a clean exit only,
    /// and only while the program there is still ours (the `u32`: its id).
    Clsact(TcHook, u32),
}

/// The reply-rewriting program on an interface's egress; dropping detaches.
pub struct EgressAttachment {
    hook: EgressHook,
}

impl EgressAttachment {
    pub fn kind(&self) -> &'static str {
        match self.hook {
            EgressHook::Tcx(_) => "tcx egress",
            EgressHook::Clsact(..) => "clsact egress",
        }
    }

    /// Pins the link (tcx only: a clsact filter outlives udplb anyway, and
    /// the next udplb replaces it in place).
    pub fn pin(&mut self, path: &Path) -> Result<()> {
        let EgressHook::Tcx(link) = &mut self.hook else {
            return Ok(());
        };
        if link.pin_path().is_some() {
            // Adopted from a pin: libbpf pins a link it opened from one
            // only there (EBUSY elsewhere), so pin its fd.
            return pin_fd(link.as_fd(), path);
        }
        let _ = std::fs::remove_file(path);
        link.pin(path)
            .map_err(|e| anyhow!("pinning {}: {e}", path.display()))
    }

    /// Leaves the program attached when udplb exits (`--pin`).
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for EgressAttachment {
    fn drop(&mut self) {
        // A udplb that replaced this one (`--force`) replaced the filter in
        // place (same handle and priority): detaching it then would take
        // the new udplb's program away.
        if let EgressHook::Clsact(hook, ours) = &mut self.hook {
            if hook.query().is_ok_and(|id| id == *ours) {
                let _ = hook.detach();
            }
        }
    }
}

/// Takes over the tcx link an earlier `udplb --pin` left at `path`.
pub fn adopt_egress(path: &Path, prog: &Program<'_>) -> Result<Option<EgressAttachment>> {
    let Some(mut link) = open_pinned(path)? else {
        return Ok(None);
    };
    update_link(&mut link, prog)?;
    Ok(Some(EgressAttachment {
        hook: EgressHook::Tcx(link),
    }))
}

/// udplb's clsact filter on the egress of `ifindex`: handle 1, priority 1.
/// (`fd` is the program to attach; query and detach do not use it.)
fn clsact_egress(fd: std::os::fd::BorrowedFd<'_>, ifindex: u32) -> TcHook {
    TcHookBuilder::new(fd)
        .ifindex(ifindex as i32)
        .replace(true)
        .handle(1)
        .priority(1)
        .hook(libbpf_rs::TC_EGRESS)
}

/// Whether the kernel has tcx (Linux 6.6+). Asked with a query of the
/// device's tcx programs, which an older kernel refuses with EINVAL: a
/// failed attach would have libbpf print an error before the clsact
/// fallback that is no error at all.
fn kernel_has_tcx(ifindex: u32) -> bool {
    let mut q = sys::bpf_prog_query_opts {
        sz: size_of::<sys::bpf_prog_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: q is a whole, initialised options struct that asks for no
    // ids (count 0, null arrays), so the kernel writes only its counts.
    let ret = unsafe { sys::bpf_prog_query_opts(ifindex as i32, sys::BPF_TCX_EGRESS, &mut q) };
    ret != -(Errno::EINVAL as i32)
}

/// Attaches `prog` to the egress of `ifindex`: tcx where the kernel has it,
/// else a clsact filter.
pub fn attach_egress(prog: &Program<'_>, ifname: &str, ifindex: u32) -> Result<EgressAttachment> {
    use libbpf_rs::AsRawLibbpf;
    if !kernel_has_tcx(ifindex) {
        return attach_clsact(prog, ifname, ifindex);
    }
    let opts = sys::bpf_tcx_opts {
        sz: size_of::<sys::bpf_tcx_opts>() as _,
        ..Default::default()
    };
    // Raw: libbpf-rs 0.27 has no attach_tcx.
    // SAFETY: the program pointer is libbpf's, alive as long as `prog`;
    // opts is whole and initialised. libbpf returns NULL and sets errno on
    // failure, else a new link that the `Link` owns from here on.
    let link = unsafe {
        let ptr =
            sys::bpf_program__attach_tcx(prog.as_libbpf_object().as_ptr(), ifindex as i32, &opts);
        std::ptr::NonNull::new(ptr).map(|ptr| Link::from_ptr(ptr))
    };
    if let Some(link) = link {
        return Ok(EgressAttachment {
            hook: EgressHook::Tcx(link),
        });
    }
    let tcx_err = std::io::Error::last_os_error();
    let no_tcx = matches!(tcx_err.raw_os_error(), Some(e) if e == Errno::EINVAL as i32
        || e == Errno::EOPNOTSUPP as i32);
    if !no_tcx {
        bail!("attaching the reply program to {ifname} egress (tcx): {tcx_err}");
    }
    attach_clsact(prog, ifname, ifindex).with_context(|| format!("no tcx: {tcx_err}"))
}

/// [`attach_egress`] on a kernel without tcx (before 6.6): udplb's clsact
/// filter, which replaces whatever filter is at its handle and priority.
pub fn attach_clsact(prog: &Program<'_>, ifname: &str, ifindex: u32) -> Result<EgressAttachment> {
    let mut hook = clsact_egress(prog.as_fd(), ifindex);
    if let Err(e) = hook.create() {
        if e.kind() != ErrorKind::AlreadyExists {
            bail!("creating a clsact qdisc on {ifname}: {e}");
        }
    }
    hook.attach()
        .map_err(|e| anyhow!("attaching the reply program to {ifname} egress: {e}"))?;
    let ours = hook
        .query()
        .map_err(|e| anyhow!("reading back the reply program on {ifname} egress: {e}"))?;
    Ok(EgressAttachment {
        hook: EgressHook::Clsact(hook, ours),
    })
}

/// The name udplb's reply program has in the kernel (`bpf/udplb.bpf.c`).
const EGRESS_PROG_NAME: &str = "udplb_egress";

/// Detaches the bpf_link pinned at `path`, whoever holds it (a running
/// udplb, the pin): it stays open for them but attaches nothing any more.
/// Returns whether there was one.
pub fn detach_pinned(path: &Path) -> Result<bool> {
    let Some(link) = open_pinned(path)? else {
        return Ok(false);
    };
    link.detach()
        .map_err(|e| anyhow!("detaching a bpf_link: {e}"))?;
    Ok(true)
}

/// Detaches every udplb reply program on the egress of `ifindex` except
/// `ours`: the one a replaced udplb left, which would go on rewriting
/// replies to its own frontends. Looks at tcx links (the interface's list,
/// so only this namespace's device) and at the clsact filter udplb uses
/// (handle 1, priority 1). Returns what it removed.
pub fn remove_udplb_egress(ifindex: u32, ours: &Program<'_>) -> Result<Vec<String>> {
    let keep = Program::id_from_fd(ours.as_fd()).ok();
    let theirs =
        |id: u32| Some(id) != keep && prog_name_of(id).as_deref() == Some(EGRESS_PROG_NAME);
    let mut removed = Vec::new();

    let mut prog_ids = [0u32; 64];
    let mut link_ids = [0u32; 64];
    let mut q = sys::bpf_prog_query_opts {
        sz: size_of::<sys::bpf_prog_query_opts>() as _,
        prog_ids: prog_ids.as_mut_ptr(),
        link_ids: link_ids.as_mut_ptr(),
        ..Default::default()
    };
    q.__bindgen_anon_1.count = prog_ids.len() as u32;
    // Raw: libbpf-rs has no query of the tcx programs on one device (a walk
    // of every link would also find other namespaces' devices).
    // SAFETY: q is whole and initialised; its id arrays point at the two
    // local arrays, whose length is the count the kernel may fill.
    let ret = unsafe { sys::bpf_prog_query_opts(ifindex as i32, sys::BPF_TCX_EGRESS, &mut q) };
    // No tcx on this kernel (EINVAL) or nothing attached: only clsact is left.
    if ret == 0 {
        // Program ids are never 0: the entries the kernel wrote come first.
        let attached = prog_ids.iter().zip(&link_ids).take_while(|&(&p, _)| p != 0);
        for (&prog, &link) in attached {
            if link == 0 || !theirs(prog) {
                continue;
            }
            // The replaced udplb may be exiting meanwhile (it stops once
            // its XDP program is replaced), its link going with it: gone
            // (ENOENT) or already detached (ENOLINK) is what we wanted.
            let gone = |e: &std::io::Error| {
                matches!(e.raw_os_error(), Some(c) if c == Errno::ENOENT as i32
                    || c == Errno::ENOLINK as i32)
            };
            let fd = match link_fd_by_id(link) {
                Ok(fd) => fd,
                Err(e) if gone(&e) => continue,
                Err(e) => bail!("opening tcx link id {link}: {e}"),
            };
            match detach_link_fd(&fd) {
                Ok(()) => removed.push(format!("tcx link id {link} (program id {prog})")),
                Err(e) if gone(&e) => {}
                Err(e) => bail!("detaching a bpf_link: {e}"),
            }
        }
    }
    removed.extend(remove_clsact_egress(ifindex, keep)?);
    Ok(removed)
}

/// The clsact half of [`remove_udplb_egress`]: the filter at udplb's handle
/// and priority on the egress of `ifindex`, if it runs udplb's reply program
/// other than `keep`. (A clsact filter is not a link: it outlives udplb and
/// cannot be pinned.)
pub fn remove_clsact_egress(ifindex: u32, keep: Option<u32>) -> Result<Option<String>> {
    // TcHook wants a program fd, which query and detach never use; --unpin
    // has no program, so any open descriptor stands in.
    let stdin = std::io::stdin();
    let mut hook = clsact_egress(stdin.as_fd(), ifindex);
    // ENOENT (no clsact, no filter) is fine.
    let Ok(prog) = hook.query() else {
        return Ok(None);
    };
    if Some(prog) == keep || prog_name_of(prog).as_deref() != Some(EGRESS_PROG_NAME) {
        return Ok(None);
    }
    hook.detach()
        .map_err(|e| anyhow!("removing the clsact egress filter: {e}"))?;
    Ok(Some(format!("clsact egress filter (program id {prog})")))
}
