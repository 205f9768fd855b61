/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * udplb.h - the ABI between the datapath (XDP and TC programs) and the
 * udplb binary.
 *
 * Every map key and value, every limit and every counter index is defined
 * here and only here. The Rust side mirrors the structs userspace reads or
 * writes in src/abi.rs (all but udplb_frag_key, which only the datapath
 * uses), and plain_mirror! there checks their sizes, field offsets, field
 * types and padding against the BTF-generated skeleton types at compile
 * time.
 *
 * Rules for this file: fixed-width __u8/__u16/__u32/__u64 types only (it is
 * compiled against vmlinux.h on the BPF side), explicit padding, no
 * implicit holes. Ports and addresses are stored in network byte order
 * (fields ending in _be) so the datapath compares them without swapping.
 */
#ifndef UDPLB_H
#define UDPLB_H

/* Limits. build.rs turns these lines into Rust constants, so they are fixed
 * here and nowhere else (no -D overrides: userspace would not see them).
 * Memory per limit is documented in README.md ("Limits"). */
#define UDPLB_MAX_FRONTENDS 256        /* frontends per balancer */
#define UDPLB_MAX_BACKENDS 1024        /* backends per frontend */
#define UDPLB_MAX_BACKEND_SLOTS 8192   /* backends over all frontends */
#define UDPLB_MAX_RING 1048573         /* largest scheduling ring (a prime) */
#define UDPLB_MAX_WEIGHT 1000
#define UDPLB_MAX_INTERFACES 64        /* interfaces a balancer redirects out of */
#define UDPLB_DEFAULT_MAGLEV_SIZE 65537
/* Flow table (bpf/flows.h): entries by default (--flow-table-size), the
 * most it may have, and the default idle timeout of a pin in seconds
 * (flow_timeout, --flow-timeout). README "Flow table" states the memory. */
#define UDPLB_DEFAULT_FLOW_TABLE_SIZE 131072
#define UDPLB_MAX_FLOW_TABLE_SIZE 16777216
#define UDPLB_DEFAULT_FLOW_TIMEOUT 60
#define UDPLB_MAX_FLOW_TIMEOUT 86400
/* Fragmented replies of remote backends in flight (bpf/frags.h): datagrams
 * whose first fragment was translated and whose later fragments may still
 * come. LRU beyond that. */
#define UDPLB_REPLY_FRAGS 8192
/* Ring entries (round-robin cycles plus Maglev rings) over all frontends.
 * The kernel charges 8 B per entry (array values are rounded up to 8 B), and
 * a reload that rebuilds every ring holds two for a moment: at this limit
 * 128 MiB live, 256 MiB during such a reload. It lets every frontend have a
 * Maglev ring of the default size. */
#define UDPLB_MAX_RING_ENTRIES (UDPLB_MAX_FRONTENDS * UDPLB_DEFAULT_MAGLEV_SIZE)
/* A reload that replaces every frontend and backend keeps the old ones
 * until the new ones are live, so ids and slots go to twice the limits. */
#define UDPLB_FRONTEND_IDS (2 * UDPLB_MAX_FRONTENDS)
#define UDPLB_BACKEND_SLOTS (2 * UDPLB_MAX_BACKEND_SLOTS)
/* Each frontend switches between two rings (see struct udplb_frontend). */
#define UDPLB_RINGS (2 * UDPLB_FRONTEND_IDS)

/* What a UDP port is used for (the port_flags map, indexed by port in host
 * order): lets the datapath skip the hash lookups that cannot match. */
#define UDPLB_PORT_FRONTEND_EXACT 1 /* a frontend with an address */
#define UDPLB_PORT_FRONTEND_ANY 2   /* a wildcard frontend */
#define UDPLB_PORT_BACKEND_EXACT 4  /* a reply key with an address */
#define UDPLB_PORT_BACKEND_ANY 8    /* a reply key by port alone */

/* Keys by port (bpf/lookup.h), in arrays indexed by port * 2 + family index
 * (0 IPv4, 1 IPv6): port_frontends holds a port-only frontend's ring_id + 1,
 * the frontend itself being fe_records[ring_id]; port_exact the same for the
 * exact-address frontend on that port, if it is the only one
 * (UDPLB_PORT_EXACT_SEVERAL: look in the frontends hash); port_replies holds
 * the slot + 1 of the local backend on that port. 0: none. Array lookups,
 * which the verifier inlines, instead of hash lookups. */
