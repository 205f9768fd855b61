//! Route health injection: each announced frontend's address is on the
//! announce interface (a dummy, or lo) only while this balancer can serve
//! it, so that the routing daemon that exports that interface's addresses
//! (BIRD `protocol direct`, FRR `redistribute connected`) draws traffic
//! here only then.
//!
//! The rule ([`wanted`], pure): nothing while the datapath is not attached
//! to every interface; otherwise an address is added once one of its
//! frontends has a backend that is up *and proven* (its check answered,
//! its socket seen), and stays while one of its frontends has a backend
//! up. Health starts every backend up so that nothing is refused while the
//! checks have not run; announcing waits for evidence instead.
//!
//! [`Announcer`] applies the rule through `datapath::addresses`, logs each
//! change (and each failure once), refreshes the addresses' lease, and
//! withdraws everything on SIGINT/SIGTERM before the datapath goes. A
//! udplb replaced by another (`--force`) withdraws only what the new one
//! has not written since ([`Announcer::withdraw_replaced`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;

use crate::config::announce::{self, Announce};
use crate::config::Listen;
use crate::datapath::addresses::{self, Added, Addresses};
use crate::error::UsageError;
use crate::{say, warn};

/// What the balancer knows of one announced frontend now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    pub listen: Listen,
    /// Backends with weight that are up.
    pub up: usize,
    /// Of those, the ones whose being up is proven.
    pub proven: usize,
}

/// The addresses to have on the interface now, given those there
/// (`announced`): see the module's rule.
pub fn wanted(
    frontends: &[Serving],
    announced: &BTreeSet<IpAddr>,
    attached: bool,
) -> BTreeSet<IpAddr> {
    if !attached {
        return BTreeSet::new();
    }
    let mut by_addr: BTreeMap<IpAddr, (bool, bool)> = BTreeMap::new();
    for s in frontends {
        let Some(addr) = announce::address(&s.listen) else {
            continue;
        };
        let e = by_addr.entry(addr).or_default();
        e.0 |= s.up > 0;
        e.1 |= s.proven > 0;
    }
    by_addr
        .into_iter()
        .filter(|(addr, (up, proven))| match announced.contains(addr) {
            true => *up,
            false => *proven,
        })
        .map(|(addr, _)| addr)
        .collect()
}

/// Why an address is (or is no longer) announced, for the log line.
fn reason(addr: IpAddr, frontends: &[Serving], attached: bool, adding: bool) -> String {
    if !attached {
        return "the datapath is not attached to every interface".into();
    }
    let mine: Vec<&Serving> = (frontends.iter())
        .filter(|s| announce::address(&s.listen) == Some(addr))
        .collect();
    let names: Vec<String> = mine.iter().map(|s| s.listen.to_string()).collect();
    match adding {
        true => {
            let up: usize = mine.iter().map(|s| s.up).sum();
            let b = if up == 1 { "backend" } else { "backends" };
            format!("{} has {up} {b} up", names.join(", "))
        }
        false if mine.is_empty() => "no frontend announces it any more".into(),
        false => format!("{} has no backend up", names.join(", ")),
    }
}

/// The last failure logged for each address (adding, refreshing or
/// removing it), so that a failure that repeats at every sync is logged
/// once, and again only when it changes or after a success.
#[derive(Default)]
struct Failures(BTreeMap<IpAddr, String>);

impl Failures {
    /// Whether `msg` is news for `addr` (then the caller logs it).
    fn news(&mut self, addr: IpAddr, msg: &str) -> bool {
        match self.0.get(&addr) {
            Some(last) if last == msg => false,
            _ => {
                self.0.insert(addr, msg.to_string());
                true
            }
        }
    }

    /// `addr` worked: its next failure is news.
    fn cleared(&mut self, addr: IpAddr) {
        self.0.remove(&addr);
    }
}

