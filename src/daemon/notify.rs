//! The systemd notify protocol (`Type=notify`): READY=1 once attached,
//! RELOADING=1 then READY=1 around a reload, STOPPING=1 before detaching.
//! Outside systemd (no NOTIFY_SOCKET) each call does nothing; a failure to
//! notify is never fatal to the balancer.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    let _ = sd_notify::notify(states);
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    // systemd 253+ wants the time with RELOADING=1 (Type=notify-reload).
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}
