//! Strategies: configurations, frames, mutations, ingress, scenarios.

use super::*;

// ===========================================================================
// Strategies.

pub(crate) const V4_POOL: [Ipv4Addr; 4] = [
    Ipv4Addr::new(198, 18, 0, 1),
    Ipv4Addr::new(198, 18, 0, 2),
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::UNSPECIFIED,
];

pub(crate) fn v6_pool() -> Vec<Ipv6Addr> {
    ["2001:2::1", "2001:2::2", "::1", "::", "::ffff:198.18.0.1"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect()
}

/// `FRONTEND` of a spec.
pub(crate) fn listen() -> impl Strategy<Value = String> {
    let port = || prop_oneof![8 => 1000u16..1006, 1 => any::<u16>()];
    let v4 =
        prop_oneof![3 => select(V4_POOL.to_vec()), 1 => any::<[u8; 4]>().prop_map(Ipv4Addr::from)];
    let v6 = prop_oneof![3 => select(v6_pool()), 1 => any::<[u8; 16]>().prop_map(Ipv6Addr::from)];
    prop_oneof![
        3 => port().prop_map(|p| p.to_string()),
        2 => (v4, port()).prop_map(|(a, p)| format!("{a}:{p}")),
        2 => (v6, port()).prop_map(|(a, p)| format!("[{a}]:{p}")),
    ]
}

/// Valid configurations, as `FRONTEND=BACKENDS` strings and as parsed.
pub(crate) fn configuration() -> impl Strategy<Value = (Vec<String>, Option<Hash>, Config)> {
    let ports: Vec<u16> = (2000..2030).collect();
    (
        vec(
            (
                listen(),
                vec(prop::option::weighted(0.3, 0u32..=3), 1..=5),
                prop::option::weighted(0.05, any::<u16>()),
            ),
            1..=4,
        ),
        Just(ports).prop_shuffle(),
        prop::option::weighted(
            0.3,
            prop_oneof![
                2 => Just(Hash::Flow),
                1 => Just(Hash::Client { ipv6_prefix: 128 }),
                1 => Just(Hash::Client { ipv6_prefix: 64 }),
                // Prefixes that cut inside a 32-bit word (the datapath's
                // masks), and the extremes.
                1 => prop::sample::select(vec![1u8, 33, 56, 65, 127])
                    .prop_map(|ipv6_prefix| Hash::Client { ipv6_prefix }),
            ],
        ),
    )
        .prop_map(|(fronts, ports, maglev)| {
            let mut pool = ports.into_iter();
            let specs = fronts
                .into_iter()
                .map(|(listen, weights, odd)| {
                    let mut b: Vec<String> = weights
                        .iter()
                        .zip(pool.by_ref())
                        .map(|(w, p)| match w {
                            Some(w) => format!("{p}@{w}"),
                            None => p.to_string(),
                        })
                        .collect();
                    if let Some(p) = odd {
                        b[0] = p.to_string(); // may collide or be 0: rejected then
                    }
                    format!("{listen}={}", b.join(","))
                })
                .collect::<Vec<_>>();
            (specs, maglev)
        })
        .prop_filter_map("rejected by Config::from_specs", |(specs, maglev)| {
            config_of(&specs, maglev).map(|c| (specs, maglev, c))
        })
}

/// What frames should aim at: the configuration's ports and addresses.
pub(crate) struct Aims {
    pub(crate) frontend_ports: Vec<u16>,
    pub(crate) backend_ports: Vec<u16>,
    /// The frontends' exact addresses (the pool's if there are none).
    pub(crate) v4: Vec<Ipv4Addr>,
    pub(crate) v6: Vec<Ipv6Addr>,
}

impl Aims {
    /// Read from the model's view of the configuration, so that only
    /// `ModelConfig::from_config` depends on the shape of `Config`.
    pub(crate) fn of(config: &ModelConfig) -> Aims {
        let mut a = Aims {
            frontend_ports: vec![],
            backend_ports: vec![],
            v4: vec![],
            v6: vec![],
        };
        for fe in &config.frontends {
            a.frontend_ports.push(fe.port);
            a.backend_ports.extend_from_slice(&fe.backends);
            for bind in &fe.binds {
                match bind {
                    Bind::Exact(IpAddr::V4(x)) => a.v4.push(*x),
                    Bind::Exact(IpAddr::V6(x)) => a.v6.push(*x),
                    Bind::Any(_) => {}
                }
            }
        }
        if a.v4.is_empty() {
            a.v4 = V4_POOL.to_vec();
        }
        if a.v6.is_empty() {
            a.v6 = v6_pool();
        }
        a
    }

    pub(crate) fn ports(&self) -> Vec<u16> {
        [&self.frontend_ports[..], &self.backend_ports[..]].concat()
    }

    /// Mostly a frontend port, sometimes a backend's or any.
    pub(crate) fn dport(&self) -> impl Strategy<Value = u16> {
        prop_oneof![
            6 => select(self.frontend_ports.clone()),
            2 => select(self.backend_ports.clone()),
            1 => prop_oneof![1000u16..1006, 2000u16..2030],
            1 => any::<u16>(),
        ]
    }

    /// Mostly a backend port (a reply), sometimes a frontend's or any.
    pub(crate) fn sport(&self) -> impl Strategy<Value = u16> {
        prop_oneof![
            4 => select(self.backend_ports.clone()),
            1 => select(self.frontend_ports.clone()),
            1 => prop_oneof![1000u16..1006, 2000u16..2030],
            2 => any::<u16>(),
        ]
    }
}

pub(crate) fn ip(a: &Aims) -> impl Strategy<Value = Ip> {
    let v4 = prop_oneof![
        3 => select(a.v4.clone()),
        2 => select(V4_POOL.to_vec()),
        1 => any::<[u8; 4]>().prop_map(Ipv4Addr::from),
    ];
    let v6 = prop_oneof![
        3 => select(a.v6.clone()),
        2 => select(v6_pool()),
        1 => any::<[u8; 16]>().prop_map(Ipv6Addr::from),
    ];
    let frag = prop_oneof![
        8 => Just(Frag::Whole),
        1 => any::<Index>().prop_map(Frag::First),
        1 => (any::<bool>(), 1u16..=0x1fff).prop_map(|(mf, o)| Frag::Later(mf, o)),
    ];
    let options = bytes((0usize..=10).prop_map(|n| 4 * n));
    let options = prop_oneof![2 => Just(vec![]), 1 => options];
    prop_oneof![
        (v4.clone(), v4, options, any::<(u8, u16, bool, u8)>(), frag).prop_map(
            |(src, dst, options, (tos, id, df, ttl), frag)| Ip::V4 {
                src,
                dst,
                options,
                tos,
                id,
                df,
                frag,
                ttl,
            }
        ),
        (v6.clone(), v6, any::<u32>(), any::<u8>()).prop_map(
            |(src, dst, class_flow, hop_limit)| {
                Ip::V6 {
                    src,
                    dst,
                    class_flow,
                    hop_limit,
                }
            }
        ),
    ]
}

pub(crate) fn frame(a: &Aims) -> impl Strategy<Value = FrameDesc> {
    let tags = vec((select(TPIDS.to_vec()), any::<u16>()), 0..=2);
    let payload = prop_oneof![6 => bytes(0usize..48), 1 => bytes(48usize..1400)];
    let csum = prop_oneof![
        8 => Just(Csum::Valid),
        2 => Just(Csum::Zero),
        1 => prop_oneof![Just(0xffff), any::<u16>()].prop_map(Csum::Raw),
        1 => (any::<bool>(), select(a.ports()))
            .prop_map(|(source, new)| Csum::ZeroAfter { source, new }),
    ];
    let trailer = prop_oneof![6 => Just(vec![]), 1 => bytes(1usize..40)];
    let macs = any::<u32>().prop_map(|seed| {
        let mut m = [0u8; 12];
        m.copy_from_slice(&filler(12, seed));
        m
    });
    // ICMP errors quoting the datagram: the kinds udplb translates (port
    // unreachable, fragmentation needed / packet too big, time exceeded)
    // and some it does not; quoted whole or cut anywhere.
    let kinds = vec![
        (3, 3),
        (3, 4),
        (3, 1),
        (11, 0),
        (1, 4),
        (2, 0),
        (3, 0),
        (5, 1),
        (8, 0),
        (12, 0),
    ];
    let icmp = prop::option::weighted(
        0.15,
        (
            select(kinds),
            prop_oneof![3 => Just(None), 1 => any::<Index>().prop_map(Some)],
        )
            .prop_map(|(kind, quote)| IcmpWrap { kind, quote }),
    );
    (
        macs,
        tags,
        ip(a),
        (a.sport(), a.dport()),
        payload,
        prop::option::weighted(0.1, any::<Index>()),
        csum,
        (trailer, icmp),
    )
        .prop_map(
            |(macs, tags, ip, (sport, dport), payload, short_udp_len, csum, (trailer, icmp))| {
                FrameDesc {
                    macs,
                    tags,
                    ip,
                    sport,
                    dport,
                    payload,
                    short_udp_len,
                    csum,
                    trailer,
                    icmp,
                }
            },
        )
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    let field = prop_oneof![
        2 => any::<Index>().prop_map(Field::EtherType),
        1 => Just(Field::Version),
        2 => Just(Field::Ihl),
        2 => Just(Field::TotLen),
        2 => Just(Field::PayloadLen),
        2 => Just(Field::Protocol),
        2 => Just(Field::FragOff),
        3 => Just(Field::UdpLen),
        1 => Just(Field::UdpCheck),
    ];
    let value = prop_oneof![
        1 => any::<u16>().prop_map(Value::Random),
        2 => (-9i8..=9).prop_map(Value::Near),
        2 => select(INTERESTING.to_vec()).prop_map(Value::Pick),
    ];
    prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Truncate),
        2 => vec((prop::bool::weighted(0.8), any::<Index>(), 0u8..8), 1..=4).prop_map(Mutation::FlipBits),
        5 => (field, value).prop_map(|(f, v)| Mutation::Set(f, v)),
        1 => (select(vec![0x8100u16, 0x88a8, 0x9100]), any::<u16>())
            .prop_map(|(t, c)| Mutation::PushVlan(t, c)),
        2 => vec((select(EXT_HEADERS.to_vec()), any::<u8>(), any::<u8>()), 1..=3)
            .prop_map(Mutation::InsertExt),
    ]
}

