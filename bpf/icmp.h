/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * icmp.h - ICMP errors about balanced datagrams, translated statelessly as
 * NAT translates them (RFC 5508 section 4.2, Linux nf_nat_icmp_reply_translation),
 * for both programs.
 *
 * Contract. An ICMP error quotes the IP header and at least the first 8
 * bytes of the datagram that caused it. Two directions are translated;
 * everything else passes untouched:
 *
 *   Toward the client (IPv4 type 3 destination unreachable, 11 time
 *   exceeded; IPv6 type 1 destination unreachable, 2 packet too big, 3 time
 *   exceeded): the quoted datagram went from a client to a backend (the
 *   kernel's port unreachable for a datagram to a dead local backend, a
 *   remote backend's, a router's between here and a backend, this host's
 *   own fragmentation needed). Its destination is looked up in the replies
 *   map exactly as a reply's source is (port alone only where a reply may
 *   be matched by port alone: on lo and in egress). The quoted destination
 *   becomes the frontend (address if the frontend has one, and port), so a
 *   connected client's socket, which Linux finds by the quoted 4-tuple,
 *   gets the error: ECONNREFUSED at once, or its path MTU. Where the
 *   frontend has an address, the outer source becomes it too (the client
 *   does not know the backend's or this host's address; NAT does the same).
 *   A destination unreachable other than fragmentation needed counts as a
 *   passive ICMP error of that backend. In XDP off lo, an error about a
 *   backend must arrive where the route to that backend leads
 *   (forward.h's reverse-path check, as for its replies): one that comes
 *   from the client side is forged (a client that knows a backend's
 *   address could otherwise take the backend down through the passive
 *   signal, and have its error sent on from the frontend's address); so is
 *   one about a local backend of a frontend with an address (this host's
 *   own errors leave through egress, never come in from the wire). It is
 *   dropped and counted spoofed_reply. An IPv4 one that passes, about a
 *   remote backend of a frontend with an address, counts its passive
 *   error there but is passed as it came (icmp_to_egress): translated, its
 *   outer source would be the frontend's address, one of this host's, and
 *   IPv4 drops that as a martian when the kernel takes it in to forward it
 *   (unless accept_local=1; IPv6 lets it in, and is translated in XDP).
 *   Egress translates it as the kernel forwards it (icmp_forwarded: no
 *   socket), after the same lookup by address and port and the
 *   reverse-path check against the interface it came in on, and counts
 *   nothing (XDP did). So it leaves translated only through an interface
 *   udplb runs on, as a reply the kernel forwards does.
 *
 *   Toward a backend (IPv4 type 3 code 4 fragmentation needed, IPv6 type 2
 *   packet too big), XDP only: the quoted datagram is a reply udplb
 *   rewrote (from the frontend to the client) that a link on the client's
 *   path could not take. The frontend is found from the quoted source.
 *   Anyone can send such an error naming any client, and the backend's
 *   kernel then fragments its replies to that client for as long as its
 *   route cache keeps the lower MTU (frags.h translates a remote backend's
 *   fragments, but they stay fragments), so it goes on
 *   only to a backend that really answered that flow: the one a live pin
 *   of the flow table names (flows.h, flow_answered_slot: learned from
 *   that backend's reply to this client and frontend, within the
 *   timeout, its slot not given to another backend since). Without a live
 *   pin it goes on only if the ring's backend for the flow is local: this
 *   host's own kernel, which keeps the path MTU per destination anyway.
 *   Anything else is dropped and counted icmp_no_flow: no pin, an idle or
 *   foreign one, or a frontend without a flow table (round robin,
 *   flow_timeout 0), with a remote backend for the flow: nothing proves
 *   which backend, if any, answered. (IPVS likewise
 *   looks up its connection table; Katran hashes the quote as a flow and
 *   believes it.) The quoted source becomes the backend, and for a remote
 *   backend the outer destination its address, and the kernel forwards it
 *   there.
 *
 * Checksums, all incremental (RFC 1624) and written straight into the
 * packet in both hooks (an ICMP error is never CHECKSUM_PARTIAL: the
 * kernel sums it in software): the quoted UDP checksum as NAT updates it
 * (address in its pseudo-header and port; a quoted IPv4 checksum of 0 stays
 * 0, a computed 0 is written 0xFFFF), the quoted IPv4 header checksum, the
 * outer IPv4 header checksum, and the ICMP checksum over every changed word
 * of its payload (and, for ICMPv6, of the pseudo-header).
 *
 * Parse order (the reference model, tests/support/model/, follows it),
 * after parsing.h's PARSE_ICMP:
 *   the 8-byte ICMP header within the ICMP message and present, else
 *   malformed; a type above, else not_udp;
 *   quoted IPv4: 20 bytes, version 4, IHL >= 5, IHL*4 bytes (malformed),
 *   protocol UDP, fragment offset 0 (else not_udp), 8 bytes of UDP
 *   (malformed); quoted IPv6: 40 bytes, version 6 (malformed), next header
 *   UDP (else not_udp), 8 bytes of UDP (malformed). "Present" means within
 *   the ICMP message as the outer IP header gives its length, and readable.
 *   The quoted lengths are not checked: the quote is cut short by design.
 *   Then: destination in the replies map -> icmp_translated (XDP off lo:
 *   spoofed_reply, dropped, unless it came from the backend's side; then,
 *   IPv4, icmp_to_egress, untouched, if the frontend has an address); packet too
 *   big whose source is a frontend -> icmp_to_backend if a live pin names
 *   the backend that answered, or with no pin if the ring's backend for the
 *   flow is local, else icmp_no_flow (dropped); otherwise
 *   not_udp.
 */
#ifndef UDPLB_ICMP_H
#define UDPLB_ICMP_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "udplb.h"
#include "parsing.h"
#include "csum.h"
#include "maps.h"
#include "lookup.h"
#include "counters.h"
#include "forward.h"
#include "flows.h"

#define ICMP_HLEN 8
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMP_TIME_EXCEEDED 11
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_TIME_EXCEED 3

/* An ICMP error and the UDP datagram it quotes. */
struct icmp_error {
	__u8 *icmp;              /* type, code, checksum, 4 more bytes */
	struct udp_packet inner; /* the quoted datagram: headers, description */
	__u8 type;
	__u8 code;
};

static __always_inline bool icmp_translated_type(bool ipv6, __u8 type)
{
	if (ipv6)
		return type == ICMPV6_DEST_UNREACH || type == ICMPV6_PKT_TOOBIG ||
		       type == ICMPV6_TIME_EXCEED;
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED;
}

static __always_inline bool icmp_too_big(struct icmp_error *e)
{
	if (e->inner.ipv6)
		return e->type == ICMPV6_PKT_TOOBIG;
	return e->type == ICMP_DEST_UNREACH && e->code == ICMP_FRAG_NEEDED;
}

/* A passive signal: the backend is not there (port, host, network ...). */
static __always_inline bool icmp_unreachable(struct icmp_error *e)
{
	if (e->inner.ipv6)
		return e->type == ICMPV6_DEST_UNREACH;
	return e->type == ICMP_DEST_UNREACH && e->code != ICMP_FRAG_NEEDED;
}

/*
 * Parses the ICMP message at c->pos (p as parse_udp_packet left it with
 * PARSE_ICMP). PARSE_OK: e holds the quoted IP and UDP headers, and
 * *quoted their description (e->inner.desc).
 */
static __always_inline int parse_icmp_error(struct hdr_cursor *c, void *data_end,
					    struct udp_packet *p, struct icmp_error *e,
					    struct packet_desc *quoted)
{
	__u8 *icmp = c->pos;
	__u32 end = p->l4_off + p->ulen; /* where the ICMP message ends */
	__u32 off = p->l4_off + ICMP_HLEN, l4_off;
	struct udphdr *udp;
	void *l3 = icmp + ICMP_HLEN;

	if ((void *)(icmp + ICMP_HLEN) > data_end || p->ulen < ICMP_HLEN)
		return UDPLB_REASON_MALFORMED;
	e->icmp = icmp;
	e->type = icmp[0];
	e->code = icmp[1];
	if (!icmp_translated_type(p->ipv6, e->type))
		return UDPLB_REASON_NOT_UDP;
	if (p->ipv6) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end || off + sizeof(*ip6) > end)
			return UDPLB_REASON_MALFORMED;
		if (ip6->version != 6)
			return UDPLB_REASON_MALFORMED;
		if (ip6->nexthdr != IPPROTO_UDP)
			return UDPLB_REASON_NOT_UDP;
		udp = (void *)(ip6 + 1);
		l4_off = off + sizeof(*ip6);
	} else {
		struct iphdr *ip = l3;
		__u32 hlen;

		/* Each check says malformed, so their order does not matter:
		 * the header's, then its end within the ICMP message. */
		if (check_ipv4_header(ip, data_end, &hlen) != PARSE_OK || off + hlen > end)
			return UDPLB_REASON_MALFORMED;
		if (ip->protocol != IPPROTO_UDP)
			return UDPLB_REASON_NOT_UDP;
		if (bpf_ntohs(ip->frag_off) & IP_OFFSET)
			return UDPLB_REASON_NOT_UDP;
		udp = l3 + hlen;
		l4_off = off + hlen;
	}
	if ((void *)(udp + 1) > data_end || l4_off + sizeof(*udp) > end)
		return UDPLB_REASON_MALFORMED;
	e->inner.eth = p->eth;
	e->inner.l3 = l3;
	e->inner.udp = udp;
	e->inner.l3_off = off;
	e->inner.l4_off = l4_off;
	e->inner.ulen = 0; /* unknown: the quote is cut short */
	e->inner.ipv6 = p->ipv6;
	e->inner.first_fragment = false;
	e->inner.vlans = p->vlans;
	/* The quote is a second packet, with addresses and ports of its own
	 * (those of the datagram that caused the error): the lookups read
	 * them from its own description. */
	e->inner.desc = quoted;
	describe_addresses(quoted, l3, p->ipv6);
	describe_ports(quoted, udp);
	return PARSE_OK;
}

