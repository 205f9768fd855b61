/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * quic.h - QUIC frontends: route a request by the server ID its server
 * wrote into the destination connection ID (QUIC-LB,
 * draft-ietf-quic-load-balancers-19, plaintext algorithm), so that a
 * connection keeps its backend when the client's address or port changes
 * (NAT rebinding, migration).
 *
 * Contract:
 * - Read-only on the packet; every byte is read after a data_end check, and
 *   every length is also checked against the datagram's own (udp.len).
 * - Headers as RFC 8999 (version-independent properties of QUIC) defines
 *   them: a long header (first bit 1) carries a 4-byte version, the DCID's
 *   length (at most 20 here, as in QUIC v1 and v2) and the DCID; a short
 *   header (first bit 0; the QUIC v1 fixed bit 0x40 required, so that
 *   other traffic on the port is not read as QUIC) carries the DCID at
 *   once, of the frontend's configured length.
 * - In the DCID: the top 3 bits of its first octet are the config rotation
 *   (0b111: unroutable), the server ID (quic_server_id_len bytes) follows.
 *   (config rotation, server ID) is looked up in quic_servers, which the
 *   plan writes with the ring; the backend it names must still hold its
 *   slot (ident) and take CID-routed packets (UDPLB_BACKEND_F_CID: not
 *   held down out of the ring by health; a drained backend keeps its
 *   connections).
 * - Anything else returns -1: the caller falls back to the ring (Maglev on
 *   the 4-tuple, through the flow table if the frontend has one). That is
 *   the draft's fallback for unroutable DCIDs, and what keeps a handshake
 *   on one backend until the client uses the server's CID: a QUIC v1 or v2
 *   Initial or 0-RTT packet whose DCID names no known server carries the
 *   client's own random CID (counted as client_cid). A routable DCID is
 *   followed whatever the packet type, as the draft requires: a client's
 *   Initial that acknowledges the server's first flight already carries
 *   the server's CID, and sending it to that server keeps a handshake that
 *   started before a backend change on its backend.
 * - Exactly one quic_counters event per request of a quic frontend.
 */
#ifndef UDPLB_QUIC_H
#define UDPLB_QUIC_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "udplb.h"
#include "parsing.h"
#include "maps.h"
#include "counters.h"

#define QUIC_LONG_HEADER 0x80
#define QUIC_FIXED_BIT 0x40
/* First octet, version (4), DCID length (1). */
#define QUIC_LONG_PREFIX 6
#define QUIC_V1 0x00000001
#define QUIC_V2 0x6b3343cf

/* (frontend, config rotation, server ID) -> backend slot. Written by the
 * plan: new entries before a frontend switches rings, removed ones after. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UDPLB_BACKEND_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct udplb_quic_key);
	__type(value, struct udplb_quic_target);
} quic_servers SEC(".maps");

/* How requests of quic frontends were routed (enum udplb_quic_counter). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UDPLB_QUIC_COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} quic_counters SEC(".maps");

/* Counts `event` and returns the slot to use (-1: fall back to the ring). */
static __always_inline long quic_count(__u32 event, long slot)
{
	count_event(&quic_counters, event);
	return slot;
}

/* Whether a long header's packet type says its DCID may be the client's
 * own: Initial and 0-RTT in QUIC v1 (types 0, 1) and v2 (types 1, 2,
 * RFC 9369). Unknown versions are routed by the DCID alone (the draft:
 * a load balancer must route long headers it cannot parse by the DCID). */
static __always_inline bool quic_client_chosen(__u8 first, __be32 version_be)
{
	__u8 type = (first >> 4) & 3;

	if (version_be == bpf_htonl(QUIC_V1))
		return type == 0 || type == 1;
	if (version_be == bpf_htonl(QUIC_V2))
		return type == 1 || type == 2;
	return false;
}

/* The backend slot named by the packet's DCID, or -1 to fall back. */
static __always_inline long quic_pick_slot(struct udplb_frontend *fe, struct udp_packet *p,
					   void *data_end)
{
	__u8 *q = (void *)(p->udp + 1);
	__u32 sid_len = fe->quic_server_id_len;
	__u32 payload = p->ulen - sizeof(struct udphdr);
	struct udplb_quic_key key = {};
	struct udplb_quic_target *t;
	struct udplb_backend *be;
	bool client = false;
	__u32 cid_len, slot;
	__u8 *cid;

	if (sid_len < 1 || sid_len > UDPLB_QUIC_MAX_SERVER_ID_LEN)
		return quic_count(UDPLB_QUIC_UNKNOWN_SERVER, -1);
	if ((void *)(q + 1) > data_end || payload < 1)
		return quic_count(UDPLB_QUIC_TOO_SHORT, -1);
	if (q[0] & QUIC_LONG_HEADER) {
		if ((void *)(q + QUIC_LONG_PREFIX) > data_end || payload < QUIC_LONG_PREFIX)
			return quic_count(UDPLB_QUIC_TOO_SHORT, -1);
		cid_len = q[5];
		if (cid_len > UDPLB_QUIC_MAX_CID_LEN)
			return quic_count(UDPLB_QUIC_NOT_QUIC, -1);
		client = quic_client_chosen(q[0], *(__be32 *)(q + 1));
		cid = q + QUIC_LONG_PREFIX;
		if (QUIC_LONG_PREFIX + cid_len > payload)
			return quic_count(UDPLB_QUIC_TOO_SHORT, -1);
	} else {
		if (!(q[0] & QUIC_FIXED_BIT))
			return quic_count(UDPLB_QUIC_NOT_QUIC, -1);
		cid_len = fe->quic_cid_len;
		cid = q + 1;
		if (1 + cid_len > payload)
			return quic_count(UDPLB_QUIC_TOO_SHORT, -1);
	}
	if (cid_len < 1 + sid_len)
		return quic_count(client ? UDPLB_QUIC_CLIENT_CID : UDPLB_QUIC_TOO_SHORT, -1);
	if ((void *)(cid + 1) > data_end)
		return quic_count(UDPLB_QUIC_TOO_SHORT, -1);
	key.config_rotation = cid[0] >> 5;
	if (key.config_rotation == UDPLB_QUIC_CR_UNROUTABLE)
		return quic_count(client ? UDPLB_QUIC_CLIENT_CID : UDPLB_QUIC_UNROUTABLE, -1);
	key.frontend_id = fe->id;
	key.server_id_len = sid_len;
	/* The constant bound is the verifier's; sid_len <= it, checked above. */
	for (int i = 0; i < UDPLB_QUIC_MAX_SERVER_ID_LEN; i++) {
		if (i >= sid_len)
			break;
		if ((void *)(cid + 2 + i) > data_end)
			return quic_count(UDPLB_QUIC_TOO_SHORT, -1);
		key.server_id[i] = cid[1 + i];
	}
	t = bpf_map_lookup_elem(&quic_servers, &key);
	if (!t)
		return quic_count(client ? UDPLB_QUIC_CLIENT_CID : UDPLB_QUIC_UNKNOWN_SERVER, -1);
	slot = t->slot;
	be = bpf_map_lookup_elem(&backends, &slot);
	if (!be || be->ident != t->ident)
		return quic_count(client ? UDPLB_QUIC_CLIENT_CID : UDPLB_QUIC_UNKNOWN_SERVER, -1);
	if (!(be->flags & UDPLB_BACKEND_F_CID))
		return quic_count(UDPLB_QUIC_BACKEND_DOWN, -1);
	return quic_count(UDPLB_QUIC_ROUTED, slot);
}

#endif /* UDPLB_QUIC_H */