#define UDPLB_PORT_KEYS (2 * 65536)
#define UDPLB_PORT_EXACT_SEVERAL 0xffffffff
/* A ring of up to this many entries (round robin over a few backends, the
 * common case) is also kept in the frontend's value (struct
 * udplb_frontend.ring): no lookup in the ring's inner map, which the
 * verifier cannot inline (inner maps of different sizes), so a call. */
#define UDPLB_INLINE_RING 16
/* Schedulers (struct udplb_frontend.sched). */
#define UDPLB_SCHED_RR 0     /* per-CPU cursor over the ring */
#define UDPLB_SCHED_MAGLEV 1 /* flow hash modulo the ring size */
#define UDPLB_SCHED_QUIC 2   /* the server ID in the QUIC destination connection
			      * ID (QUIC-LB plaintext), else as Maglev */

/* Forwarding modes (struct udplb_frontend.mode, bpf/dsr.h). NAT rewrites
 * the destination to the backend's address and port, and the backend's
 * replies come back through the balancer. The others are direct server
 * return: the datagram reaches the backend as the client sent it, addressed
 * to the frontend, which the backend owns, and the backend answers the
 * client itself. IPIP puts it in an outer IP header to the backend's address
 * (protocol 4 or 41: the inner family's), GUE in an outer IP and UDP header
 * to the backend's decapsulation port (GUE variant 1: the inner IP header
 * follows the UDP header), L2 rewrites only the destination MAC to the
 * backend's (a backend on a segment of this host). */
#define UDPLB_MODE_NAT 0
#define UDPLB_MODE_IPIP 1
#define UDPLB_MODE_GUE 2
#define UDPLB_MODE_L2 3

/* QUIC-LB (draft-ietf-quic-load-balancers-19, plaintext): a connection ID
 * is a first octet (3 config rotation bits, 5 free or length bits), the
 * server ID (1 to 15 bytes), a nonce of at least 4 bytes. */
#define UDPLB_QUIC_MAX_SERVER_ID_LEN 15
#define UDPLB_QUIC_MIN_NONCE_LEN 4
#define UDPLB_QUIC_MAX_CID_LEN 20
#define UDPLB_QUIC_CR_UNROUTABLE 7 /* config rotation 0b111: route by 4-tuple */

/* Seed of the flow hash (src/plan/flow_hash.rs computes the same function), fixed
 * so that every balancer with the same backends picks the same one. */
#define UDPLB_HASH_SEED 0x75646c62

/* Address families as stored in keys (not AF_*: vmlinux.h has no macros). */
#define UDPLB_FAMILY_IPV4 4
#define UDPLB_FAMILY_IPV6 6

/*
 * Why a packet got the verdict it got. One per-CPU counter per reason,
 * recorded at the program's single exit point. UDPLB_REASON_COUNT sizes the
 * counter map; build.rs generates the userspace names (abi::REASON_NAMES)
 * from this enum.
 */
