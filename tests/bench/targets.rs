//! The issue's targets, judged on this run's figures.
//!
//! - the datapath's budgets, ns above the no-op floor (`BUDGETS`): round
//!   robin on a port-only frontend ≤ 12 (IPv4 and IPv6), Maglev ≤ 14, an
//!   exact-address frontend ≤ 18, a reply ≤ 10 (the flow table's own
//!   budgets are below). They replace the old "≤ 1.5× the floor", which
//!   asked for the program in ~1.5 ns;
//! - NIC-speed section, per balancer-core second: remote udplb ≥ 2×
//!   nftables and ≥ 0.85× the bare XDP forwarder; local udplb ≥ 1.15×
//!   nftables and ≥ 0.9× direct delivery;
//! - flat in frontends and in backends: the slowest count's median within
//!   `FLAT_TOLERANCE` of the fastest's (the kernel reports whole ns, so a
//!   1 ns step is already ~2-3 % here);
//! - socket sender (the older sections): local backends end to end ≥ 0.97×
//!   the direct path, and ≥ 1.15× nftables DNAT with numgen; remote
//!   backends ≥ 2× nftables DNAT with kernel forwarding (datagrams/s);
//! - a Maglev table built and written in < 50 ms, for every backend count
//!   measured (medians);
//! - the flow table: a hit adds ≤ 10 ns to a balanced Maglev packet, and a
//!   reply whose pin is already right (time refreshed in place) ≤ 10 ns to
//!   a reply, each against the same packet with no flow table (median of
//!   the per-round differences).

use super::report::{fmt_num, Report, Target};

pub const FLAT_TOLERANCE: f64 = 0.10;

pub fn judge(report: &Report) -> Vec<Target> {
    let mut targets = Vec::new();
    let datapath = report.section("datapath");
    for &(key, name, budget) in BUDGETS {
        let goal = format!("{name} ≤ {budget} ns above the no-op floor");
        let case = datapath.and_then(|s| Some((s.case(key)?, s.case("noop")?)));
        targets.push(match case {
            Some((c, floor)) => {
                let above = extra(&c.extra, "ns above floor");
                Target {
                    goal,
                    measured: format!(
                        "{} ns above ({} ns vs the floor's {} ns)",
                        fmt_num(above),
                        fmt_num(c.samples.median()),
                        fmt_num(floor.samples.median())
                    ),
                    met: above.is_finite().then_some(above <= budget),
                }
            }
            None => not_measured(goal),
        });
    }
    for (prefix, what) in [("frontends_", "frontends"), ("backends_", "backends")] {
        let goal = format!(
            "flat in {what}: slowest count ≤ {}× the fastest",
            1.0 + FLAT_TOLERANCE
        );
        let medians: Vec<(String, f64)> = datapath
            .map(|s| {
                s.cases
                    .iter()
                    .filter(|c| c.key.starts_with(prefix))
                    .map(|c| (c.key[prefix.len()..].to_string(), c.samples.median()))
                    .collect()
            })
            .unwrap_or_default();
        if medians.len() < 2 {
            targets.push(not_measured(goal));
            continue;
        }
        let lo = medians.iter().map(|m| m.1).fold(f64::INFINITY, f64::min);
        let hi = medians
            .iter()
            .map(|m| m.1)
            .fold(f64::NEG_INFINITY, f64::max);
        let list: Vec<String> = medians
            .iter()
            .map(|(n, v)| format!("{n}: {} ns", fmt_num(*v)))
            .collect();
        targets.push(Target {
            goal,
            measured: format!("{} ({}×)", list.join(", "), fmt_num(hi / lo)),
            met: Some(hi / lo <= 1.0 + FLAT_TOLERANCE),
        });
    }
    for (key, base, what) in [
        (
            "balanced_v4_maglev_hit",
            "balanced_v4_maglev_no_table",
            "a flow table hit",
        ),
        (
            "reply_v4_maglev",
            "reply_v4_maglev_no_table",
            "a reply's pin refresh",
        ),
    ] {
        let goal = format!("{what} adds ≤ {FLOW_TABLE_NS} ns");
        let pair = datapath.and_then(|s| Some((s.case(key)?, s.case(base)?)));
        targets.push(match pair {
            Some((c, b)) => {
                let diffs: Vec<f64> = (c.samples.0.iter().zip(&b.samples.0))
                    .map(|(x, y)| x - y)
                    .collect();
                let d = super::stats::median(&diffs);
                Target {
                    goal,
                    measured: format!(
                        "+{} ns ({} ns vs {} ns)",
                        fmt_num(d),
                        fmt_num(c.samples.median()),
                        fmt_num(b.samples.median())
                    ),
                    met: d.is_finite().then_some(d <= FLOW_TABLE_NS),
                }
            }
            None => not_measured(goal),
        });
    }
    nic(report, &mut targets);
    let udplb = report.section("e2e").and_then(|s| s.case("udplb"));
    for (base, min) in [("direct", 0.97), ("nftables", 1.15)] {
        let goal = format!("socket sender: local backends ≥ {min}× {base} (datagrams/s)");
        let r = udplb.map(|c| ratio(&c.ratios, base)).unwrap_or(f64::NAN);
        targets.push(if r.is_finite() {
            Target {
                goal,
                measured: format!("{}×", fmt_num(r)),
                met: Some(r >= min),
            }
        } else {
            not_measured(goal)
        });
    }
    let remote = report
        .section("e2e_remote")
        .and_then(|s| s.case("remote_udplb"));
    let goal =
        "socket sender: remote backends ≥ 2× nftables DNAT forwarding (datagrams/s)".to_string();
    let r = remote
        .map(|c| ratio(&c.ratios, "nftables"))
        .unwrap_or(f64::NAN);
    targets.push(if r.is_finite() {
        // The derived balancer-only figure, for the reader: not judged.
        let own = report
            .section("e2e_remote_balancer")
            .and_then(|s| s.case("remote_udplb"))
            .map(|c| ratio(&c.ratios, "nftables"))
            .filter(|v| v.is_finite())
            .map(|v| format!(" (balancer's own CPU, derived: {}×)", fmt_num(v)))
            .unwrap_or_default();
        Target {
            goal,
            measured: format!("{}×{own}", fmt_num(r)),
            met: Some(r >= 2.0),
        }
    } else {
        not_measured(goal)
    });
    let goal = format!("Maglev table build + write < {CONTROL_PLANE_MS} ms");
    let sizes: Vec<(String, f64, f64)> = report
        .section("control_plane")
        .map(|s| {
            s.cases
                .iter()
                .filter_map(|c| {
                    let n = c.key.strip_prefix("build_write_")?;
                    Some((n.to_string(), c.samples.median(), c.samples.max()))
                })
                .collect()
        })
        .unwrap_or_default();
    targets.push(if sizes.is_empty() {
        not_measured(goal)
    } else {
        let list: Vec<String> = sizes
            .iter()
            .map(|(n, med, max)| {
                format!("{n} backends: {} ms (max {})", fmt_num(*med), fmt_num(*max))
            })
            .collect();
        Target {
            goal,
            measured: list.join(", "),
            met: Some(sizes.iter().all(|s| s.1 < CONTROL_PLANE_MS)),
        }
    });
    targets
}

