/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * csum.h - incremental Internet checksum updates (RFC 1624, eqn. 3).
 *
 *     HC' = ~(~HC + ~m + m')
 *
 * One's-complement sums do not depend on byte order, so the 16-bit words are
 * used exactly as they sit in the packet (network order); no swaps.
 */
#ifndef UDPLB_CSUM_H
#define UDPLB_CSUM_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* Fold a 32-bit one's-complement accumulator to 16 bits. Two folds always
 * suffice for a sum of up to 65537 16-bit words. */
static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Checksum after one 16-bit word of the covered data changes from old to new. */
static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u32)(__u16)~old + new;

	return (__u16)~csum_fold32(sum);
}

/*
 * Update a UDP checksum for a 16-bit word change in the header or the
 * pseudo-header. For IPv4 a checksum of 0 means "none" and stays 0; IPv6 has
 * no such value and is always updated. A computed 0 is sent as 0xFFFF
 * (RFC 768), which the receiver reads as the same one's-complement zero.
 */
static __always_inline void udp_csum_replace16(struct udphdr *udp, __u16 old, __u16 new,
					       bool ipv6)
{
	__u16 check = udp->check;

	if (!ipv6 && check == 0)
		return;
	check = csum_replace16(check, old, new);
	udp->check = check ? check : 0xffff;
}

#endif /* UDPLB_CSUM_H */