/* Writes `words` 16-bit words `to` over `field`; returns d plus their
 * one's-complement difference (~old + new per word), unfolded. A few dozen
 * words stay far below 2^32. */
static __always_inline __u32 put_words(void *field, const void *to, int words, __u32 d)
{
	__u16 *f = field;
	const __u16 *t = to;

	/* 8: the bound the verifier needs (an IPv6 address is 8 words). */
#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (i >= words)
			break;
		d += (__u16)~f[i] + (__u32)t[i];
		f[i] = t[i];
	}
	return d;
}

/* A checksum after covered data changed by the difference d (RFC 1624, eqn. 3). */
static __always_inline __u16 csum_apply(__u16 check, __u32 d)
{
	return (__u16)~csum_fold32((__u32)(__u16)~check + csum_fold32(d));
}

/*
 * Rewrites one side of the quoted datagram to `to`: its destination
 * (inner_source false: an error going back to the client) or its source
 * (a packet-too-big going on to a backend). If `to` has an address, the
 * other side of the outer header gets it too: the outer source (toward the
 * client) or destination (toward the backend). Every checksum follows.
 * put_words reads each old word in the header as it overwrites it: the
 * checksums change by the difference of the words in place, whatever
 * header (outer, quoted IP, quoted UDP) they sit in. This is the last step
 * of an ICMP error: no description is read after it, so neither is kept
 * in step.
 */
