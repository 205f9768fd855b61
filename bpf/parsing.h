/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parsing.h - bounds-checked header parsing for both programs.
 *
 * Contract: every helper reads a header only after a `ptr + 1 > data_end`
 * (or `ptr + len > data_end`) check, advances the cursor past what it parsed,
 * and returns PARSE_OK or a udplb_reason saying why parsing stopped.
 * Nothing here writes to the packet and no packet length is assumed.
 *
 * Lengths in the headers are checked against `pkt_len`, the packet's full
 * length; reads against `data_end`. In XDP they are the same place; in TC a
 * GSO datagram's payload lies beyond the linear data the parser can read.
 *
 * The order of checks is part of the specification (the reference model in
 * tests/support/model/ follows it):
 *   Ethernet (14 bytes) -> up to two 802.1Q/802.1ad tags -> EtherType
 *   IPv4: 20 bytes present, version 4, IHL >= 5, whole header present,
 *         IHL*4 <= tot_len, tot_len bytes present, protocol UDP (protocol
 *         ICMP with MF clear and offset 0: PARSE_ICMP, see icmp.h),
 *         fragment offset 0, 8 bytes of UDP within tot_len,
 *         8 <= udp.len, udp.len <= tot_len - IHL*4 (the latter not checked
 *         on a first fragment, whose datagram continues in later fragments)
 *   IPv6: 40 bytes present, version 6, 40 + payload_len bytes present,
 *         then, if the next header is Fragment (44): payload_len >= 8 and
 *         the 8-byte Fragment header present, its next header taken in
 *         place of the IPv6 header's, and (after the two checks below)
 *         fragment offset 0;
 *         next header ICMPv6 (58) with no Fragment header: PARSE_ICMP
 *         (icmp.h); next header not an extension header, next header UDP,
 *         8 bytes of UDP within the rest of the payload (payload_len, less
 *         8 behind a Fragment header), udp.len 0 read as that rest (as
 *         Linux does: the jumbogram form), 8 <= udp.len, udp.len <= that
 *         rest (the latter not checked on a first fragment with M set)
 * A first fragment (IPv4 MF with offset 0, or any IPv6 Fragment header with
 * offset 0) holds the whole UDP header and sets first_fragment: a local
 * rewrite of it is right, because the UDP checksum covers the whole datagram
 * and incremental updates do not need the rest. Every fragment sets
 * frag_id; a later fragment of a UDP datagram (UDPLB_REASON_FRAGMENT) also
 * sets l3, l3_off and ipv6, not udp.
 * As it accepts a datagram (or a later fragment), the parser copies its
 * addresses and ports out of the headers once (describe_addresses,
 * describe_ports); every step after it reads that description (struct
 * packet_desc), not the headers, but icmp_rewrite (icmp.h), the last step
 * of an ICMP error, which reads the old words from the headers it
 * overwrites.
 */
#ifndef UDPLB_PARSING_H
#define UDPLB_PARSING_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include "udplb.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define IPV6_FRAGMENT 44
#define IP6_MF 0x0001
#define IP6_OFFSET 0xFFF8
#define VLAN_MAX_DEPTH 2
/* The furthest a UDP header can start: Ethernet, two VLAN tags and an IPv4
 * header with 40 bytes of options (82; an IPv6 header and its Fragment
 * header end at 70). A bound the verifier can use where an offset read
 * from udp_packet moves a packet pointer. */
#define MAX_L4_OFF (14 + VLAN_MAX_DEPTH * 4 + 60)

/* Returned by the parse helpers when the header is fine. */
#define PARSE_OK -1
/* parse_udp_packet: not UDP but an ICMP message (IPv4 protocol 1 not
 * fragmented, IPv6 next header 58 with no extension header), for icmp.h;
 * l3, l3_off, l4_off (the ICMP header) and ulen (the ICMP message's length,
 * from the IP header) are set, udp is not. */
#define PARSE_ICMP -2
#define IPPROTO_ICMPV6_NR 58

struct hdr_cursor {
	void *pos;
};

/*
 * A packet's addresses and ports, read from its headers once, by the
 * parser (describe_addresses, describe_ports), as Katran's steps read its
 * packet_description: the lookups, flow hash, flow table, fragments,
 * checksums and FIB lookup read these, not the headers, so one place reads
 * a packet's addresses and ports, and one place must get them right. Kept
 * true as the packet changes: a step that rewrites an address or port in
 * the headers (rewrite_endpoint, frag_set_source) writes it here too, so
 * that a step after it (forward.h's FIB lookup and checksum completion)
 * reads the packet as it now stands. The exception is icmp_rewrite
 * (icmp.h): the last step of an ICMP error, it takes the old words from the
 * headers it overwrites and leaves the quote's description as it was.
 *
 * Each side is in the form of the maps' keys (include/udplb.h): family, an
 * IPv4 address in addr_be[0] and the other words 0, pad 0, so that a side
 * is a key as it stands. Ports are 0 in a later fragment (no UDP header).
 */
