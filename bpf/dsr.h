/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * dsr.h - direct server return: a request leaves for its backend as the
 * client sent it, addressed to the frontend, and the backend (which owns
 * the frontend's address) answers the client itself. Replies never pass
 * the balancer.
 *
 * Contract: send_dsr() takes a request to a frontend whose mode is ipip,
 * gue or l2 (udplb.h UDPLB_MODE_*) and the remote backend its scheduler
 * picked (userspace refuses local backends, and a backend port other
 * than the frontend's, in these modes). The inner datagram is not changed
 * (its TTL, addresses and ports are the client's), but for a partial
 * UDP checksum, which is completed (below).
 *   - ipip: an outer IPv4 or IPv6 header (the backend's family) to the
 *     backend, protocol 4 or 41 (the inner family's): the kernel's ipip,
 *     sit or ip6tnl devices take it.
 *   - gue: an outer IP and UDP header to the backend's decapsulation port,
 *     and nothing else (GUE variant 1, RFC-draft "Generic UDP
 *     Encapsulation" 3.3: the inner IP header's version says the
 *     protocol), which `ip fou add port N gue` takes.
 *   - l2: the destination MAC becomes the backend's, found by the FIB
 *     lookup of the backend's address, which must be on a segment of this
 *     host (the lookup's next hop is the backend itself).
 * The outer source of ipip and gue is the frontend's tunnel source of the
 * outer family (--tunnel-source), its hash bits (struct
 * udplb_tunnel_source) set from the flow hash; gue's source port carries
 * the flow hash as well, and an IPv6 outer header its flow label: the
 * routers' ECMP and the backend's RSS spread the flows.
 *
 * The frame leaves by XDP_REDIRECT or not at all: handed to the kernel, a
 * request to the frontend's address would be delivered here or routed
 * back out, and an encapsulated one whose source is this host's address
 * is dropped by the kernel as a martian. So what cannot be sent is
 * dropped and counted (UDPLB_REASON_DSR_UNSENT, _TOO_BIG); a next hop
 * whose neighbour entry is missing is written to dsr_neigh, and the daemon
 * asks the kernel to resolve it (a redirected frame never makes the
 * kernel do so), so that the next requests go.
 *
 * Checksums. The outer IPv4 header gets its own. The outer UDP checksum
 * of gue over IPv4 is 0, "none" (RFC 768), which fou accepts; over IPv6,
 * where 0 is not allowed, it is computed without reading the payload
 * (what the kernel calls local checksum offload, LCO): a datagram with a valid checksum
 * sums, with its pseudo-header, to zero, so its bytes sum to the negated
 * pseudo-header sum. A corrupt inner checksum makes the outer one wrong
 * by as much, and the backend drops the datagram, as it would have. A
 * partial inner checksum (a sender on this host behind a veth with
 * checksum offload), which nothing would finish after a redirect, is
 * completed in every mode (forward.h's complete_csum), and an IPv4
 * datagram without a checksum is summed (packet_sum).
 */
#ifndef UDPLB_DSR_H
#define UDPLB_DSR_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "udplb.h"
#include "csum.h"
#include "parsing.h"
#include "maps.h"
#include "flow_hash.h"
#include "forward.h"
#include "icmp.h"

#define IP_DF 0x4000
#define DSR_TTL 64

/* Next hops with no neighbour entry yet, for the daemon to resolve. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 256);
	__type(key, struct udplb_neigh_key);
	__type(value, __u32);
} dsr_neigh SEC(".maps");

/* fe's outer source for family outer6, its hash bits from `hash`; false
 * if none is configured. */
static __always_inline bool tunnel_source(const struct udplb_frontend *fe, bool outer6,
					  __u32 hash, __u32 *src)
{
	const struct udplb_tunnel_source *t = outer6 ? &fe->tunnel[1] : &fe->tunnel[0];
	__u32 mask;

	if (!t->family)
		return false;
	__builtin_memcpy(src, t->addr_be, 16);
	mask = t->hash_mask_be;
	/* Constant offsets: Linux 5.10 refuses a variable stack offset. */
	if (outer6)
		src[3] = (src[3] & ~mask) | (bpf_htonl(hash) & mask);
	else
		src[0] = (src[0] & ~mask) | (bpf_htonl(hash) & mask);
	return true;
}

/* gue's outer source port: the flow hash, in the dynamic range
 * (49152-65535, as RFC 8086 asks of GRE-in-UDP). */
static __always_inline __be16 gue_source_port(__u32 hash)
{
	return bpf_htons(0xC000 | (hash & 0x3FFF));
}

/* A next hop the FIB found without a neighbour entry, for the daemon. Its
 * family is the lookup's as it returned (an IPv4 route may have an IPv6
 * next hop). */
static __always_inline void note_neigh(struct bpf_fib_lookup *fib)
{
	struct udplb_neigh_key k = {};
	__u32 one = 1;

	k.ifindex = fib->ifindex;
	if (fib->family == AF_INET6) {
		k.family = UDPLB_FAMILY_IPV6;
		__builtin_memcpy(k.addr_be, fib->ipv6_dst, 16);
	} else {
		k.family = UDPLB_FAMILY_IPV4;
		k.addr_be[0] = fib->ipv4_dst;
	}
	/* Written once: while unresolved, every request finds it there. */
	bpf_map_update_elem(&dsr_neigh, &k, &one, BPF_NOEXIST);
}

/* The FIB's next hop is the backend itself (after a lookup, the
 * destination is the gateway, if the route has one). */
static __always_inline bool on_link(struct bpf_fib_lookup *fib, bool outer6,
				    const struct udplb_endpoint *backend)
{
	if (fib->family != (outer6 ? AF_INET6 : AF_INET))
		return false;
	if (!outer6)
		return fib->ipv4_dst == backend->addr_be[0];
	return !((fib->ipv6_dst[0] ^ backend->addr_be[0]) | (fib->ipv6_dst[1] ^ backend->addr_be[1]) |
		 (fib->ipv6_dst[2] ^ backend->addr_be[2]) | (fib->ipv6_dst[3] ^ backend->addr_be[3]));
}

/*
 * Unfolded sum of the inner IP packet's bytes, for an outer UDP checksum
 * over IPv6 (see the top of this file), or -1 if it cannot be had. An
 * IPv4 header with a valid checksum sums to zero and is left out (a
 * corrupt one gets the packet dropped at the backend, as it would be).
 */
static __always_inline long inner_sum(struct xdp_md *ctx, struct udp_packet *p)
{
	__u32 s = 0;

	if (p->ipv6)
		s = csum_add_words(0, (__be32 *)p->l3, sizeof(struct ipv6hdr) / 4);
	else if (!p->udp->check) {
		/* An IPv4 datagram sent without a checksum. */
		long d = packet_sum(ctx, p->l4_off, p->ulen);

		return d < 0 ? -1 : csum_add32(s, d);
	}
	/* The datagram's bytes (its checksum complete: send_dsr): the negated
	 * pseudo-header sum. */
	return csum_add32(s, (__u16)~csum_fold32(pseudo_sum(p)));
}

/* The outer headers, once adjust_head has made room for them: Ethernet,
 * IP of the backend's family, and gue's UDP header. */
struct dsr_outer {
	__u8 dmac[ETH_ALEN], smac[ETH_ALEN];
	__u32 src[4];
	const __u32 *dst;
	__u32 inner_len; /* the inner IP packet's length */
	__u32 len;       /* the outer IP packet's */
	__u32 hash;
	__u32 sum;       /* inner_sum, for gue over IPv6 */
	__be16 gue_port_be; /* 0: ipip */
	__u8 proto;         /* the outer IP header's protocol */
	__u8 tc;            /* the inner TOS / traffic class: ECN and DSCP stay visible */
	bool df;
	__be16 inner_id;    /* IPv4 inner: its identification */
};

static __always_inline int write_outer4(struct xdp_md *ctx, struct dsr_outer *o)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);

	if ((void *)(udp + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, o->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, o->smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	*(__be16 *)ip = bpf_htons(0x4500 | o->tc);
	ip->tot_len = bpf_htons(o->len);
	/* Fragments of one packet share its ID: with DF clear the inner
	 * IPv4 packet's, unique per client as the client keeps it. */
	ip->id = o->df ? 0 : o->inner_id;
	ip->frag_off = o->df ? bpf_htons(IP_DF) : 0;
	ip->ttl = DSR_TTL;
	ip->protocol = o->proto;
	ip->check = 0;
	ip->saddr = o->src[0];
	ip->daddr = o->dst[0];
	ip->check = ~csum_fold32(csum_add_words(0, (__be32 *)ip, sizeof(*ip) / 4));
	if (o->gue_port_be) {
		udp->source = gue_source_port(o->hash);
		udp->dest = o->gue_port_be;
		udp->len = bpf_htons(o->inner_len + sizeof(*udp));
		udp->check = 0;
	}
	return 0;
}

static __always_inline int write_outer6(struct xdp_md *ctx, struct dsr_outer *o)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip6 + 1);
	struct pseudo_hdr6 ph = {};
	__u16 check;

	if ((void *)(udp + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, o->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, o->smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	*(__be32 *)ip6 = bpf_htonl(6 << 28 | (__u32)o->tc << 20 | (o->hash & 0xFFFFF));
	ip6->payload_len = bpf_htons(o->len - sizeof(*ip6));
	ip6->nexthdr = o->proto;
	ip6->hop_limit = DSR_TTL;
	__builtin_memcpy(&ip6->saddr, o->src, 16);
	__builtin_memcpy(&ip6->daddr, o->dst, 16);
	if (!o->gue_port_be)
		return 0;
	udp->source = gue_source_port(o->hash);
	udp->dest = o->gue_port_be;
	udp->len = bpf_htons(o->inner_len + sizeof(*udp));
	udp->check = 0;
	__builtin_memcpy(ph.saddr, o->src, 16);
	__builtin_memcpy(ph.daddr, o->dst, 16);
	ph.len = bpf_htonl(o->inner_len + sizeof(*udp));
	ph.nexthdr = IPPROTO_UDP;
	check = ~csum_fold32(csum_add32(csum_add_words(0, (__be32 *)&ph, sizeof(ph) / 4),
					csum_add32(csum_add_words(0, (__be32 *)udp, 2), o->sum)));
	udp->check = check ? check : 0xffff;
	return 0;
}

/* The most of a too-big request an ICMP error quotes: what keeps the error
 * within 576 bytes (IPv4, RFC 1812) or 1280 (IPv6, RFC 4443). */
#define QUOTE4_MAX (576 - 20 - ICMP_HLEN)
#define QUOTE6_MAX (1280 - 40 - ICMP_HLEN)

/*
 * Request p is larger than the route to its backend takes once
 * encapsulated (`overhead` bytes more): tell the client, as a router would
 * and as Katran does, that the path's MTU for it is mtu - overhead. An
 * ICMP fragmentation needed (IPv4) or packet too big (IPv6) from the
 * frontend's address to the client, quoting the request's start, sent back
 * out of the interface it came in on (XDP_TX). Never larger than the
 * request: nothing is amplified. Not for an IPv4 request with DF clear
 * (its sender did not ask), nor where the kernel does not say the MTU
 * (before Linux 5.12), nor for an IPv6 MTU below 1280: false, dropped.
 */
static __always_inline bool answer_too_big(struct xdp_md *ctx, struct udp_packet *p,
					   const struct dsr_outer *o, __u32 mtu, __u32 overhead,
					   __u64 bytes)
{
	__u8 client_mac[ETH_ALEN], our_mac[ETH_ALEN];
	__u32 client[4], frontend[4], quote, room, inner_mtu;
	void *data, *data_end;
	struct ethhdr *eth;
	__u8 *icmp;
	long sum;

	/* The FIB writes the MTU over tot_len; an older kernel leaves
	 * tot_len, larger than any MTU it would refuse. */
	if (mtu >= o->len || mtu <= overhead || !o->df)
		return false;
	inner_mtu = mtu - overhead;
	if (inner_mtu < (p->ipv6 ? 1280 : 68))
		return false;
	__builtin_memcpy(client_mac, p->eth->h_source, ETH_ALEN);
	__builtin_memcpy(our_mac, p->eth->h_dest, ETH_ALEN);
	__builtin_memcpy(client, p->desc->src.addr_be, 16);
	__builtin_memcpy(frontend, p->desc->dst.addr_be, 16);
	room = p->ipv6 ? sizeof(struct ipv6hdr) + ICMP_HLEN : sizeof(struct iphdr) + ICMP_HLEN;
	/* Never larger than the request: the quote leaves room for the new
	 * headers. */
	if (o->inner_len <= room)
		return false;
	quote = o->inner_len - room;
	if (quote > (p->ipv6 ? QUOTE6_MAX : QUOTE4_MAX))
		quote = p->ipv6 ? QUOTE6_MAX : QUOTE4_MAX;
	/* The request's IP packet stays where it is, as the quote; the new
	 * headers go before it, and the rest of it is cut off. */
	if (bpf_xdp_adjust_head(ctx, -(int)room))
		return false;
	/* The frame was `bytes` long, and is room more now. */
	if (bpf_xdp_adjust_tail(ctx, (int)(sizeof(*eth) + quote) - (int)bytes))
		return false;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) + room > data_end)
		return false;
	__builtin_memcpy(eth->h_dest, client_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, our_mac, ETH_ALEN);
	if (p->ipv6) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		struct pseudo_hdr6 ph = {};

		icmp = (void *)(ip6 + 1);
		if ((void *)(icmp + ICMP_HLEN) > data_end)
			return false;
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		*(__be32 *)ip6 = bpf_htonl(6 << 28);
		ip6->payload_len = bpf_htons(ICMP_HLEN + quote);
		ip6->nexthdr = IPPROTO_ICMPV6_NR;
		ip6->hop_limit = DSR_TTL;
		__builtin_memcpy(&ip6->saddr, frontend, 16);
		__builtin_memcpy(&ip6->daddr, client, 16);
		icmp[0] = ICMPV6_PKT_TOOBIG;
		icmp[1] = 0;
		*(__u16 *)&icmp[2] = 0;
		*(__be32 *)&icmp[4] = bpf_htonl(inner_mtu);
		__builtin_memcpy(ph.saddr, frontend, 16);
		__builtin_memcpy(ph.daddr, client, 16);
		ph.len = bpf_htonl(ICMP_HLEN + quote);
		ph.nexthdr = IPPROTO_ICMPV6_NR;
		sum = packet_sum(ctx, sizeof(*eth) + sizeof(*ip6), ICMP_HLEN + quote);
		if (sum < 0)
			return false;
		sum = csum_add32(sum, csum_add_words(0, (__be32 *)&ph, sizeof(ph) / 4));
	} else {
		struct iphdr *ip = (void *)(eth + 1);

		icmp = (void *)(ip + 1);
		if ((void *)(icmp + ICMP_HLEN) > data_end)
			return false;
		eth->h_proto = bpf_htons(ETH_P_IP);
		*(__be16 *)ip = bpf_htons(0x4500);
		ip->tot_len = bpf_htons(sizeof(*ip) + ICMP_HLEN + quote);
		ip->id = 0; /* with DF: RFC 6864 */
		ip->frag_off = bpf_htons(IP_DF);
		ip->ttl = DSR_TTL;
		ip->protocol = IPPROTO_ICMP;
		ip->check = 0;
		ip->saddr = frontend[0];
		ip->daddr = client[0];
		ip->check = ~csum_fold32(csum_add_words(0, (__be32 *)ip, sizeof(*ip) / 4));
		icmp[0] = ICMP_DEST_UNREACH;
		icmp[1] = ICMP_FRAG_NEEDED;
		*(__u16 *)&icmp[2] = 0;
		*(__be16 *)&icmp[4] = 0;
		*(__be16 *)&icmp[6] = bpf_htons(inner_mtu);
		sum = packet_sum(ctx, sizeof(*eth) + sizeof(*ip), ICMP_HLEN + quote);
		if (sum < 0)
			return false;
	}
	/* Written through a fresh pointer: packet_sum was a call. */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	icmp = data + sizeof(*eth) + (room - ICMP_HLEN);
	if ((void *)(icmp + ICMP_HLEN) > data_end)
		return false;
	*(__u16 *)&icmp[2] = ~csum_fold32(sum);
	return true;
}

/*
 * Sends request p (a frame of `bytes`) of DSR frontend fe to `backend`, the
 * verdict in *reason:
 * XDP_REDIRECT (dsr_sent), XDP_TX (dsr_too_big: the ICMP error back to the
 * client) or XDP_DROP (dsr_unsent; dsr_too_big without one).
 */
static __always_inline int send_dsr(struct xdp_md *ctx, struct udp_packet *p,
				    const struct udplb_frontend *fe,
				    const struct udplb_endpoint *backend, __u64 bytes, int *reason)
{
	bool outer6 = backend->family == UDPLB_FAMILY_IPV6, l2 = fe->mode == UDPLB_MODE_L2;
	struct bpf_fib_lookup fib = {};
	struct dsr_outer o = {};
	__u32 overhead = 0;
	long rc;

	*reason = UDPLB_REASON_DSR_UNSENT;
	/* Tags would have to be rewritten for the egress device. */
	if (p->vlans)
		return XDP_DROP;
	o.dst = backend->addr_be;
	if (p->ipv6) {
		struct ipv6hdr *ip6 = p->l3;

		o.inner_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
		o.tc = bpf_ntohl(*(__be32 *)ip6) >> 20;
		o.df = true; /* IPv6 is never fragmented on the way */
	} else {
		struct iphdr *ip = p->l3;

		o.inner_len = bpf_ntohs(ip->tot_len);
		o.inner_id = ip->id;
		o.tc = ip->tos;
		o.df = ip->frag_off & bpf_htons(IP_DF); /* RFC 2003 5.1 */
	}
	if (l2) {
		__builtin_memcpy(o.src, p->desc->src.addr_be, 16);
		o.proto = IPPROTO_UDP;
	} else {
		/* Only the outer header carries a hash (l2 has none). */
		o.hash = frontend_hash(fe, p, false);
		if (!tunnel_source(fe, outer6, o.hash, o.src))
			return XDP_DROP;
		overhead = outer6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
		if (fe->mode == UDPLB_MODE_GUE) {
			overhead += sizeof(struct udphdr);
			o.gue_port_be = fe->gue_port_be;
			o.proto = IPPROTO_UDP;
		} else {
			o.proto = p->ipv6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
		}
	}
	o.len = o.inner_len + overhead;

	fib.family = outer6 ? AF_INET6 : AF_INET;
	fib.l4_protocol = o.proto;
	fib.ifindex = ctx->ingress_ifindex;
	fib.tot_len = o.len; /* asks for the MTU verdict */
	if (o.gue_port_be) {
		fib.sport = gue_source_port(o.hash);
		fib.dport = o.gue_port_be;
	} else if (l2) {
		fib.sport = p->desc->src.port_be;
		fib.dport = p->desc->dst.port_be;
	}
	if (outer6) {
		__builtin_memcpy(fib.ipv6_src, o.src, 16);
		__builtin_memcpy(fib.ipv6_dst, o.dst, 16);
	} else {
		fib.tos = o.tc;
		fib.ipv4_src = o.src[0];
		fib.ipv4_dst = o.dst[0];
	}
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		*reason = UDPLB_REASON_DSR_TOO_BIG;
		/* mtu_result (Linux 5.12+) shares tot_len's place: read by
		 * the old name, which 5.10's BTF has (a CO-RE relocation of
		 * the new one fails to load there). */
		return answer_too_big(ctx, p, &o, fib.tot_len, overhead, bytes) ? XDP_TX : XDP_DROP;
	}
	/* Before Linux 6.3 (and its stable backports) a neighbour entry still
	 * being resolved is a success with an all-zero MAC. */
	if (rc == BPF_FIB_LKUP_RET_SUCCESS &&
	    !(*(__u32 *)fib.dmac | *(__u16 *)&fib.dmac[4]))
		rc = BPF_FIB_LKUP_RET_NO_NEIGH;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		note_neigh(&fib);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || (l2 && !on_link(&fib, outer6, backend)))
		return XDP_DROP;
	/* Only out of a device udplb is attached to (forward.h). */
	if (bpf_redirect_map(&tx_ports, fib.ifindex, XDP_PASS) != XDP_REDIRECT)
		return XDP_DROP;
	/* A partial checksum (a sender on this host, behind a veth with
	 * offload) would reach the backend as it is, and fail there: nothing
	 * on the way finishes it for a redirected frame. */
	if (p->udp->check && is_partial_csum(p) && complete_csum(ctx, p))
		return XDP_DROP;
	if (l2) {
		__builtin_memcpy(p->eth->h_dest, fib.dmac, ETH_ALEN);
		__builtin_memcpy(p->eth->h_source, fib.smac, ETH_ALEN);
		*reason = UDPLB_REASON_DSR_SENT;
		return XDP_REDIRECT;
	}
	if (o.gue_port_be && outer6) {
		/* Bytes after the datagram (its UDP length short of the IP
		 * payload's) would be outside the sum. */
		if (p->l4_off - p->l3_off + p->ulen != o.inner_len)
			return XDP_DROP;
		rc = inner_sum(ctx, p);
		if (rc < 0)
			return XDP_DROP;
		o.sum = rc;
	}
	__builtin_memcpy(o.dmac, fib.dmac, ETH_ALEN);
	__builtin_memcpy(o.smac, fib.smac, ETH_ALEN);
	/* The Ethernet header moves to the front; the outer headers take its
	 * place and what was before the inner IP header. p's pointers are
	 * stale from here. */
	if (bpf_xdp_adjust_head(ctx, -(int)overhead))
		return XDP_DROP;
	if (outer6 ? write_outer6(ctx, &o) : write_outer4(ctx, &o))
		return XDP_DROP;
	*reason = UDPLB_REASON_DSR_SENT;
	return XDP_REDIRECT;
}

#endif /* UDPLB_DSR_H */
