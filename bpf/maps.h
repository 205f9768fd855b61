/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h - the udplb maps, shared by the XDP and TC programs. Keys and
 * values are defined in include/udplb.h; every map is BTF-typed so
 * `bpftool map dump name <map>` shows fields.
 * Contract: userspace (src/datapath/apply.rs: Datapath's plan::Maps::write,
 * which every plan goes through, the daemon's plan::MapWriter and
 * Datapath::apply alike, for the configuration; src/datapath/mod.rs:
 * add_tx_port/remove_tx_port for tx_ports as interfaces come and go) is
 * the only writer of the
 * configuration maps (these, and quic_servers in quic.h). The
 * datapath writes its per-CPU counters and round-robin cursors, and two
 * shared LRU hashes of its own: the flow table (flows.h, learned from
 * replies) and reply_frags (frags.h); udplb_clock writes the clock map.
 */
#ifndef UDPLB_MAPS_H
#define UDPLB_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "udplb.h"

/* (family, exact address, port) -> frontend. NO_PREALLOC so a replaced
 * value is freed after an RCU grace period: a reader holding the old value
 * keeps a consistent copy while userspace swaps rings. Read only for ports
 * with several exact-address frontends: the arrays below (port_frontends,
 * port_exact, fe_records) find the others, since a hash lookup is a call
 * into the kernel, which costs more than the rest of a balanced packet on
 * kernels with return-thunk mitigations. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * UDPLB_FRONTEND_IDS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct udplb_endpoint);
	__type(value, struct udplb_frontend);
} frontends SEC(".maps");

/* Port-only frontends: port * 2 + family index -> ring_id + 1, 0 for none
 * (UDPLB_PORT_KEYS). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UDPLB_PORT_KEYS);
	__type(key, __u32);
	__type(value, __u32);
} port_frontends SEC(".maps");

/* The exact-address frontend of a port and family when it is the only one:
 * port * 2 + family index -> ring_id + 1; 0: none; UDPLB_PORT_EXACT_SEVERAL:
 * see the frontends hash (UDPLB_PORT_KEYS). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UDPLB_PORT_KEYS);
	__type(key, __u32);
	__type(value, __u32);
} port_exact SEC(".maps");

/* A frontend's value, by its live ring (struct udplb_frontend
 * says why it is never written while a packet can read it). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UDPLB_RINGS);
	__type(key, __u32);
	__type(value, struct udplb_frontend);
} fe_records SEC(".maps");

/* Backends of every frontend, by slot (allocated by userspace). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UDPLB_BACKEND_SLOTS);
	__type(key, __u32);
	__type(value, struct udplb_backend);
} backends SEC(".maps");

/* A scheduling ring: position -> backend slot. Userspace creates one per
 * frontend generation, sized to that ring (ring_size entries, at least 1:
 * a Maglev table, or one round-robin cycle; BPF_F_INNER_MAP lets the sizes
 * differ); this definition is only the template. */
struct ring {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

/* Rings by index, two per frontend (struct udplb_frontend). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, UDPLB_RINGS);
	__type(key, __u32);
	__array(values, struct ring);
} rings SEC(".maps");

/* backend (source of a reply) -> the frontend it answers for. Keys by port
 * alone (local backends of port-only frontends) are found by port_replies
 * first, and here only when that entry's slot went to another backend. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * UDPLB_BACKEND_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct udplb_endpoint);
	__type(value, struct udplb_reply_target);
} replies SEC(".maps");

/* Local backends of port-only frontends: port * 2 + family index -> backend
 * slot + 1, 0 for none (UDPLB_PORT_KEYS). The reply target comes from the
 * slot's struct udplb_backend, checked against the port (a replies entry
 * by port alone stands behind it). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UDPLB_PORT_KEYS);
	__type(key, __u32);
	__type(value, __u32);
} port_replies SEC(".maps");

/* The interfaces udplb is attached to, by ifindex: the only ones it
 * redirects to (a device without XDP transmit support would drop the frame). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, UDPLB_MAX_INTERFACES);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

/* UDPLB_PORT_* flags per port: a datagram whose ports have no flags costs
 * two array lookups, and the flags skip the lookups that cannot match. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} port_flags SEC(".maps");

/* Round-robin position per frontend. Per-CPU: no shared read-modify-write. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UDPLB_FRONTEND_IDS);
	__type(key, __u32);
	__type(value, __u32);
} rr_cursors SEC(".maps");

/* Packets and bytes sent to each backend, by backend slot. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UDPLB_BACKEND_SLOTS);
	__type(key, __u32);
	__type(value, struct udplb_counter);
} backend_counters SEC(".maps");

/* Passive signals (ICMP errors about datagrams sent to it, replies seen
 * from it) per backend slot, for the daemon's health checks. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UDPLB_BACKEND_SLOTS);
	__type(key, __u32);
	__type(value, struct udplb_passive);
} passive_counters SEC(".maps");

/* Replies rewritten back to each frontend. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UDPLB_FRONTEND_IDS);
	__type(key, __u32);
	__type(value, struct udplb_counter);
} reply_counters SEC(".maps");

/* Packets per verdict reason (enum udplb_reason). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UDPLB_REASON_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} reason_counters SEC(".maps");

/* Packets per egress verdict (enum udplb_egress_verdict). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UDPLB_EGRESS_VERDICT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} egress_counters SEC(".maps");

#endif /* UDPLB_MAPS_H */
