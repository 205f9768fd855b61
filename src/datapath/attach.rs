//! Attaching the XDP program to an interface through a bpf_link.
//!
//! A bpf_link is owned by a file descriptor: when udplb exits, however it
//! exits (even SIGKILL), the kernel closes the descriptor and detaches the
//! program. Nothing is left behind unless pinning is asked for.
//!
//! libbpf-rs's `attach_xdp` cannot choose native or generic mode, so the
//! link is created with libbpf's `bpf_link_create` and the mode flags.

use std::ffi::CStr;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use anyhow::{bail, Result};
use libbpf_sys as sys;

use crate::error::UsageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode where the driver supports it, else generic.
    Auto,
    /// Driver mode; fails on interfaces without native XDP (such as lo).
    Native,
    /// Generic (skb) mode: works everywhere, slower.
    Generic,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Auto => 0,
            XdpMode::Native => sys::XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => sys::XDP_FLAGS_SKB_MODE,
        }
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

fn query(ifindex: u32) -> Result<sys::bpf_xdp_query_opts> {
    let mut opts = sys::bpf_xdp_query_opts {
        sz: size_of::<sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: opts is a valid, sized bpf_xdp_query_opts.
    let ret = unsafe { sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if ret < 0 {
        bail!("querying XDP on ifindex {ifindex}: {}", errno(ret));
    }
    Ok(opts)
}

/// Id and name of a loaded program.
fn prog_info(fd: BorrowedFd<'_>) -> Option<(u32, String)> {
    let mut info = sys::bpf_prog_info::default();
    let mut len = size_of::<sys::bpf_prog_info>() as u32;
    // SAFETY: info is a valid bpf_prog_info of len bytes.
    if unsafe { sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) } < 0 {
        return None;
    }
    // SAFETY: the kernel NUL-terminates the 16-byte name.
    let name = unsafe { CStr::from_ptr(info.name.as_ptr()) };
    Some((info.id, name.to_string_lossy().into_owned()))
}

/// The name of program `prog_id` (opening it by id needs CAP_SYS_ADMIN).
fn prog_name_of(prog_id: u32) -> Option<String> {
    // SAFETY: plain syscall wrapper; the fd is owned right after.
    let fd = unsafe { sys::bpf_prog_get_fd_by_id(prog_id) };
    if fd < 0 {
        return None;
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    prog_info(fd.as_fd()).map(|(_, name)| name)
}

fn prog_name(prog_id: u32) -> String {
    match prog_name_of(prog_id) {
        Some(name) => format!("name {name}"),
        None => "name unknown".into(),
    }
}

/// The bpf_link that holds XDP program `prog_id` on `ifindex`, if any,
/// opened. Links of every namespace are listed, and ifindexes repeat across
/// namespaces: the program id tells ours apart.
fn find_xdp_link(ifindex: u32, prog_id: u32) -> Option<(u32, OwnedFd)> {
    let mut id = 0u32;
    // SAFETY: syscall wrappers with valid out-pointers; fds are owned at once.
    while unsafe { sys::bpf_link_get_next_id(id, &mut id) } == 0 {
        let fd = unsafe { sys::bpf_link_get_fd_by_id(id) };
        if fd < 0 {
            continue;
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut info: sys::bpf_link_info = unsafe { std::mem::zeroed() };
        let mut len = size_of::<sys::bpf_link_info>() as u32;
        if unsafe { sys::bpf_link_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) } < 0 {
            continue;
        }
        // SAFETY: the xdp member is the valid one for BPF_LINK_TYPE_XDP.
        if info.type_ == sys::BPF_LINK_TYPE_XDP
            && info.prog_id == prog_id
            && unsafe { info.__bindgen_anon_1.xdp.ifindex } == ifindex
        {
            return Some((id, fd));
        }
    }
    None
}

/// The XDP program already attached to `ifindex`, if there is one.
pub fn existing(ifindex: u32) -> Result<Option<Existing>> {
    let q = query(ifindex)?;
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
        link_id: find_xdp_link(ifindex, prog_id).map(|(id, _)| id),
    }))
}