enum udplb_reason {
	UDPLB_REASON_BALANCED = 0,     /* request to a local backend       */
	UDPLB_REASON_REPLY = 1,        /* local backend's reply rewritten (XDP, on lo;
					* elsewhere egress: UDPLB_EGRESS_REPLY) */
	UDPLB_REASON_NOT_IP = 2,       /* not IPv4/IPv6, or > 2 VLAN tags  */
	UDPLB_REASON_NOT_UDP = 3,      /* IP but not UDP                   */
	UDPLB_REASON_NO_FRONTEND = 4,  /* UDP, no frontend and no backend  */
	UDPLB_REASON_FRAGMENT = 5,     /* a later fragment (no UDP header) not
					* of a remote backend's reply whose first
					* fragment was translated (bpf/frags.h),
					* or a request's first fragment for a
					* remote backend */
	UDPLB_REASON_MALFORMED = 6,    /* truncated or inconsistent header */
	UDPLB_REASON_IPV6_EXT = 7,     /* IPv6 extension header other than one
					* Fragment header                  */
	UDPLB_REASON_NO_BACKEND = 8,   /* frontend with an empty ring (or a
					* ring that failed to read)        */
	/* Remote backends: the packet was rewritten (destination for a
	 * request, source for a reply), then one of: */
	UDPLB_REASON_FORWARDED = 9,        /* request sent out by XDP_REDIRECT */
	UDPLB_REASON_REPLY_FORWARDED = 10, /* reply sent out by XDP_REDIRECT   */
	UDPLB_REASON_FIB_NO_NEIGH = 11,    /* passed: kernel resolves the neighbour */
	UDPLB_REASON_FIB_FWD_DISABLED = 12, /* passed: forwarding is off here  */
	UDPLB_REASON_FIB_FRAG_NEEDED = 13, /* passed: larger than the route MTU */
	UDPLB_REASON_FIB_UNREACHABLE = 14, /* passed: blackhole, unreachable or prohibit route */
	UDPLB_REASON_FIB_OTHER = 15,       /* passed: no route at all (a request; a
					    * reply: reply_to_local), a VLAN tag, a device
					    * udplb is not attached to, ... */
	UDPLB_REASON_TTL_EXPIRED = 16,     /* passed: the kernel sends ICMP    */
	/* Refused and dropped: traffic that only a spoofer or a loop makes
	 * (but see 19). */
	UDPLB_REASON_BACKEND_TO_FRONTEND = 17, /* a backend's datagram to a frontend */
	UDPLB_REASON_SPOOFED_REPLY = 18,   /* a remote backend's source (a reply
					    * or a later fragment of one), or an
					    * ICMP error about a datagram to a
					    * backend (XDP off lo), on an interface
					    * that does not lead to that backend;
					    * a local backend's (this host's
					    * address) off lo */
	UDPLB_REASON_REPLY_TO_LOCAL = 19,  /* a remote backend's datagram to this
					    * host (the answer to udplb's own health
					    * probe), to a broadcast or multicast
					    * address, or to one with no route at
					    * all (the FIB does not forward it):
					    * passed as it came, from the backend,
					    * never from the frontend */
	/* ICMP errors about balanced datagrams (bpf/icmp.h), rewritten and
	 * passed: */
	UDPLB_REASON_ICMP_TRANSLATED = 20, /* toward the client: the quoted
					    * datagram names the frontend again */
	UDPLB_REASON_ICMP_TO_BACKEND = 21, /* a packet-too-big about a reply,
					    * sent on to the backend that answered:
					    * the one a live pin of the flow table
					    * names, or with no pin a local backend,
					    * the ring's for the flow */
	UDPLB_REASON_ICMP_NO_FLOW = 22,    /* dropped: a packet-too-big for a
					    * frontend about a reply that no live pin
					    * says a backend sent (a forgery naming a
					    * client, or no flow table: no proof),
					    * unless the ring's backend is local */
	UDPLB_REASON_ICMP_TO_EGRESS = 23,  /* toward the client, IPv4, off lo,
					    * about a remote backend of a frontend
					    * with an address: checked (as
					    * icmp_translated),
					    * passed as it came; udplb_egress
					    * translates it as the kernel forwards it
					    * (translated here, its source would be
					    * this host's: an IPv4 martian) */
	/* Direct server return (UDPLB_MODE_IPIP, _GUE, _L2: bpf/dsr.h): */
	UDPLB_REASON_DSR_SENT = 24,    /* a request encapsulated (ipip, gue) or
					* readdressed to its backend's MAC (l2),
					* sent out by XDP_REDIRECT */
	UDPLB_REASON_DSR_UNSENT = 25,  /* dropped: forwarding off on the ingress
					* device, no route to the backend, its
					* next hop's neighbour not resolved yet
					* (the daemon asks the kernel to resolve
					* it: dsr_neigh), out of a device udplb is
					* not attached to, an l2 backend not on a
					* segment of this host, a VLAN tag, an
					* outer checksum that cannot be summed, or
					* no tunnel source for the family */
	UDPLB_REASON_DSR_TOO_BIG = 26, /* larger than the route's MTU once
					* encapsulated: answered with ICMP
					* fragmentation needed / packet too big
					* (XDP_TX), or dropped (IPv4 with DF clear,
					* the MTU unknown before Linux 5.12) */
	UDPLB_REASON_COUNT = 27,
};

