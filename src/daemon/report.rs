//! Human-readable counters, for `--stats` and the summary printed on exit.

use std::fmt::Write;

use crate::abi::REASON_NAMES;
use crate::config::Config;
use crate::datapath::Counters;

pub fn render(config: &Config, c: &Counters) -> String {
    let mut s = String::new();
    for (i, fe) in config.frontends.iter().enumerate() {
        let _ = writeln!(s, "frontend {}", fe.listen);
        for (j, port) in fe.backends.iter().enumerate() {
            let b = c
                .backends
                .get(i)
                .and_then(|v| v.get(j))
                .copied()
                .unwrap_or_default();
            let port = port.to_string(); // "9876" or "9876@3"
            let _ = writeln!(
                s,
                "  backend {port:<5}  packets {:>12}  bytes {:>14}",
                b.packets, b.bytes
            );
        }
        let r = c.replies.get(i).copied().unwrap_or_default();
        let _ = writeln!(
            s,
            "  replies        packets {:>12}  bytes {:>14}",
            r.packets, r.bytes
        );
    }
    let reasons: Vec<String> = REASON_NAMES
        .iter()
        .zip(c.reasons)
        .map(|(n, v)| format!("{n} {v}"))
        .collect();
    let _ = writeln!(s, "verdicts: {}", reasons.join(", "));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{Counter, REASON_COUNT};

    #[test]
    fn renders_every_backend_and_reason() {
        let config = Config::from_specs(&["9875=9876,9877"]).unwrap();
        let mut c = Counters {
            backends: vec![vec![
                Counter {
                    packets: 2,
                    bytes: 100,
                },
                Counter {
                    packets: 1,
                    bytes: 50,
                },
            ]],
            replies: vec![Counter {
                packets: 3,
                bytes: 150,
            }],
            reasons: [0; REASON_COUNT],
        };
        c.reasons[0] = 3;
        let text = render(&config, &c);
        assert!(text.contains("frontend *:9875"), "{text}");
        assert!(
            text.contains("backend 9876   packets            2  bytes            100"),
            "{text}"
        );
        assert!(
            text.contains("backend 9877   packets            1"),
            "{text}"
        );
        assert!(
            text.contains("replies        packets            3"),
            "{text}"
        );
        assert!(
            text.contains("verdicts: balanced 3, reply 0, not_ip 0"),
            "{text}"
        );
    }
}
