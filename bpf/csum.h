/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * csum.h - Internet checksum arithmetic for the XDP side of the rewrite.
 *
 * Contract: pure functions on values (nothing here writes to the packet).
 * Incremental updates follow RFC 1624, eqn. 3:
 *
 *     HC' = ~(~HC + ~m + m')
 *
 * One's-complement sums do not depend on byte order, so the 16-bit words are
 * used exactly as they sit in the packet (network order); no swaps. The
 * pseudo-header sum (RFC 768, RFC 8200 8.1) is what tells a partial
 * (CHECKSUM_PARTIAL) UDP checksum from a full one, which XDP cannot see
 * otherwise (ctx.h, forward.h).
 */
#ifndef UDPLB_CSUM_H
#define UDPLB_CSUM_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parsing.h"

/* Fold a 32-bit one's-complement accumulator to 16 bits. Two folds always
 * suffice for a sum of up to 65537 16-bit words. */
static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* 32-bit one's-complement addition. */
static __always_inline __u32 csum_add32(__u32 a, __u32 b)
{
	__u32 s = a + b;

	return s + (s < a);
}

/* Checksum after one 16-bit word of the covered data changes from old to new. */
static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u32)(__u16)~old + new;

	return (__u16)~csum_fold32(sum);
}

/* One's-complement sum of n 32-bit words added to sum (unfolded). Inline
 * arithmetic, not bpf_csum_diff: on kernels with return-thunk mitigations a
 * helper call costs more than the rest of a balanced packet's rewrite. */
static __always_inline __u32 csum_add_words(__u32 sum, const __be32 *w, int n)
{
	for (int i = 0; i < n; i++)
		sum = csum_add32(sum, w[i]);
	return sum;
}

/* Checksum after `size` bytes (4 or 16) of covered data change from `from`
 * to `to`: RFC 1624 on 32-bit words, which fold to the same 16-bit sum. */
static __always_inline __u16 csum_update(__u16 check, __be32 *from, __be32 *to, __u32 size)
{
	__u32 sum = (__u16)~check;

	/* i < 4: the bound the verifier needs (size is at most 16). */
	for (int i = 0; i < 4 && i < size / 4; i++) {
		sum = csum_add32(sum, ~from[i]);
		sum = csum_add32(sum, to[i]);
	}
	return (__u16)~csum_fold32(sum);
}

struct pseudo_hdr4 {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

struct pseudo_hdr6 {
	__u32 saddr[4];
	__u32 daddr[4];
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
};

/* Unfolded sum of the packet's UDP pseudo-header, from its description
 * (parsing.h: the addresses as they stand, rewritten or not). Its length is
 * the datagram's (p->ulen: udp.len, or for an IPv6 udp.len of 0 the length
 * the IP header gives). */
static __always_inline __u32 pseudo_sum(struct udp_packet *p)
{
	if (p->ipv6) {
		struct pseudo_hdr6 ph = {};

		__builtin_memcpy(ph.saddr, p->desc->src.addr_be, 16);
		__builtin_memcpy(ph.daddr, p->desc->dst.addr_be, 16);
		ph.len = bpf_htonl(p->ulen);
		ph.nexthdr = IPPROTO_UDP;
		return csum_add_words(0, (__be32 *)&ph, sizeof(ph) / 4);
	}
	struct pseudo_hdr4 ph = {
		.saddr = p->desc->src.addr_be[0],
		.daddr = p->desc->dst.addr_be[0],
		.proto = IPPROTO_UDP,
		.len = bpf_htons(p->ulen),
	};

	return csum_add_words(0, (__be32 *)&ph, sizeof(ph) / 4);
}

/*
 * Whether the UDP checksum field holds only the pseudo-header sum: a
 * checksum the sender's stack left for the device to finish
 * (CHECKSUM_PARTIAL). A full checksum equal to its pseudo-header sum (1 in
 * 65536) is taken for a partial one; forward.h says what that costs.
 */
static __always_inline bool is_partial_csum(struct udp_packet *p)
{
	return p->udp->check == csum_fold32(pseudo_sum(p));
}

#endif /* UDPLB_CSUM_H */