struct packet_desc {
	struct udplb_endpoint src;
	struct udplb_endpoint dst;
};

/*
 * A parsed packet: where its headers are, and what parsing found out.
 *
 * Its addresses and ports (desc) are a variable of the caller's, not a
 * member. clang keeps the fields of a udp_packet in registers only while
 * no pointer into it is chosen at run time or handed to a helper, and the
 * description's are (a side picked by a runtime flag in send_remote, a
 * side passed as a map key). As a member, it put the whole udp_packet in
 * memory, the family became a byte the verifier could not follow, and the
 * XDP program needed over 100 bytes more of its 512-byte stack; kept
 * apart, it costs its own 40 bytes. The caller leaves it uninitialised:
 * what the parser does not describe stays so, and no step may read it
 * there (the verifier does not stop it: a loader with CAP_PERFMON may read
 * uninitialised stack, and would get garbage).
 *
 * The header pointers are for what the description does not hold: the
 * fields the steps write (addresses and ports in the rewrites, checksums,
 * TTL, Ethernet addresses), the IP fields only the FIB lookup reads (TOS,
 * flow label, length: forward.h), and the payload (quic.h).
 */
struct udp_packet {
	struct ethhdr *eth;
	void *l3;            /* struct iphdr or struct ipv6hdr, as ipv6 says */
	struct udphdr *udp;
	struct packet_desc *desc; /* addresses and ports (describe_addresses) */
	__u32 l3_off;        /* offsets from the packet start, for helpers that */
	__u32 l4_off;        /* take offsets (TC) rather than pointers */
	__u32 ulen;          /* the datagram's length (host order): udp.len, or
			      * for an IPv6 udp.len of 0 the rest of the payload */
	bool ipv6;
	bool first_fragment; /* the datagram continues in later fragments */
	__u8 vlans;          /* VLAN tags between Ethernet and IP */
	__u32 frag_id;       /* a fragment's IP identification as it stands in
			      * the header (IPv4's 16 bits, IPv6's 32) */
};

/*
 * The parser's last word on a packet it accepts: its addresses (l3, an
 * IPv4 or IPv6 header as `ipv6` says) and ports (udp) into p's
 * description. Called where the parser has just checked those headers,
 * for a datagram, a later fragment (addresses only: it has no UDP header)
 * and a datagram an ICMP error quotes, and nowhere else: the one place the
 * datapath reads a packet's addresses and ports (but icmp_rewrite's old
 * words, read as it overwrites them).
 *
 * Filled by the parser rather than by a step after it, which would have to
 * ask the parser's verdict which headers there are: Linux 5.10's verifier
 * loses that tie when clang spills the 32-bit verdict (it tracks only
 * 8-byte spills of a number), follows a later fragment into code that
 * reads its UDP header (a null pointer there), and refuses the program.
 */
static __always_inline void describe_addresses(struct packet_desc *d, void *l3, bool ipv6)
{
	__builtin_memset(d, 0, sizeof(*d));
	if (ipv6) {
		struct ipv6hdr *ip6 = l3;

		d->src.family = UDPLB_FAMILY_IPV6;
		d->dst.family = UDPLB_FAMILY_IPV6;
		__builtin_memcpy(d->src.addr_be, &ip6->saddr, sizeof(d->src.addr_be));
		__builtin_memcpy(d->dst.addr_be, &ip6->daddr, sizeof(d->dst.addr_be));
	} else {
		struct iphdr *ip = l3;

		d->src.family = UDPLB_FAMILY_IPV4;
		d->dst.family = UDPLB_FAMILY_IPV4;
		d->src.addr_be[0] = ip->saddr;
		d->dst.addr_be[0] = ip->daddr;
	}
}

static __always_inline void describe_ports(struct packet_desc *d, struct udphdr *udp)
{
	d->src.port_be = udp->source;
	d->dst.port_be = udp->dest;
}

