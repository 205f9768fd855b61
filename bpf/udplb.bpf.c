// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * udplb.bpf.c - the XDP datapath.
 *
 * Two programs share the maps:
 *
 * udplb_xdp (XDP, ingress). For every frame: parse Ethernet/VLAN/IP/UDP
 * (parsing.h), then
 *   - destination is a frontend  -> pick a backend (per-CPU round robin),
 *                                   rewrite the destination port;
 *   - source is a backend        -> rewrite the source port back to the
 *                                   frontend (a reply; stateless);
 *   - anything else              -> untouched.
 * The verdict is always XDP_PASS: backends are local ports, so the kernel
 * delivers the rewritten datagram. Checksums are updated incrementally
 * (csum.h). Every packet increments exactly one reason counter, at the single
 * exit point.
 *
 * udplb_egress (TC, egress). On every interface but lo, replies from local
 * backends leave through egress, where XDP cannot see them. This program
 * rewrites their source port like udplb_xdp does, with the skb checksum
 * helpers so that CHECKSUM_PARTIAL packets (checksum offload) stay right.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "udplb.h"
#include "csum.h"
#include "parsing.h"
#include "maps.h"
#include "flow_hash.h"
#include "forward.h"

/* Loopback is ifindex 1 in every network namespace. */
#define LOOPBACK_IFINDEX 1

static __always_inline void count(void *map, __u32 key, __u64 bytes)
{
	struct udplb_counter *c = bpf_map_lookup_elem(map, &key);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline void record_reason(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&reason_counters, &reason);

	if (n)
		(*n)++;
}

/* The packet's (family, address, port) on one side; wildcard drops the address. */
static __always_inline void endpoint_of(struct udp_packet *p, bool source, bool wildcard,
					struct udplb_endpoint *ep)
{
	__builtin_memset(ep, 0, sizeof(*ep));
	ep->port_be = source ? p->udp->source : p->udp->dest;
	if (p->ipv6) {
		struct ipv6hdr *ip6 = p->l3;

		ep->family = UDPLB_FAMILY_IPV6;
		if (!wildcard)
			__builtin_memcpy(ep->addr_be, source ? &ip6->saddr : &ip6->daddr,
					 sizeof(ep->addr_be));
	} else {
		struct iphdr *ip = p->l3;

		ep->family = UDPLB_FAMILY_IPV4;
		if (!wildcard)
			ep->addr_be[0] = source ? ip->saddr : ip->daddr;
	}
}

/*
 * The map entry for the packet's destination (or source) endpoint: exact
 * address first, then the wildcard. `exact` and `any` are the port_flags
 * bits that say whether such keys exist for the port at all, so lookups
 * that cannot match are skipped. An all-zero address in the packet
 * (0.0.0.0, ::) is the wildcard key itself, so it only matches where the
 * wildcard may.
 */
static __always_inline void *lookup_endpoint(void *map, struct udp_packet *p, bool source,
					     bool allow_wildcard, __u8 exact, __u8 any)
{
	__u32 port = bpf_ntohs(source ? p->udp->source : p->udp->dest);
	struct udplb_endpoint ep;
	__u8 *flags;
	void *v;

	flags = bpf_map_lookup_elem(&port_flags, &port);
	if (!flags || !*flags)
		return NULL;
	allow_wildcard = allow_wildcard && (*flags & any);
	endpoint_of(p, source, false, &ep);
	if (!(ep.addr_be[0] | ep.addr_be[1] | ep.addr_be[2] | ep.addr_be[3]))
		return allow_wildcard ? bpf_map_lookup_elem(map, &ep) : NULL;
	v = (*flags & exact) ? bpf_map_lookup_elem(map, &ep) : NULL;
	if (v || !allow_wildcard)
		return v;
	endpoint_of(p, source, true, &ep);
	return bpf_map_lookup_elem(map, &ep);
}