/// The announce interface's addresses of ours, kept to the rule.
pub struct Announcer {
    iface: String,
    netlink: Addresses,
    /// Ours on the interface, as far as we know.
    announced: BTreeSet<IpAddr>,
    /// Found there and not ours: said once, never touched, and not tried
    /// again while it is there.
    foreign: BTreeSet<IpAddr>,
    failures: Failures,
    /// The stamp (`Present::stamp`) each address of ours had just after
    /// this udplb last added or renewed it: one with another stamp was
    /// added or renewed since by another udplb (one that replaced this one).
    stamps: BTreeMap<IpAddr, u32>,
}

impl Announcer {
    /// Opens the netlink socket for `settings` (None when announcing is
    /// off) and, if `leftovers`, removes the addresses of ours that an
    /// earlier udplb left (one that was killed): nothing is announced
    /// before the datapath is attached. `leftovers` is false while another
    /// udplb runs on these interfaces and this one is not replacing it: the
    /// addresses are its own.
    pub fn open(settings: &Announce, leftovers: bool) -> Result<Option<Announcer>> {
        let Some(iface) = settings.interface.clone() else {
            return Ok(None);
        };
        let Ok(ifindex) = nix::net::if_::if_nametoindex(iface.as_str()) else {
            return Err(UsageError(format!(
                "announce interface {iface}: no such interface; create it first \
                 (ip link add {iface} type dummy && ip link set {iface} up)"
            ))
            .into());
        };
        let mut a = Announcer {
            iface,
            netlink: Addresses::open()?,
            announced: BTreeSet::new(),
            foreign: BTreeSet::new(),
            failures: Failures::default(),
            stamps: BTreeMap::new(),
        };
        for p in a.netlink.list(ifindex)? {
            if leftovers && p.ours && a.netlink.remove(ifindex, p.addr)? {
                say!(
                    "udplb: removed {} from {}: an earlier udplb left it",
                    p.addr,
                    a.iface
                );
            }
        }
        Ok(Some(a))
    }

    /// Brings the interface to the rule; logs each change. A failure is
    /// logged and tried again at the next call.
    pub fn sync(&mut self, settings: &Announce, frontends: &[Serving], attached: bool) {
        // A foreign address is tried again only after a refresh finds it
        // gone: not on every event.
        let mut want = wanted(frontends, &self.announced, attached);
        want.retain(|a| !self.foreign.contains(a));
        if want == self.announced {
            return;
        }
        let Some(ifindex) = self.ifindex() else {
            return;
        };
        let gone: Vec<IpAddr> = self.announced.difference(&want).copied().collect();
        for addr in gone {
            match self.netlink.remove(ifindex, addr) {
                Ok(_) => {
                    self.announced.remove(&addr);
                    self.failures.cleared(addr);
                    say!(
                        "udplb: withdrew {addr} from {}: {}",
                        self.iface,
                        reason(addr, frontends, attached, false)
                    );
                }
                Err(e) => self.failed(addr, format!("withdrawing {addr} from"), &e),
            }
        }
        let new: Vec<IpAddr> = want.difference(&self.announced).copied().collect();
        let adding = !new.is_empty();
        for addr in new {
            match self.netlink.add(ifindex, addr, settings.lease) {
                Ok(Added::Ours) => {
                    self.announced.insert(addr);
                    self.foreign.remove(&addr);
                    self.failures.cleared(addr);
                    say!(
                        "udplb: announcing {addr} on {}: {}",
                        self.iface,
                        reason(addr, frontends, attached, true)
                    );
                }
                Ok(Added::Foreign) => {
                    if self.foreign.insert(addr) {
                        warn!(
                            "udplb: {addr} is on {} already and udplb did not add it: \
                             it stays announced whatever udplb does",
                            self.iface
                        );
                    }
                }
                // Tried again at every sync (after every event): logged
                // once per address and error.
                Err(e) => self.failed(addr, format!("announcing {addr} on"), &e),
            }
        }
        if adding {
            self.note_stamps(ifindex);
        }
    }

    /// Records the stamps of our addresses as this udplb just wrote them.
    /// (If the interface cannot be read, the old stamps stay: a replaced
    /// udplb then leaves those addresses to their lease.)
    fn note_stamps(&mut self, ifindex: u32) {
        let Ok(present) = self.netlink.list(ifindex) else {
            return;
        };
        let announced = &self.announced;
        self.stamps.retain(|a, _| announced.contains(a));
        for p in present
            .iter()
            .filter(|p| p.ours && announced.contains(&p.addr))
        {
            self.stamps.insert(p.addr, p.stamp);
        }
    }