static __always_inline bool is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/* Ethernet plus up to two VLAN tags. Stores the inner EtherType in *proto. */
static __always_inline int parse_ethernet(struct hdr_cursor *c, void *data_end, __be16 *proto,
					  __u8 *vlans)
{
	struct ethhdr *eth = c->pos;
	struct vlan_hdr *vlan;

	*vlans = 0;
	if ((void *)(eth + 1) > data_end)
		return UDPLB_REASON_MALFORMED;
	*proto = eth->h_proto;
	c->pos = eth + 1;

#pragma unroll
	for (int i = 0; i < VLAN_MAX_DEPTH; i++) {
		if (!is_vlan(*proto))
			break;
		vlan = c->pos;
		if ((void *)(vlan + 1) > data_end)
			return UDPLB_REASON_MALFORMED;
		*proto = vlan->h_vlan_encapsulated_proto;
		c->pos = vlan + 1;
		(*vlans)++;
	}
	/* A third tag is deeper than we parse: leave it to the stack. */
	if (is_vlan(*proto))
		return UDPLB_REASON_NOT_IP;
	return PARSE_OK;
}

/* The IPv4 header checks every IPv4 header gets, a packet's own or one an
 * ICMP error quotes (icmp.h): 20 bytes present, version 4, IHL >= 5, the
 * whole header present. Stores the header's length in *hlen. */
static __always_inline int check_ipv4_header(struct iphdr *ip, void *data_end, __u32 *hlen)
{
	if ((void *)(ip + 1) > data_end)
		return UDPLB_REASON_MALFORMED;
	if (ip->version != 4)
		return UDPLB_REASON_MALFORMED;
	*hlen = ip->ihl * 4;
	if (*hlen < sizeof(*ip))
		return UDPLB_REASON_MALFORMED;
	if ((void *)ip + *hlen > data_end)
		return UDPLB_REASON_MALFORMED;
	return PARSE_OK;
}

static __always_inline int parse_ipv4_udp(struct hdr_cursor *c, void *data_end,
					  struct udp_packet *p, __u32 l3_off, __u32 pkt_len)
{
	struct iphdr *ip = c->pos;
	struct udphdr *udp;
	__u32 hlen, tot_len, ulen;
	__u16 frag;
	int ret;

	ret = check_ipv4_header(ip, data_end, &hlen);
	if (ret != PARSE_OK)
		return ret;
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < hlen)
		return UDPLB_REASON_MALFORMED;
	if (l3_off + tot_len > pkt_len)
		return UDPLB_REASON_MALFORMED;
	frag = bpf_ntohs(ip->frag_off);
	if (ip->protocol != IPPROTO_UDP) {
		if (ip->protocol != IPPROTO_ICMP || (frag & (IP_OFFSET | IP_MF)))
			return UDPLB_REASON_NOT_UDP;
		p->l3 = ip;
		p->l3_off = l3_off;
		p->l4_off = l3_off + hlen;
		p->ulen = tot_len - hlen;
		p->ipv6 = false;
		c->pos = c->pos + hlen;
		return PARSE_ICMP;
	}
	p->frag_id = ip->id;
	if (frag & IP_OFFSET) {
		/* No UDP header: only l3 is set (frags.h may know the
		 * datagram from its first fragment). */
		p->l3 = ip;
		p->l3_off = l3_off;
		p->ipv6 = false;
		describe_addresses(p->desc, ip, false);
		return UDPLB_REASON_FRAGMENT;
	}

	udp = c->pos + hlen;
	if ((void *)(udp + 1) > data_end || tot_len < hlen + sizeof(*udp))
		return UDPLB_REASON_MALFORMED;
	ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(*udp))
		return UDPLB_REASON_MALFORMED;
	if (!(frag & IP_MF) && ulen > tot_len - hlen)
		return UDPLB_REASON_MALFORMED;

	p->l3 = ip;
	p->udp = udp;
	describe_addresses(p->desc, ip, false);
	describe_ports(p->desc, udp);
	p->l3_off = l3_off;
	p->l4_off = l3_off + hlen;
	p->ulen = ulen;
	p->ipv6 = false;
	p->first_fragment = frag & IP_MF;
	c->pos = udp + 1;
	return PARSE_OK;
}

/* IANA "IPv6 Extension Header Types". */
static __always_inline bool is_ipv6_ext(__u8 nexthdr)
{
	switch (nexthdr) {
	case 0:   /* Hop-by-Hop Options */
	case 43:  /* Routing */
	case 44:  /* Fragment */
	case 50:  /* ESP */
	case 51:  /* AH */
	case 60:  /* Destination Options */
	case 135: /* Mobility */
	case 139: /* HIP */
	case 140: /* Shim6 */
	case 253: /* experimentation */
	case 254:
		return true;
	}
	return false;
}

