//! Reloads and what is in flight across them: a removed backend's replies
//! keep coming from the frontend for a grace period after the reload.

use udplb_testkit as support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::netns::*;
use support::process::*;

const FRONTEND: &str = "127.0.0.1:9875";

fn config_text(backends: &[&str]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "interface = \"lo\"\n[[frontend]]\nlisten = \"9875\"\nbackends = [{}]\n",
        list.join(", ")
    )
}

/// Whether `client` (connected to the frontend, so it accepts only
/// datagrams from the frontend's address and port) receives what `backend`
/// sends it.
fn reply_via_frontend(backend: &UdpSocket, client: &UdpSocket, what: &[u8]) -> bool {
    backend
        .send_to(what, client.local_addr().unwrap())
        .expect("backend reply");
    let mut buf = [0u8; 256];
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    matches!(client.recv(&mut buf), Ok(n) if &buf[..n] == what)
}

#[test]
fn a_removed_backends_replies_still_come_from_the_frontend_for_a_while() {
    let ns = Netns::new("grace");
    let file = TempFile::new("lb.toml", &config_text(&["9876", "9877"]));
    let mut lb = Udplb::start(&ns, &["--config", file.path()]);
    let removed = ns.udp_bind("127.0.0.1:9877");
    let client = ns.enter(|| {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(FRONTEND).unwrap();
        c
    });
    assert!(reply_via_frontend(&removed, &client, b"before"));

    // Remove 9877, then answer at once, as a backend does that still has
    // requests queued when it leaves the configuration.
    file.write(&config_text(&["9876"]));
    lb.signal(Signal::SIGHUP);
    lb.wait_for("reloaded", Duration::from_secs(5));
    let reloaded = Instant::now();
    for i in 0..5 {
        let what = format!("late reply {i}");
        assert!(
            reply_via_frontend(&removed, &client, what.as_bytes()),
            "{what}, {:?} after the reload: not from the frontend",
            reloaded.elapsed()
        );
    }
    assert!(reloaded.elapsed() < udplb::daemon::REPLY_GRACE);

    // After the grace period its entry is gone: 9877 is just a port again.
    std::thread::sleep(udplb::daemon::REPLY_GRACE + Duration::from_millis(500));
    assert!(
        !reply_via_frontend(&removed, &client, b"much later"),
        "a reply translated long after its backend was removed"
    );
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}