    /// Logs that `doing` (e.g. "announcing 198.18.100.1 on") this
    /// interface failed with `e`, unless that was the last thing logged
    /// about `addr`.
    fn failed(&mut self, addr: IpAddr, doing: String, e: &anyhow::Error) {
        let msg = format!("udplb: {doing} {}: {e:#}", self.iface);
        if self.failures.news(addr, &msg) {
            warn!("{msg} (logged again only if it changes)");
        }
    }

    /// Every quarter lease: a fresh lease for each address of ours; one
    /// that went (the interface was deleted and created again, or someone
    /// removed it) is added again by the next [`sync`](Self::sync).
    pub fn refresh(&mut self, settings: &Announce) {
        let Some(ifindex) = self.ifindex() else {
            self.announced.clear();
            return;
        };
        let present = match self.netlink.list(ifindex) {
            Ok(p) => p,
            Err(e) => return warn!("udplb: reading the addresses of {}: {e:#}", self.iface),
        };
        (self.foreign).retain(|a| present.iter().any(|p| p.addr == *a && !p.ours));
        let renewing = !self.announced.is_empty();
        for addr in self.announced.clone() {
            let host = addresses::host_prefix(addr);
            let here = present
                .iter()
                .find(|p| p.addr == addr && p.prefix_len == host);
            match here {
                Some(p) if p.ours => match self.netlink.refresh(ifindex, addr, settings.lease) {
                    Ok(()) => self.failures.cleared(addr),
                    Err(e) => self.failed(addr, format!("refreshing {addr} on"), &e),
                },
                _ => {
                    self.announced.remove(&addr);
                    warn!(
                        "udplb: {addr} went from {} without udplb; adding it again",
                        self.iface
                    );
                }
            }
        }
        if renewing {
            self.note_stamps(ifindex);
        }
    }

    /// How often [`refresh`](Self::refresh) runs.
    pub fn refresh_every(settings: &Announce) -> Duration {
        (settings.lease / 4).max(Duration::from_millis(250))
    }

    /// SIGINT or SIGTERM: removes every address of ours; true if there
    /// were any (then the caller waits the grace before detaching).
    pub fn withdraw_all(&mut self) -> bool {
        let Some(ifindex) = self.ifindex() else {
            return false;
        };
        let mut any = false;
        for addr in std::mem::take(&mut self.announced) {
            match self.netlink.remove(ifindex, addr) {
                Ok(was) => {
                    any |= was;
                    say!("udplb: withdrew {addr} from {}: stopping", self.iface);
                }
                Err(e) => warn!("udplb: withdrawing {addr} from {}: {e:#}", self.iface),
            }
        }
        any
    }

    /// Another udplb replaced this one (`--force`): removes the addresses
    /// of ours that nobody wrote since this udplb last did, and leaves
    /// those the new udplb added or renewed (it serves them: its now). The
    /// new udplb removed ours when it started, so what is left is what this
    /// one added again since, or what the new one announces.
    pub fn withdraw_replaced(&mut self) {
        let Some(ifindex) = self.ifindex() else {
            return;
        };
        let present = match self.netlink.list(ifindex) {
            Ok(p) => p,
            Err(e) => {
                return warn!(
                    "udplb: reading the addresses of {}: {e:#}; they expire with their lease",
                    self.iface
                )
            }
        };
        for addr in std::mem::take(&mut self.announced) {
            let mine = self.stamps.get(&addr);
            let here = present.iter().find(|p| p.addr == addr && p.ours);
            match here {
                None => {}
                Some(p) if Some(&p.stamp) != mine => say!(
                    "udplb: left {addr} on {}: the udplb that replaced this one holds it",
                    self.iface
                ),
                // Between the list and the removal the new udplb may renew
                // it: then it is gone until its next renewal adds it again.
                Some(_) => match self.netlink.remove(ifindex, addr) {
                    Ok(_) => say!(
                        "udplb: withdrew {addr} from {}: this udplb was replaced",
                        self.iface
                    ),
                    Err(e) => warn!("udplb: withdrawing {addr} from {}: {e:#}", self.iface),
                },
            }
        }
    }

