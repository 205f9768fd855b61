// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * udplb.bpf.c - the entry points of the datapath. Helpers live in headers by
 * concern: parsing.h, csum.h, ctx.h (the XDP/TC shim), maps.h, lookup.h,
 * flow_hash.h, flows.h (the flow table), quic.h (QUIC-LB), rewrite.h,
 * forward.h, dsr.h (direct server return), icmp.h (ICMP errors), frags.h
 * (fragmented replies), counters.h.
 *
 * udplb_xdp (XDP, ingress). Parse Ethernet/VLAN/IP/UDP, then
 *   - destination is a frontend -> pick a backend (round robin, Maglev, or
 *     the server ID in a QUIC connection ID with Maglev as fallback) and
 *     rewrite the destination to it: a local backend (a port on this
 *     host) gets XDP_PASS, the kernel delivers it; a remote backend gets its
 *     address and port, and the frame is forwarded (forward.h: XDP_REDIRECT,
 *     or XDP_PASS to let the kernel route it);
 *   - source is a backend -> a reply (stateless): rewrite the source back to
 *     the frontend; a local backend's reply (seen here on lo) is passed, a
 *     remote backend's reply is forwarded like a request, or, where the
 *     lookup cannot finish, handed to the kernel as it came, for
 *     udplb_egress to translate as the kernel sends it on;
 *     A frontend in a DSR mode (ipip, gue, l2) sends the request to its
 *     remote backend as the client sent it, encapsulated or with the
 *     backend's MAC (dsr.h), and never sees the reply;
 *   - anything else -> XDP_PASS, untouched.
 *   Refused and dropped, as only a spoofer or a loop makes them: a
 *   backend's datagram to a frontend, a remote backend's reply (or a later
 *   fragment of one) arriving where the route to that backend does not
 *   lead (forward.h). A remote backend's datagram to this host (a reply to
 *   udplb's own probe) passes as it came (reply_to_local).
 *   First fragments are rewritten for local backends; of a request for a
 *   remote backend they pass untouched, counted fragment (the later
 *   fragments could not follow). A remote backend's fragmented reply is translated whole: its
 *   first fragment as a reply, its later fragments by what the first one
 *   left in reply_frags (frags.h). Other later fragments pass. Every
 *   packet moves exactly one reason counter, at the single exit point.
 *
 * udplb_egress (TC egress). On every interface but lo, replies from sockets
 * on this host leave through egress, where XDP cannot see them: the same
 * rewrite of the source back to the frontend (address too, if the
 * frontend has one), with the skb checksum helpers. So do the remote
 * backends' replies that XDP could not send on itself and handed to the
 * kernel as they came (egress_forwarded): the kernel resolves the client's
 * neighbour, fragments, or answers the backend with ICMP as any router
 * would, and egress translates what it sends on. Every packet it sees
 * moves exactly one egress verdict counter.
 *
 * ICMP errors about balanced datagrams (icmp.h) are translated in both
 * programs: toward the client (XDP on lo and on the interfaces where a
 * remote backend's errors arrive, but for IPv4 errors of a frontend with
 * an address; egress for the errors this host sends and, as the kernel
 * forwards them, for those IPv4 errors, which XDP checked and passed as
 * they came),
 * and a packet-too-big for a frontend on to the backend that answered the
 * flow, as a live pin of the flow table says, or with no pin to a local
 * backend, the ring's for the flow (XDP; else dropped).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "udplb.h"
#include "parsing.h"
#include "maps.h"
#include "lookup.h"
#include "rewrite.h"
#include "forward.h"
#include "counters.h"
#include "icmp.h"
#include "flows.h"
#include "quic.h"
#include "frags.h"
#include "dsr.h"

/* Loopback is ifindex 1 in every network namespace. */
#define LOOPBACK_IFINDEX 1

/* A packet in udplb_xdp, and what the steps decided about it. */
struct xdp_packet {
	struct udp_packet p;
	__u64 bytes;
	bool on_lo;
	int reason; /* the one reason counter it moves (enum udplb_reason) */
};

/* What an undo of a remote backend's reply puts back: its source, and the
 * checksums as they came. */
struct reply_undo {
	struct udplb_endpoint backend;
	__u16 udp_check;
	__u16 ip_check;
};

/* An ICMP error about a balanced datagram (icmp.h). */
static __always_inline int translate_icmp(struct xdp_md *ctx, struct hdr_cursor *cur,
					  void *data_end, struct xdp_packet *x)
{
	x->reason = icmp_translate(cur, data_end, &x->p, x->on_lo, ctx);
	if (x->reason == UDPLB_REASON_SPOOFED_REPLY || x->reason == UDPLB_REASON_ICMP_NO_FLOW)
		return XDP_DROP;
	return XDP_PASS;
}