/// The flow table's budget per packet, on a hit or a pin refresh.
pub const FLOW_TABLE_NS: f64 = 10.0;
/// The NIC-speed section's targets, on the rates per balancer-core second:
/// (section, case, base, minimum ratio).
const NIC_TARGETS: &[(&str, &str, &str, f64)] = &[
    ("nic_remote", "nic_remote_udplb", "nftables", 2.0),
    ("nic_remote", "nic_remote_udplb", "XDP fwd", 0.85),
    // Issue 25: Katran's encapsulating forwarder runs at 5.16 Mpps a core
    // beside the bare forwarder's 5.36.
    ("nic_remote", "nic_remote_dsr_ipip", "XDP fwd", 0.9),
    ("nic_remote", "nic_remote_dsr_gue", "XDP fwd", 0.9),
    ("nic_remote", "nic_remote_dsr_l2", "XDP fwd", 0.9),
    ("nic_local", "nic_udplb", "nftables", 1.15),
    ("nic_local", "nic_udplb", "direct", 0.9),
];

fn nic(report: &Report, targets: &mut Vec<Target>) {
    for &(section, case, base, min) in NIC_TARGETS {
        let what = if section == "nic_remote" {
            "remote"
        } else {
            "local"
        };
        let mode = match case.strip_prefix("nic_remote_dsr_") {
            Some(m) => format!(" DSR {m}"),
            None => String::new(),
        };
        let goal = format!(
            "NIC-speed, {what}: udplb{mode} ≥ {min}× {base} (datagrams per balancer-core second)"
        );
        let c = report.section(section).and_then(|s| s.case(case));
        let r = c.map(|c| ratio(&c.ratios, base)).unwrap_or(f64::NAN);
        targets.push(if r.is_finite() {
            // The same ratio per wall second, for the reader: not judged.
            let wall = report
                .section(&format!("{section}_wall"))
                .and_then(|s| s.case(case))
                .map(|c| ratio(&c.ratios, base))
                .filter(|v| v.is_finite())
                .map(|v| format!(" (per wall second: {}×)", fmt_num(v)))
                .unwrap_or_default();
            Target {
                goal,
                measured: format!("{}×{wall}", fmt_num(r)),
                met: Some(r >= min),
            }
        } else {
            not_measured(goal)
        });
    }
}

