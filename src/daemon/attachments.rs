//! The programs on each interface: attached at start (or taken over from a
//! `--pin`ned predecessor), attached again to an interface that went away
//! and came back, and at the stop detached or left pinned.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::settings::{RunOptions, XdpMode};
use crate::datapath::attach::{self, EgressAttachment, XdpAttachment};
use crate::datapath::links::LinkEvent;
use crate::datapath::{pin, Datapath, LOOPBACK_IFINDEX};
use crate::{say, warn};

/// One interface's programs.
struct Attached {
    xdp: XdpAttachment,
    /// None on lo, where XDP sees replies too.
    egress: Option<EgressAttachment>,
}

pub struct Attachments {
    /// The interfaces to be attached to, by name: one that is deleted and
    /// created again gets the programs again.
    ifnames: Vec<String>,
    attached: Vec<Attached>,
    /// Pin directories this start created, removed again if it fails.
    created_dirs: Vec<PathBuf>,
    pin: bool,
    force: bool,
    /// `--xdp-mode` after [`host::mode_for_veths`](crate::datapath::host::mode_for_veths).
    xdp_mode: XdpMode,
}

impl Attachments {
    /// Attaches to every interface (with `--pin`, taking over what a
    /// previous `udplb --pin` left, then pinning). An error leaves nothing
    /// attached and no pin directory this start made.
    pub fn start(
        datapath: &mut Datapath,
        ifaces: &[(String, u32)],
        run: &RunOptions,
        xdp_mode: XdpMode,
    ) -> Result<Attachments> {
        let mut a = Attachments {
            ifnames: ifaces.iter().map(|(n, _)| n.clone()).collect(),
            attached: Vec::new(),
            created_dirs: Vec::new(),
            pin: run.pin,
            force: run.force,
            xdp_mode,
        };
        let attached = ifaces
            .iter()
            .try_for_each(|(name, ifindex)| a.attach(datapath, name, *ifindex, true))
            .and_then(|()| match a.pin {
                true => a.pin_all(datapath),
                false => Ok(()),
            });
        if let Err(e) = attached {
            // Detach first (dropping the attachments), then remove the pin
            // directories this start made.
            a.attached.clear();
            pin::remove_created(&a.created_dirs);
            return Err(e);
        }
        Ok(a)
    }

    /// Attaches XDP (and, except on lo, the egress program), or with `--pin`
    /// and `adopt` takes over the links a previous `udplb --pin` left.
    fn attach(&mut self, dp: &Datapath, name: &str, ifindex: u32, adopt: bool) -> Result<()> {
        let dir = pin::dir(name);
        let adopt = adopt && self.pin;
        if adopt {
            let created = pin::prepare(&dir)?;
            self.created_dirs.extend(created);
        }
        let adopted = match adopt {
            true => attach::adopt_xdp(&dir.join(pin::XDP_LINK), dp.xdp_program(), name, ifindex)?,
            false => None,
        };
        let xdp = match adopted {
            Some(x) => x,
            None => attach::attach(dp.xdp_program(), name, ifindex, self.xdp_mode, self.force)?,
        };
        // On lo, replies from local backends come back in through the
        // receive path and XDP rewrites them; elsewhere they leave through
        // egress.
        let egress = if ifindex == LOOPBACK_IFINDEX {
            None
        } else {
            let adopted = match adopt {
                true => attach::adopt_egress(&dir.join(pin::EGRESS_LINK), dp.egress_prog())?,
                false => None,
            };
            match adopted {
                Some(e) => Some(e),
                None => Some(attach::attach_egress(dp.egress_prog(), name, ifindex)?),
            }
        };
        if ifindex != LOOPBACK_IFINDEX {
            dp.add_tx_port(ifindex)?;
        }
        // --force replaces a udplb: both its programs. Its XDP program went
        // above; its egress program, left alone, would go on rewriting
        // replies to its own frontends (and, pinned, outlive us).
        if self.force && egress.is_some() {
            for what in attach::remove_udplb_egress(ifindex, dp.egress_prog())? {
                say!("udplb: {name}: removed the replaced udplb's {what}");
            }
        }
        let replies = egress.as_ref().map_or("XDP", |e| e.kind());
        let pinned = match self.pin {
            true => format!("; pinned under {}", dir.display()),
            false => String::new(),
        };
        say!(
            "udplb: attached to {} ({} XDP, program id {}; replies: {replies}){pinned}; Ctrl-C to stop",
            xdp.ifname,
            xdp.mode,
            xdp.prog_id,
        );
        self.attached.push(Attached { xdp, egress });
        Ok(())
    }