/// Removes whatever XDP program is on `ifindex` (for `--force`).
fn remove_existing(ifindex: u32, other: &Existing) -> Result<()> {
    if let Some((id, fd)) = other
        .link_id
        .and_then(|_| find_xdp_link(ifindex, other.prog_id))
    {
        // SAFETY: fd is a valid link fd.
        let ret = unsafe { sys::bpf_link_detach(fd.as_raw_fd()) };
        if ret < 0 {
            bail!("detaching bpf_link id {id}: {}", errno(ret));
        }
    }
    for flags in [sys::XDP_FLAGS_SKB_MODE, sys::XDP_FLAGS_DRV_MODE] {
        if query(ifindex)?.attach_mode as u32 == sys::XDP_ATTACHED_NONE {
            break;
        }
        // SAFETY: a NULL opts pointer is allowed.
        let ret = unsafe { sys::bpf_xdp_detach(ifindex as i32, flags, std::ptr::null()) };
        if ret < 0 && ret != -libc_enoent() {
            bail!(
                "detaching the XDP program from ifindex {ifindex}: {}",
                errno(ret)
            );
        }
    }
    Ok(())
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

/// Attaches `prog` to `ifname`. Without `force`, refuses if another XDP
/// program is there; with it, detaches that program first.
pub fn attach(
    prog: BorrowedFd<'_>,
    ifname: &str,
    ifindex: u32,
    mode: XdpMode,
    force: bool,
) -> Result<XdpAttachment> {
    if let Some(other) = existing(ifindex)? {
        if !force {
            return Err(UsageError(format!(
                "{ifname} already has {other}; use --force to replace it"
            ))
            .into());
        }
        remove_existing(ifindex, &other)?;
    }
    let mut fd = link_create(prog, ifindex, mode.flags());
    // ERANGE: the driver refuses native XDP at this MTU for a program without
    // multi-buffer (frags) support, as veth does above about 4 KB. Generic
    // mode copes with any MTU.
    if fd == -(nix::errno::Errno::ERANGE as i32) && mode != XdpMode::Generic {
        let mtu = mtu(ifname).map_or("its MTU".to_string(), |m| format!("MTU {m}"));
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
        fd = link_create(prog, ifindex, XdpMode::Generic.flags());
    }
    if fd < 0 {
        let err = errno(fd);
        let code = nix::errno::Errno::from_raw(-fd);
        if code == nix::errno::Errno::EOPNOTSUPP && mode == XdpMode::Native {
            let msg = format!("{ifname} has no native XDP support; use --xdp-mode generic or auto");
            return Err(UsageError(msg).into());
        }
        let why = match (code, mode) {
            (nix::errno::Errno::EPERM, _) => {
                "permission denied: attaching XDP needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON".into()
            }
            (nix::errno::Errno::EBUSY | nix::errno::Errno::EEXIST, _) => {
                format!("another XDP program was attached to {ifname} meanwhile ({err})")
            }
            _ => err.to_string(),
        };
        bail!("attaching XDP to {ifname}: {why}");
    }
    let link = unsafe { OwnedFd::from_raw_fd(fd) };
    described(link, ifname, ifindex)
}

/// Creates an XDP bpf_link with mode `flags`: the link fd, or -errno.
fn link_create(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> i32 {
    let opts = sys::bpf_link_create_opts {
        sz: size_of::<sys::bpf_link_create_opts>() as _,
        flags,
        // SAFETY: all-zero is a valid value for the remaining plain fields.
        ..unsafe { std::mem::zeroed() }
    };
    // SAFETY: valid prog fd and opts; the caller owns the returned fd.
    unsafe { sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, sys::BPF_XDP, &opts) }
}

/// The MTU of `ifname` in this network namespace (SIOCGIFMTU; /sys/class/net
/// may show another namespace's devices under `nsenter --net`).
fn mtu(ifname: &str) -> Option<i32> {
    use nix::libc;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    // SAFETY: an all-zero ifreq is valid; the name fits (checked to be at
    // most 15 bytes) and stays NUL-terminated.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes().take(15)) {
        *dst = src as libc::c_char;
    }
    // SAFETY: valid socket and ifreq; SIOCGIFMTU fills ifru_mtu.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    // SAFETY: ifru_mtu is plain data, read only when the ioctl filled it.
    (ret == 0).then_some(unsafe { req.ifr_ifru.ifru_mtu })
}

