//! `/metrics` in the Prometheus text format (0.0.4), encoded by the
//! Prometheus organisation's `prometheus-client` crate from a [`Status`]
//! snapshot. Names follow Prometheus conventions: `udplb_` prefix, base
//! units, `_total` for counters (the encoder appends it), frontend and
//! backend as labels, no per-packet label values.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::status::{BackendState, BackendStatus, Health, Status};

/// The `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The exposition of one snapshot.
pub fn render(status: &Status) -> String {
    let mut registry = Registry::with_prefix("udplb");
    registry.register_collector(Box::new(Snapshot(status.clone())));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct Snapshot(Status);

/// A metric of one sample, without labels.
fn single<M: EncodeMetric>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    v: M,
) -> Result<(), std::fmt::Error> {
    v.encode(enc.encode_descriptor(name, help, None, kind)?)
}

/// One metric family: a descriptor, then one sample per label set.
fn family<M: EncodeMetric, L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        v.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let gauge = MetricType::Gauge;
        family(
            &mut enc,
            "build_info",
            "udplb's version (always 1)",
            gauge,
            [([("version", s.version.clone())], ConstGauge::new(1i64))],
        )?;
        single(
            &mut enc,
            "start_time_seconds",
            "Unix time udplb started",
            gauge,
            ConstGauge::new(s.start_time_unix),
        )?;
        backends(&mut enc, s)?;
        frontends(&mut enc, s)?;
        verdicts_and_events(&mut enc, s)?;
        reloads(&mut enc, s)?;
        Ok(())
    }
}