/*
 * What the TC egress program (udplb_egress) did with each packet leaving an
 * interface, one per-CPU counter each in the egress_counters map, moved once
 * per packet at its single exit point: on an interface with egress attached
 * they add up to the packets it sent. build.rs generates
 * abi::EGRESS_VERDICT_NAMES. REPLY and REPLY_FORWARDED are the replies of
 * the XDP reasons of the same names, rewritten here instead.
 */
enum udplb_egress_verdict {
	UDPLB_EGRESS_REPLY = 0,           /* a local backend's reply (sent by a
					   * socket here), source rewritten */
	UDPLB_EGRESS_REPLY_FORWARDED = 1, /* a remote backend's reply the kernel
					   * forwards, source rewritten */
	UDPLB_EGRESS_ICMP_TRANSLATED = 2, /* an ICMP error about a balanced
					   * datagram toward the client, this
					   * host's or a remote backend's that the
					   * kernel forwards (icmp_to_egress) */
	UDPLB_EGRESS_REWRITE_FAILED = 3,  /* a checksum helper refused mid-rewrite */
	UDPLB_EGRESS_UNTOUCHED = 4,       /* anything else: left as it was */
	UDPLB_EGRESS_VERDICT_COUNT = 5,
};

/*
 * Flow table events (bpf/flows.h), one per-CPU counter each in the
 * flow_counters map. build.rs generates abi::FLOW_COUNTER_NAMES.
 * The kernel does not report LRU evictions: an evicted pin shows up later
 * as a MISS (request) and a PIN_CREATED (its next reply).
 */
enum udplb_flow_counter {
	UDPLB_FLOW_HIT = 0,           /* request sent to its pinned backend     */
	UDPLB_FLOW_MISS = 1,          /* request of a Maglev frontend, no pin   */
	UDPLB_FLOW_EXPIRED = 2,       /* a pin idle longer than the timeout     */
	UDPLB_FLOW_STALE = 3,         /* a pin to a backend removed, replaced or
				       * not accepting pinned flows          */
	UDPLB_FLOW_PIN_CREATED = 4,   /* a reply (in DSR modes the request that
				       * the ring sent) pinned a flow that had
				       * no pin                               */
	UDPLB_FLOW_PIN_REFRESHED = 5, /* a reply (DSR: a request the ring sent)
				       * found its pin right (time only)      */
	UDPLB_FLOW_PIN_MOVED = 6,     /* a reply (DSR: a request the ring sent)
				       * came from another backend than
				       * the pin's: the pin now says this one */
	UDPLB_FLOW_PIN_FAILED = 7,    /* the map update failed                  */
	UDPLB_FLOW_COUNTER_COUNT = 8,
};

/*
 * QUIC frontends (bpf/quic.h): how each request was routed, one per-CPU
 * counter each in the quic_counters map. build.rs generates
 * abi::QUIC_COUNTER_NAMES. Everything but ROUTED fell back to the ring
 * (Maglev on the 4-tuple, with the flow table if there is one).
 */