/// An attachment record for a link now holding our program on `ifindex`.
fn described(link: OwnedFd, ifname: &str, ifindex: u32) -> Result<XdpAttachment> {
    let q = query(ifindex)?;
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

/// Swaps `prog` into a link (bpf_link_update): atomic, no packet sees no
/// program.
fn update_link(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: valid fds; NULL opts.
    let ret = unsafe { sys::bpf_link_update(link.as_raw_fd(), prog.as_raw_fd(), std::ptr::null()) };
    if ret < 0 {
        bail!("replacing the program in a pinned link: {}", errno(ret));
    }
    Ok(())
}

/// Takes over the XDP link that an earlier `udplb --pin` left at `path`,
/// swapping `prog` in. The link must hold XDP on `ifindex`.
pub fn adopt_xdp(
    path: &std::path::Path,
    prog: BorrowedFd<'_>,
    ifname: &str,
    ifindex: u32,
) -> Result<Option<XdpAttachment>> {
    let Some(link) = super::pin::open(path)? else {
        return Ok(None);
    };
    let mut info: sys::bpf_link_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<sys::bpf_link_info>() as u32;
    // SAFETY: valid link fd and info buffer.
    let ok = unsafe { sys::bpf_link_get_info_by_fd(link.as_raw_fd(), &mut info, &mut len) } == 0;
    // SAFETY: the xdp member is the valid one for BPF_LINK_TYPE_XDP.
    let on_ifindex = ok
        && info.type_ == sys::BPF_LINK_TYPE_XDP
        && unsafe { info.__bindgen_anon_1.xdp.ifindex } == ifindex;
    if !on_ifindex {
        bail!(
            "{} is not an XDP link on {ifname}; remove it with udplb --unpin {ifname}",
            path.display()
        );
    }
    update_link(link.as_fd(), prog)?;
    Ok(Some(described(link, ifname, ifindex)?))
}

impl XdpAttachment {
    pub fn pin(&self, path: &std::path::Path) -> Result<()> {
        super::pin::pin_fd(self.link.as_fd(), path)
    }
}

/// How the TC egress program is attached.
enum EgressHook {
    /// A tcx bpf_link (Linux 6.6+): detached when udplb exits, even by SIGKILL.
    Tcx { _link: libbpf_rs::Link },
    /// A clsact filter (older kernels): detached on a clean exit only.
    Clsact(libbpf_rs::TcHook),
    /// A tcx link pinned by an earlier `udplb --pin`, now running our program.
    Adopted(OwnedFd),
}

/// The reply-rewriting program on an interface's egress; dropping detaches.
pub struct EgressAttachment {
    hook: EgressHook,
}

impl EgressAttachment {
    pub fn kind(&self) -> &'static str {
        match self.hook {
            EgressHook::Tcx { .. } | EgressHook::Adopted(_) => "tcx egress",
            EgressHook::Clsact(_) => "clsact egress",
        }
    }

    /// Pins the link (tcx only: a clsact filter outlives udplb anyway, and
    /// the next udplb replaces it in place).
    pub fn pin(&self, path: &std::path::Path) -> Result<()> {
        match &self.hook {
            EgressHook::Tcx { _link } => super::pin::pin_fd(_link.as_fd(), path),
            EgressHook::Adopted(fd) => super::pin::pin_fd(fd.as_fd(), path),
            EgressHook::Clsact(_) => Ok(()),
        }
    }

    /// Leaves the program attached when udplb exits (`--pin`).
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for EgressAttachment {
    fn drop(&mut self) {
        if let EgressHook::Clsact(hook) = &mut self.hook {
            let _ = hook.detach();
        }
    }
}

/// Takes over the tcx link an earlier `udplb --pin` left at `path`.
pub fn adopt_egress(
    path: &std::path::Path,
    prog: &libbpf_rs::ProgramMut<'_>,
) -> Result<Option<EgressAttachment>> {
    let Some(link) = super::pin::open(path)? else {
        return Ok(None);
    };
    update_link(link.as_fd(), prog.as_fd())?;
    Ok(Some(EgressAttachment {
        hook: EgressHook::Adopted(link),
    }))
}

/// Attaches `prog` to the egress of `ifindex`: tcx where the kernel has it,
/// else a clsact filter.
pub fn attach_egress(
    prog: &libbpf_rs::ProgramMut<'_>,
    ifname: &str,
    ifindex: u32,
) -> Result<EgressAttachment> {
    use libbpf_rs::AsRawLibbpf;
    let opts = sys::bpf_tcx_opts {
        sz: size_of::<sys::bpf_tcx_opts>() as _,
        ..Default::default()
    };
    // SAFETY: valid loaded program and opts; libbpf returns NULL and sets
    // errno on failure, else a link we own from here on.
    let ptr = unsafe {
        sys::bpf_program__attach_tcx(prog.as_libbpf_object().as_ptr(), ifindex as i32, &opts)
    };
    if let Some(ptr) = std::ptr::NonNull::new(ptr) {
        let link = unsafe { libbpf_rs::Link::from_ptr(ptr) };
        return Ok(EgressAttachment {
            hook: EgressHook::Tcx { _link: link },
        });
    }
    let tcx_err = std::io::Error::last_os_error();
    let no_tcx = matches!(tcx_err.raw_os_error(), Some(e) if e == nix::errno::Errno::EINVAL as i32
        || e == nix::errno::Errno::EOPNOTSUPP as i32);
    if !no_tcx {
        bail!("attaching the reply program to {ifname} egress (tcx): {tcx_err}");
    }
    let mut hook = libbpf_rs::TcHookBuilder::new(prog.as_fd())
        .ifindex(ifindex as i32)
        .replace(true)
        .handle(1)
        .priority(1)
        .hook(libbpf_rs::TC_EGRESS);
    if let Err(e) = hook.create() {
        if e.kind() != libbpf_rs::ErrorKind::AlreadyExists {
            bail!("creating a clsact qdisc on {ifname} (no tcx: {tcx_err}): {e}");
        }
    }
    hook.attach()
        .map_err(|e| anyhow::anyhow!("attaching the reply program to {ifname} egress: {e}"))?;
    Ok(EgressAttachment {
        hook: EgressHook::Clsact(hook),
    })
}

/// The name udplb's reply program has in the kernel (`bpf/udplb.bpf.c`).
const EGRESS_PROG_NAME: &str = "udplb_egress";

/// Detaches a bpf_link, whoever holds it (a running udplb, a pin): it stays
/// open for them but attaches nothing any more.
pub fn detach_link(link: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: valid link fd.
    let ret = unsafe { sys::bpf_link_detach(link.as_raw_fd()) };
    if ret < 0 {
        bail!("detaching a bpf_link: {}", errno(ret));
    }
    Ok(())
}

/// Detaches every udplb reply program on the egress of `ifindex` except
/// program `keep` (ours): the one a replaced udplb left, which would go on
/// rewriting replies to its own frontends. Looks at tcx links (the
/// interface's list, so only this namespace's device) and at the clsact
/// filter udplb uses (handle 1, priority 1). Returns what it removed.
pub fn remove_udplb_egress(ifindex: u32, keep: Option<u32>) -> Result<Vec<String>> {
    let ours = |id: u32| Some(id) != keep && prog_name_of(id).as_deref() == Some(EGRESS_PROG_NAME);
    let mut removed = Vec::new();

    let mut prog_ids = [0u32; 64];
    let mut link_ids = [0u32; 64];
    let mut q = sys::bpf_prog_query_opts {
        sz: size_of::<sys::bpf_prog_query_opts>() as _,
        prog_ids: prog_ids.as_mut_ptr(),
        link_ids: link_ids.as_mut_ptr(),
        // SAFETY: all-zero is a valid value for the remaining plain fields.
        ..unsafe { std::mem::zeroed() }
    };
    q.__bindgen_anon_1.count = prog_ids.len() as u32;
    // SAFETY: q points at arrays of `count` entries that outlive the call.
    let ret = unsafe { sys::bpf_prog_query_opts(ifindex as i32, sys::BPF_TCX_EGRESS, &mut q) };
    // No tcx on this kernel (EINVAL) or nothing attached: only clsact is left.
    if ret == 0 {
        // SAFETY: the kernel set count to the number of entries it wrote.
        let n = (unsafe { q.__bindgen_anon_1.count } as usize).min(prog_ids.len());
        for (&prog, &link) in prog_ids[..n].iter().zip(&link_ids[..n]) {
            if link == 0 || !ours(prog) {
                continue;
            }
            // SAFETY: plain syscall wrapper; the fd is owned right after.
            let fd = unsafe { sys::bpf_link_get_fd_by_id(link) };
            if fd < 0 {
                bail!("opening tcx link id {link}: {}", errno(fd));
            }
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            detach_link(fd.as_fd())?;
            removed.push(format!("tcx link id {link} (program id {prog})"));
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
    let hook = sys::bpf_tc_hook {
        sz: size_of::<sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: sys::BPF_TC_EGRESS,
        // SAFETY: all-zero is a valid value for the remaining plain fields.
        ..unsafe { std::mem::zeroed() }
    };
    let mut opts = sys::bpf_tc_opts {
        sz: size_of::<sys::bpf_tc_opts>() as _,
        handle: 1,
        priority: 1,
        // SAFETY: as above.
        ..unsafe { std::mem::zeroed() }
    };
    // SAFETY: valid hook and opts; ENOENT (no clsact, no filter) is fine.
    let found = unsafe { sys::bpf_tc_query(&hook, &mut opts) } == 0;
    if found
        && Some(opts.prog_id) != keep
        && prog_name_of(opts.prog_id).as_deref() == Some(EGRESS_PROG_NAME)
    {
        let prog = opts.prog_id;
        let del = sys::bpf_tc_opts {
            sz: size_of::<sys::bpf_tc_opts>() as _,
            handle: 1,
            priority: 1,
            // SAFETY: as above (bpf_tc_detach wants no prog fd, id or flags).
            ..unsafe { std::mem::zeroed() }
        };
        // SAFETY: valid hook and opts.
        let ret = unsafe { sys::bpf_tc_detach(&hook, &del) };
        if ret < 0 {
            bail!("removing the clsact egress filter: {}", errno(ret));
        }
        return Ok(Some(format!("clsact egress filter (program id {prog})")));
    }
    Ok(None)
}

/// The id of a loaded program (to tell ours apart from a replaced one).
pub fn prog_id(prog: BorrowedFd<'_>) -> Option<u32> {
    prog_info(prog).map(|(id, _)| id)
}