static __always_inline int parse_ipv6_udp(struct hdr_cursor *c, void *data_end,
					  struct udp_packet *p, __u32 l3_off, __u32 pkt_len)
{
	struct ipv6hdr *ip6 = c->pos;
	struct frag_hdr *frag;
	struct udphdr *udp;
	__u32 plen, ulen;
	__u16 frag_off = 0;
	bool fragment = false;
	__u8 nexthdr;

	if ((void *)(ip6 + 1) > data_end)
		return UDPLB_REASON_MALFORMED;
	if (ip6->version != 6)
		return UDPLB_REASON_MALFORMED;
	plen = bpf_ntohs(ip6->payload_len);
	if (l3_off + sizeof(*ip6) + plen > pkt_len)
		return UDPLB_REASON_MALFORMED;
	nexthdr = ip6->nexthdr;
	udp = (void *)(ip6 + 1);
	/* The one extension header parsed: a datagram larger than the path
	 * MTU leaves its sender in fragments, and the first holds the UDP
	 * header. */
	if (nexthdr == IPV6_FRAGMENT) {
		frag = (void *)(ip6 + 1);
		if ((void *)(frag + 1) > data_end || plen < sizeof(*frag))
			return UDPLB_REASON_MALFORMED;
		nexthdr = frag->nexthdr;
		frag_off = bpf_ntohs(frag->frag_off);
		p->frag_id = frag->identification;
		fragment = true;
		plen -= sizeof(*frag);
		udp = (void *)(frag + 1);
	}
	if (nexthdr == IPPROTO_ICMPV6_NR && !fragment) {
		p->l3 = ip6;
		p->l3_off = l3_off;
		p->l4_off = l3_off + sizeof(*ip6);
		p->ulen = plen;
		p->ipv6 = true;
		c->pos = ip6 + 1;
		return PARSE_ICMP;
	}
	if (is_ipv6_ext(nexthdr))
		return UDPLB_REASON_IPV6_EXT;
	if (nexthdr != IPPROTO_UDP)
		return UDPLB_REASON_NOT_UDP;
	if (frag_off & IP6_OFFSET) {
		p->l3 = ip6;
		p->l3_off = l3_off;
		p->ipv6 = true;
		describe_addresses(p->desc, ip6, true);
		return UDPLB_REASON_FRAGMENT;
	}

	if ((void *)(udp + 1) > data_end || plen < sizeof(*udp))
		return UDPLB_REASON_MALFORMED;
	ulen = bpf_ntohs(udp->len);
	/* Linux reads udp.len 0 as "the rest of the packet" (RFC 2675). */
	if (ulen == 0)
		ulen = plen;
	if (ulen < sizeof(*udp))
		return UDPLB_REASON_MALFORMED;
	if (!(frag_off & IP6_MF) && ulen > plen)
		return UDPLB_REASON_MALFORMED;

	p->l3 = ip6;
	p->udp = udp;
	describe_addresses(p->desc, ip6, true);
	describe_ports(p->desc, udp);
	p->l3_off = l3_off;
	p->l4_off = l3_off + sizeof(*ip6) + (fragment ? sizeof(*frag) : 0);
	p->ulen = ulen;
	p->ipv6 = true;
	p->first_fragment = fragment;
	c->pos = udp + 1;
	return PARSE_OK;
}

/* Ethernet .. UDP. On PARSE_OK, p holds the IP and UDP headers and *desc
 * (p->desc) their addresses and ports; a later fragment
 * (UDPLB_REASON_FRAGMENT) has l3 and the addresses. `pkt_len` is the
 * length of the whole packet, starting at c->pos. */
static __always_inline int parse_udp_packet(struct hdr_cursor *c, void *data_end,
					    struct udp_packet *p, struct packet_desc *desc,
					    __u32 pkt_len)
{
	__be16 proto;
	__u32 l3_off;
	int ret;

	p->desc = desc;
	p->eth = c->pos;
	ret = parse_ethernet(c, data_end, &proto, &p->vlans);
	if (ret != PARSE_OK)
		return ret;
	l3_off = sizeof(struct ethhdr) + p->vlans * sizeof(struct vlan_hdr);
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4_udp(c, data_end, p, l3_off, pkt_len);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6_udp(c, data_end, p, l3_off, pkt_len);
	return UDPLB_REASON_NOT_IP;
}

#endif /* UDPLB_PARSING_H */
