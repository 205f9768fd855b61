/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * udplb.h - the ABI between the XDP datapath and the udplb binary.
 *
 * Every map key and value, every limit and every counter index is defined
 * here and only here. The Rust side mirrors these structs in src/abi.rs and a
 * test checks sizes and offsets against the BTF-generated skeleton types.
 *
 * Rules for this file: fixed-width __u8/__u16/__u32/__u64 types only (it is
 * compiled against vmlinux.h on the BPF side), explicit padding, no
 * implicit holes. Ports and addresses are stored in network byte order
 * (fields ending in _be) so the datapath compares them without swapping.
 */
#ifndef UDPLB_H
#define UDPLB_H

/* Limits. Each can be overridden at build time with -D. Memory per limit is
 * documented in README.md ("Limits"). */
#ifndef UDPLB_MAX_FRONTENDS
#define UDPLB_MAX_FRONTENDS 256 /* frontends per balancer */
#endif
#ifndef UDPLB_MAX_BACKENDS
#define UDPLB_MAX_BACKENDS 256 /* backends per frontend */
#endif
/* Backend tables are double-buffered (see struct udplb_frontend.table). */
#define UDPLB_TABLES (2 * UDPLB_MAX_FRONTENDS)
#define UDPLB_BACKEND_SLOTS (UDPLB_TABLES * UDPLB_MAX_BACKENDS)
#define UDPLB_BACKEND_COUNTERS (UDPLB_MAX_FRONTENDS * UDPLB_MAX_BACKENDS)

/* Address families as stored in keys (not AF_*: vmlinux.h has no macros). */
#define UDPLB_FAMILY_IPV4 4
#define UDPLB_FAMILY_IPV6 6

/*
 * Why a packet got the verdict it got. One per-CPU counter per reason,
 * recorded at the program's single exit point. UDPLB_REASON_COUNT sizes the
 * counter map; userspace names come from src/abi.rs::REASON_NAMES.
 */
enum udplb_reason {
	UDPLB_REASON_BALANCED = 0,     /* request rewritten to a backend   */
	UDPLB_REASON_REPLY = 1,        /* reply rewritten to the frontend  */
	UDPLB_REASON_NOT_IP = 2,       /* not IPv4/IPv6, or > 2 VLAN tags  */
	UDPLB_REASON_NOT_UDP = 3,      /* IP but not UDP                   */
	UDPLB_REASON_NO_FRONTEND = 4,  /* UDP, no frontend and no backend  */
	UDPLB_REASON_FRAGMENT = 5,     /* IPv4 non-first fragment          */
	UDPLB_REASON_MALFORMED = 6,    /* truncated or inconsistent header */
	UDPLB_REASON_IPV6_EXT = 7,     /* IPv6 with extension headers      */
	UDPLB_REASON_NO_BACKEND = 8,   /* frontend with an empty table     */
	UDPLB_REASON_COUNT = 9,
};

/*
 * A UDP endpoint: the key of the frontend map and of the reply map.
 * addr_be all zero is the wildcard ("every local address"); an IPv4
 * address lives in addr_be[0]. pad must be zero (keys are hashed as bytes).
 */
struct udplb_endpoint {
	__u8 family;
	__u8 pad;
	__u16 port_be;
	__u32 addr_be[4];
};

/*
 * What the datapath needs to balance a frontend's packets. The backend set
 * lives in slots [table * UDPLB_MAX_BACKENDS, + backend_count) of
 * backend_slots. Userspace writes a new set into the table this frontend
 * does not use, then replaces this value in one map update, so a packet sees
 * the old set or the new one, never a mix.
 */
struct udplb_frontend {
	__u32 id;            /* index into per-frontend counters and cursors */
	__u32 table;         /* which backend table is live, < UDPLB_TABLES */
	__u32 backend_count; /* live slots in that table, <= UDPLB_MAX_BACKENDS */
	__u32 pad;
};

/* One backend slot. An all-zero address means "the address the packet was
 * sent to" (a port on this host): only the port is rewritten. */
struct udplb_backend {
	struct udplb_endpoint ep;
	__u32 counter;       /* index into backend_counters */
};

/* Reverse translation: a datagram whose source is a backend (the key of the
 * reply map) gets its source rewritten to the frontend it belongs to. An
 * all-zero frontend address keeps the source address (local backends). */
struct udplb_reply_target {
	struct udplb_endpoint frontend;
	__u32 frontend_id;   /* index into reply_counters */
};

/* Per-CPU packet and byte counter (per backend, per frontend for replies). */
struct udplb_counter {
	__u64 packets;
	__u64 bytes;
};

#endif /* UDPLB_H */
