/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * forward.h - datagrams to and from backends on other hosts, entirely in XDP.
 *
 * Contract: forward() takes a packet that rewrite_endpoint() (rewrite.h)
 * has already rewritten: a request to a remote backend's address and port,
 * or a reply from one back to its frontend's. Then bpf_fib_lookup finds the
 * next hop, the TTL / hop limit is decremented, the Ethernet addresses are
 * set and the frame leaves by XDP_REDIRECT (only to an interface in
 * tx_ports). When the lookup cannot finish (no neighbour
 * entry yet, forwarding disabled, the route's MTU exceeded, no route, the TTL
 * expiring, a VLAN tag, a device udplb is not attached to, a partial
 * checksum too long to finish here) the rewritten packet goes to the kernel
 * with XDP_PASS, which forwards it or answers as it would for any forwarded
 * packet (ICMP), and the reason is counted. Nothing is dropped here. (A
 * reply is then put back as the backend sent it by the caller, and
 * translated by udplb_egress as the kernel sends it on, unless its route
 * leaves through a device udplb does not run on: udplb.bpf.c.)
 *
 * Checksums. XDP cannot see whether the stack left the UDP checksum to be
 * finished later (CHECKSUM_PARTIAL: a sender on this host behind a veth with
 * checksum offload on), in which case the field holds only the sum of the
 * pseudo-header. The rewrite recognises that value (csum.h) and reports it;
 * here:
 *   - a field equal to the pseudo-header sum is a partial checksum. If the
 *     frame is redirected, nothing downstream would finish it, so it is
 *     completed here from scratch over the whole datagram; if the packet
 *     goes to the kernel, the field becomes the pseudo-header sum of the new
 *     addresses, which is what the kernel will finish.
 *   - any other field is updated incrementally (RFC 1624): a valid checksum
 *     stays valid and a corrupt one stays corrupt, so the backend still
 *     drops a datagram damaged on the wire.
 *   - an IPv4 checksum of 0 (none) stays 0.
 * A full checksum that happens to equal its pseudo-header sum (1 in 65536)
 * is taken for a partial one: on a redirected frame it is recomputed from
 * scratch, which gives the same, correct result; on a packet passed to the
 * kernel (the rare fallbacks above) it becomes a pseudo-header sum and the
 * receiver drops that one datagram.
 */
#ifndef UDPLB_FORWARD_H
#define UDPLB_FORWARD_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "udplb.h"
#include "csum.h"
#include "parsing.h"
#include "maps.h"

#define AF_INET 2
#define AF_INET6 10
#define ETH_ALEN 6
/* Datagrams (udp.len) up to 18 * 512 + 511 = 9727 bytes can be completed
 * (jumbo frames): eighteen chunks of 512 bytes, the most bpf_csum_diff takes
 * at once, then smaller ones for the rest. */
#define CSUM_CHUNK 512
#define CSUM_MAX_CHUNKS 18

/* Adds `len` bytes at pos to the sum s in chunks of `chunk` (at most `max`
 * of them), advancing pos and len. */
#define SUM_CHUNKS(chunk, max)                                             \
	for (int i = 0; i < (max) && len >= (chunk); i++) {                 \
		if (pos + (chunk) > data_end)                               \
			return -1;                                          \
		s = bpf_csum_diff(NULL, 0, pos, (chunk), s);                \
		pos += (chunk);                                             \
		len -= (chunk);                                             \
	}

/*
 * Unfolded one's-complement sum of `len` bytes of the packet from offset
 * `off`, or -1 if they are not all there or there are more than we sum.
 * A global (not inlined) function: the verifier checks its loops once, not
 * on every path that reaches them, which keeps loading fast.
 */
__noinline long packet_sum(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *pos = (void *)(long)ctx->data;
	__u32 s = 0;

	/* Never true (parsing.h): the verifier needs a constant bound on a
	 * variable offset before pos may move by it. */
	if (off > MAX_L4_OFF)
		return -1;
	pos += off;
	SUM_CHUNKS(CSUM_CHUNK, CSUM_MAX_CHUNKS);
	if (len >= CSUM_CHUNK)
		return -1;
	SUM_CHUNKS(64, CSUM_CHUNK / 64);
	SUM_CHUNKS(4, 64 / 4);
	if (len) {
		__u8 tail[4] = {};

		for (int i = 0; i < 3 && i < len; i++) {
			if (pos + i + 1 > data_end)
				return -1;
			tail[i] = *(__u8 *)(pos + i);
		}
		s = bpf_csum_diff(NULL, 0, (__be32 *)tail, sizeof(tail), s);
	}
	return s;
}

