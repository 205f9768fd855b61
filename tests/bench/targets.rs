//! The targets, judged on this run's figures.
//!
//! - balanced packet ≤ 1.5× the no-op floor, in ns (IPv4 and IPv6);
//! - flat in frontends and in backends: the slowest count's median within
//!   `FLAT_TOLERANCE` of the fastest's (the kernel reports whole ns, so a
//!   1 ns step is already ~2-3 % here);
//! - local backends end to end ≥ 0.97× the direct path, and ≥ 1.15×
//!   nftables DNAT with numgen.

use super::report::{fmt_num, Report, Target};

pub const FLAT_TOLERANCE: f64 = 0.10;

pub fn judge(report: &Report) -> Vec<Target> {
    let mut targets = Vec::new();
    let datapath = report.section("datapath");
    for (key, name) in [("balanced_v4", "IPv4"), ("balanced_v6", "IPv6")] {
        let goal = format!("balanced {name} packet ≤ 1.5× the no-op floor (ns)");
        let case = datapath.and_then(|s| Some((s.case(key)?, s.case("noop")?)));
        targets.push(match case {
            Some((c, floor)) => {
                let ratio = ratio(&c.ratios, "floor");
                Target {
                    goal,
                    measured: format!(
                        "{}× ({} ns vs {} ns)",
                        fmt_num(ratio),
                        fmt_num(c.samples.median()),
                        fmt_num(floor.samples.median())
                    ),
                    met: ratio.is_finite().then_some(ratio <= 1.5),
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
    let udplb = report.section("e2e").and_then(|s| s.case("udplb"));
    for (base, min) in [("direct", 0.97), ("nftables", 1.15)] {
        let goal = format!("local backends ≥ {min}× {base} (datagrams/s)");
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
    targets
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