static __always_inline void icmp_rewrite(struct udp_packet *p, struct icmp_error *e,
					 bool inner_source, const struct udplb_endpoint *to)
{
	struct udp_packet *in = &e->inner;
	struct udphdr *udp = in->udp;
	__u32 icmp_d = 0, udp_d = 0;
	bool has_addr = !endpoint_is_local(to);
	__u16 check;

	if (has_addr) {
		if (p->ipv6) {
			struct ipv6hdr *oip = p->l3, *iip = in->l3;

			udp_d = put_words(inner_source ? &iip->saddr : &iip->daddr, to->addr_be, 8, 0);
			/* The quoted address is ICMP payload; the outer one is in
			 * ICMPv6's pseudo-header. */
			icmp_d = put_words(inner_source ? &oip->daddr : &oip->saddr, to->addr_be, 8,
					   udp_d);
		} else {
			struct iphdr *oip = p->l3, *iip = in->l3;
			__u32 outer_d;

			udp_d = put_words(inner_source ? &iip->saddr : &iip->daddr, to->addr_be, 2, 0);
			icmp_d = put_words(&iip->check, &(__u16){ csum_apply(iip->check, udp_d) }, 1,
					   udp_d);
			outer_d = put_words(inner_source ? &oip->daddr : &oip->saddr, to->addr_be, 2, 0);
			oip->check = csum_apply(oip->check, outer_d);
		}
	}
	{
		__u32 pd = put_words(inner_source ? &udp->source : &udp->dest, &to->port_be, 1, 0);

		udp_d += pd;
		icmp_d += pd;
	}
	/* The quoted UDP checksum, as NAT updates it: IPv4's 0 stays 0. */
	if (p->ipv6 || udp->check) {
		check = csum_apply(udp->check, udp_d);
		icmp_d = put_words(&udp->check, &(__u16){ check ? check : 0xffff }, 1, icmp_d);
	}
	*(__u16 *)(e->icmp + 2) = csum_apply(*(__u16 *)(e->icmp + 2), icmp_d);
}

