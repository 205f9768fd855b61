/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * frags.h - the fragments of a remote backend's reply, translated like the
 * reply (in XDP, and in egress for those the kernel forwards).
 *
 * Why: a backend host whose kernel learnt a lower path MTU to a client
 * (icmp.h: a packet too big sent on to it) fragments its larger replies
 * (a socket without IP_PMTUDISC_DO). Only the first fragment carries the
 * UDP header; the later ones carry no port to find the frontend by, yet
 * must leave from the frontend's address too, or the client cannot
 * reassemble the datagram.
 *
 * Contract:
 * - A remote backend's first fragment is a reply like any other (its reply
 *   target found by source address and port, the reverse-path check, the
 *   rewrite, forward.h). Once XDP has translated it (redirected, or handed
 *   to the kernel translated toward a device udplb does not run on), or as
 *   egress translates it where the kernel forwards it (just before the
 *   rewrite, which may still fail), its datagram is remembered here:
 *   (backend address, client address, IP identification) -> its reply
 *   target, in an LRU hash of
 *   UDPLB_REPLY_FRAGS entries. Only a frame that passed the reverse-path
 *   check writes it: a client cannot.
 * - A later fragment found here is a reply fragment: it must arrive where
 *   the route to its backend leads (else spoofed_reply, dropped, as a
 *   reply), its source address becomes the frontend's (and the IPv4 header
 *   checksum follows; nothing else covers it), and it is forwarded like a
 *   reply (reply_forwarded; for a FIB reason or reply_to_local, XDP puts
 *   the source back and the kernel gets it as it came). Translated, it
 *   counts as a reply frame of its frontend and of its backend
 *   (reply_counters, passive_counters), as its first fragment does.
 * - A first fragment the kernel forwards is remembered by egress as it
 *   translates it, before the later ones leave (the kernel sends a
 *   datagram's fragments in order, and keeps them in order while it
 *   resolves a neighbour).
 * - A later fragment not found (its first fragment not seen, or seen
 *   after it: fragments out of order; a local backend's, which the kernel
 *   reassembles) passes untouched, counted fragment, as before.
 * - Entries are never deleted: a datagram's last fragment cannot be told
 *   from a lost one, and the IP identification of the next datagram
 *   overwrites its entry. An entry outliving its datagram is harmless: only
 *   a fragment from that backend's side, with that identification, to that
 *   client matches it, and it goes where the backend's replies go.
 */
#ifndef UDPLB_FRAGS_H
#define UDPLB_FRAGS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "udplb.h"
#include "parsing.h"
#include "csum.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, UDPLB_REPLY_FRAGS);
	__type(key, struct udplb_frag_key);
	__type(value, struct udplb_reply_target);
} reply_frags SEC(".maps");

/* The key of the datagram a fragment (first or later) belongs to, its
 * source still the backend's. */
static __always_inline void frag_key(struct udp_packet *p, struct udplb_frag_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->id = p->frag_id;
	k->family = p->desc->src.family;
	__builtin_memcpy(k->backend_addr_be, p->desc->src.addr_be, sizeof(k->backend_addr_be));
	__builtin_memcpy(k->client_addr_be, p->desc->dst.addr_be, sizeof(k->client_addr_be));
}

/* The reply target of the datagram a later fragment belongs to, copied
 * into *rt. */
static __always_inline bool frag_lookup(struct udp_packet *p, struct udplb_reply_target *rt)
{
	struct udplb_frag_key k;
	struct udplb_reply_target *v;

	frag_key(p, &k);
	v = bpf_map_lookup_elem(&reply_frags, &k);
	if (!v)
		return false;
	*rt = *v;
	return true;
}

/* A first fragment from `backend`, being translated (its source may be the
 * frontend's already, so the key's backend address is taken from
 * `backend`; its client address and IP identification from p): its
 * datagram goes to `rt`. */
static __always_inline void frag_remember(struct udp_packet *p,
					  const struct udplb_endpoint *backend,
					  struct udplb_reply_target *rt)
{
	struct udplb_frag_key k;

	frag_key(p, &k);
	__builtin_memcpy(k.backend_addr_be, backend->addr_be, sizeof(k.backend_addr_be));
	bpf_map_update_elem(&reply_frags, &k, rt, BPF_ANY);
}

/* Sets a later fragment's source address to `addr` (an endpoint's
 * addr_be); returns the old one in old[]. IPv4: the header checksum too.
 * p's description follows, as rewrite_endpoint's does: forward.h routes
 * the fragment by it. */
static __always_inline void frag_set_source(struct udp_packet *p, const __u32 *addr, __u32 *old)
{
	if (p->ipv6) {
		struct ipv6hdr *ip6 = p->l3;

		__builtin_memcpy(old, p->desc->src.addr_be, 16);
		__builtin_memcpy(&ip6->saddr, addr, 16);
		__builtin_memcpy(p->desc->src.addr_be, addr, 16);
	} else {
		struct iphdr *ip = p->l3;

		old[0] = p->desc->src.addr_be[0];
		ip->saddr = addr[0];
		p->desc->src.addr_be[0] = addr[0];
		ip->check = csum_update(ip->check, old, (__be32 *)addr, 4);
	}
}

#endif /* UDPLB_FRAGS_H */
