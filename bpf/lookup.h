/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * lookup.h - what the maps say about a parsed packet: the frontend it is
 * addressed to (lookup_frontend), the backend it goes to (pick_slot), the
 * frontend a reply belongs to (lookup_reply).
 *
 * Contract: reads the packet's description (parsing.h, struct packet_desc),
 * never its headers; the only map written is rr_cursors
 * (per-CPU, so no read-modify-write is shared between CPUs). Keys are built
 * exactly as userspace writes them (include/udplb.h, struct udplb_endpoint):
 * an exact address first, then the port alone. Arrays indexed by port and
 * family (UDPLB_PORT_KEYS) find most entries; the hashes the rest. What an
 * array entry points to is checked against the packet, not trusted.
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

/* The packet's (family, address, port) on one side, from its description
 * (parsing.h): a key as it stands. */
static __always_inline const struct udplb_endpoint *side_of(const struct udp_packet *p,
							    bool source)
{
	return source ? &p->desc->src : &p->desc->dst;
}

/* A copy of one side; wildcard drops the address. */
static __always_inline void endpoint_of(const struct udp_packet *p, bool source, bool wildcard,
					struct udplb_endpoint *ep)
{
	*ep = *side_of(p, source);
	if (wildcard)
		__builtin_memset(ep->addr_be, 0, sizeof(ep->addr_be));
}

/* An entry of port_frontends, port_exact or port_replies, read once:
 * userspace may switch it meanwhile. 0: none. */
static __always_inline __u32 port_entry(void *map, __u32 key)
{
	__u32 *live = bpf_map_lookup_elem(map, &key);

	return live ? *(volatile __u32 *)live : 0;
}

/* The frontend record that entry e (ring_id + 1) of a port's array names, if
 * it is this port's: an entry is checked, not trusted. */
static __always_inline struct udplb_frontend *record_of(__u32 e, __be16 port_be)
{
	struct udplb_frontend *fe;
	__u32 ring_id = e - 1;

	if (!e)
		return NULL;
	fe = bpf_map_lookup_elem(&fe_records, &ring_id);
	if (!fe || fe->port_be != port_be)
		return NULL;
	return fe;
}

/*
 * The frontend the packet's destination (or, for a quoted datagram in an
 * ICMP error, its source) names: an exact-address frontend first, then the
 * port-only one. The port's flags skip what cannot match. The only
 * exact-address frontend of a port and family, and a port-only one, are
 * found by array lookups (inlined by the verifier); several exact-address
 * frontends on one port, by the frontends hash.
 */
static __always_inline struct udplb_frontend *lookup_frontend(struct udp_packet *p, bool source)
{
	const struct udplb_endpoint *ep = side_of(p, source);
	__be16 port_be = ep->port_be;
	__u32 port = bpf_ntohs(port_be);
	__u32 key = port * 2 + p->ipv6, e;
	struct udplb_frontend *fe;
	__u8 *flags;

	flags = bpf_map_lookup_elem(&port_flags, &port);
	if (!flags || !*flags)
		return NULL;
	e = *flags & UDPLB_PORT_FRONTEND_EXACT ? port_entry(&port_exact, key) : 0;
	/* An all-zero address in the packet is no exact address. */
	if (e && !endpoint_is_local(ep)) {
		fe = e == UDPLB_PORT_EXACT_SEVERAL ? NULL : record_of(e, port_be);
		if (!fe)
			fe = bpf_map_lookup_elem(&frontends, ep);
		else if ((fe->addr_be[0] ^ ep->addr_be[0]) | (fe->addr_be[1] ^ ep->addr_be[1]) |
			 (fe->addr_be[2] ^ ep->addr_be[2]) | (fe->addr_be[3] ^ ep->addr_be[3]))
			fe = NULL; /* the port's one exact address is another */
		if (fe)
			return fe;
	}
	if (!(*flags & UDPLB_PORT_FRONTEND_ANY))
		return NULL;
	return record_of(port_entry(&port_frontends, key), port_be);
}

