//! The names of the schedulers and of the health-check kinds, as the
//! command line (`--sched`, `--health`), the config file (`sched =`,
//! `check =`), their error messages and the status output give them. Each
//! is spelled once, beside its type: [`SCHEDS`] in sched.rs, [`CHECK_KINDS`]
//! in health.rs.

use super::health::CHECK_KINDS;
use super::sched::SCHEDS;

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
