//! Reports: a divergence as hex, both outcomes, and a fixture to paste.

use super::*;

// ===========================================================================
// Reports.

pub(crate) fn rust_bytes(bytes: &[u8], indent: &str) -> String {
    let mut s = String::from("vec![\n");
    for row in bytes.chunks(16) {
        let r: Vec<String> = row.iter().map(|b| format!("0x{b:02x}")).collect();
        let _ = writeln!(s, "{indent}    {},", r.join(", "));
    }
    s + indent + "]"
}

/// What the counters say the program did.
pub(crate) fn program_outcome(verdict: u32, d: &Counters) -> String {
    let mut s = format!("verdict {verdict}");
    for (r, &n) in d.reasons.iter().enumerate() {
        if n != 0 {
            let _ = write!(s, ", reason {} {n:+}", reason_name(r));
        }
    }
    let moved = |c: &Counter| (c.packets as i64, c.bytes as i64);
    for (f, bs) in d.backends.iter().enumerate() {
        for (b, c) in bs.iter().enumerate() {
            let (p, n) = moved(c);
            if (p, n) != (0, 0) {
                let _ = write!(s, ", backend[{f}][{b}] {p:+} pkt {n:+} B");
            }
        }
    }
    for (f, c) in d.replies.iter().enumerate() {
        let (p, n) = moved(c);
        if (p, n) != (0, 0) {
            let _ = write!(s, ", reply[{f}] {p:+} pkt {n:+} B");
        }
    }
    s
}

pub(crate) fn reason_const(code: usize) -> String {
    format!(
        "udplb::abi::UDPLB_REASON_{}",
        reason_name(code).to_uppercase()
    )
}

/// A test for tests/datapath_*.rs: the frames up to the diverging one, with
/// the model's outcomes as expectations. Earlier frames are kept only if
/// they moved a round-robin cursor (the diverging frame's backend depends
/// on them).
pub(crate) fn fixture(sc: &Scenario, at: usize, outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let keep: Vec<usize> = (0..at)
        .filter(|&i| outcomes[i].backend.is_some())
        .chain([at])
        .collect();
    let specs: Vec<String> = sc.specs.iter().map(|x| format!("{x:?}")).collect();
    let _ = writeln!(s, "#[test]\nfn differential_regression() {{");
    if let Some(hash) = sc.maglev {
        let _ = writeln!(
            s,
            "    // Scheduler: maglev, table size 7, hash {} (build the Fixture's Config with from_specs_with).",
            hash.code()
        );
    }
    let _ = writeln!(s, "    let fx = Fixture::new(&[{}]);", specs.join(", "));
    if keep.iter().any(|&i| sc.shots[i].ingress == Ingress::Veth) {
        let _ = writeln!(s, "    let veth = private_netns_with_veth();");
    }
    for &i in &keep {
        let (shot, o) = (&sc.shots[i], &outcomes[i]);
        let _ = writeln!(s, "    // {}", shot.recipe());
        let _ = writeln!(
            s,
            "    let input{i}: Vec<u8> = {};",
            rust_bytes(&shot.frame, "    ")
        );
        if o.output != shot.frame {
            let _ = writeln!(
                s,
                "    let output{i}: Vec<u8> = {};",
                rust_bytes(&o.output, "    ")
            );
        }
    }
    let _ = writeln!(s, "    fx.check_all(&[");
    for &i in &keep {
        let (shot, o) = (&sc.shots[i], &outcomes[i]);
        let ingress = match shot.ingress {
            Ingress::NoContext => "None".to_string(),
            Ingress::Lo => "Some(LOOPBACK)".into(),
            Ingress::ContextZero => "Some(0)".into(),
            Ingress::Veth => "Some(veth)".into(),
        };
        let hit = match (o.backend, o.reply) {
            (Some((f, b)), _) => format!("Hit::Backend({f}, {b})"),
            (_, Some(f)) => format!("Hit::Reply({f})"),
            _ => "Hit::Nothing".into(),
        };
        let name = if i == at {
            format!(
                "differential #{i}: the model ({}) and the program disagreed",
                o.why
            )
        } else {
            format!("differential #{i}: moves the round robin")
        };
        let output = if o.output != shot.frame {
            format!("output{i}")
        } else {
            format!("input{i}.clone()")
        };
        let _ = writeln!(s, "        Case {{");
        let _ = writeln!(s, "            name: {name:?}.into(),");
        let _ = writeln!(s, "            input: input{i}.clone(),");
        let _ = writeln!(s, "            ingress_ifindex: {ingress},");
        let _ = writeln!(s, "            verdict: {},", o.verdict);
        let _ = writeln!(s, "            output: {output},");
        let _ = writeln!(s, "            reason: {},", reason_const(o.reason));
        let _ = writeln!(s, "            hit: {hit},");
        let _ = writeln!(s, "        }},");
    }
    let _ = writeln!(s, "    ]);");
    let _ = writeln!(s, "}}");
    s
}

pub(crate) fn report(
    env: &Env,
    sc: &Scenario,
    at: usize,
    outcomes: &[Outcome],
    verdict: u32,
    output: &[u8],
    got: &Counters,
) -> String {
    let shot = &sc.shots[at];
    let want = &outcomes[at];
    let mut s = String::new();
    let _ = writeln!(
        s,
        "DIVERGENCE between the model (tests/support/model/) and the XDP program"
    );
    let _ = writeln!(
        s,
        "configuration: {:?}{}",
        sc.specs,
        match sc.maglev {
            Some(hash) => format!(" (maglev, table size 7, hash {})", hash.code()),
            None => String::new(),
        }
    );
    let _ = writeln!(
        s,
        "frame {} of {}{}, ingress: {:?}{}",
        at + 1,
        sc.shots.len(),
        if at > 0 {
            " (the earlier ones agreed)"
        } else {
            ""
        },
        shot.ingress,
        match shot.ingress {
            Ingress::Veth => format!(" (ifindex {}, not lo)", env.veth),
            _ => " (lo)".into(),
        }
    );
    let _ = writeln!(s, "made as: {}", shot.recipe());
    let _ = writeln!(
        s,
        "input ({} bytes):\n{}",
        shot.frame.len(),
        hex_dump(&shot.frame)
    );
    let hex: String = shot.frame.iter().map(|b| format!("{b:02x}")).collect();
    let _ = writeln!(s, "input as one hex string:\n    {hex}\n");
    let _ = writeln!(s, "model   (the specification): {want}   [{}]", want.why);
    let _ = writeln!(
        s,
        "program (BPF_PROG_TEST_RUN):  {}",
        program_outcome(verdict, got)
    );
    if output != want.output.as_slice() {
        let _ = writeln!(
            s,
            "output bytes differ ({} model, {} program):\n{}",
            want.output.len(),
            output.len(),
            hex_diff(&want.output, output)
        );
    } else {
        let _ = writeln!(s, "output bytes agree");
    }
    let _ = writeln!(
        s,
        "\nFixture for tests/datapath_*.rs (expectations from the model, i.e. the spec):\n\n{}",
        fixture(sc, at, outcomes)
    );
    s
}