/* The backend slot for this packet, or -1 if the frontend has none. */
static __always_inline long pick_slot(struct udplb_frontend *fe, struct udp_packet *p)
{
	__u32 n = fe->ring_size, pos, *cursor, *slot;
	void *ring;

	if (n == 0)
		return -1;
	if (fe->sched == UDPLB_SCHED_MAGLEV) {
		pos = flow_hash(p) % n;
	} else {
		cursor = bpf_map_lookup_elem(&rr_cursors, &fe->id);
		if (!cursor)
			return -1;
		pos = *cursor;
		if (pos >= n)
			pos = 0;
		*cursor = pos + 1;
	}
	ring = bpf_map_lookup_elem(&rings, &fe->table);
	if (!ring)
		return -1;
	slot = bpf_map_lookup_elem(ring, &pos);
	if (!slot)
		return -1;
	return *slot;
}

static __always_inline void set_port(struct udp_packet *p, __be16 *field, __be16 port)
{
	udp_csum_replace16(p->udp, *field, port, p->ipv6);
	*field = port;
}

SEC("xdp")
int udplb_xdp(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct hdr_cursor cur = { .pos = (void *)(long)ctx->data };
	/* Read once: clang may otherwise keep a pointer into ctx, which the
	 * verifier refuses to dereference. */
	bool on_lo = ctx->ingress_ifindex == LOOPBACK_IFINDEX;
	__u64 bytes = data_end - cur.pos;
	struct udp_packet p = {};
	struct udplb_frontend *fe;
	struct udplb_reply_target *rt;
	struct udplb_backend *be;
	struct udplb_endpoint *remote;
	int action = XDP_PASS;
	bool partial;
	int sent;
	long picked;
	__u32 slot, reply_id = 0;
	int reason;

	reason = parse_udp_packet(&cur, data_end, &p, bytes);
	if (reason != PARSE_OK)
		goto out;

	fe = lookup_endpoint(&frontends, &p, false, true, UDPLB_PORT_FRONTEND_EXACT,
			     UDPLB_PORT_FRONTEND_ANY);
	if (fe) {
		/* From a backend to a frontend: a reply sent back in, or a spoof
		 * meant to start a loop through the balancer and its backends
		 * (each pass gets a fresh TTL). No client sends from a backend. */
		if (lookup_endpoint(&replies, &p, true, on_lo, UDPLB_PORT_BACKEND_EXACT,
				    UDPLB_PORT_BACKEND_ANY)) {
			reason = UDPLB_REASON_BACKEND_TO_FRONTEND;
			action = XDP_DROP;
			goto out;
		}
		picked = pick_slot(fe, &p);
		slot = picked;
		be = picked < 0 ? NULL : bpf_map_lookup_elem(&backends, &slot);
		if (!be) {
			reason = UDPLB_REASON_NO_BACKEND;
			goto out;
		}
		if (endpoint_is_local(&be->ep)) {
			set_port(&p, &p.udp->dest, be->ep.port_be);
			count(&backend_counters, slot, bytes);
			reason = UDPLB_REASON_BALANCED;
			goto out;
		}
		if (p.more_fragments) {
			/* Later fragments carry no ports to rewrite: the kernel
			 * gets the datagram whole or not at all. */
			reason = UDPLB_REASON_FRAGMENT;
			goto out;
		}
		count(&backend_counters, slot, bytes);
		remote = &be->ep;
		sent = UDPLB_REASON_FORWARDED;
		goto forward;
	}

	/* Local backends are keyed by port alone; their replies are seen here
	 * only on lo (elsewhere they leave through egress), and matching a bare
	 * source port on a wire-facing interface would rewrite strangers.
	 * Remote backends are keyed by address and port, on every interface. */
	rt = lookup_endpoint(&replies, &p, true, on_lo,
			     UDPLB_PORT_BACKEND_EXACT, UDPLB_PORT_BACKEND_ANY);
	if (rt) {
		if (endpoint_is_local(&rt->frontend)) {
			count(&reply_counters, rt->frontend_id, bytes);
			set_port(&p, &p.udp->source, rt->frontend.port_be);
			reason = UDPLB_REASON_REPLY;
			goto out;
		}
		/* A remote backend's reply comes in where the route to that
		 * backend goes out; anything else carries a forged source and
		 * would leave with the frontend's. */
		if (!arrived_from_backend_side(ctx, &p)) {
			reason = UDPLB_REASON_SPOOFED_REPLY;
			action = XDP_DROP;
			goto out;
		}
		if (p.more_fragments) {
			/* Later fragments would keep the backend's source: the
			 * client could never reassemble them with this one. */
			reason = UDPLB_REASON_FRAGMENT;
			goto out;
		}
		reply_id = rt->frontend_id;
		remote = &rt->frontend;
		sent = UDPLB_REASON_REPLY_FORWARDED;
		goto forward;
	}
	reason = UDPLB_REASON_NO_FRONTEND;
	goto out;

forward:
	/* One place for both directions: a request goes to `remote` (the
	 * backend), a reply comes from the backend and gets `remote` (the
	 * frontend) as its source. */
	partial = rewrite_remote(&p, sent == UDPLB_REASON_REPLY_FORWARDED, remote);
	action = forward(ctx, &p, partial, sent, &reason);
	/* Replies count once forward() has not refused them. */
	if (sent == UDPLB_REASON_REPLY_FORWARDED && action != XDP_DROP)
		count(&reply_counters, reply_id, bytes);
out:
	record_reason(reason);
	return action;
}

