//! The names of the schedulers and of the health-check kinds, spelled once:
//! the command line (`--sched`, `--health`), the config file (`sched =`,
//! `check =`), their error messages and the status output take them from
//! here.

use super::health::{CheckKind, DEFAULT_UDP_PAYLOAD};
use super::sched::Sched;

/// Every scheduler and its name, in the order `Sched` declares them, so
/// that `SCHEDS[s as usize]` is the entry of `s` (asserted below).
pub const SCHEDS: [(Sched, &str); 3] = [
    (Sched::Rr, "rr"),
    (Sched::Maglev, "maglev"),
    (Sched::Quic, "quic"),
];

const _: () = {
    let mut i = 0;
    while i < SCHEDS.len() {
        assert!(SCHEDS[i].0 as usize == i);
        i += 1;
    }
};

/// A check kind with its default settings.
pub type Defaults = fn() -> CheckKind;

/// Every health-check kind: its name and its default settings, in the
/// order `CheckKind` declares them ([`CheckKind::code`] indexes it; a test
/// checks that each entry's kind has that entry's name).
pub const CHECK_KINDS: [(&str, Defaults); 5] = [
    ("none", || CheckKind::None),
    ("udp", || CheckKind::Udp {
        payload: DEFAULT_UDP_PAYLOAD.to_vec(),
        expect: Vec::new(),
    }),
    ("dns", || CheckKind::Dns {
        name: ".".into(),
        qtype: "NS".into(),
        noerror: false,
    }),
    ("tcp", || CheckKind::Tcp { port: None }),
    ("http", || CheckKind::Http {
        port: None,
        path: "/".into(),
    }),
];

/// The schedulers' names: "rr", "maglev", "quic".
pub fn sched_names() -> [&'static str; SCHEDS.len()] {
    SCHEDS.map(|(_, name)| name)
}

/// The check kinds' names: "none", "udp", "dns", "tcp", "http".
pub fn check_kind_names() -> [&'static str; CHECK_KINDS.len()] {
    CHECK_KINDS.map(|(name, _)| name)
}

/// `a, b or c`: the choices an error message offers.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [most @ .., last] => format!("{} or {last}", most.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_read_as_a_list() {
        assert_eq!(one_of(&sched_names()), "rr, maglev or quic");
        assert_eq!(one_of(&check_kind_names()), "none, udp, dns, tcp or http");
        assert_eq!(one_of(&["open"]), "open");
    }
}