pub(crate) fn ingress() -> impl Strategy<Value = Ingress> {
    prop_oneof![
        5 => Just(Ingress::NoContext),
        1 => Just(Ingress::Lo),
        1 => Just(Ingress::ContextZero),
        4 => Just(Ingress::Veth),
    ]
}

pub(crate) fn shot(a: &Aims) -> impl Strategy<Value = Shot> {
    let mutations = prop_oneof![2 => Just(vec![]), 3 => vec(mutation(), 1..=3)];
    (ingress(), frame(a), mutations).prop_map(|(i, d, m)| Shot::new(i, d, m))
}

#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    pub(crate) specs: Vec<String>,
    /// Every frontend uses Maglev (table size 7), hashing this, instead of
    /// round robin (None).
    pub(crate) maglev: Option<Hash>,
    pub(crate) shots: Vec<Shot>,
}

impl Scenario {
    pub(crate) fn config(&self) -> Config {
        config_of(&self.specs, self.maglev).expect("the strategy makes valid configurations")
    }
}

/// Round robin or Maglev. Quic frontends are not generated: the model has
/// no QUIC parser; tests/quic_datapath.rs checks that their fallback picks
/// what Maglev picks, and covers their own routing case by case.
pub(crate) fn config_of(specs: &[String], maglev: Option<Hash>) -> Option<Config> {
    let sched = if maglev.is_some() {
        Sched::Maglev
    } else {
        Sched::Rr
    };
    Config::from_specs_with(
        specs,
        Defaults {
            sched,
            table_size: 7,
            hash: maglev.unwrap_or_default(),
            ..Defaults::default()
        },
    )
    .ok()
}