/*
 * The ICMP message at c->pos (after PARSE_ICMP): translated if it is an
 * error about a balanced datagram. port_alone: reply keys by port alone
 * may match (lo, egress). xdp: the XDP context (NULL in TC egress, where
 * this host sent the error): a packet-too-big toward a backend may be
 * translated (the kernel routes it after the outer destination changed),
 * and off lo (where only exact reply keys match: remote backends, and
 * local backends of exact-address frontends) an error about a backend
 * must come from that backend's side, and an IPv4 one is left for egress
 * if its frontend has an address. Returns the reason to count.
 */
static __always_inline int icmp_translate(struct hdr_cursor *c, void *data_end,
					  struct udp_packet *p, bool port_alone, struct xdp_md *xdp)
{
	struct udplb_reply_target reply, *rt;
	struct udplb_frontend *fe;
	struct udplb_backend *be;
	struct icmp_error e = {};
	struct packet_desc quoted; /* e.inner's */
	__u32 slot;
	long picked;
	bool pinned, off_lo;
	int reason;

	reason = parse_icmp_error(c, data_end, p, &e, &quoted);
	if (reason != PARSE_OK)
		return reason;
	rt = lookup_reply(&e.inner, false, port_alone, &reply) ? &reply : NULL;
	if (rt) {
		off_lo = xdp && !port_alone;
		if (off_lo && !from_backend_side(xdp, xdp->ingress_ifindex, &e.inner, true))
			return UDPLB_REASON_SPOOFED_REPLY;
		slot = rt->backend_slot;
		if (icmp_unreachable(&e))
			count_passive(slot, true);
		/* Its outer source would become the frontend's address, one
		 * of this host's, and IPv4 drops that as a martian as the
		 * kernel takes it in to forward it: it goes in as it came,
		 * and egress translates it on its way out (icmp_forwarded).
		 * IPv6 lets it in: translated here, it leaves translated
		 * through any interface. */
		if (off_lo && !p->ipv6 && !endpoint_is_local(&rt->frontend))
			return UDPLB_REASON_ICMP_TO_EGRESS;
		icmp_rewrite(p, &e, false, &rt->frontend);
		return UDPLB_REASON_ICMP_TRANSLATED;
	}
	if (!xdp || !icmp_too_big(&e))
		return UDPLB_REASON_NOT_UDP;
	fe = lookup_frontend(&e.inner, true);
	if (!fe)
		return UDPLB_REASON_NOT_UDP;
	/* Anyone can forge this error about any client: a remote backend is
	 * told only if it answered that client's flow (flows.h). A local one
	 * needs no pin: the error reaches this host's own kernel, which keeps
	 * the path MTU per destination for every socket anyway and heeds it,
	 * like any Linux UDP server, only for a socket the quote names; the
	 * ring's backend for the flow is as good as any (round robin and
	 * flow_timeout 0 have no pins, and their replies must not be lost). */
	picked = flow_answered_slot(fe, &e.inner);
	pinned = picked >= 0;
	if (!pinned)
		picked = ring_slot(fe, frontend_hash(fe, &e.inner, true));
	slot = picked;
	be = picked < 0 ? NULL : bpf_map_lookup_elem(&backends, &slot);
	if (!be || (!pinned && !endpoint_is_local(&be->ep)))
		return UDPLB_REASON_ICMP_NO_FLOW;
	icmp_rewrite(p, &e, true, &be->ep);
	return UDPLB_REASON_ICMP_TO_BACKEND;
}

/*
 * An ICMP error the kernel forwards (TC egress, no socket: from the wire,
 * as XDP passed it with icmp_to_egress, or from an interface without XDP;
 * one XDP translated names the frontend and is not found again).
 * Toward the client only, and only about a remote backend of a frontend
 * with an address: the quoted destination looked up by address and port
 * (never by port alone: it comes from the wire), and the reverse-path
 * check against the interface it came in on, as in XDP. Translated as XDP
 * would have; nothing counted (XDP counted its passive error when it let
 * it in). Anything else is left as it is. Returns whether it translated.
 */
static __always_inline bool icmp_forwarded(struct __sk_buff *skb, struct hdr_cursor *c,
					   void *data_end, struct udp_packet *p)
{
	struct udplb_reply_target reply;
	struct icmp_error e = {};
	struct packet_desc quoted; /* e.inner's */

	if (parse_icmp_error(c, data_end, p, &e, &quoted) != PARSE_OK)
		return false;
	if (!lookup_reply(&e.inner, false, false, &reply) || endpoint_is_local(&reply.frontend))
		return false;
	if (!from_backend_side(skb, skb->ingress_ifindex, &e.inner, true))
		return false;
	icmp_rewrite(p, &e, false, &reply.frontend);
	return true;
}

#endif /* UDPLB_ICMP_H */
