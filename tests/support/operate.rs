//! Reading a running udplb as its operators do: client commands
//! (`udplb status --json`), and /metrics through a real Prometheus parser
//! (prometheus_client from PyPI, installed by scripts/install-deps.sh).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use super::netns::Netns;
use super::process::BIN;

/// `udplb <args>` run in `ns` (a client command): exit code, stdout, stderr.
pub fn udplb_cmd(ns: &Netns, args: &[&str]) -> (i32, String, String) {
    client(ns, &[], args)
}

/// As [`udplb_cmd`], run as user nobody with no capabilities: a user
/// without root.
pub fn udplb_cmd_as_nobody(ns: &Netns, args: &[&str]) -> (i32, String, String) {
    let setpriv = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    client(
        ns,
        &[&setpriv[..], &["--inh-caps=-all", "--bounding-set=-all"]].concat(),
        args,
    )
}

/// `udplb <args>` in `ns`, through the command `wrap` (empty: none; e.g.
/// setpriv with a service's capabilities): exit code, stdout, stderr.
pub fn client(ns: &Netns, wrap: &[&str], args: &[&str]) -> (i32, String, String) {
    let out = udplb_command(ns, wrap, args).output().expect("run udplb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The command `udplb <args>` in `ns` (same mount namespace as the test),
/// through `wrap` (empty: none), for a test that runs it its own way
/// (stdin, a pipe it reads, spawned).
pub fn udplb_command(ns: &Netns, wrap: &[&str], args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", ns.name))
        .args(wrap)
        .arg(BIN)
        .args(args);
    cmd
}

/// `udplb status --json`, parsed: the one udplb in `ns`.
pub fn status(ns: &Netns) -> serde_json::Value {
    status_json(ns, &["status", "--json"])
}

/// `udplb status IFACES --json`, parsed: the udplb found by its
/// interfaces, as given to it (`lo`, `l0,l1,l2`).
pub fn status_on(ns: &Netns, ifaces: &str) -> serde_json::Value {
    status_json(ns, &["status", ifaces, "--json"])
}

fn status_json(ns: &Netns, args: &[&str]) -> serde_json::Value {
    let (code, out, err) = udplb_cmd(ns, args);
    assert_eq!(code, 0, "udplb {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status JSON: {e}\n{out}"))
}

/// Backend `name` (`9876`, `198.18.1.2:53`) of the first frontend of a
/// parsed status; fails naming the status if there is none.
pub fn backend<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    (s["frontends"][0]["backends"].as_array())
        .unwrap_or_else(|| panic!("no frontend in {s}"))
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name} in {s}"))
}

/// Datagrams forwarded so far to backend `name` of the first frontend.
pub fn backend_packets(s: &serde_json::Value, name: &str) -> u64 {
    let b = backend(s, name);
    (b["traffic"]["packets"].as_u64()).unwrap_or_else(|| panic!("no packet count in {b}"))
}

/// GET `path` from the metrics listener at 127.0.0.1:9100 in `ns`:
/// (status line, Content-Type, body).
pub fn http_get(ns: &Netns, path: &str) -> (String, String, String) {
    let text = ns.enter(|| {
        let mut s = TcpStream::connect("127.0.0.1:9100").expect("connect to /metrics");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut t = String::new();
        s.read_to_string(&mut t).unwrap();
        t
    });
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string();
    let status = head.lines().next().unwrap_or("").to_string();
    (status, ctype, body.to_string())
}

/// Samples of an exposition: (name, sorted labels `k=v,k=v`) -> value.
pub type Metrics = BTreeMap<(String, String), f64>;

/// udplb's /metrics in `ns` (at 127.0.0.1:9100), as Prometheus's parser
/// reads it; fails unless it answers 200.
pub fn scrape(ns: &Netns) -> Metrics {
    let (code, _, body) = http_get(ns, "/metrics");
    assert_eq!(code, "HTTP/1.1 200 OK", "{body}");
    parse_with_prometheus(&body)
}

/// Every sample of an exposition, as Prometheus's own Python client parses
/// it: (name, sorted labels) -> value. Fails on anything it cannot parse.
pub fn parse_with_prometheus(text: &str) -> Metrics {
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for fam in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in fam.samples:\n\
        \x20       out.append([s.name, ','.join(f'{k}={v}' for k, v in sorted(s.labels.items())), s.value])\n\
        print(json.dumps(out))\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]);
    let out = super::process::output_with_stdin(
        cmd,
        text,
        "python3 (scripts/install-deps.sh installs it and prometheus-client)",
    );
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, String, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter().map(|(n, l, v)| ((n, l), v)).collect()
}

/// The value of sample `name{labels}`; fails naming what there is if none.
pub fn sample(m: &Metrics, name: &str, labels: &str) -> f64 {
    *m.get(&(name.to_string(), labels.to_string()))
        .unwrap_or_else(|| panic!("no {name}{{{labels}}} in {m:#?}"))
}