/// Frames per batch: each batch starts from reset round-robin cursors and a
/// fresh model, and its counters are compared once.
pub(crate) const MAX_SHOTS: usize = 48;

/// A frame that continues the conversation of the one before it, so that
/// the flow table sees its flows again: the other direction (a request
/// after a reply, to a frontend port), the same direction from another
/// port (a reply from another backend), or a packet too big from the
/// destination about the same datagram sent from another port (a reply as
/// udplb rewrote it, from a frontend port: one a pin may prove).
#[derive(Clone, Debug)]
pub(crate) enum Echo {
    Reverse(u16),
    Again(u16),
    TooBig(u16),
}

impl Echo {
    fn follow(&self, shot: &Shot) -> Shot {
        let mut d = shot.desc.clone();
        match *self {
            Echo::Reverse(dport) => {
                match &mut d.ip {
                    Ip::V4 { src, dst, .. } => std::mem::swap(src, dst),
                    Ip::V6 { src, dst, .. } => std::mem::swap(src, dst),
                }
                (d.sport, d.dport) = (d.dport, dport);
            }
            Echo::Again(sport) => d.sport = sport,
            Echo::TooBig(sport) => {
                d.sport = sport;
                let kind = match d.ip {
                    Ip::V4 { .. } => (3, 4),
                    Ip::V6 { .. } => (2, 0),
                };
                d.icmp = Some(IcmpWrap { kind, quote: None });
            }
        }
        Shot::new(shot.ingress, d, vec![])
    }
}

fn echo(a: &Aims) -> impl Strategy<Value = Echo> {
    prop_oneof![
        2 => select(a.frontend_ports.clone()).prop_map(Echo::Reverse),
        1 => select(a.backend_ports.clone()).prop_map(Echo::Reverse),
        2 => select(a.backend_ports.clone()).prop_map(Echo::Again),
        1 => select(a.frontend_ports.clone()).prop_map(Echo::TooBig),
    ]
}

/// Batches of frames aimed at one configuration (`specs`, `maglev`); half
/// the frames are followed by up to four echoes.
pub(crate) fn batch(
    specs: Vec<String>,
    maglev: Option<Hash>,
    aims: &Aims,
) -> impl Strategy<Value = Scenario> {
    let echoes = vec(echo(aims), 1..=4);
    let echoes = prop_oneof![1 => Just(vec![]), 1 => echoes];
    vec((shot(aims), echoes), 1..=MAX_SHOTS / 2).prop_map(move |runs| {
        let mut shots = Vec::new();
        for (shot, echoes) in runs {
            let mut last = shot;
            for e in echoes {
                let next = e.follow(&last);
                shots.push(std::mem::replace(&mut last, next));
            }
            shots.push(last);
        }
        Scenario {
            specs: specs.clone(),
            maglev,
            shots,
        }
    })
}
