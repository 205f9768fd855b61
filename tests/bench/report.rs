//! What a bench run found: printed as a table on stdout and written to
//! target/bench/results.json. Each section measures its cases in rounds and
//! hands back one [`CaseResult`] per case; the targets from the issue are
//! judged at the end from those results.

use std::fmt::Write;

use super::json::Json;
use super::stats::Samples;

#[derive(Debug, Default)]
pub struct Report {
    /// (name, value): nproc, kernel, CPU model, ...
    pub machine: Vec<(String, String)>,
    pub sections: Vec<Section>,
    pub targets: Vec<Target>,
    /// Skipped cases and anything else a reader must know.
    pub notes: Vec<String>,
    /// (section, why): sections this host refused to let run (see
    /// [`HostRefused`]); reported, not failed.
    pub not_measured: Vec<(String, String)>,
}

/// A section's error that says the host refuses what the section needs
/// (a kernel that answers EPERM to BPF_PROG_RUN with live frames): the
/// section is reported as not measured, with the reason, and the run still
/// completes and succeeds.
#[derive(Debug)]
pub struct HostRefused(pub String);

impl std::fmt::Display for HostRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostRefused {}

#[derive(Debug)]
pub struct Section {
    pub key: String,
    pub title: String,
    /// One line on how it was measured.
    pub method: String,
    pub cases: Vec<CaseResult>,
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub key: String,
    pub label: String,
    pub unit: String,
    pub samples: Samples,
    /// (name, value): "vs_floor" → 1.4 means 1.4× the floor.
    pub ratios: Vec<(String, f64)>,
    /// Other figures from the same runs (loss, CPU split, ...), median.
    pub extra: Vec<(String, f64)>,
}

impl CaseResult {
    pub fn new(key: &str, label: &str, unit: &str, samples: Samples) -> CaseResult {
        CaseResult {
            key: key.into(),
            label: label.into(),
            unit: unit.into(),
            samples,
            ratios: Vec::new(),
            extra: Vec::new(),
        }
    }
}

/// A goal from the issue and whether this run met it.
#[derive(Debug)]
pub struct Target {
    pub goal: String,
    pub measured: String,
    /// None: not measured in this run (a case was skipped).
    pub met: Option<bool>,
}

impl Section {
    pub fn case(&self, key: &str) -> Option<&CaseResult> {
        self.cases.iter().find(|c| c.key == key)
    }
}

impl Report {
    pub fn section(&self, key: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.key == key)
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "udplb bench");
        for (k, v) in &self.machine {
            let _ = writeln!(out, "  {k:<10} {v}");
        }
        for s in &self.sections {
            let _ = writeln!(out, "\n== {} ==\n   {}", s.title, s.method);
            let _ = writeln!(
                out,
                "{:<44} {:>10} {:>10} {:>10}  {:<10} ratios, other figures (medians)",
                "case", "median", "min", "max", "unit"
            );
            for c in &s.cases {
                let mut tail: Vec<String> = c
                    .ratios
                    .iter()
                    .map(|(k, v)| format!("{}× {k}", fmt_num(*v)))
                    .collect();
                tail.extend(c.extra.iter().map(|(k, v)| format!("{k} {}", fmt_num(*v))));
                let _ = writeln!(
                    out,
                    "{:<44} {:>10} {:>10} {:>10}  {:<10} {}",
                    c.label,
                    fmt_num(c.samples.median()),
                    fmt_num(c.samples.min()),
                    fmt_num(c.samples.max()),
                    c.unit,
                    tail.join(", ")
                );
            }
        }
        if !self.targets.is_empty() {
            let _ = writeln!(out, "\n== Targets ==");
            for t in &self.targets {
                let verdict = match t.met {
                    Some(true) => "MET",
                    Some(false) => "MISSED",
                    None => "NOT MEASURED",
                };
                let _ = writeln!(out, "  {verdict:<12} {}: {}", t.goal, t.measured);
            }
        }
        for (s, why) in &self.not_measured {
            let _ = writeln!(out, "NOT MEASURED section {s}: {why}");
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }

    pub fn json(&self) -> Json {
        let machine = Json::obj(self.machine.iter().map(|(k, v)| (k.clone(), Json::str(v))));
        let sections = self.sections.iter().map(|s| {
            let cases = s.cases.iter().map(|c| {
                Json::obj([
                    ("case", Json::str(&c.key)),
                    ("label", Json::str(&c.label)),
                    ("median", Json::num(c.samples.median())),
                    ("min", Json::num(c.samples.min())),
                    ("max", Json::num(c.samples.max())),
                    ("unit", Json::str(&c.unit)),
                    (
                        "runs",
                        Json::Arr(c.samples.0.iter().map(|v| Json::num(*v)).collect()),
                    ),
                    (
                        "ratios",
                        Json::obj(c.ratios.iter().map(|(k, v)| (k.clone(), Json::num(*v)))),
                    ),
                    (
                        "other",
                        Json::obj(c.extra.iter().map(|(k, v)| (k.clone(), Json::num(*v)))),
                    ),
                ])
            });
            Json::obj([
                ("section", Json::str(&s.key)),
                ("title", Json::str(&s.title)),
                ("method", Json::str(&s.method)),
                ("cases", Json::Arr(cases.collect())),
            ])
        });
        let targets = self.targets.iter().map(|t| {
            Json::obj([
                ("goal", Json::str(&t.goal)),
                ("measured", Json::str(&t.measured)),
                ("met", t.met.map(Json::Bool).unwrap_or(Json::Null)),
            ])
        });
        Json::obj([
            ("machine", machine),
            ("sections", Json::Arr(sections.collect())),
            ("targets", Json::Arr(targets.collect())),
            (
                "notes",
                Json::Arr(self.notes.iter().map(Json::str).collect()),
            ),
            (
                "not_measured",
                Json::Arr(
                    (self.not_measured.iter())
                        .map(|(s, why)| {
                            Json::obj([("section", Json::str(s)), ("reason", Json::str(why))])
                        })
                        .collect(),
                ),
            ),
        ])
    }
}

/// Three significant digits, without scientific notation for the ranges
/// a bench produces.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_read_well() {
        assert_eq!(super::fmt_num(1234567.8), "1234568");
        assert_eq!(super::fmt_num(42.26), "42.3");
        assert_eq!(super::fmt_num(1.234), "1.23");
        assert_eq!(super::fmt_num(0.0456), "0.046");
        assert_eq!(super::fmt_num(f64::NAN), "-");
    }

    #[test]
    fn table_and_json_carry_every_case() {
        let mut c = super::CaseResult::new("noop", "no-op", "ns", super::Samples(vec![20.0, 22.0]));
        c.ratios.push(("floor".into(), 1.0));
        let r = super::Report {
            sections: vec![super::Section {
                key: "datapath".into(),
                title: "Datapath".into(),
                method: "test run".into(),
                cases: vec![c],
            }],
            targets: vec![super::Target {
                goal: "g".into(),
                measured: "m".into(),
                met: None,
            }],
            not_measured: vec![("nic".into(), "EPERM from the kernel".into())],
            ..super::Report::default()
        };
        let t = r.table();
        assert!(
            t.contains("no-op") && t.contains("21.0") && t.contains("1.00× floor"),
            "{t}"
        );
        assert!(t.contains("NOT MEASURED"), "{t}");
        assert!(
            t.contains("NOT MEASURED section nic: EPERM from the kernel"),
            "{t}"
        );
        let j = r.json().render();
        assert!(
            j.contains(r#""median": 21"#)
                && j.contains(r#""met": null"#)
                && j.contains(r#""section": "nic""#),
            "{j}"
        );
    }
}