/* "No opinion": tcx runs the next program on the interface, clsact its
 * default action. TC_ACT_OK would end the chain for programs after ours. */
#define TC_ACT_UNSPEC -1
/* Enough to reach the UDP header behind two VLAN tags and IPv4 options. */
#define TC_HEADROOM (14 + 2 * 4 + 60 + 8)

SEC("tcx/egress")
int udplb_egress(struct __sk_buff *skb)
{
	struct udplb_reply_target *rt;
	struct udp_packet p = {};
	struct hdr_cursor cur;
	void *data, *data_end;
	__u32 want, csum_off, port_off;
	__be16 old_port, new_port;
	__u64 flags;

	/* Only datagrams this host sends: forwarded traffic has no socket. */
	if (!skb->sk)
		return TC_ACT_UNSPEC;
	/* Headers may sit in paged data: make enough of them linear (and
	 * writable, which the rewrite needs anyway). */
	want = skb->len < TC_HEADROOM ? skb->len : TC_HEADROOM;
	bpf_skb_pull_data(skb, want);

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	cur.pos = data;
	if (parse_udp_packet(&cur, data_end, &p, skb->len) != PARSE_OK)
		return TC_ACT_UNSPEC;
	rt = lookup_endpoint(&replies, &p, true, true, UDPLB_PORT_BACKEND_EXACT,
			     UDPLB_PORT_BACKEND_ANY);
	if (!rt)
		return TC_ACT_UNSPEC;

	port_off = (void *)&p.udp->source - data;
	csum_off = (void *)&p.udp->check - data;
	old_port = p.udp->source;
	new_port = rt->frontend.port_be;
	/* IPv4: a zero checksum means none and stays zero. IPv6: always update.
	 * Both: a computed zero is written as 0xFFFF. */
	flags = BPF_F_MARK_MANGLED_0 | sizeof(__u16);
	if (p.ipv6)
		flags |= BPF_F_MARK_ENFORCE;
	if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, flags))
		return TC_ACT_UNSPEC;
	if (bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0))
		return TC_ACT_UNSPEC;
	count(&reply_counters, rt->frontend_id, skb->len);
	return TC_ACT_UNSPEC;
}

/* The cheapest possible XDP program: the floor for `make bench`. */
SEC("xdp")
int udplb_noop(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
