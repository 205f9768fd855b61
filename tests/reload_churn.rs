//! Reloads that churn through backends grow nothing without bound: 1000
//! reloads, each replacing a backend by a new port, leave /metrics and
//! udplb's resident memory as they were once the removed backends' lines
//! reached their bound (256).

use udplb_testkit as support;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::netns::*;
use support::process::*;

fn config(port: u16) -> String {
    format!(
        "interface = \"lo\"\nmetrics = \"127.0.0.1:9100\"\n[[frontend]]\nlisten = \"9875\"\n\
         backends = [9876, {port}]\n"
    )
}

/// One `reload` through the control socket, as `udplb reload` sends it.
fn reload(sock: &str) -> String {
    let mut s = UnixStream::connect(sock).expect("control socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"reload\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

fn rss_kb(pid: nix::unistd::Pid) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_thousand_reloads_leave_metrics_and_memory_flat() {
    let ns = Netns::new("churn");
    let file = TempFile::new("lb.toml", &config(20000));
    let u = Udplb::start(&ns, &["--config", file.path()]);
    let inode = std::fs::metadata(format!("/run/netns/{}", ns.name))
        .unwrap()
        .ino();
    let sock = format!("/run/udplb/lo@{inode}.sock");
    let mut at = Vec::new();
    for i in 1..=1000u16 {
        file.write(&config(20000 + i));
        let answer = reload(&sock);
        assert!(answer.contains("\"ok\":true"), "reload {i}: {answer}");
        if i == 300 || i == 1000 {
            let (_, _, body) = support::operate::http_get(&ns, "/metrics");
            let removed = body
                .lines()
                .filter(|l| l.starts_with("udplb_backend_configured{") && l.ends_with(" 0"))
                .count();
            at.push((body.len(), rss_kb(u.pid()), removed));
        }
    }
    let [(m300, r300, n300), (m1000, r1000, n1000)] = at[..] else {
        unreachable!()
    };
    eprintln!(
        "after 300 reloads: /metrics {m300} B, RSS {r300} kB, {n300} removed lines; \
         after 1000: {m1000} B, {r1000} kB, {n1000} removed lines"
    );
    assert_eq!((n300, n1000), (256, 256));
    assert!(m1000.abs_diff(m300) * 100 <= m300, "{m300} -> {m1000}");
    assert!(r1000 <= r300 + r300 / 10 + 1024, "{r300} kB -> {r1000} kB");
    let (status, out) = u.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    let removed_lines = out.lines().filter(|l| l.contains("(removed)")).count();
    assert!(
        removed_lines <= 256 + 1,
        "{removed_lines} removed lines in the report"
    );
}