/* A later fragment (no UDP header): of a remote backend's reply whose first
 * fragment went out translated (frags.h)? Then translated and forwarded as
 * that reply was, if it came from the backends' side (else dropped as a
 * spoofed reply); a fragment of no such reply passes. */
static __always_inline int forward_reply_fragment(struct xdp_md *ctx, struct xdp_packet *x)
{
	struct udplb_reply_target reply;
	__u32 backend_addr[4], frontend_addr[4];
	bool foreign = false;
	int action;

	if (!frag_lookup(&x->p, &reply))
		return XDP_PASS;
	if (!arrived_from_backend_side(ctx, &x->p)) {
		x->reason = UDPLB_REASON_SPOOFED_REPLY;
		return XDP_DROP;
	}
	frag_set_source(&x->p, reply.frontend.addr_be, backend_addr);
	action = forward(ctx, &x->p, false, true, &x->reason, &foreign);
	if (action != XDP_REDIRECT && !foreign) {
		/* To the kernel as it came, as a whole reply is (send_remote). */
		frag_set_source(&x->p, backend_addr, frontend_addr);
		return action;
	}
	count(&reply_counters, reply.frontend_id, x->bytes);
	count_passive(reply.backend_slot, false);
	return action;
}

/*
 * A request to frontend fe: its backend picked. A local one gets it here
 * (rewritten, XDP_PASS); a remote one is returned, its slot in *slot_out,
 * for send_remote or send_dsr.
 * Otherwise NULL, with *action and x->reason saying what became of it.
 */
static __always_inline const struct udplb_endpoint *
request_backend(struct xdp_md *ctx, struct xdp_packet *x, void *data_end,
		struct udplb_frontend *fe, int *action, __u32 *slot_out)
{
	struct udplb_reply_target reply;
	struct udplb_backend *be;
	long picked;
	__u32 slot;

	*action = XDP_PASS;
	/* From a backend to a frontend: a reply sent back in, or a spoof
	 * meant to start a loop through the balancer and its backends
	 * (each pass gets a fresh TTL). No client sends from a backend. */
	if (lookup_reply(&x->p, true, x->on_lo, &reply)) {
		x->reason = UDPLB_REASON_BACKEND_TO_FRONTEND;
		*action = XDP_DROP;
		return NULL;
	}
	/* A connection ID route needs no pin: the CID names the backend
	 * whatever the client's address. */
	picked = fe->sched == UDPLB_SCHED_QUIC ? quic_pick_slot(fe, &x->p, data_end) : -1;
	if (picked < 0)
		picked = flow_pick_slot(fe, &x->p);
	slot = picked;
	be = picked < 0 ? NULL : bpf_map_lookup_elem(&backends, &slot);
	/* A DSR frontend's address is the backends', maybe not this host's:
	 * what it cannot send is dropped, not handed to the kernel (dsr.h). */
	if (fe->mode != UDPLB_MODE_NAT && (!be || x->p.first_fragment))
		*action = XDP_DROP;
	if (!be) {
		x->reason = UDPLB_REASON_NO_BACKEND;
		return NULL;
	}
	if (endpoint_is_local(&be->ep)) {
		rewrite_endpoint(ctx, UDPLB_HOOK_XDP, &x->p, false, &be->ep, false);
		count(&backend_counters, slot, x->bytes);
		x->reason = UDPLB_REASON_BALANCED;
		return NULL;
	}
	if (x->p.first_fragment) {
		/* Later fragments carry no ports to rewrite: the kernel
		 * gets the datagram whole or not at all. */
		x->reason = UDPLB_REASON_FRAGMENT;
		return NULL;
	}
	/* A DSR request is counted once sent (balance_datagram): what
	 * cannot be sent is dropped. */
	if (fe->mode == UDPLB_MODE_NAT)
		count(&backend_counters, slot, x->bytes);
	*slot_out = slot;
	return &be->ep;
}

/*
 * A reply from a backend (its target in *rt): a local backend's (on lo) is
 * rewritten here and passed; a remote backend's, if it came from that
 * backend's side, is returned for send_remote with what an undo needs in
 * *undo. Otherwise NULL, with *action and x->reason saying what became of it.
 */
