/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * rewrite.h - the one rewrite of a balanced datagram, for both programs.
 *
 * Contract: rewrite_endpoint() sets the destination of a request (to the
 * backend) or the source of a reply (back to the frontend) to an endpoint
 * from the maps, and keeps every checksum valid through the hook's
 * primitives (ctx.h):
 *   - the port always changes; the address changes only if the endpoint has
 *     one (an all-zero address is a port on this host: the packet's address
 *     is already right);
 *   - an address change updates the IPv4 header checksum and the UDP
 *     checksum's pseudo-header part; the port change updates the UDP
 *     checksum;
 *   - an IPv4 UDP checksum of 0 stays 0, a computed 0 is written 0xFFFF,
 *     IPv6 checksums are always updated.
 * Requests and replies, XDP and TC, go through this one function, so the
 * hooks cannot drift apart. It works on a first fragment too: the UDP
 * checksum covers the whole datagram, and an incremental update needs only
 * the words that change.
 */
#ifndef UDPLB_REWRITE_H
#define UDPLB_REWRITE_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "udplb.h"
#include "parsing.h"
#include "ctx.h"
#include "lookup.h"

/* rewrite_endpoint() results. */
#define REWRITE_OK 0
#define REWRITE_PARTIAL 1 /* XDP: the UDP checksum is partial, left for the caller */
#define REWRITE_FAILED -1 /* TC: a checksum helper refused; the packet may be half done */

/*
 * Rewrites the destination (source = false) or the source (source = true)
 * of p to `to`. `hook` must be a constant (ctx.h). detect_partial (XDP)
 * asks whether the UDP checksum is a partial sum, which is then left alone:
 * only a frame that leaves by XDP_REDIRECT needs it finished (forward.h),
 * so only remote endpoints pay for the check. p's description follows the
 * rewrite. In TC, the packet pointers in p are invalid after this call (its
 * description is not: it is not in the packet).
 */
static __always_inline int rewrite_endpoint(void *ctx, enum udplb_hook hook,
					    struct udp_packet *p, bool source,
					    const struct udplb_endpoint *to, bool detect_partial)
{
	struct udphdr *udp = p->udp;
	/* The side rewritten, in p's description: its old address and port
	 * (the checksum updates' "from"), and then the new ones, so that what
	 * reads p after this call (forward.h) sees the packet as it leaves. */
	struct udplb_endpoint *side = source ? &p->desc->src : &p->desc->dst;
	__be16 old_port = side->port_be;
	bool has_addr = !endpoint_is_local(to);
	__be32 old[4] = {};
	struct l4_csum cs;
	bool partial;

	/* Before anything changes: the partial-checksum test sums the old
	 * pseudo-header. */
	partial = ctx_l4_csum_begin(ctx, hook, p, detect_partial && has_addr, &cs);

	/* Every write to the packet first: TC's checksum helpers below
	 * invalidate the pointers. */
	if (has_addr) {
		if (p->ipv6) {
			struct ipv6hdr *ip6 = p->l3;

			__builtin_memcpy(old, side->addr_be, sizeof(old));
			__builtin_memcpy(source ? &ip6->saddr : &ip6->daddr, to->addr_be,
					 sizeof(old));
			__builtin_memcpy(side->addr_be, to->addr_be, sizeof(old));
		} else {
			struct iphdr *ip = p->l3;

			old[0] = side->addr_be[0];
			*(source ? &ip->saddr : &ip->daddr) = to->addr_be[0];
			side->addr_be[0] = to->addr_be[0];
		}
	}
	*(source ? &udp->source : &udp->dest) = to->port_be;
	side->port_be = to->port_be;

	if (has_addr) {
		if (!p->ipv6 && ctx_l3_csum_replace4(ctx, hook, &cs, old[0], to->addr_be[0]))
			return REWRITE_FAILED;
		if (ctx_l4_csum_replace_addr(ctx, hook, &cs, old, to->addr_be, p->ipv6 ? 4 : 1))
			return REWRITE_FAILED;
	}
	if (ctx_l4_csum_replace16(ctx, hook, &cs, old_port, to->port_be))
		return REWRITE_FAILED;
	ctx_l4_csum_end(ctx, hook, &cs);
	return partial ? REWRITE_PARTIAL : REWRITE_OK;
}

#endif /* UDPLB_REWRITE_H */