    /// `--pin`: pins links and maps under each interface's directory, once
    /// every interface is attached (an error before leaves nothing pinned).
    fn pin_all(&mut self, dp: &mut Datapath) -> Result<()> {
        for a in &mut self.attached {
            let dir = pin::dir(&a.xdp.ifname);
            a.xdp.pin(&dir.join(pin::XDP_LINK))?;
            if let Some(e) = &mut a.egress {
                e.pin(&dir.join(pin::EGRESS_LINK))?;
            }
            dp.pin_maps(&dir)?;
        }
        Ok(())
    }

    /// Link events: an interface we are attached to went away (its links
    /// went with it), or one of ours came back under a new ifindex.
    pub fn link_events(&mut self, dp: &mut Datapath, events: Vec<LinkEvent>) {
        for event in events {
            match event {
                LinkEvent::Gone { name, ifindex } => {
                    let Some(i) = (self.attached.iter())
                        .position(|a| a.xdp.ifindex == ifindex && a.xdp.ifname == name)
                    else {
                        continue;
                    };
                    drop(self.attached.remove(i));
                    dp.remove_tx_port(ifindex);
                    warn!(
                        "udplb: interface {name} (ifindex {ifindex}) went away; \
                         attaching again when it comes back"
                    );
                }
                LinkEvent::New { name, ifindex } => self.reattach(dp, &name, Some(ifindex)),
                LinkEvent::Lost => {
                    // Some events were dropped (the socket's buffer ran
                    // over): look at every interface. One whose name no
                    // longer resolves went away unseen.
                    let gone: Vec<LinkEvent> = (self.attached.iter())
                        .filter(|a| nix::net::if_::if_nametoindex(a.xdp.ifname.as_str()).is_err())
                        .map(|a| LinkEvent::Gone {
                            name: a.xdp.ifname.clone(),
                            ifindex: a.xdp.ifindex,
                        })
                        .collect();
                    self.link_events(dp, gone);
                    for name in self.ifnames.clone() {
                        self.reattach(dp, &name, None);
                    }
                }
            }
        }
    }

    /// Attaches to `name` if it is one of ours and not attached at its
    /// current ifindex (`None`: look it up).
    fn reattach(&mut self, dp: &mut Datapath, name: &str, ifindex: Option<u32>) {
        if !self.ifnames.iter().any(|n| n == name) {
            return;
        }
        let Some(ifindex) = ifindex.or_else(|| nix::net::if_::if_nametoindex(name).ok()) else {
            return;
        };
        let current = self.attached.iter().position(|a| a.xdp.ifname == name);
        if let Some(i) = current {
            if self.attached[i].xdp.ifindex == ifindex {
                return;
            }
            // Deleted and created again before we read the deletion.
            let old = self.attached.remove(i);
            dp.remove_tx_port(old.xdp.ifindex);
            warn!(
                "udplb: interface {name} (ifindex {}) went away",
                old.xdp.ifindex
            );
        }
        say!("udplb: interface {name} is back (ifindex {ifindex}); attaching");
        let pinned = self
            .attach(dp, name, ifindex, false)
            .and_then(|()| match self.pin {
                true => self.pin_all(dp),
                false => Ok(()),
            });
        if let Err(e) = pinned {
            warn!("udplb: attaching to {name} again: {e:#}");
        }
    }

    /// Whether the programs are attached to every interface.
    pub fn everywhere(&self) -> bool {
        (self.ifnames.iter()).all(|n| self.attached.iter().any(|a| a.xdp.ifname == *n))
    }

    /// Whether an egress program is attached anywhere (nowhere on lo
    /// alone): its verdicts are worth showing.
    pub fn any_egress(&self) -> bool {
        self.attached.iter().any(|a| a.egress.is_some())
    }

    /// An interface whose XDP link was detached while the interface is
    /// still there (same name, same ifindex): another udplb (`--force`)
    /// replaced this one. (A deleted interface takes its links with it;
    /// link events handle that.)
    pub fn replaced_on(&self) -> Option<&str> {
        let here = |a: &Attached| {
            nix::net::if_::if_nametoindex(a.xdp.ifname.as_str()).ok() == Some(a.xdp.ifindex)
        };
        (self.attached.iter())
            .find(|a| !a.xdp.still_attached() && here(a))
            .map(|a| a.xdp.ifname.as_str())
    }

    /// Detaches, or with `--pin` leaves the pinned links attached.
    pub fn stop(self) {
        for Attached { xdp, egress } in self.attached {
            let name = xdp.ifname.clone();
            if self.pin {
                if let Some(e) = egress {
                    e.keep();
                }
                drop(xdp);
                say!(
                    "udplb: left attached to {name}, pinned under {}; `udplb --unpin {name}` removes it",
                    pin::dir(&name).display()
                );
            } else {
                drop(egress);
                drop(xdp);
                say!("udplb: detached from {name}");
            }
        }
    }
}