/* A partial checksum, finished for a frame nobody downstream will finish. */
static __always_inline int complete_csum(struct xdp_md *ctx, struct udp_packet *p)
{
	__u32 off = p->l4_off;
	long sum;
	__u16 check;

	p->udp->check = 0;
	sum = packet_sum(ctx, off, p->ulen);
	if (sum < 0)
		return -1;
	check = ~csum_fold32(csum_add32(sum, pseudo_sum(p)));
	p->udp->check = check ? check : 0xffff;
	return 0;
}

static __always_inline int fib_reason(long rc)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return UDPLB_REASON_FIB_NO_NEIGH;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return UDPLB_REASON_FIB_FWD_DISABLED;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return UDPLB_REASON_FIB_FRAG_NEEDED;
	case BPF_FIB_LKUP_RET_BLACKHOLE:
	case BPF_FIB_LKUP_RET_UNREACHABLE:
	case BPF_FIB_LKUP_RET_PROHIBIT:
		return UDPLB_REASON_FIB_UNREACHABLE;
	}
	return UDPLB_REASON_FIB_OTHER;
}

/*
 * The parameters of every FIB lookup (both callers below): a route from
 * p's source to its destination, or with `reverse` from its destination to
 * its source, as seen from interface `ifindex`. Addresses and ports come
 * from p's description (parsing.h), which the rewrites keep true: for a
 * rewritten packet they are the new ones. A later fragment's are 0 (it
 * has no UDP header): the lookup gets no ports. `whole`:
 * the lookup is for p itself, on its way out, so its TOS (IPv4) or flow
 * label (IPv6) choose the route and its length asks for an MTU verdict;
 * without, those stay 0 (no MTU verdict in XDP). Those three are read from
 * the IP header here, the one step that needs them (no rewrite touches
 * them).
 */
static __always_inline void fib_params(struct udp_packet *p, bool reverse, __u32 ifindex,
				       bool whole, struct bpf_fib_lookup *fib)
{
	const struct udplb_endpoint *src = reverse ? &p->desc->dst : &p->desc->src;
	const struct udplb_endpoint *dst = reverse ? &p->desc->src : &p->desc->dst;

	fib->l4_protocol = IPPROTO_UDP;
	fib->sport = src->port_be;
	fib->dport = dst->port_be;
	fib->ifindex = ifindex;
	if (p->ipv6) {
		struct ipv6hdr *ip6 = p->l3;

		fib->family = AF_INET6;
		if (whole) {
			fib->flowinfo = *(__be32 *)ip6 & bpf_htonl(0x0FFFFFFF);
			fib->tot_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
		}
		__builtin_memcpy(fib->ipv6_src, src->addr_be, 16);
		__builtin_memcpy(fib->ipv6_dst, dst->addr_be, 16);
	} else {
		struct iphdr *ip = p->l3;

		fib->family = AF_INET;
		if (whole) {
			fib->tos = ip->tos;
			fib->tot_len = bpf_ntohs(ip->tot_len);
		}
		fib->ipv4_src = src->addr_be[0];
		fib->ipv4_dst = dst->addr_be[0];
	}
}

/*
 * Reverse-path check for what comes from a remote backend's side: the route
 * from here to the backend leaves through the interface the packet came in
 * on (`ingress`; ctx is the hook's, XDP or TC: bpf_fib_lookup takes both).
 * The backend is p's source (a reply) or, for the datagram an ICMP error
 * quotes, its destination (`backend_is_dest`). A datagram from the
 * client side that forges a backend's source fails it, and so is never sent
 * on with the frontend's address (VIP spoofing toward any host); so does an
 * ICMP error forged on the client side about a datagram to a backend, which
 * would otherwise count against the backend's health (and be sent on with
 * the frontend's address). A failed lookup (no route, forwarding off, a
 * local source) fails it too: remote backends need both.
 */