/*
 * The reply target of the packet's source (or, for a quoted datagram in an
 * ICMP error, its destination) as a backend, copied into *rt: an exact key
 * (the replies hash: remote backends, and local backends of exact-address
 * frontends) first, then, if allow_wildcard, the local backend of a
 * port-only frontend on that port (port_replies, and the frontend that
 * backend's slot serves: array lookups; the hash if the slot is not that
 * backend's any more).
 */
static __always_inline bool lookup_reply(struct udp_packet *p, bool source, bool allow_wildcard,
					 struct udplb_reply_target *rt)
{
	const struct udplb_endpoint *exact = side_of(p, source);
	__be16 port_be = exact->port_be;
	__u32 port = bpf_ntohs(port_be);
	struct udplb_reply_target *v = NULL;
	struct udplb_backend *be = NULL;
	struct udplb_endpoint ep;
	__u32 entry, slot;
	__u8 *flags;

	flags = bpf_map_lookup_elem(&port_flags, &port);
	if (!flags || !*flags)
		return false;
	if ((*flags & UDPLB_PORT_BACKEND_EXACT) && !endpoint_is_local(exact))
		v = bpf_map_lookup_elem(&replies, exact);
	if (!v && allow_wildcard && (*flags & UDPLB_PORT_BACKEND_ANY)) {
		entry = port_entry(&port_replies, port * 2 + p->ipv6);
		slot = entry - 1;
		if (entry)
			be = bpf_map_lookup_elem(&backends, &slot);
		/* The slot's backend must be a local one on this port whose
		 * replies of this family are keyed by port alone. */
		if (be && be->ep.port_be == port_be && endpoint_is_local(&be->ep) &&
		    (be->by_port & (p->ipv6 ? UDPLB_BY_PORT_IPV6 : UDPLB_BY_PORT_IPV4))) {
			__builtin_memset(rt, 0, sizeof(*rt));
			rt->frontend.family = p->ipv6 ? UDPLB_FAMILY_IPV6 : UDPLB_FAMILY_IPV4;
			rt->frontend.port_be = be->frontend_port_be;
			rt->frontend_id = be->frontend_id;
			rt->backend_slot = slot;
			return true;
		}
		/* A removed backend's entry lingers until it expires
		 * (State::expire), and its slot may have gone to another backend
		 * meanwhile (on this port too, of another frontend): the hash,
		 * which holds every key by port too, still has its target. */
		if (entry) {
			endpoint_of(p, source, true, &ep);
			v = bpf_map_lookup_elem(&replies, &ep);
		}
	}
	if (!v)
		return false;
	*rt = *v;
	return true;
}

_Static_assert((UDPLB_INLINE_RING & (UDPLB_INLINE_RING - 1)) == 0,
	       "slot_at masks positions with UDPLB_INLINE_RING - 1");

/* The backend slot at position pos of the frontend's ring (pos < ring_size). */
static __always_inline long slot_at(struct udplb_frontend *fe, __u32 pos)
{
	__u32 *slot;
	void *ring;

	/* The mask changes nothing (pos < ring_size <= UDPLB_INLINE_RING):
	 * it is the bound the verifier needs to let pos index the array. */
	if (fe->ring_size <= UDPLB_INLINE_RING)
		return fe->ring[pos & (UDPLB_INLINE_RING - 1)];
	ring = bpf_map_lookup_elem(&rings, &fe->ring_id);
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
 * and QUIC's fallback: the flow hash, or the client's: frontend_hash), or
 * -1 if the frontend has none. */
static __always_inline long pick_slot(struct udplb_frontend *fe, struct udp_packet *p)
{
	__u32 n = fe->ring_size, pos, *cursor;

	if (n == 0)
		return -1;
	if (fe->sched != UDPLB_SCHED_RR)
		return slot_at(fe, frontend_hash(fe, p, false) % n);
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