static __always_inline const struct udplb_endpoint *
reply_frontend(struct xdp_md *ctx, struct xdp_packet *x, struct udplb_reply_target *rt,
	       struct reply_undo *undo, int *action)
{
	*action = XDP_PASS;
	if (endpoint_is_local(&rt->frontend)) {
		/* A local backend's reply comes from a socket of this host:
		 * XDP sees it only on lo (elsewhere it leaves through
		 * egress). On another interface its source, this host's own
		 * address (an exact-address frontend's), is forged: it would
		 * pin a flow of the spoofer's choosing. */
		if (!x->on_lo) {
			x->reason = UDPLB_REASON_SPOOFED_REPLY;
			*action = XDP_DROP;
			return NULL;
		}
		flow_learn(&x->p, rt);
		rewrite_endpoint(ctx, UDPLB_HOOK_XDP, &x->p, true, &rt->frontend, false);
		count(&reply_counters, rt->frontend_id, x->bytes);
		count_passive(rt->backend_slot, false);
		x->reason = UDPLB_REASON_REPLY;
		return NULL;
	}
	/* A remote backend's reply comes in where the route to that
	 * backend goes out; anything else carries a forged source and
	 * would leave with the frontend's. */
	if (!arrived_from_backend_side(ctx, &x->p)) {
		x->reason = UDPLB_REASON_SPOOFED_REPLY;
		*action = XDP_DROP;
		return NULL;
	}
	endpoint_of(&x->p, true, false, &undo->backend);
	undo->udp_check = x->p.udp->check;
	if (!x->p.ipv6)
		undo->ip_check = ((struct iphdr *)x->p.l3)->check;
	return &rt->frontend;
}

/*
 * A datagram for another host, in either direction: a request gets `to` (a
 * remote backend) as its destination, a reply (is_reply) from a remote
 * backend gets `to` (its frontend, *rt) as its source; then forward.h sends
 * it on. One place for both, so that the rewrite and forward() are inlined
 * once.
 */
static __always_inline int send_remote(struct xdp_md *ctx, struct xdp_packet *x,
				       const struct udplb_endpoint *to, bool is_reply,
				       struct udplb_reply_target *rt, struct reply_undo *undo)
{
	bool foreign = false;
	int rewritten, action;

	rewritten = rewrite_endpoint(ctx, UDPLB_HOOK_XDP, &x->p, is_reply, to, true);
	action = forward(ctx, &x->p, rewritten == REWRITE_PARTIAL, is_reply, &x->reason, &foreign);
	if (!is_reply)
		return action;
	if (action != XDP_REDIRECT && !foreign) {
		/* A reply XDP does not send itself goes to the kernel as the
		 * backend sent it: its source, and the checksums as they came
		 * (exact, partial or not). Addressed to this host
		 * (reply_to_local), the kernel delivers it from the backend.
		 * Else the kernel routes it (resolving the neighbour, sending
		 * the backend its ICMP errors) and udplb_egress translates it
		 * as it leaves. Translated here, it would come in with this
		 * host's own address as its source, which IPv4 drops as a
		 * martian unless accept_local is on. Only a reply routed out of
		 * a device udplb does not run on (foreign: no egress program
		 * there) still goes to the kernel translated, as it always did:
		 * as it came, it would leave from the backend's address. */
		rewrite_endpoint(ctx, UDPLB_HOOK_XDP, &x->p, true, &undo->backend, false);
		x->p.udp->check = undo->udp_check;
		if (!x->p.ipv6)
			((struct iphdr *)x->p.l3)->check = undo->ip_check;
		return action;
	}
	/* Sent on, or handed over translated (foreign). */
	flow_learn(&x->p, rt);
	count(&reply_counters, rt->frontend_id, x->bytes);
	count_passive(rt->backend_slot, false);
	/* A first fragment sent on: its later fragments, which carry no
	 * ports, will be known by it (frags.h). */
	if (x->p.first_fragment)
		frag_remember(&x->p, &undo->backend, rt);
	return action;
}

/*
 * A whole UDP datagram (or a first fragment): a request to a frontend, a
 * reply from a backend, or neither (passed untouched, no_frontend).
 */
