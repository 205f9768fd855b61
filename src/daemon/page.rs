//! The live status page of the metrics listener: `GET /` is one
//! self-contained HTML page (inline CSS and script, nothing fetched from
//! anywhere else: the Content-Security-Policy below forbids it), which polls
//! `GET /status.json` (the [`Status`] of `udplb status --json` and the
//! [`history`](super::history) of each backend) and redraws.
//!
//! Served like `/metrics`, from the same bounded, non-blocking listener.
//! `/status.json?since=N` carries only the samples after sample N, so a
//! page that is open costs one status and a sample or two per poll; the
//! first poll takes the whole history, at most
//! [`MAX_ANSWER_SAMPLES`](super::history::MAX_ANSWER_SAMPLES) samples
//! (about 8 bytes each in JSON) besides the status.

use serde::Serialize;

use super::history::{History, View};
use super::status::Status;

/// The page; its script builds everything from `/status.json` with
/// `textContent` (names in the configuration are the operator's text, never
/// markup).
pub const HTML: &str = include_str!("page.html");
pub const HTML_TYPE: &str = "text/html; charset=utf-8";
pub const JSON_TYPE: &str = "application/json";

/// Sent with every answer of the listener: the page may run its own inline
/// script and style and fetch from this listener, nothing else; no answer
/// is cached (they are all live).
pub const HEADERS: &str = "Cache-Control: no-store\r\n\
     X-Content-Type-Options: nosniff\r\n\
     Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'\r\n";

#[derive(Serialize)]
struct StatusJson<'a> {
    status: &'a Status,
    history: View,
}

/// The body of `/status.json?QUERY`: `since=N` asks for the samples after
/// sample N only; a missing or malformed one gets them all.
pub fn status_json(status: &Status, history: &History, query: &str) -> String {
    let since = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("since="))
        .and_then(|n| n.parse::<u64>().ok());
    let body = StatusJson {
        status,
        history: history.view(since),
    };
    // Plain data (strings, numbers, maps with string keys): cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::{BackendState, BackendStatus, FrontendStatus};
    use std::time::Instant;

    #[test]
    fn the_page_fetches_nothing_from_elsewhere_and_writes_no_markup() {
        for outside in ["http:", "https:", "src=", "@import", "url("] {
            assert!(!HTML.contains(outside), "{outside} in page.html");
        }
        // Names come from the configuration: text only, never markup.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!HTML.contains(sink), "{sink} in page.html");
        }
        assert!(HTML.contains("/status.json"));
    }

    #[test]
    fn since_trims_the_history_and_nonsense_gets_it_all() {
        let s = Status {
            frontends: vec![FrontendStatus {
                listen: "*:53".into(),
                backends: vec![BackendStatus {
                    name: "<b>5301</b>".into(),
                    state: BackendState::Active,
                    ..BackendStatus::default()
                }],
                ..FrontendStatus::default()
            }],
            ..Status::default()
        };
        let mut h = History::default();
        for _ in 0..3 {
            h.record(Instant::now(), &s);
        }
        let points = |q: &str| {
            let v: serde_json::Value = serde_json::from_str(&status_json(&s, &h, q)).unwrap();
            assert_eq!(
                v["status"]["frontends"][0]["backends"][0]["name"],
                "<b>5301</b>"
            );
            assert_eq!(v["history"]["last"], 2);
            v["history"]["backends"][0]["pps"].as_array().unwrap().len()
        };
        assert_eq!(points(""), 3);
        assert_eq!(points("since=0"), 2);
        assert_eq!(points("x=1&since=1"), 1);
        assert_eq!(points("since=-1"), 3);
        assert_eq!(points("since=99999999999999999999999"), 3);
    }
}
