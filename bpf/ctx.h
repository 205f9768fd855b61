/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ctx.h - one view of the packet for both hooks (after Cilium's __ctx_buff).
 *
 * Contract: the datapath code that rewrites a packet (rewrite.h) is written
 * once against these primitives and takes the hook as an argument:
 *   ctx_data / ctx_data_end     the packet bytes, for direct access;
 *   struct l4_csum              the UDP checksum while fields change:
 *     ctx_l4_csum_begin         before anything is written;
 *     ctx_l3_csum_replace4      an IPv4 address in the IP header checksum;
 *     ctx_l4_csum_replace_addr  an address (pseudo-header) in the UDP checksum;
 *     ctx_l4_csum_replace16     a port (covered data) in the UDP checksum;
 *     ctx_l4_csum_end           after the last change.
 * What each hook does:
 *   XDP (struct xdp_md): RFC 1624 incremental updates written straight into
 *     the packet (csum.h). An IPv4 UDP checksum of 0 stays 0, a computed 0
 *     is written 0xFFFF, IPv6 is always updated. XDP cannot see a partial
 *     (CHECKSUM_PARTIAL) checksum; on request, begin recognises one by its
 *     value (csum.h, is_partial_csum), leaves it alone and says so, and the
 *     caller finishes it (forward.h).
 *   TC (struct __sk_buff): bpf_l3_csum_replace / bpf_l4_csum_replace, which
 *     know the skb's checksum state and so keep CHECKSUM_PARTIAL packets
 *     (checksum offload) right: BPF_F_PSEUDO_HDR for addresses,
 *     BPF_F_MARK_MANGLED_0 so that an IPv4 checksum of 0 stays 0 and a
 *     computed 0 becomes 0xFFFF, BPF_F_MARK_ENFORCE for IPv6 (always update).
 *     These helpers invalidate every packet pointer the program holds: the
 *     caller writes the packet first and reads nothing after the checksum
 *     calls.
 *
 * Why a hook argument and not a ctx type macro compiled twice: both programs
 * live in one object (they share the maps), so a macro would mean including
 * the rewrite twice under two names. Every primitive is __always_inline and
 * every call site passes a constant hook, so clang deletes the other hook's
 * branch at -O2: each program carries only its own helpers, with no
 * per-packet test. If a branch ever survived, the verifier would refuse the
 * program at load (bpf_l4_csum_replace is not an XDP helper): a mistake
 * fails loudly, never silently.
 */
#ifndef UDPLB_CTX_H
#define UDPLB_CTX_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "csum.h"
#include "parsing.h"

enum udplb_hook {
	UDPLB_HOOK_XDP, /* ctx is a struct xdp_md */
	UDPLB_HOOK_TC,  /* ctx is a struct __sk_buff */
};

static __always_inline void *ctx_data(void *ctx, enum udplb_hook hook)
{
	if (hook == UDPLB_HOOK_TC)
		return (void *)(long)((struct __sk_buff *)ctx)->data;
	return (void *)(long)((struct xdp_md *)ctx)->data;
}

static __always_inline void *ctx_data_end(void *ctx, enum udplb_hook hook)
{
	if (hook == UDPLB_HOOK_TC)
		return (void *)(long)((struct __sk_buff *)ctx)->data_end;
	return (void *)(long)((struct xdp_md *)ctx)->data_end;
}

/* The UDP checksum of one packet while its fields change. */
struct l4_csum {
	struct udp_packet *p;
	/* XDP: the running value, and whether it is updated at all. */
	__u16 check;
	bool update;
	/* TC: offsets from the packet start, and bpf_l4_csum_replace flags. */
	__u32 ip_check_off;
	__u32 udp_check_off;
	__u64 flags;
};

/*
 * Starts a checksum update of p. With detect_partial (XDP only; TC needs
 * no guess), returns true if the UDP checksum is a partial (pseudo-header)
 * sum, which is then left for the caller to finish.
 */
static __always_inline bool ctx_l4_csum_begin(void *ctx, enum udplb_hook hook,
					      struct udp_packet *p, bool detect_partial,
					      struct l4_csum *cs)
{
	bool partial = false;

	cs->p = p;
	if (hook == UDPLB_HOOK_TC) {
		cs->udp_check_off = p->l4_off + offsetof(struct udphdr, check);
		cs->ip_check_off = p->l3_off + offsetof(struct iphdr, check);
		cs->flags = BPF_F_MARK_MANGLED_0;
		if (p->ipv6)
			cs->flags |= BPF_F_MARK_ENFORCE;
		return false;
	}
	cs->check = p->udp->check;
	cs->update = p->ipv6 || cs->check != 0;
	if (detect_partial && cs->update)
		partial = is_partial_csum(p);
	cs->update = cs->update && !partial;
	return partial;
}

/* The IPv4 header checksum for a 4-byte address change. */
static __always_inline int ctx_l3_csum_replace4(void *ctx, enum udplb_hook hook,
						struct l4_csum *cs, __be32 from, __be32 to)
{
	struct iphdr *ip;

	if (hook == UDPLB_HOOK_TC)
		return bpf_l3_csum_replace(ctx, cs->ip_check_off, from, to, sizeof(to));
	ip = cs->p->l3;
	ip->check = csum_update(ip->check, &from, &to, sizeof(to));
	return 0;
}

/* The UDP checksum for an address change (pseudo-header): `words` 32-bit
 * words, 1 (IPv4) or 4 (IPv6). */
static __always_inline int ctx_l4_csum_replace_addr(void *ctx, enum udplb_hook hook,
						    struct l4_csum *cs, __be32 *from,
						    const __be32 *to, int words)
{
	if (hook == UDPLB_HOOK_TC) {
		/* i < 4: the bound the verifier needs (words is at most 4). */
		for (int i = 0; i < 4 && i < words; i++)
			if (bpf_l4_csum_replace(ctx, cs->udp_check_off, from[i], to[i],
						cs->flags | BPF_F_PSEUDO_HDR | sizeof(__be32)))
				return -1;
		return 0;
	}
	if (cs->update)
		cs->check = csum_update(cs->check, from, (__be32 *)to, words * sizeof(__be32));
	return 0;
}

/* The UDP checksum for a port change. */
static __always_inline int ctx_l4_csum_replace16(void *ctx, enum udplb_hook hook,
						 struct l4_csum *cs, __be16 from, __be16 to)
{
	if (hook == UDPLB_HOOK_TC)
		return bpf_l4_csum_replace(ctx, cs->udp_check_off, from, to,
					   cs->flags | sizeof(__be16));
	if (cs->update)
		cs->check = csum_replace16(cs->check, from, to);
	return 0;
}

/* Stores the new UDP checksum (XDP; TC's helpers already did). */
static __always_inline void ctx_l4_csum_end(void *ctx, enum udplb_hook hook, struct l4_csum *cs)
{
	if (hook == UDPLB_HOOK_XDP && cs->update)
		cs->p->udp->check = cs->check ? cs->check : 0xffff;
}

#endif /* UDPLB_CTX_H */
