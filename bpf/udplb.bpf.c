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

/* Exact address first, then the wildcard. */
static __always_inline void *lookup_endpoint(void *map, struct udp_packet *p, bool source,
					     bool allow_wildcard)
{
	struct udplb_endpoint ep;
	void *v;

	endpoint_of(p, source, false, &ep);
	v = bpf_map_lookup_elem(map, &ep);
	if (v || !allow_wildcard)
		return v;
	endpoint_of(p, source, true, &ep);
	return bpf_map_lookup_elem(map, &ep);
}

static __always_inline struct udplb_backend *pick_backend(struct udplb_frontend *fe)
{
	__u32 n = fe->backend_count, idx, slot;
	__u32 *cursor;

	if (n == 0 || n > UDPLB_MAX_BACKENDS || fe->table >= UDPLB_TABLES)
		return NULL;
	cursor = bpf_map_lookup_elem(&rr_cursors, &fe->id);
	if (!cursor)
		return NULL;
	idx = *cursor;
	if (idx >= n)
		idx = 0;
	*cursor = idx + 1;
	slot = fe->table * UDPLB_MAX_BACKENDS + idx;
	return bpf_map_lookup_elem(&backend_slots, &slot);
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
	__u64 bytes = data_end - cur.pos;
	struct udp_packet p = {};
	struct udplb_frontend *fe;
	struct udplb_reply_target *rt;
	struct udplb_backend *be;
	int reason;

	reason = parse_udp_packet(&cur, data_end, &p);
	if (reason != PARSE_OK)
		goto out;

	fe = lookup_endpoint(&frontends, &p, false, true);
	if (fe) {
		be = pick_backend(fe);
		if (!be) {
			reason = UDPLB_REASON_NO_BACKEND;
			goto out;
		}
		set_port(&p, &p.udp->dest, be->ep.port_be);
		count(&backend_counters, be->counter, bytes);
		reason = UDPLB_REASON_BALANCED;
		goto out;
	}

	/* Local backends are keyed by port alone; their replies are seen here
	 * only on lo (elsewhere they leave through egress), and matching a bare
	 * source port on a wire-facing interface would rewrite strangers. */
	rt = lookup_endpoint(&replies, &p, true, ctx->ingress_ifindex == LOOPBACK_IFINDEX);
	if (rt) {
		set_port(&p, &p.udp->source, rt->frontend.port_be);
		count(&reply_counters, rt->frontend_id, bytes);
		reason = UDPLB_REASON_REPLY;
		goto out;
	}
	reason = UDPLB_REASON_NO_FRONTEND;
out:
	record_reason(reason);
	return XDP_PASS;
}

#define TC_ACT_OK 0
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
		return TC_ACT_OK;
	/* Headers may sit in paged data: make enough of them linear (and
	 * writable, which the rewrite needs anyway). */
	want = skb->len < TC_HEADROOM ? skb->len : TC_HEADROOM;
	bpf_skb_pull_data(skb, want);

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	cur.pos = data;
	if (parse_udp_packet(&cur, data_end, &p) != PARSE_OK)
		return TC_ACT_OK;
	rt = lookup_endpoint(&replies, &p, true, true);
	if (!rt)
		return TC_ACT_OK;

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
		return TC_ACT_OK;
	if (bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0))
		return TC_ACT_OK;
	count(&reply_counters, rt->frontend_id, skb->len);
	return TC_ACT_OK;
}

/* The cheapest possible XDP program: the floor for `make bench`. */
SEC("xdp")
int udplb_noop(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
