/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * lookup.h - what the maps say about a parsed packet: the frontend it is
 * addressed to, the backend it goes to, the frontend a reply belongs to.
 *
 * Contract: read-only on the packet; the only map written is rr_cursors
 * (per-CPU, so no read-modify-write is shared between CPUs). Keys are built
 * exactly as userspace writes them (include/udplb.h, struct udplb_endpoint):
 * an exact address first, then the wildcard (all-zero address).
 */
#ifndef UDPLB_LOOKUP_H
#define UDPLB_LOOKUP_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "udplb.h"
#include "parsing.h"
#include "maps.h"
#include "flow_hash.h"

/* A backend or frontend without an address: a port on this host, reached
 * at whatever address the packet names. */
static __always_inline bool endpoint_is_local(const struct udplb_endpoint *ep)
{
	return !(ep->addr_be[0] | ep->addr_be[1] | ep->addr_be[2] | ep->addr_be[3]);
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

/* The backend slot at position pos of the frontend's ring (pos < ring_size). */
static __always_inline long slot_at(struct udplb_frontend *fe, __u32 pos)
{
	__u32 *slot;
	void *ring;

	ring = bpf_map_lookup_elem(&rings, &fe->table);
	if (!ring)
		return -1;
	slot = bpf_map_lookup_elem(ring, &pos);
	if (!slot)
		return -1;
	return *slot;
}

/* The backend slot a flow hash picks (as Maglev does), or -1 if the
 * frontend has none. */
static __always_inline long ring_slot(struct udplb_frontend *fe, __u32 hash)
{
	__u32 n = fe->ring_size;

	if (n == 0)
		return -1;
	return slot_at(fe, hash % n);
}

/* The backend slot for this packet (round robin: the per-CPU cursor; Maglev
 * and QUIC's fallback: the flow hash), or -1 if the frontend has none. */
static __always_inline long pick_slot(struct udplb_frontend *fe, struct udp_packet *p)
{
	__u32 n = fe->ring_size, pos, *cursor;

	if (n == 0)
		return -1;
	if (fe->sched != UDPLB_SCHED_RR)
		return slot_at(fe, flow_hash(p) % n);
	cursor = bpf_map_lookup_elem(&rr_cursors, &fe->id);
	if (!cursor)
		return -1;
	pos = *cursor;
	if (pos >= n)
		pos = 0;
	*cursor = pos + 1;
	return slot_at(fe, pos);
}

#endif /* UDPLB_LOOKUP_H */