static __always_inline int balance_datagram(struct xdp_md *ctx, struct xdp_packet *x,
					    void *data_end)
{
	struct udplb_reply_target reply;
	const struct udplb_endpoint *to;
	struct udplb_frontend *fe;
	struct reply_undo undo;
	bool is_reply;
	__u32 slot = 0;
	int action;

	fe = lookup_frontend(&x->p, false);
	is_reply = !fe;
	if (fe) {
		to = request_backend(ctx, x, data_end, fe, &action, &slot);
		/* Direct server return: the request goes as it came. */
		if (to && fe->mode != UDPLB_MODE_NAT) {
			action = send_dsr(ctx, &x->p, fe, to, x->bytes, &x->reason);
			if (action == XDP_REDIRECT)
				count(&backend_counters, slot, x->bytes);
			return action;
		}
	} else {
		/* Local backends of port-only frontends are keyed by port
		 * alone, matched only on lo (elsewhere their replies leave
		 * through egress): matching a bare source port on a
		 * wire-facing interface would rewrite strangers. Remote
		 * backends are keyed by address and port on every interface;
		 * so are local backends of exact-address frontends (that
		 * address), whose replies reply_frontend refuses off lo. */
		if (!lookup_reply(&x->p, true, x->on_lo, &reply)) {
			x->reason = UDPLB_REASON_NO_FRONTEND;
			return XDP_PASS;
		}
		to = reply_frontend(ctx, x, &reply, &undo, &action);
	}
	if (!to)
		return action;
	return send_remote(ctx, x, to, is_reply, &reply, &undo);
}

SEC("xdp")
int udplb_xdp(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct hdr_cursor cur = { .pos = (void *)(long)ctx->data };
	struct packet_desc desc; /* x.p's (parsing.h) */
	struct xdp_packet x = {
		.bytes = data_end - cur.pos,
		/* Read once: clang may otherwise keep a pointer into ctx,
		 * which the verifier refuses to dereference. */
		.on_lo = ctx->ingress_ifindex == LOOPBACK_IFINDEX,
	};
	int action = XDP_PASS;

	x.reason = parse_udp_packet(&cur, data_end, &x.p, &desc, x.bytes);
	if (x.reason == PARSE_ICMP)
		/* Only ICMP pays for this: the UDP path does not. */
		action = translate_icmp(ctx, &cur, data_end, &x);
	else if (x.reason == UDPLB_REASON_FRAGMENT)
		action = forward_reply_fragment(ctx, &x);
	else if (x.reason == PARSE_OK)
		action = balance_datagram(ctx, &x, data_end);
	/* Every packet moves exactly one reason counter, here. */
	record_reason(x.reason);
	return action;
}

/* "No opinion": tcx runs the next program on the interface, clsact its
 * default action. TC_ACT_OK would end the chain for programs after ours. */
#define TC_ACT_UNSPEC -1
/* Enough to reach the UDP header behind two VLAN tags and IPv4 options
 * (the IPv6 header and a Fragment header are shorter). */
#define TC_HEADROOM (14 + 2 * 4 + 60 + 8)
/* The same for an ICMP error: outer IP (options too), ICMP header, the
 * quoted IP header (with options) and UDP header. */
#define TC_ICMP_HEADROOM (14 + 2 * 4 + 60 + 8 + 60 + 8)

/*
 * A remote backend's reply that the kernel forwards (no socket): one that
 * udplb_xdp handed over as the backend sent it (its client's neighbour not
 * resolved yet, too big for the route, its TTL expiring, VLAN-tagged), or
 * one that came in where no XDP program runs. Translated as XDP translates
 * it, after the same checks (the replies map by address and port, the
 * reverse-path check against the interface it came in on); a fragmented
 * one as frags.h says, whether the backend or this host fragmented it.
 * Anything else forwarded is left alone. Returns the egress verdict.
 */
static __always_inline int egress_forwarded(struct __sk_buff *skb, struct udp_packet *p,
					    int parsed)
{
	struct udplb_reply_target reply;
	struct udplb_endpoint backend;
	__u32 len = skb->len, old[4];

	if (parsed == UDPLB_REASON_FRAGMENT) {
		if (!frag_lookup(p, &reply) || !from_backend_side(skb, skb->ingress_ifindex, p, false))
			return UDPLB_EGRESS_UNTOUCHED;
		frag_set_source(p, reply.frontend.addr_be, old);
	} else {
		if (parsed != PARSE_OK || !lookup_reply(p, true, false, &reply) ||
		    endpoint_is_local(&reply.frontend) ||
		    !from_backend_side(skb, skb->ingress_ifindex, p, false))
			return UDPLB_EGRESS_UNTOUCHED;
		if (p->first_fragment) {
			endpoint_of(p, true, false, &backend);
			frag_remember(p, &backend, &reply);
		}
		flow_learn(p, &reply);
		if (rewrite_endpoint(skb, UDPLB_HOOK_TC, p, true, &reply.frontend, false) != REWRITE_OK)
			return UDPLB_EGRESS_REWRITE_FAILED;
	}
	count(&reply_counters, reply.frontend_id, len);
	count_passive(reply.backend_slot, false);
	return UDPLB_EGRESS_REPLY_FORWARDED;
}

