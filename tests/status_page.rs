//! The status page (`GET /` on the metrics listener) in a real browser:
//! Debian's headless Chromium, in the test's namespace, looks at a udplb
//! with two frontends of local echo backends under `tcp` health checks and
//! some traffic. The page shows every backend up, the last reload and its
//! result (a rejected one's message as text, never markup), a backend that
//! was killed as down within its health time and in its graph, and the
//! page logs no error. A screenshot is left in target/.

use udplb_testkit as support;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use support::browser::Browser;
use support::netns::Netns;
use support::operate::{http_get, udplb_cmd};
use support::process::{TempFile, Udplb};
use support::servers::Echo;

/// The probe timing: `fall` failures `INTERVAL` apart take a backend down.
const INTERVAL: Duration = Duration::from_millis(500);
const RISE: u32 = 2;
const FALL: u32 = 3;
/// How often the page asks for /status.json (page.html's POLL_MS).
const POLL: Duration = Duration::from_secs(1);

fn config(rr_backends: &str) -> String {
    let health = format!(
        "[frontend.health]\ncheck = \"tcp\"\ninterval = \"{}ms\"\nrise = {RISE}\nfall = {FALL}\nsockets = false\n",
        INTERVAL.as_millis()
    );
    format!(
        "interface = \"lo\"\nmetrics = \"127.0.0.1:9100\"\n\
         [[frontend]]\nlisten = \"9875\"\nsched = \"rr\"\nbackends = [{rr_backends}]\n{health}\
         [[frontend]]\nlisten = \"5300\"\nsched = \"maglev\"\nbackends = [5301, 5302]\n{health}"
    )
}

const GOOD: &str = "9876, 9877, 9878";