static __always_inline bool from_backend_side(void *ctx, __u32 ingress, struct udp_packet *p,
					      bool backend_is_dest)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	/* Toward the backend: from p's destination for a reply. */
	fib_params(p, !backend_is_dest, ingress, false, &fib);
	/* The neighbour need not be resolved, nor the packet fit (the kernel
	 * sets the egress ifindex before it looks at either: tot_len 0 asks
	 * for no MTU verdict in XDP, while TC still weighs the skb). */
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	return (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH ||
		rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) &&
	       fib.ifindex == ingress;
}

static __always_inline bool arrived_from_backend_side(struct xdp_md *ctx, struct udp_packet *p)
{
	return from_backend_side(ctx, ctx->ingress_ifindex, p, false);
}

/*
 * Sends the rewritten packet on its way: XDP_REDIRECT to the next hop, or
 * XDP_PASS to the kernel with *reason saying why. `reply`: a remote
 * backend's reply (reply_forwarded when redirected), else a request to one
 * (forwarded). *foreign says that the route leaves
 * through a device udplb does not run on (not in tx_ports), where no egress
 * program of udplb's would see what the kernel sends.
 */
static __always_inline int forward(struct xdp_md *ctx, struct udp_packet *p, bool partial,
				   bool reply, int *reason, bool *foreign)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	fib_params(p, false, ctx->ingress_ifindex, true, &fib);

	/* A tagged frame would need its tags rewritten for the egress device;
	 * the kernel's VLAN devices do that. */
	if (p->vlans) {
		*reason = UDPLB_REASON_FIB_OTHER;
		goto pass;
	}
	*foreign = false;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED && reply) {
		/* A "reply" the FIB does not forward (to this host, a
		 * broadcast, or an address with no route at all): not one a
		 * client gets. The
		 * caller undoes the rewrite, so the kernel delivers it from the
		 * backend, as if udplb were not there (udplb's own health
		 * probes get their answers this way). */
		*reason = UDPLB_REASON_REPLY_TO_LOCAL;
		return XDP_PASS;
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		*reason = fib_reason(rc);
		/* The device is known before the neighbour (see above). */
		if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
			*foreign = bpf_redirect_map(&tx_ports, fib.ifindex, XDP_PASS) != XDP_REDIRECT;
		goto pass;
	}
	/* Out through an interface udplb is not attached to (a VLAN or bridge
	 * device, say): let the kernel send it. The flags argument is what
	 * the helper returns when fib.ifindex is not in tx_ports, which saves
	 * a lookup of our own (a helper call). The redirect itself happens
	 * after the program returns, so the frame may still change below,
	 * and an XDP_PASS after all leaves the redirect unused. */
	if (bpf_redirect_map(&tx_ports, fib.ifindex, XDP_PASS) != XDP_REDIRECT) {
		*reason = UDPLB_REASON_FIB_OTHER;
		*foreign = true;
		goto pass;
	}
	if (partial && complete_csum(ctx, p)) {
		/* Longer than we can sum: the kernel will finish it. */
		*reason = UDPLB_REASON_FIB_OTHER;
		goto pass;
	}
	if (p->ipv6) {
		struct ipv6hdr *ip6 = p->l3;

		if (ip6->hop_limit <= 1) {
			*reason = UDPLB_REASON_TTL_EXPIRED;
			goto pass;
		}
		ip6->hop_limit--;
	} else {
		struct iphdr *ip = p->l3;
		/* TTL and protocol share a 16-bit word of the header checksum. */
		__u16 old = bpf_htons(ip->ttl << 8 | ip->protocol);

		if (ip->ttl <= 1) {
			*reason = UDPLB_REASON_TTL_EXPIRED;
			goto pass;
		}
		ip->ttl--;
		ip->check = csum_replace16(ip->check, old, bpf_htons(ip->ttl << 8 | ip->protocol));
	}
	__builtin_memcpy(p->eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(p->eth->h_source, fib.smac, ETH_ALEN);
	*reason = reply ? UDPLB_REASON_REPLY_FORWARDED : UDPLB_REASON_FORWARDED;
	return XDP_REDIRECT;

pass:
	/* The kernel finishes a partial checksum from the pseudo-header sum. */
	if (partial)
		p->udp->check = csum_fold32(pseudo_sum(p));
	return XDP_PASS;
}

#endif /* UDPLB_FORWARD_H */