    fn ifindex(&self) -> Option<u32> {
        nix::net::if_::if_nametoindex(self.iface.as_str()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe(spec: &str, up: usize, proven: usize) -> Serving {
        Serving {
            listen: crate::config::parse_listen(spec).unwrap(),
            up,
            proven,
        }
    }

    fn set(addrs: &[&str]) -> BTreeSet<IpAddr> {
        addrs.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn announced_only_while_attached_and_proven_withdrawn_with_the_last_backend() {
        let none = set(&[]);
        let a = "198.18.100.1:53";
        // Up but unproven (checks not run yet): not yet.
        assert_eq!(wanted(&[fe(a, 2, 0)], &none, true), none);
        assert_eq!(wanted(&[fe(a, 2, 1)], &none, true), set(&["198.18.100.1"]));
        // Not attached: nothing, whatever the health.
        assert_eq!(wanted(&[fe(a, 2, 2)], &none, false), none);
        let on = set(&["198.18.100.1"]);
        assert_eq!(wanted(&[fe(a, 2, 2)], &on, false), none);
        // Once announced, it stays while a backend is up (a reload that
        // resets a check does not withdraw it) ...
        assert_eq!(wanted(&[fe(a, 1, 0)], &on, true), on);
        // ... and goes with the last one.
        assert_eq!(wanted(&[fe(a, 0, 0)], &on, true), none);
    }

    #[test]
    fn one_frontend_down_withdraws_its_address_only() {
        let on = set(&["198.18.100.1", "198.18.100.2", "2001:2:100::1"]);
        let fes = [
            fe("198.18.100.1:53", 0, 0),
            fe("198.18.100.2:53", 3, 3),
            fe("[2001:2:100::1]:53", 1, 1),
        ];
        assert_eq!(
            wanted(&fes, &on, true),
            set(&["198.18.100.2", "2001:2:100::1"])
        );
        // Two frontends on one address: it stays while either serves.
        let shared = [fe("198.18.100.1:53", 0, 0), fe("198.18.100.1:443", 1, 1)];
        assert_eq!(wanted(&shared, &on, true), set(&["198.18.100.1"]));
        // A frontend no longer announced (reload): its address goes.
        assert_eq!(wanted(&[], &on, true), set(&[]));
        // Port-only frontends are never announced (config refuses them).
        assert_eq!(wanted(&[fe("53", 1, 1)], &set(&[]), true), set(&[]));
    }

    #[test]
    fn a_failure_is_news_once_per_address_and_error() {
        let mut f = Failures::default();
        let (a, b): (IpAddr, IpAddr) = (
            "2001:2:100::1".parse().unwrap(),
            "198.18.100.1".parse().unwrap(),
        );
        assert!(f.news(a, "announcing: EACCES"));
        // Every later sync fails the same way: not news.
        for _ in 0..20 {
            assert!(!f.news(a, "announcing: EACCES"));
        }
        // Another address, or another error, is.
        assert!(f.news(b, "announcing: EACCES"));
        assert!(f.news(a, "announcing: ENODEV"));
        assert!(!f.news(a, "announcing: ENODEV"));
        // After a success, the same error is news again.
        f.cleared(a);
        assert!(f.news(a, "announcing: ENODEV"));
        assert!(!f.news(b, "announcing: EACCES"));
    }

    #[test]
    fn log_reasons() {
        let fes = [fe("198.18.100.1:53", 2, 2)];
        let a = "198.18.100.1".parse().unwrap();
        assert_eq!(
            reason(a, &fes, true, true),
            "198.18.100.1:53 has 2 backends up"
        );
        assert_eq!(
            reason(a, &[fe("198.18.100.1:53", 0, 0)], true, false),
            "198.18.100.1:53 has no backend up"
        );
        assert_eq!(
            reason(a, &fes, false, false),
            "the datapath is not attached to every interface"
        );
        assert_eq!(
            reason(a, &[], true, false),
            "no frontend announces it any more"
        );
    }
}