/// Datagrams from 8 client sockets to both frontends, 20 rounds a second,
/// replies drained; until `stop` or 2 minutes, 40 000 datagrams at most.
fn traffic(ns: &Netns, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u32> {
    let socks: Vec<UdpSocket> = (0..8).map(|_| ns.udp_bind("127.0.0.1:0")).collect();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let (mut sent, mut buf) = (0u32, [0u8; 2048]);
        for s in &socks {
            s.set_nonblocking(true).unwrap();
        }
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && sent < 40_000 {
            for s in &socks {
                for to in ["127.0.0.1:9875", "127.0.0.1:5300"] {
                    let _ = s.send_to(&support::sockets::payload(sent, 64), to);
                    sent += 1;
                }
                while s.recv_from(&mut buf).is_ok() {}
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        sent
    })
}

/// The JS expression for the row of `backend` under `frontend`.
fn row(frontend: &str, backend: &str) -> String {
    format!("document.querySelector('section[data-frontend=\"{frontend}\"] tr[data-backend=\"{backend}\"]')")
}

/// What the page shows of each backend: [frontend, backend, state text,
/// the row's text].
fn rows(b: &mut Browser) -> Vec<Value> {
    let v = b.eval(
        "[...document.querySelectorAll('section.fe tr[data-backend]')].map(t => \
         [t.closest('section').dataset.frontend, t.dataset.backend, \
          t.querySelector('.state').textContent, t.innerText])",
    );
    v.as_array().unwrap().clone()
}

fn card(b: &mut Browser, name: &str) -> String {
    let js = format!("document.querySelector('[data-card=\"{name}\"]').innerText");
    b.eval(&js).as_str().unwrap_or("").to_string()
}

#[test]
fn the_status_page_shows_backends_reloads_and_a_backend_going_down() {
    let ns = Netns::new("page");
    let mut echoes: Vec<(u16, Option<Echo>)> = [9876, 9877, 9878, 5301, 5302]
        .into_iter()
        .map(|p| (p, Some(Echo::named(&ns, &format!("127.0.0.1:{p}"), "b"))))
        .collect();
    let file = TempFile::new("lb.toml", &config(GOOD));
    let mut u = Udplb::start(&ns, &["--config", file.path()]);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = traffic(&ns, stop.clone());

    let mut b = Browser::open(&ns);
    assert_eq!(b.goto("http://127.0.0.1:9100/"), 200);
    // Every backend up, as a person reads it.
    let all_up = "[...document.querySelectorAll('tr[data-backend]')].filter(t => \
                  t.dataset.health === 'up' && t.querySelector('.state').textContent === 'UP').length === 5";
    if let Err(e) = b.wait(all_up, Duration::from_secs(15)) {
        panic!("not every backend shown up: {e}\n{:#?}", rows(&mut b));
    }
    let shown = rows(&mut b);
    let names: Vec<(&str, &str)> = (shown.iter())
        .map(|r| (r[0].as_str().unwrap(), r[1].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("*:9875", "9876"),
            ("*:9875", "9877"),
            ("*:9875", "9878"),
            ("*:5300", "5301"),
            ("*:5300", "5302")
        ]
    );
    for r in &shown {
        let text = r[3].as_str().unwrap();
        assert!(
            text.contains("check: tcp every 500ms"),
            "the check shown: {text}"
        );
    }
    let who = b.eval("document.getElementById('who').textContent");
    assert!(
        who.as_str().unwrap().contains(&format!("pid {}", u.pid())),
        "{who}"
    );
    assert!(card(&mut b, "Last reload").contains("none yet"));

    // A rejected reload: its message, with the operator's text in it, is
    // shown as text; nothing of it becomes markup.
    file.write(&config("9876, \"<img src=x onerror=alert(1)>\""));
    assert_eq!(udplb_cmd(&ns, &["reload"]).0, 2);
    let rejected = format!(
        "{}.innerText.includes('backend \\'<img src=x onerror=alert(1)>\\' is not a port number')",
        "document.querySelector('[data-card=\"Last reload\"]')"
    );
    if let Err(e) = b.wait(&rejected, Duration::from_secs(5)) {
        panic!("{e}: {}", card(&mut b, "Last reload"));
    }
    assert_eq!(b.eval("document.querySelectorAll('img').length"), 0);
    file.write(&config(GOOD));
    assert_eq!(udplb_cmd(&ns, &["reload"]).0, 0);
    let ok = "document.querySelector('[data-card=\"Last reload\"]').innerText.includes('1 applied, 1 refused')";
    b.wait(ok, Duration::from_secs(5)).unwrap();
    assert!(card(&mut b, "Last reload").starts_with("LAST RELOAD\nok\nlast applied"));

    // Kill 9877: shown down within its health time (fall probes, plus one
    // interval for where the first falls), two polls of the page, and slack
    // for a loaded machine.
    echoes[1].1 = None;
    let health_time = INTERVAL * (FALL + 1);
    let allowed = health_time + POLL * 2 + Duration::from_secs(3);
    let down = format!(
        "{r}.dataset.health === 'down' && {r}.querySelector('.state').textContent === 'DOWN'",
        r = row("*:9875", "9877")
    );
    let took = b
        .wait(&down, allowed)
        .unwrap_or_else(|e| panic!("9877 not shown down: {e}\n{:#?}", rows(&mut b)));
    println!(
        "status page: 9877 shown down {took:?} after it was killed (health time {health_time:?})"
    );
    let line = u.wait_for("9877 down", Duration::from_secs(1));
    assert!(line.contains("tcp"), "{line}");
    for r in rows(&mut b) {
        let up = r[1] != "9877";
        assert_eq!(r[2], if up { "UP" } else { "DOWN" }, "{r:?}");
        if !up {
            assert!(r[3].as_str().unwrap().contains("tcp"), "the cause: {r:?}");
        }
    }
    assert!(card(&mut b, "Backends up").contains("4 / 5"));
    // Its graph has a red band once a sample saw it down (one every 2 s).
    let band = format!(
        "{}.querySelector('svg rect[fill=\"var(--down)\"]') !== null",
        row("*:9875", "9877")
    );
    b.wait(&band, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("no down band in 9877's graph: {e}"));
    let shot = concat!(env!("CARGO_MANIFEST_DIR"), "/target/status-page.png");
    b.screenshot(shot);
    println!("status page: screenshot at {shot}");

    // Back: shown up within rise probes, two polls, and slack.
    echoes[1].1 = Some(Echo::named(&ns, "127.0.0.1:9877", "b"));
    let up_again = format!("{}.dataset.health === 'up'", row("*:9875", "9877"));
    let allowed = INTERVAL * (RISE + 1) + POLL * 2 + Duration::from_secs(3);
    b.wait(&up_again, allowed)
        .unwrap_or_else(|e| panic!("9877 not shown up again: {e}"));

    // No error, warning, failed request or blocked resource in the page.
    let console = b.console();
    let bad: Vec<_> = (console.iter())
        .filter(|m| !matches!(m.kind.as_str(), "log" | "info" | "debug"))
        .collect();
    assert!(bad.is_empty(), "the page's console: {bad:#?}");

    // /status.json: the first poll takes the whole history, later ones
    // only what is new. A sample is taken every 2 s, so a fast machine
    // reaches this point with only three or four: wait for the fourth.
    let deadline = Instant::now() + support::slow(Duration::from_secs(10));
    let (status, ctype, body) = loop {
        let (status, ctype, body) = http_get(&ns, "/status.json");
        let j: Value = serde_json::from_str(&body).unwrap();
        if j["history"]["last"].as_i64().unwrap() >= 3 || Instant::now() > deadline {
            break (status, ctype, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (status.as_str(), ctype.as_str()),
        ("HTTP/1.1 200 OK", "application/json")
    );
    let j: Value = serde_json::from_str(&body).unwrap();
    let last = j["history"]["last"].as_i64().unwrap();
    let series = j["history"]["backends"].as_array().unwrap();
    assert_eq!(series.len(), 5, "{body}");
    assert!(series
        .iter()
        .all(|s| s["pps"].as_array().unwrap().len() as i64 <= last + 1));
    assert!(series
        .iter()
        .any(|s| s["pps"].as_array().unwrap().len() > 3));
    let (_, _, newer) = http_get(&ns, &format!("/status.json?since={last}"));
    let j: Value = serde_json::from_str(&newer).unwrap();
    for s in j["history"]["backends"].as_array().unwrap() {
        let have = j["history"]["last"].as_i64().unwrap() - last;
        assert_eq!(s["pps"].as_array().unwrap().len() as i64, have, "{s}");
    }

    drop(b);
    stop.store(true, Ordering::Relaxed);
    assert!(sender.join().unwrap() > 100, "traffic was sent");
    let (st, out) = u.stop(Signal::SIGTERM);
    assert!(st.success(), "{out}");
    drop(echoes);
}