enum udplb_quic_counter {
	UDPLB_QUIC_ROUTED = 0,         /* by the server ID in the DCID         */
	UDPLB_QUIC_NOT_QUIC = 1,       /* a short header without the fixed bit,
					* or a long header DCID over 20 bytes  */
	UDPLB_QUIC_CLIENT_CID = 2,     /* an Initial or 0-RTT packet (QUIC v1,
					* v2) whose DCID the client chose: no
					* known server ID in it                */
	UDPLB_QUIC_UNROUTABLE = 3,     /* config rotation 0b111                */
	UDPLB_QUIC_UNKNOWN_SERVER = 4, /* no backend has this (config rotation,
					* server ID)                           */
	UDPLB_QUIC_BACKEND_DOWN = 5,   /* its backend is held down out of the ring */
	UDPLB_QUIC_TOO_SHORT = 6,      /* the datagram (or the long header's
					* DCID) ends before the server ID, or a
					* short header before the configured
					* CID length                           */
	UDPLB_QUIC_COUNTER_COUNT = 7,
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
 * The outer source address of a frontend's encapsulated requests
 * (UDPLB_MODE_IPIP, _GUE) of one outer family. The bits of hash_mask_be in
 * the address's last word are the request's flow hash (its client's with
 * client_bits), so that the routers' ECMP and the backend's RSS, which see
 * only the outer header of IPIP, spread the flows; 0 keeps the address as
 * given. family 0: none configured (userspace refuses a frontend that
 * would need it).
 */
struct udplb_tunnel_source {
	__u8 family;
	__u8 pad[3];
	__u32 hash_mask_be;
	__u32 addr_be[4];
};

/*
 * What the datapath needs to balance a frontend's packets. A ring of
 * ring_size entries (an inner map of rings, at index ring_id) lists backend
 * slots: round robin walks it with a per-CPU cursor, Maglev indexes it with
 * the flow hash. Userspace writes a new ring into the slot this frontend
 * does not use, then switches the frontend to it in one map update, so a
 * packet sees the old backend set or the new one, never a mix. The value of
 * an exact-address key (the frontends hash) is replaced whole. Every
 * frontend's value is also at fe_records[ring_id], written while no packet
 * can reach it (before the switch, after the ring's installation, whose
 * outer-map update waits for every running program: a program that found
 * this record two switches ago is done); then port_frontends (port-only)
 * or port_exact (a port's only exact address) points to it.
 */
struct udplb_frontend {
	__u32 id;        /* index into rr_cursors and reply_counters */
	__u32 ring_id;   /* which ring is live, < UDPLB_RINGS */
	__u32 ring_size; /* entries in that ring; 0: no backend takes traffic */
	__u32 sched;     /* UDPLB_SCHED_* */
	__u32 flow_timeout_s; /* idle timeout of pinned flows; 0: no flow table */
	__u8 quic_server_id_len; /* UDPLB_SCHED_QUIC: server ID bytes (1-15) */
	__u8 quic_cid_len;       /* UDPLB_SCHED_QUIC: CID length of short headers */
	__u16 port_be;           /* the frontend's port, and */
	__u32 addr_be[4];        /* address (all zero: port-only), which a record
				  * found by port must match: the packet's
				  * address, and its port (an entry written
				  * after a failed plan is checked, not trusted) */
	__u16 ring[UDPLB_INLINE_RING]; /* the ring's slots, if ring_size <=
					* UDPLB_INLINE_RING (slots < 65536) */
	__u8 client_bits; /* 0: Maglev hashes the flow (addresses and
			   * ports); else the client's address alone, an
			   * IPv6 one cut to its first client_bits bits
			   * (1-128), and the flow table pins per client */
	__u8 mode;        /* UDPLB_MODE_*: how requests reach the backends */
	__u16 gue_port_be; /* UDPLB_MODE_GUE: the backends' decapsulation port */
	struct udplb_tunnel_source tunnel[2]; /* outer sources: IPv4, IPv6 */
};

/* A backend, at a slot of the backends map. The slot is also the index of
 * its counters and stays the same for as long as the backend is configured.
 * An all-zero address means "the address the packet was sent to" (a port on
 * this host): only the port is rewritten. */
struct udplb_backend {
	struct udplb_endpoint ep;
	__u32 weight;    /* informational: the ring already reflects it */
	__u32 flags;     /* UDPLB_BACKEND_F_* */
	__u32 ident;     /* who holds the slot: a hash of (frontend, backend)
			  * that userspace computes the same way on every
			  * start, so a pin to a slot since given to another
			  * backend is not followed */
	__u32 frontend_id;      /* the frontend it serves, and that frontend's */
	__u16 frontend_port_be; /* port: a local backend's reply found through
				 * port_replies goes back from this port */
	__u8 by_port;           /* UDPLB_BY_PORT_*: the families whose replies
				 * are keyed by its port alone (a local backend
				 * of a port-only frontend); kept when removed */
	__u8 client_bits;       /* its frontend's: how its replies pin flows */
};
#define UDPLB_BY_PORT_IPV4 1
#define UDPLB_BY_PORT_IPV6 2

/* The backend takes pinned flows (the flow table): configured, on a Maglev
 * or quic frontend with a flow table, and not held down by the health
 * checks. Cleared when it is removed; replies from it then pin nothing
 * either. */
#define UDPLB_BACKEND_F_PINNED 1
/* The backend takes packets routed by the server ID in their QUIC
 * connection ID: configured on a quic frontend and not held down out of
 * the ring (a drained backend keeps its connections; so do the held-down
 * backends of a frontend whose backends are all down and that fails
 * open). */
#define UDPLB_BACKEND_F_CID 2

/* The quic_servers map: (frontend, config rotation, server ID) -> the
 * backend holding that server ID. server_id is zero past server_id_len;
 * pad must be zero (keys are hashed as bytes). */
struct udplb_quic_key {
	__u32 frontend_id;
	__u8 config_rotation; /* the top 3 bits of the CID's first octet */
	__u8 server_id_len;
	__u8 server_id[UDPLB_QUIC_MAX_SERVER_ID_LEN + 1];
	__u16 pad;
};

struct udplb_quic_target {
	__u32 slot;  /* backend slot */
	__u32 ident; /* struct udplb_backend.ident of the backend it names */
};

/* Reverse translation: a datagram whose source is a backend (the key of the
 * reply map) gets its source rewritten to the frontend it belongs to. An
 * all-zero frontend address keeps the source address (local backends). */
struct udplb_reply_target {
	struct udplb_endpoint frontend;
	__u32 frontend_id;   /* index into reply_counters */
	__u32 backend_slot;  /* the backend's slot: index into passive_counters,
			      * and what a reply pins its flow to */
};

/*
 * A fragmented reply of a remote backend (bpf/frags.h), as each of its
 * fragments names it: the backend's address (source), the client's
 * (destination), and the IP identification as it stands in the header
 * (IPv4's 16 bits, IPv6's Fragment header's 32). pad must be zero (keys are
 * hashed as bytes). The value is the reply target its first fragment found.
 */
struct udplb_frag_key {
	__u8 family;
	__u8 pad[3];
	__u32 id;
	__u32 backend_addr_be[4];
	__u32 client_addr_be[4];
};

/*
 * The flow table (bpf/flows.h): a flow as the request carries it, client
 * to frontend; for a frontend with client_bits, the client alone (port 0,
 * the address cut to client_bits). pad must be zero (keys are hashed as
 * bytes).
 */
struct udplb_flow_key {
	__u8 family;
	__u8 pad;
	__u16 client_port_be;
	__u16 frontend_port_be;
	__u16 pad2;
	__u32 client_addr_be[4];
	__u32 frontend_addr_be[4];
};

/* A pin: the backend that answered the flow, and when it last did. */
struct udplb_flow {
	__u32 slot;          /* backend slot */
	__u32 ident;         /* struct udplb_backend.ident when pinned */
	__u32 frontend_id;   /* the frontend whose reply pinned it: a request
			      * to another frontend (an exact address beside
			      * a port-only one) does not follow it */
	__u32 pad;
	__u64 last_seen;     /* jiffies (bpf_jiffies64(), inlined: no helper
			      * call) of the last reply */
};

/* A next hop whose neighbour entry a DSR request found missing (the
 * dsr_neigh map): the daemon asks the kernel to resolve it, which a
 * frame redirected in XDP never does. pad must be zero (keys are hashed
 * as bytes). */
struct udplb_neigh_key {
	__u32 ifindex;
	__u8 family;
	__u8 pad[3];
	__u32 addr_be[4];
};

/* The datapath's clock as udplb_clock reports it: jiffies now and the
 * jiffies per second that userspace measured (the kernel's CONFIG_HZ). */
struct udplb_clock {
	__u64 jiffies;
	__u64 hz;
};

/* Per-CPU packet and byte counter (per backend, per frontend for replies). */
struct udplb_counter {
	__u64 packets;
	__u64 bytes;
};

/* Passive signals per backend slot (per-CPU), for the daemon's health
 * checks: what the datapath sees without sending anything. */
struct udplb_passive {
	__u64 icmp_errors; /* ICMP destination unreachable (IPv4 type 3 but
			    * fragmentation needed, IPv6 type 1) about a
			    * datagram sent to the backend */
	__u64 replies;     /* replies seen from the backend (rewritten) */
};

#endif /* UDPLB_H */
