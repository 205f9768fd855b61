/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * flows.h - the flow table of Maglev frontends: a cache of which backend
 * answered each flow, so that backend changes move no live flow.
 *
 * Contract:
 * - Learned from replies (flow_learn): a flow is pinned to the backend
 *   whose reply udplb translates (XDP: a local backend's before its
 *   rewrite, a remote one's once it is sent on; egress: just before the
 *   rewrite, which TC's helpers may still fail) (XDP on lo or for remote
 *   backends, TC egress
 *   for local replies leaving an interface and for remote ones the kernel
 *   forwards). Requests of NAT frontends never write the
 *   table, so spoofed sources that never get an answer cannot fill it
 *   (a backend's answer to a spoofed request does pin: see README).
 * - Learned from requests in DSR modes (udplb.h UDPLB_MODE_*), whose
 *   replies never pass here: the ring's choice is pinned at once (as
 *   Katran's LRU does), and a request that follows its pin refreshes it.
 *   A flood of spoofed sources can then evict live pins: README says how
 *   to size the table for it.
 * - A frontend that hashes by client (udplb_frontend.client_bits) pins per
 *   client: its keys have client port 0 and the client's address cut as
 *   client_hash cuts it (flow_key_client), so one pin serves every flow of
 *   the client, a later one too. A reply finds the cut in its backend's
 *   client_bits, copied from the frontend.
 * - QUIC frontends are Maglev frontends: their requests that quic.h cannot
 *   route by connection ID come here, and their replies pin like any other.
 * - Requests (flow_pick_slot) follow a pin only if it is younger than the
 *   frontend's flow_timeout_s, was learned for this frontend, and its slot
 *   still holds the same backend (ident) and accepts pinned flows
 *   (UDPLB_BACKEND_F_PINNED, set by the plan: not for a backend removed or
 *   down). Anything else goes by the ring (pick_slot). It stays a cache:
 *   losing an entry only costs stickiness.
 * - One shared LRU hash (not per-CPU): a reply handled on another CPU than
 *   its requests pins for all of them. A reply that finds its pin right only
 *   stores the time into it (a relaxed store, and only when the clock moved);
 *   the map is written only for a missing pin or another backend.
 * - Time is jiffies: bpf_jiffies64() is inlined by the verifier, where
 *   bpf_ktime_get_coarse_ns() is a helper call, which on kernels with
 *   return-thunk mitigations costs about as much as the rest of a hit.
 *   Timeouts are seconds times jiffies_hz, the kernel's CONFIG_HZ as
 *   userspace measured it after load (Datapath::measure_hz): libbpf's
 *   __kconfig would need /boot/config-* or /proc/config.gz, which
 *   containers and Debian's kernels (no IKCONFIG) do not have.
 * - One flow_counters event per request of a frontend with a table that
 *   goes by its pin or the ring (not one a QUIC connection ID routed), and
 *   one per reply from a backend that accepts pins.
 * - A pin is also the proof that a backend answered a client: a
 *   packet-too-big about a reply goes on only to the backend a live pin
 *   names (flow_answered_slot, for icmp.h).
 */
#ifndef UDPLB_FLOWS_H
#define UDPLB_FLOWS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "udplb.h"
#include "parsing.h"
#include "maps.h"
#include "lookup.h"
#include "counters.h"

/* Jiffies per second, written once by userspace before anything is
 * attached; 0 until then (every pin then reads as expired). */
__u64 jiffies_hz;

/* (client, frontend) -> the backend that answered. Userspace sets the size
 * (--flow-table-size) before load, and reuses the pinned map on --pin. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, UDPLB_DEFAULT_FLOW_TABLE_SIZE);
	__type(key, struct udplb_flow_key);
	__type(value, struct udplb_flow);
} flows SEC(".maps");

/* Flow table events (enum udplb_flow_counter). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UDPLB_FLOW_COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} flow_counters SEC(".maps");

static __always_inline void flow_count(__u32 event)
{
	count_event(&flow_counters, event);
}

/* The flow of a packet: the client is the source of a request and the
 * destination of a reply. The frontend's address and port are filled in by
 * the caller. With client_bits (struct udplb_frontend's: a frontend that
 * hashes by client), one pin for all the client's flows: port 0, and an
 * IPv6 address cut as its hash cuts it. */
static __always_inline void flow_key_client(struct udp_packet *p, bool reply, __u32 client_bits,
					    struct udplb_flow_key *k)
{
	const struct udplb_endpoint *client = side_of(p, !reply);

	__builtin_memset(k, 0, sizeof(*k));
	k->family = client->family;
	__builtin_memcpy(k->client_addr_be, client->addr_be, sizeof(k->client_addr_be));
	if (!client_bits) {
		k->client_port_be = client->port_be;
		return;
	}
	if (client->family == UDPLB_FAMILY_IPV6)
		ipv6_prefix(k->client_addr_be, client_bits);
}

/* The whole key of p's flow, the frontend read from p itself: its
 * destination in a request, its source in a reply as the client got it
 * (the quote of an ICMP error). */
static __always_inline void flow_key_of(struct udp_packet *p, bool reply, __u32 client_bits,
					struct udplb_flow_key *k)
{
	const struct udplb_endpoint *frontend = side_of(p, reply);

	flow_key_client(p, reply, client_bits, k);
	k->frontend_port_be = frontend->port_be;
	__builtin_memcpy(k->frontend_addr_be, frontend->addr_be, sizeof(k->frontend_addr_be));
}

/* A pin idle longer than the frontend's timeout. */
static __always_inline bool pin_expired(struct udplb_frontend *fe, struct udplb_flow *f)
{
	__u64 now = bpf_jiffies64(), last = *(volatile __u64 *)&f->last_seen;

	/* Signed: another CPU may have stored a slightly later time. Much
	 * later (over a second) is no time of ours: a table reused by --pin
	 * from a build that stored nanoseconds. Expired, not fresh forever. */
	return (__s64)(now - last) > (__s64)((__u64)fe->flow_timeout_s * jiffies_hz) ||
	       (__s64)(last - now) > (__s64)jiffies_hz;
}

/* A pin used again: its time now, by a relaxed store, and only when the
 * clock moved, so busy flows do not keep the cache line bouncing between
 * CPUs. */
static __always_inline void pin_touch(struct udplb_flow *f, __u64 now)
{
	if (*(volatile __u64 *)&f->last_seen != now)
		*(volatile __u64 *)&f->last_seen = now;
}

/* Pins the flow of `key` to the backend `be` at `slot`, for frontend_id:
 * only the time of a pin that already says so (pin_touch), else a new
 * pin. */
static __always_inline void flow_pin(struct udplb_flow_key *key, __u32 slot,
				     struct udplb_backend *be, __u32 frontend_id)
{
	struct udplb_flow *f;
	struct udplb_flow v;
	__u64 now = bpf_jiffies64();

	f = bpf_map_lookup_elem(&flows, key);
	if (f && f->slot == slot && f->ident == be->ident && f->frontend_id == frontend_id) {
		pin_touch(f, now);
		flow_count(UDPLB_FLOW_PIN_REFRESHED);
		return;
	}
	__builtin_memset(&v, 0, sizeof(v));
	v.slot = slot;
	v.ident = be->ident;
	v.frontend_id = frontend_id;
	v.last_seen = now;
	if (bpf_map_update_elem(&flows, key, &v, BPF_ANY))
		flow_count(UDPLB_FLOW_PIN_FAILED);
	else
		flow_count(f ? UDPLB_FLOW_PIN_MOVED : UDPLB_FLOW_PIN_CREATED);
}

/* The backend slot for a request: its pin if it has a valid one, else the
 * ring's choice (pick_slot). A DSR frontend (no reply passes here) pins
 * the ring's choice at once, and a request that follows its pin keeps it
 * alive. */
static __always_inline long flow_pick_slot(struct udplb_frontend *fe, struct udp_packet *p)
{
	struct udplb_flow_key key;
	struct udplb_backend *be;
	struct udplb_flow *f;
	__u32 slot;
	long picked;

	if (fe->sched == UDPLB_SCHED_RR || !fe->flow_timeout_s)
		return pick_slot(fe, p);
	flow_key_of(p, false, fe->client_bits, &key);
	f = bpf_map_lookup_elem(&flows, &key);
	if (!f) {
		flow_count(UDPLB_FLOW_MISS);
		goto ring;
	}
	if (pin_expired(fe, f)) {
		flow_count(UDPLB_FLOW_EXPIRED);
		goto ring;
	}
	slot = f->slot;
	be = bpf_map_lookup_elem(&backends, &slot);
	if (!be || !(be->flags & UDPLB_BACKEND_F_PINNED) || be->ident != f->ident ||
	    f->frontend_id != fe->id) {
		flow_count(UDPLB_FLOW_STALE);
		goto ring;
	}
	flow_count(UDPLB_FLOW_HIT);
	if (fe->mode != UDPLB_MODE_NAT)
		pin_touch(f, bpf_jiffies64());
	return slot;
ring:
	picked = pick_slot(fe, p);
	if (picked < 0 || fe->mode == UDPLB_MODE_NAT)
		return picked;
	slot = picked;
	be = bpf_map_lookup_elem(&backends, &slot);
	if (be && (be->flags & UDPLB_BACKEND_F_PINNED))
		flow_pin(&key, slot, be, fe->id);
	return picked;
}

/*
 * The backend slot that answered the flow of a reply quoted in an ICMP error
 * (icmp.h: a packet-too-big for frontend fe about it), or -1: the proof that
 * the error concerns that backend. The client is the quote's destination,
 * the frontend its source (the address the client wrote to, as flow_learn
 * keys a local backend's reply too). A live pin only: learned for fe,
 * within its timeout, its slot still held by the backend that answered (a
 * pinned-flows flag is not needed: a backend drained, down or removed may
 * still be answering). No flow table (round robin, timeout 0): no proof.
 * Moves no flow counter: those count requests and replies.
 */
static __always_inline long flow_answered_slot(struct udplb_frontend *fe, struct udp_packet *q)
{
	struct udplb_flow_key key;
	struct udplb_backend *be;
	struct udplb_flow *f;
	__u32 slot;

	if (fe->sched == UDPLB_SCHED_RR || !fe->flow_timeout_s)
		return -1;
	flow_key_of(q, true, fe->client_bits, &key);
	f = bpf_map_lookup_elem(&flows, &key);
	if (!f || f->frontend_id != fe->id || pin_expired(fe, f))
		return -1;
	slot = f->slot;
	be = bpf_map_lookup_elem(&backends, &slot);
	if (!be || be->ident != f->ident)
		return -1;
	return slot;
}

/* A reply from the backend at rt->backend_slot to a client, as udplb
 * translates it (before or after its source is rewritten back to the
 * frontend: only its destination, the client, is read): pin the flow to
 * that backend. */
static __always_inline void flow_learn(struct udp_packet *p, struct udplb_reply_target *rt)
{
	struct udplb_flow_key key;
	struct udplb_backend *be;
	__u32 slot = rt->backend_slot;

	be = bpf_map_lookup_elem(&backends, &slot);
	if (!be || !(be->flags & UDPLB_BACKEND_F_PINNED))
		return;
	flow_key_client(p, true, be->client_bits, &key);
	key.frontend_port_be = rt->frontend.port_be;
	/* A local backend answers from the address the client used. */
	__builtin_memcpy(key.frontend_addr_be,
			 endpoint_is_local(&rt->frontend) ? p->desc->src.addr_be : rt->frontend.addr_be,
			 sizeof(key.frontend_addr_be));
	flow_pin(&key, slot, be, rt->frontend_id);
}

#endif /* UDPLB_FLOWS_H */
