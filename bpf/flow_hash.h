/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * flow_hash.h - the hashes Maglev indexes its ring with (frontend_hash):
 * the flow's or, for a frontend with client_bits, its client's address
 * alone (client_hash). The flow hash is MurmurHash3
 * (x86_32) over the 32-bit words of source address, destination address and
 * the two ports, as they sit in the packet (read from its description,
 * parsing.h, which keeps them in network order as the headers do).
 * src/plan/flow_hash.rs holds the same functions; tests/maglev_datapath.rs
 * holds the flow hashes together, tests/client_affinity.rs the client's.
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

/* Keeps the first `bits` bits of an IPv6 address (network order words)
 * and zeroes the rest. */
static __always_inline void ipv6_prefix(__u32 *addr, __u32 bits)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 keep = bits > 32 * i ? bits - 32 * i : 0;

		if (keep == 0)
			addr[i] = 0;
		else if (keep < 32)
			addr[i] &= bpf_htonl(~0U << (32 - keep));
	}
}

/* The hash of a client's address alone (struct udplb_frontend.client_bits):
 * the same for every flow of the client. An IPv4 address whole, an IPv6
 * one cut to its first `bits` bits. */
static __always_inline __u32 client_hash(const struct udplb_endpoint *client, __u32 bits)
{
	__u32 h = UDPLB_HASH_SEED, a[4];

	if (client->family != UDPLB_FAMILY_IPV6)
		return murmur_final(murmur_round(h, client->addr_be[0]), 4);
	__builtin_memcpy(a, client->addr_be, sizeof(a));
	ipv6_prefix(a, bits);
#pragma unroll
	for (int i = 0; i < 4; i++)
		h = murmur_round(h, a[i]);
	return murmur_final(h, 16);
}

/* The hash frontend fe picks p's backend by: its flow's, or with
 * client_bits its client's (the source; with `reverse`, as in
 * flow_hash_dir, the destination). */
static __always_inline __u32 frontend_hash(const struct udplb_frontend *fe, struct udp_packet *p,
					   bool reverse)
{
	if (fe->client_bits)
		return client_hash(reverse ? &p->desc->dst : &p->desc->src, fe->client_bits);
	return flow_hash_dir(p, reverse);
}

#endif /* UDPLB_FLOW_HASH_H */
