/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * counters.h - the per-CPU counters the datapath moves (maps.h, flows.h
 * and quic.h define them; userspace sums them over every possible CPU).
 *
 * Contract: XDP moves exactly one reason counter per packet, at its single
 * exit point (record_reason), and at most one packet/byte counter (a backend
 * for a request, a frontend's replies for a reply) once the packet is known
 * to be rewritten, plus the passive signal of the backend a reply came
 * from or an ICMP error was about. TC egress moves exactly one egress
 * verdict counter per packet, at its single exit point (record_egress),
 * the reply and passive counters of a reply it rewrote, and the passive
 * counter of a destination-unreachable error this host sent about a
 * backend (not of the errors it translates as the kernel forwards them:
 * XDP counted those).
 */
#ifndef UDPLB_COUNTERS_H
#define UDPLB_COUNTERS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "udplb.h"
#include "maps.h"

/* One packet of `bytes` for entry `key` of backend_counters or reply_counters. */
static __always_inline void count(void *map, __u32 key, __u64 bytes)
{
	struct udplb_counter *c = bpf_map_lookup_elem(map, &key);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* A passive signal of backend `slot`: an ICMP error about a datagram sent
 * to it (error = true) or a reply seen from it. */
static __always_inline void count_passive(__u32 slot, bool error)
{
	struct udplb_passive *c = bpf_map_lookup_elem(&passive_counters, &slot);

	if (!c)
		return;
	if (error)
		c->icmp_errors++;
	else
		c->replies++;
}

/* One more event `i` in a per-CPU array of u64 event counters (reasons,
 * flow table and QUIC events). */
static __always_inline void count_event(void *map, __u32 i)
{
	__u64 *n = bpf_map_lookup_elem(map, &i);

	if (n)
		(*n)++;
}

static __always_inline void record_reason(__u32 reason)
{
	count_event(&reason_counters, reason);
}

static __always_inline void record_egress(__u32 verdict)
{
	count_event(&egress_counters, verdict);
}

#endif /* UDPLB_COUNTERS_H */