/// Per backend: traffic, weight, health, flows, passive signals.
/// Every backend with its labels, removed ones included.
fn labelled(s: &Status) -> impl Iterator<Item = ([(&'static str, String); 2], &BackendStatus)> {
    s.frontends.iter().flat_map(|fe| {
        fe.backends.iter().map(move |b| {
            (
                [("frontend", fe.listen.clone()), ("backend", b.name.clone())],
                b,
            )
        })
    })
}

/// What every backend has, removed ones included (with their last
/// counters): traffic, weight, whether it is still configured.
fn backends(enc: &mut DescriptorEncoder<'_>, s: &Status) -> Result<(), std::fmt::Error> {
    let (counter, gauge) = (MetricType::Counter, MetricType::Gauge);
    let backends = || labelled(s);
    family(
        enc,
        "backend_packets",
        "Datagrams sent to the backend",
        counter,
        backends().map(|(l, b)| (l, ConstCounter::new(b.traffic.packets))),
    )?;
    family(
        enc,
        "backend_bytes",
        "Bytes of the frames sent to the backend",
        counter,
        backends().map(|(l, b)| (l, ConstCounter::new(b.traffic.bytes))),
    )?;
    family(
        enc,
        "backend_weight",
        "The backend's configured weight (0: drained)",
        gauge,
        backends().map(|(l, b)| (l, ConstGauge::new(i64::from(b.weight)))),
    )?;
    family(
        enc,
        "backend_configured",
        "1 while the backend is configured, 0 once a reload removed it",
        gauge,
        backends().map(|(l, b)| {
            (
                l,
                ConstGauge::new(i64::from(b.state == BackendState::Active)),
            )
        }),
    )?;
    configured_backends(enc, s)
}

/// What only a configured backend has: health, live flows, passive
/// signals.
fn configured_backends(enc: &mut DescriptorEncoder<'_>, s: &Status) -> Result<(), std::fmt::Error> {
    let (counter, gauge) = (MetricType::Counter, MetricType::Gauge);
    let backends = || labelled(s).filter(|(_, b)| b.state == BackendState::Active);
    family(
        enc,
        "backend_up",
        "1 while the health checks hold the backend up, 0 while down",
        gauge,
        backends().map(|(l, b)| (l, ConstGauge::new(i64::from(b.health.state == Health::Up)))),
    )?;
    family(
        enc,
        "backend_health_transitions",
        "Changes of the backend's health (up to down or down to up)",
        counter,
        backends().map(|(l, b)| (l, ConstCounter::new(b.health.transitions))),
    )?;
    family(
        enc,
        "backend_health_since_timestamp_seconds",
        "Unix time of the backend's last health change (or of the start)",
        gauge,
        backends().map(|(l, b)| (l, ConstGauge::new(b.health.since_unix))),
    )?;
    family(
        enc,
        "backend_live_flows",
        "Flows pinned to the backend and answered within the flow timeout \
         (Maglev frontends with a flow table; 0 on a drained backend: safe to remove)",
        gauge,
        backends().filter_map(|(l, b)| Some((l, ConstGauge::new(b.live_flows? as i64)))),
    )?;
    family(
        enc,
        "backend_icmp_errors",
        "ICMP destination-unreachable errors about datagrams sent to the backend \
         (the passive health signal)",
        counter,
        backends().map(|(l, b)| (l, ConstCounter::new(b.passive.icmp_errors))),
    )?;
    family(
        enc,
        "backend_reply_packets",
        "Replies from the backend rewritten back to the frontend, in XDP or egress \
         (also the passive health signal)",
        counter,
        backends().map(|(l, b)| (l, ConstCounter::new(b.passive.replies))),
    )?;
    Ok(())
}

/// Per frontend: replies, its ring and the ring's fingerprint.
fn frontends(enc: &mut DescriptorEncoder<'_>, s: &Status) -> Result<(), std::fmt::Error> {
    let (counter, gauge) = (MetricType::Counter, MetricType::Gauge);
    let frontends = || {
        s.frontends
            .iter()
            .map(|fe| ([("frontend", fe.listen.clone())], fe))
    };
    family(
        enc,
        "frontend_reply_packets",
        "Replies rewritten back to the frontend, in XDP or egress",
        counter,
        frontends().map(|(l, fe)| (l, ConstCounter::new(fe.replies.packets))),
    )?;
    family(
        enc,
        "frontend_reply_bytes",
        "Bytes of the replies rewritten back to the frontend",
        counter,
        frontends().map(|(l, fe)| (l, ConstCounter::new(fe.replies.bytes))),
    )?;
    family(
        enc,
        "frontend_ring_entries",
        "Entries in the frontend's scheduling ring",
        gauge,
        frontends().map(|(l, fe)| (l, ConstGauge::new(i64::from(fe.ring_size)))),
    )?;
    family(
        enc,
        "frontend_table_fingerprint_info",
        "Hash of the ring's backends in order: equal on balancers that send \
         each flow to the same backend (always 1)",
        gauge,
        s.frontends.iter().map(|fe| {
            (
                [
                    ("frontend", fe.listen.clone()),
                    ("fingerprint", fe.table_fingerprint.clone()),
                ],
                ConstGauge::new(1i64),
            )
        }),
    )?;
    Ok(())
}

/// The datapath's verdicts per hook, flow-table and QUIC events.
fn verdicts_and_events(enc: &mut DescriptorEncoder<'_>, s: &Status) -> Result<(), std::fmt::Error> {
    let (counter, gauge) = (MetricType::Counter, MetricType::Gauge);
    let by_hook = [("xdp", &s.verdicts), ("egress", &s.egress_verdicts)];
    family(
        enc,
        "packets",
        "Packets seen by the datapath, by hook and verdict: hook=\"xdp\" once per packet \
         received on the interfaces, hook=\"egress\" once per packet sent where the \
         egress program is attached (replies rewritten there are verdict=\"reply\" or \
         \"reply_forwarded\", as in XDP)",
        counter,
        by_hook.iter().flat_map(|(hook, verdicts)| {
            verdicts.iter().map(move |(v, n)| {
                (
                    [("hook", hook.to_string()), ("verdict", v.clone())],
                    ConstCounter::new(*n),
                )
            })
        }),
    )?;
    family(
        enc,
        "flow_events",
        "Flow table events: hit, miss, expired, stale (requests); pin_created, \
         pin_refreshed, pin_moved, pin_failed (replies)",
        counter,
        s.flow_events
            .iter()
            .map(|(e, n)| ([("event", e.clone())], ConstCounter::new(*n))),
    )?;
    family(
        enc,
        "quic_packets",
        "Requests of quic frontends by how they were routed: routed (by the server ID \
         in the connection ID), or fallen back to Maglev: not_quic, client_cid, \
         unroutable, unknown_server, backend_down, too_short",
        counter,
        s.quic_events
            .iter()
            .map(|(e, n)| ([("outcome", e.clone())], ConstCounter::new(*n))),
    )?;
    single(
        enc,
        "flow_table_entries",
        "Entries in the flow table at its last walk, live or idle",
        gauge,
        ConstGauge::new(s.flow_entries as i64),
    )?;
    Ok(())
}

/// Reloads: counts and the last one's time and result.
fn reloads(enc: &mut DescriptorEncoder<'_>, s: &Status) -> Result<(), std::fmt::Error> {
    let (counter, gauge) = (MetricType::Counter, MetricType::Gauge);
    family(
        enc,
        "reloads",
        "Reloads by result: success, or failure (a bad file or a failed map write)",
        counter,
        [
            (
                [("result", "success")],
                ConstCounter::new(s.reloads.succeeded),
            ),
            ([("result", "failure")], ConstCounter::new(s.reloads.failed)),
        ],
    )?;
    single(
        enc,
        "reload_last_success_timestamp_seconds",
        "Unix time of the last successful reload (0: none yet)",
        gauge,
        ConstGauge::new(s.reloads.last_success_unix.unwrap_or(0.0)),
    )?;
    single(
        enc,
        "reload_last_ok",
        "1 if the last reload (or, before any, the start) succeeded",
        gauge,
        ConstGauge::new(i64::from(
            s.reloads.last_result.is_empty() || s.reloads.last_result == "ok",
        )),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::{BackendStatus, FrontendStatus, ReloadStats, Traffic};

    #[test]
    fn names_labels_and_values() {
        let s = Status {
            version: "9.9.9".into(),
            frontends: vec![FrontendStatus {
                listen: "[2001:2::1]:53".into(),
                sched: "maglev".into(),
                hash: "flow".into(),
                mode: "nat".into(),
                table_fingerprint: "0123456789abcdef".into(),
                ring_size: 13,
                replies: Traffic::since(5, 500, None, 1.0),
                backends: vec![BackendStatus {
                    name: "198.18.1.2:5353".into(),
                    weight: 3,
                    state: BackendState::Active,
                    traffic: Traffic::since(7, 700, None, 1.0),
                    health: crate::daemon::status::HealthStatus {
                        state: Health::Down,
                        transitions: 3,
                        ..Default::default()
                    },
                    live_flows: Some(4),
                    passive: crate::daemon::status::PassiveStatus {
                        icmp_errors: 4,
                        replies: 9,
                    },
                }],
            }],
            start_time_unix: 1700000000.25,
            verdicts: [("balanced".to_string(), 7)].into(),
            egress_verdicts: [("reply".to_string(), 5)].into(),
            flow_events: [("hit".to_string(), 9)].into(),
            flow_entries: 5,
            quic_events: [("routed".to_string(), 11)].into(),
            reloads: ReloadStats {
                succeeded: 1,
                failed: 2,
                last_success_unix: Some(1700000000.5),
                last_result: "rejected: x".into(),
            },
            ..Status::default()
        };
        let text = render(&s);
        for line in [
            "udplb_build_info{version=\"9.9.9\"} 1",
            "# TYPE udplb_backend_packets_total counter",
            "udplb_backend_packets_total{frontend=\"[2001:2::1]:53\",backend=\"198.18.1.2:5353\"} 7",
            "udplb_backend_bytes_total{frontend=\"[2001:2::1]:53\",backend=\"198.18.1.2:5353\"} 700",
            "udplb_backend_weight{frontend=\"[2001:2::1]:53\",backend=\"198.18.1.2:5353\"} 3",
            "udplb_frontend_reply_packets_total{frontend=\"[2001:2::1]:53\"} 5",
            "udplb_frontend_table_fingerprint_info{frontend=\"[2001:2::1]:53\",fingerprint=\"0123456789abcdef\"} 1",
            "udplb_start_time_seconds 1700000000.25",
            "udplb_packets_total{hook=\"xdp\",verdict=\"balanced\"} 7",
            "udplb_packets_total{hook=\"egress\",verdict=\"reply\"} 5",
            "udplb_backend_up{frontend=\"[2001:2::1]:53\",backend=\"198.18.1.2:5353\"} 0",
            "udplb_backend_health_transitions_total{frontend=\"[2001:2::1]:53\",backend=\"198.18.1.2:5353\"} 3",
            "udplb_backend_live_flows{frontend=\"[2001:2::1]:53\",backend=\"198.18.1.2:5353\"} 4",
            "udplb_flow_events_total{event=\"hit\"} 9",
            "udplb_flow_table_entries 5",
            "udplb_backend_icmp_errors_total{frontend=\"[2001:2::1]:53\",backend=\"198.18.1.2:5353\"} 4",
            "udplb_backend_reply_packets_total{frontend=\"[2001:2::1]:53\",backend=\"198.18.1.2:5353\"} 9",
            "udplb_quic_packets_total{outcome=\"routed\"} 11",
            "udplb_reloads_total{result=\"failure\"} 2",
            "udplb_reload_last_ok 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        // The names these replaced (README "Metrics") are gone.
        for old in ["udplb_uptime_seconds", "udplb_backend_replies_total"] {
            assert!(!text.contains(old), "{old} in\n{text}");
        }
    }
}