/// The control plane's budget for one Maglev table build and write.
pub const CONTROL_PLANE_MS: f64 = 50.0;

/// The datapath's budgets, ns above the no-op floor (repeat = 10⁶, self-loop
/// tables): (case, what, budget).
pub const BUDGETS: &[(&str, &str, f64)] = &[
    (
        "balanced_v4",
        "balanced IPv4, round robin, port-only frontend",
        12.0,
    ),
    (
        "balanced_v6",
        "balanced IPv6, round robin, port-only frontend",
        12.0,
    ),
    (
        "balanced_v4_maglev_no_table",
        "balanced IPv4, Maglev, no flow table",
        14.0,
    ),
    (
        "balanced_v4_exact",
        "balanced IPv4, exact-address frontend",
        18.0,
    ),
    ("reply_v4", "reply IPv4", 10.0),
];

fn extra(extra: &[(String, f64)], name: &str) -> f64 {
    ratio(extra, name)
}

fn ratio(ratios: &[(String, f64)], name: &str) -> f64 {
    ratios
        .iter()
        .find(|(n, _)| n == name)
        .map(|r| r.1)
        .unwrap_or(f64::NAN)
}

fn not_measured(goal: String) -> Target {
    Target {
        goal,
        measured: "not measured in this run".into(),
        met: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn judges_remote_and_control_plane() {
        use super::super::report::{CaseResult, Report, Section};
        use super::super::stats::Samples;
        let section = |key: &str, cases: Vec<CaseResult>| Section {
            key: key.into(),
            title: key.into(),
            method: String::new(),
            cases,
        };
        let mut udplb = CaseResult::new("remote_udplb", "u", "kdgram/s", Samples(vec![900.0]));
        udplb.ratios.push(("nftables".into(), 0.8));
        let sizes = [(10, 16.0), (1000, 60.0)].map(|(n, ms)| {
            CaseResult::new(&format!("build_write_{n}"), "m", "ms", Samples(vec![ms]))
        });
        let report = Report {
            sections: vec![
                section("e2e_remote", vec![udplb]),
                section("control_plane", sizes.to_vec()),
            ],
            ..Report::default()
        };
        let targets = super::judge(&report);
        let find = |goal: &str| targets.iter().find(|t| t.goal.contains(goal)).unwrap();
        let remote = find("remote backends");
        assert_eq!(remote.met, Some(false));
        assert_eq!(remote.measured, "0.800×");
        let control = find("Maglev table");
        assert_eq!(control.met, Some(false), "1000 backends took 60 ms");
        assert!(
            control.measured.contains("1000 backends: 60.0 ms"),
            "{}",
            control.measured
        );
        assert_eq!(find("local backends ≥ 0.97").met, None, "not measured");
        assert_eq!(
            find("NIC-speed, remote: udplb ≥ 2").met,
            None,
            "not measured"
        );
        assert_eq!(find("a flow table hit").met, None, "not measured");
    }

    #[test]
    fn judges_budgets_and_nic_ratios() {
        use super::super::report::{CaseResult, Report, Section};
        use super::super::stats::Samples;
        let mut floor = CaseResult::new("noop", "n", "ns", Samples(vec![3.0]));
        floor.extra.push(("ns above floor".into(), 0.0));
        let mut v4 = CaseResult::new("balanced_v4", "b", "ns", Samples(vec![14.0]));
        v4.extra.push(("ns above floor".into(), 11.0));
        let mut reply = CaseResult::new("reply_v4", "r", "ns", Samples(vec![15.0]));
        reply.extra.push(("ns above floor".into(), 12.0));
        let mut udplb = CaseResult::new("nic_udplb", "u", "k", Samples(vec![500.0]));
        udplb.ratios.push(("nftables".into(), 1.2));
        udplb.ratios.push(("direct".into(), 0.8));
        let section = |key: &str, cases| Section {
            key: key.into(),
            title: key.into(),
            method: String::new(),
            cases,
        };
        let report = Report {
            sections: vec![
                section("datapath", vec![floor, v4, reply]),
                section("nic_local", vec![udplb]),
            ],
            ..Report::default()
        };
        let targets = super::judge(&report);
        let find = |goal: &str| targets.iter().find(|t| t.goal.contains(goal)).unwrap();
        assert_eq!(find("balanced IPv4, round robin").met, Some(true));
        assert_eq!(find("reply IPv4").met, Some(false), "12 ns > 10 ns");
        assert_eq!(find("Maglev, no flow table ≤").met, None, "not measured");
        assert_eq!(find("local: udplb ≥ 1.15× nftables").met, Some(true));
        assert_eq!(find("local: udplb ≥ 0.9× direct").met, Some(false));
    }
}
