/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bench_nic.bpf.c - the NIC-speed section of `make bench` (tests/bench/nic.rs).
 * Not part of udplb: three small programs that stand in for the hardware a
 * balancer runs on. build.rs compiles this file into bench_nic.skel.rs, which
 * only the bench includes.
 *
 * - bench_gen: a traffic source. Run with BPF_PROG_RUN and
 *   BPF_F_TEST_XDP_LIVE_FRAMES on the client's veth, it returns XDP_TX, so
 *   each frame reaches the peer veth as an xdp_frame in a page with XDP
 *   headroom: what a NIC driver gives XDP. The test run recycles its pages
 *   with whatever the receivers wrote into them (udplb rewrites ports and
 *   addresses, the kernel decrements the TTL), so every run writes the whole
 *   frame again from gen_frames, flow after flow. The frames are built and
 *   checksummed by the bench (etherparse) and kept in .bss: a writable
 *   section, because clang folds a `volatile const` array read through a
 *   cast to its zero initializer.
 * - bench_sink: XDP_DROP, counting, on the backend host's veth.
 * - bench_fwd: a bare forwarder, the XDP limit of a remote balancer:
 *   bpf_fib_lookup, TTL decrement, Ethernet addresses, XDP_REDIRECT through
 *   a DEVMAP_HASH (as udplb's forward.h does, without NAT), in the shape of
 *   the kernel's xdp_fwd sample (samples/bpf in the kernel's tree). Packets it cannot forward go to
 *   the kernel.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define ETH_P_IP 0x0800
#define ETH_ALEN 6

/* The generator's frames: at most GEN_MAX_FLOWS, each GEN_FRAME_LEN bytes
 * (Ethernet + IPv4 + UDP + 64 bytes of payload) stored in a slot of
 * GEN_SLOT bytes. tests/bench/nic_progs.rs holds the same numbers. */
#define GEN_MAX_FLOWS 256
#define GEN_FRAME_LEN 106
#define GEN_SLOT 112

struct gen_frame {
	__u64 words[GEN_SLOT / 8];
};

/* Written by the bench after load, before the first run. */
struct gen_frame gen_frames[GEN_MAX_FLOWS];
/* Frames in use (1..GEN_MAX_FLOWS). */
__u32 gen_flows;
/* The frame the next run writes. */
__u32 gen_next;

/* Per-CPU counters, summed by the bench. */
enum {
	BENCH_SINK_DROPPED = 0,
	BENCH_FWD_REDIRECTED = 1,
	BENCH_FWD_PASSED = 2,
	BENCH_COUNTERS = 3,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BENCH_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} bench_counters SEC(".maps");

/* The forwarder's egress interfaces, keyed by ifindex (value: the same). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} bench_tx_ports SEC(".maps");

static __always_inline void count(__u32 index)
{
	__u64 *c = bpf_map_lookup_elem(&bench_counters, &index);

	if (c)
		*c += 1;
}

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 i = gen_next, next = i + 1;
	__u64 *dst = data;
	struct gen_frame *f;

	if (data + GEN_FRAME_LEN > data_end)
		return XDP_ABORTED;
	if (i >= GEN_MAX_FLOWS)
		i = 0;
	gen_next = next < gen_flows ? next : 0;
	f = &gen_frames[i];
	/* 13 words and a half: the 106 bytes of the frame. */
#pragma unroll
	for (int k = 0; k < GEN_FRAME_LEN / 8; k++)
		dst[k] = f->words[k];
	*(__u16 *)(data + GEN_FRAME_LEN - 2) = (__u16)f->words[GEN_FRAME_LEN / 8];
	return XDP_TX;
}

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
	count(BENCH_SINK_DROPPED);
	return XDP_DROP;
}

SEC("xdp")
int bench_fwd(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct bpf_fib_lookup fib = {};
	__u32 check;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ttl <= 1)
		goto pass;
	fib.family = AF_INET;
	fib.tos = ip->tos;
	fib.l4_protocol = ip->protocol;
	fib.tot_len = bpf_ntohs(ip->tot_len);
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	fib.ifindex = ctx->ingress_ifindex;
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		goto pass;
	if (!bpf_map_lookup_elem(&bench_tx_ports, &fib.ifindex))
		goto pass;
	/* ip_decrease_ttl: the TTL is the high byte of its checksum word. */
	check = ip->check;
	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xFFFF));
	ip->ttl--;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	count(BENCH_FWD_REDIRECTED);
	return bpf_redirect_map(&bench_tx_ports, fib.ifindex, 0);
pass:
	count(BENCH_FWD_PASSED);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
