/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * flow_hash.h - the flow hash Maglev indexes its ring with: MurmurHash3
 * (x86_32) over the 32-bit words of source address, destination address and
 * the two ports, as they sit in the packet (read from its description,
 * parsing.h, which keeps them in network order as the headers do).
 * src/plan/flow_hash.rs is the same function; tests/maglev_datapath.rs
 * holds the two together.
 */
#ifndef UDPLB_FLOW_HASH_H
#define UDPLB_FLOW_HASH_H

#include "vmlinux.h"
#include "udplb.h"
#include "parsing.h"

static __always_inline __u32 rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 murmur_round(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 murmur_final(__u32 h, __u32 len)
{
	h ^= len;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	return h ^ (h >> 16);
}

/* The hash of p's flow; `reverse` hashes the flow p answers (source and
 * destination swapped): a reply quoted in an ICMP error hashes as the
 * requests of its flow did. */
static __always_inline __u32 flow_hash_dir(struct udp_packet *p, bool reverse)
{
	const struct udplb_endpoint *s = reverse ? &p->desc->dst : &p->desc->src;
	const struct udplb_endpoint *d = reverse ? &p->desc->src : &p->desc->dst;
	__u32 h = UDPLB_HASH_SEED, ports;

	ports = (__u32)s->port_be | ((__u32)d->port_be << 16);
	if (p->ipv6) {
#pragma unroll
		for (int i = 0; i < 4; i++)
			h = murmur_round(h, s->addr_be[i]);
#pragma unroll
		for (int i = 0; i < 4; i++)
			h = murmur_round(h, d->addr_be[i]);
		return murmur_final(murmur_round(h, ports), 36);
	}
	h = murmur_round(h, s->addr_be[0]);
	h = murmur_round(h, d->addr_be[0]);
	return murmur_final(murmur_round(h, ports), 12);
}

static __always_inline __u32 flow_hash(struct udp_packet *p)
{
	return flow_hash_dir(p, false);
}

#endif /* UDPLB_FLOW_HASH_H */