/* What udplb_egress does with a packet; returns the egress verdict. */
static __always_inline int egress(struct __sk_buff *skb)
{
	struct udplb_reply_target reply, *rt;
	struct udp_packet p = {};
	struct packet_desc desc; /* p's (parsing.h) */
	struct hdr_cursor cur;
	__u32 want, len = skb->len, slot, id;
	bool translated;
	int ret;

	/* Headers may sit in paged data: make enough of them linear (and
	 * writable, which the rewrite needs anyway). If that fails (no
	 * memory for a private copy), the packet is left as one too short
	 * to parse is: untouched. */
	want = len < TC_HEADROOM ? len : TC_HEADROOM;
	if (bpf_skb_pull_data(skb, want))
		return UDPLB_EGRESS_UNTOUCHED;

	cur.pos = ctx_data(skb, UDPLB_HOOK_TC);
	ret = parse_udp_packet(&cur, ctx_data_end(skb, UDPLB_HOOK_TC), &p, &desc, len);
	if (ret == PARSE_ICMP) {
		/* An ICMP error toward the client, translated as in XDP:
		 * one this host sends (a socket: the kernel's port
		 * unreachable for a datagram to a dead local backend, its
		 * fragmentation needed for one to a remote backend), or one
		 * from a remote backend's side that the kernel forwards (no
		 * socket; IPv4, XDP passed it as it came: icmp_to_egress). Parsed
		 * again after the pull, which moves the data. */
		want = len < TC_ICMP_HEADROOM ? len : TC_ICMP_HEADROOM;
		if (bpf_skb_pull_data(skb, want))
			return UDPLB_EGRESS_UNTOUCHED; /* as above */
		cur.pos = ctx_data(skb, UDPLB_HOOK_TC);
		if (parse_udp_packet(&cur, ctx_data_end(skb, UDPLB_HOOK_TC), &p, &desc, len) !=
		    PARSE_ICMP)
			return UDPLB_EGRESS_UNTOUCHED;
		if (skb->sk)
			translated = icmp_translate(&cur, ctx_data_end(skb, UDPLB_HOOK_TC), &p, true,
						    NULL) == UDPLB_REASON_ICMP_TRANSLATED;
		else
			translated = icmp_forwarded(skb, &cur, ctx_data_end(skb, UDPLB_HOOK_TC), &p);
		return translated ? UDPLB_EGRESS_ICMP_TRANSLATED : UDPLB_EGRESS_UNTOUCHED;
	}
	if (!skb->sk)
		return egress_forwarded(skb, &p, ret);
	if (ret != PARSE_OK)
		return UDPLB_EGRESS_UNTOUCHED;
	rt = lookup_reply(&p, true, true, &reply) ? &reply : NULL;
	if (!rt)
		return UDPLB_EGRESS_UNTOUCHED;
	/* A socket's first fragment keeps its source address: its later
	 * fragments (no port to look up, and not remembered in reply_frags
	 * on this path) would keep the old one, and the client could not
	 * reassemble the datagram. (udplb_xdp and egress_forwarded translate
	 * a remote backend's fragmented reply whole, through frags.h.) */
	if (p.first_fragment && !endpoint_is_local(&rt->frontend))
		return UDPLB_EGRESS_UNTOUCHED;
	slot = rt->backend_slot;
	id = rt->frontend_id;
	flow_learn(&p, rt);
	if (rewrite_endpoint(skb, UDPLB_HOOK_TC, &p, true, &rt->frontend, false) != REWRITE_OK)
		return UDPLB_EGRESS_REWRITE_FAILED;
	count(&reply_counters, id, len);
	count_passive(slot, false);
	return UDPLB_EGRESS_REPLY;
}

SEC("tcx/egress")
int udplb_egress(struct __sk_buff *skb)
{
	/* One verdict per packet, at this single exit point. */
	record_egress(egress(skb));
	return TC_ACT_UNSPEC;
}

/* The datapath's clock, for userspace (Datapath::clock): one entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct udplb_clock);
} clock SEC(".maps");

/* Run by userspace (BPF_PROG_TEST_RUN) to read jiffies, which it cannot
 * read itself, and the jiffies_hz it measured with them. */
SEC("xdp")
int udplb_clock(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct udplb_clock *c = bpf_map_lookup_elem(&clock, &zero);

	if (c) {
		c->jiffies = bpf_jiffies64();
		c->hz = jiffies_hz;
	}
	return XDP_PASS;
}

/* The cheapest possible XDP program: the floor for `make bench`. */
SEC("xdp")
int udplb_noop(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
