//! What udplb asks of the host before attaching: the kernel's release, and
//! of an interface its driver (is it a veth?) and its MTU, through two
//! ioctls; and the XDP mode a veth among the interfaces allows on this
//! kernel.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::config::settings::XdpMode;
use crate::error::UsageError;

/// The kernel release udplb runs on, as (major, minor); (0, 0) if it
/// cannot be read or parsed.
pub fn kernel_version() -> (u32, u32) {
    parse_release(&std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default())
}

fn parse_release(release: &str) -> (u32, u32) {
    let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => (0, 0),
    }
}

/// The first kernel whose veth takes frames redirected into it when its
/// peer has NAPI from GRO alone (`veth: allow enabling NAPI even without
/// XDP`). Before it, veth_xdp_xmit drops every frame natively redirected or
/// sent back (XDP_TX) into a veth unless the peer runs an XDP program, which
/// udplb cannot see or set up in the backend's namespace. Generic XDP sends
/// redirected frames through the stack and is not affected.
pub const VETH_REDIRECT_KERNEL: (u32, u32) = (5, 13);

/// The XDP mode to attach with on `kernel` when `veth` names one of the
/// interfaces that is a veth, and a line to say about it. Every interface
/// gets the same mode: a NIC's native program would redirect into the veth
/// as well. An explicit native mode is refused there, with the version it
/// needs.
pub fn mode_for_veths(
    kernel: (u32, u32),
    veth: Option<&str>,
    mode: XdpMode,
) -> std::result::Result<(XdpMode, Option<String>), UsageError> {
    let Some(veth) = veth else {
        return Ok((mode, None));
    };
    if kernel >= VETH_REDIRECT_KERNEL || mode == XdpMode::Generic {
        return Ok((mode, None));
    }
    let (major, minor) = kernel;
    let (need_major, need_minor) = VETH_REDIRECT_KERNEL;
    let why = format!(
        "Linux {major}.{minor} drops frames redirected into a veth ({veth}) whose peer runs no XDP program"
    );
    match mode {
        XdpMode::Native => Err(UsageError(format!(
            "native XDP with a veth among the interfaces needs Linux {need_major}.{need_minor} \
             ({why}); use --xdp-mode generic or auto"
        ))),
        _ => Ok((
            XdpMode::Generic,
            Some(format!("udplb: generic XDP on every interface: {why}")),
        )),
    }
}

/// A zeroed `ifreq` naming `ifname` (at most 15 bytes, checked at start).
fn ifreq(ifname: &str) -> nix::libc::ifreq {
    // SAFETY: an all-zero ifreq is valid; the name copied in is at most 15
    // bytes, so it stays NUL-terminated.
    let mut req: nix::libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes().take(15)) {
        *dst = src as nix::libc::c_char;
    }
    req
}

fn ioctl_socket() -> Option<OwnedFd> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()
}

/// Whether `ifname` is a veth, by its driver's name (ETHTOOL_GDRVINFO).
pub fn is_veth(ifname: &str) -> bool {
    /// struct ethtool_drvinfo: the command, the driver's name, then
    /// fields udplb does not read (196 bytes in all).
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 160],
    }
    const ETHTOOL_GDRVINFO: u32 = 3;
    let Some(sock) = ioctl_socket() else {
        return false;
    };
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 160],
    };
    let mut req = ifreq(ifname);
    req.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: valid socket; ifru_data points at a whole ethtool_drvinfo
    // that outlives the call and that SIOCETHTOOL fills.
    let ret = unsafe { nix::libc::ioctl(sock.as_raw_fd(), nix::libc::SIOCETHTOOL, &mut req) };
    ret == 0 && info.driver.split(|&b| b == 0).next() == Some(b"veth".as_slice())
}

/// The MTU of `ifname` in this network namespace (SIOCGIFMTU; /sys/class/net
/// may show another namespace's devices under `nsenter --net`).
pub fn mtu(ifname: &str) -> Option<i32> {
    let sock = ioctl_socket()?;
    let mut req = ifreq(ifname);
    // SAFETY: valid socket and ifreq; SIOCGIFMTU fills ifru_mtu.
    let ret = unsafe { nix::libc::ioctl(sock.as_raw_fd(), nix::libc::SIOCGIFMTU, &mut req) };
    // SAFETY: ifru_mtu is plain data, read only when the ioctl filled it.
    (ret == 0).then_some(unsafe { req.ifr_ifru.ifru_mtu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse_to_major_and_minor() {
        assert_eq!(parse_release("5.10.0-35-amd64\n"), (5, 10));
        assert_eq!(parse_release("6.18.1"), (6, 18));
        assert_eq!(parse_release("6.1-rc2"), (6, 1));
        assert_eq!(parse_release("garbage"), (0, 0));
    }

    #[test]
    fn veths_before_5_13_get_generic_mode_or_a_refusal_naming_the_version() {
        let veth = Some("veth-b");
        // No veth, or a kernel that takes redirects into veths: as asked.
        for mode in [XdpMode::Auto, XdpMode::Native, XdpMode::Generic] {
            assert_eq!(mode_for_veths((5, 10), None, mode).unwrap(), (mode, None));
            assert_eq!(mode_for_veths((5, 13), veth, mode).unwrap(), (mode, None));
            assert_eq!(mode_for_veths((6, 1), veth, mode).unwrap(), (mode, None));
        }
        let (mode, note) = mode_for_veths((5, 10), veth, XdpMode::Auto).unwrap();
        assert_eq!(mode, XdpMode::Generic);
        assert!(note
            .unwrap()
            .contains("Linux 5.10 drops frames redirected into a veth (veth-b)"));
        assert_eq!(
            mode_for_veths((5, 12), veth, XdpMode::Generic).unwrap(),
            (XdpMode::Generic, None)
        );
        let err = mode_for_veths((5, 10), veth, XdpMode::Native)
            .unwrap_err()
            .0;
        assert!(err.contains("needs Linux 5.13"), "{err}");
        assert!(err.contains("--xdp-mode generic or auto"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
