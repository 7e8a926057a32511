// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The pieces of twtrace's primary program (bpf/twtrace.bpf.c, handle_inet_sock_set_state), one
 * program each, so that bench/bpf-pieces.ts can time what each costs a run on
 * tp_btf/inet_sock_set_state: nothing, reading the socket's namespace, the owner in socket-local
 * storage (as twtrace keeps it) and in a hash keyed by the socket's address (an alternative measured
 * against it), its cookie, the clock, counting in a hash map (count_event), and the witness of active
 * closes as a preallocated hash (as twtrace keeps it) and as a ring (proposed).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct piece_owner {
	__u64 words[8]; /* about twtrace's struct twt_owner */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct piece_owner);
} piece_storage_map SEC(".maps");

/* Results land here so that the compiler keeps the calls. */
volatile __u64 piece_sink;

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(piece_empty, const struct sock *sk, const int oldstate, const int newstate)
{
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(piece_netns, const struct sock *sk, const int oldstate, const int newstate)
{
	piece_sink += sk->__sk_common.skc_net.net->ns.inum; /* as twtrace reads it (sock_netns) */
	return 0;
}

/*
 * The transitions twtrace keeps the owner at (bpf/twtrace.bpf.c, relevant()), roughly: 1 a connection's
 * start (connect, an accepted child), 2 a later one (a close), 3 its end (-> CLOSE); 0 the rest.
 */
static __always_inline int piece_where(const struct sock *sk, int oldstate, int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if ((newstate == TCP_SYN_SENT && oldstate == TCP_CLOSE) || (newstate == TCP_SYN_RECV && oldstate == TCP_LISTEN))
		return 1;
	if (newstate == TCP_FIN_WAIT1 || (newstate == TCP_LAST_ACK && oldstate == TCP_CLOSE_WAIT))
		return 2;
	return newstate == TCP_CLOSE ? 3 : 0;
}

/* Socket-local storage, as twtrace keeps the owner: created at a connection's start, looked up after. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(piece_storage, const struct sock *sk, const int oldstate, const int newstate)
{
	int where = piece_where(sk, oldstate, newstate);
	struct piece_owner *o;

	if (!where)
		return 0;
	o = bpf_sk_storage_get(&piece_storage_map, (struct sock *)sk, 0, where == 1 ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (o)
		o->words[0]++;
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct piece_owner);
} piece_owner_map SEC(".maps");

const struct piece_owner piece_owner_zero = {};

/* The owner in a hash keyed by the socket's address instead (built, measured and put back:
 * docs/counting-in-the-kernel.md, "The owner's home, measured"): written at a connection's start,
 * looked up after, deleted at its end. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(piece_owner, const struct sock *sk, const int oldstate, const int newstate)
{
	int where = piece_where(sk, oldstate, newstate);
	__u64 addr = (__u64)sk;
	struct piece_owner *o;

	if (!where)
		return 0;
	if (where == 1) {
		bpf_map_update_elem(&piece_owner_map, &addr, &piece_owner_zero, BPF_ANY);
		return 0;
	}
	o = bpf_map_lookup_elem(&piece_owner_map, &addr);
	if (o)
		o->words[0]++;
	if (where == 3)
		bpf_map_delete_elem(&piece_owner_map, &addr);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(piece_cookie, const struct sock *sk, const int oldstate, const int newstate)
{
	piece_sink += bpf_get_socket_cookie((struct sock *)sk);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(piece_clock, const struct sock *sk, const int oldstate, const int newstate)
{
	piece_sink += bpf_ktime_get_ns();
	return 0;
}

/* About twtrace's struct twt_count_key and struct twt_count (bpf/twtrace.h). */
struct piece_count_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 netns;
	__u32 port;
};

struct piece_count_value {
	__u64 words[21];
};

struct piece_counts_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct piece_count_key);
	__type(value, struct piece_count_value);
} piece_counts_a SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct piece_counts_map);
} piece_counts SEC(".maps") = {
	.values = { [0] = &piece_counts_a },
};

const struct piece_count_value piece_count_zero = {};

/* As twtrace's count_event: the generation from the slot, the key's counters (made on first use), an atomic add. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(piece_count, const struct sock *sk, const int oldstate, const int newstate)
{
	struct piece_count_key key = {};
	struct piece_count_value *c;
	__u32 zero = 0;
	void *map = bpf_map_lookup_elem(&piece_counts, &zero);

	if (!map)
		return 0;
	key.netns = sk->__sk_common.skc_net.net->ns.inum;
	key.port = sk->__sk_common.skc_dport;
	*(__u32 *)key.saddr = sk->__sk_common.skc_rcv_saddr;
	*(__u32 *)key.daddr = sk->__sk_common.skc_daddr;
	c = bpf_map_lookup_elem(map, &key);
	if (!c) {
		bpf_map_update_elem(map, &key, &piece_count_zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(map, &key);
		if (!c)
			return 0;
	}
	__sync_fetch_and_add(&c->words[newstate & 15], 1);
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct piece_count_key);
	__type(value, struct piece_count_value);
} piece_counts_percpu SEC(".maps");

/* piece_count with a per-CPU hash: plain adds, no cache line shared between CPUs. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(piece_count_percpu, const struct sock *sk, const int oldstate, const int newstate)
{
	struct piece_count_key key = {};
	struct piece_count_value *c;

	key.netns = sk->__sk_common.skc_net.net->ns.inum;
	key.port = sk->__sk_common.skc_dport;
	*(__u32 *)key.saddr = sk->__sk_common.skc_rcv_saddr;
	*(__u32 *)key.daddr = sk->__sk_common.skc_daddr;
	c = bpf_map_lookup_elem(&piece_counts_percpu, &key);
	if (!c) {
		bpf_map_update_elem(&piece_counts_percpu, &key, &piece_count_zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&piece_counts_percpu, &key);
		if (!c)
			return 0;
	}
	c->words[newstate & 15] += 1;
	return 0;
}

/*
 * The witness of active closes (bpf/twtrace.bpf.c, `closing`) as twtrace keeps it, and the ring
 * proposed in its place (docs/counting-in-the-kernel.md, "What is left of step 5"). Both keep the
 * owner in socket-local storage as piece_storage does, and read the cookie at the close and the end:
 * each above piece_storage is what the witness adds.
 */
struct piece_closing_rec {
	__u64 cookie;
	__u64 claim;
	__u64 words[12]; /* 112 bytes in all, as struct twt_closing */
};

/* Preallocated, as `closing`. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct piece_closing_rec);
} piece_closing_map SEC(".maps");

static __always_inline bool piece_active_close(int oldstate, int newstate)
{
	return oldstate == TCP_ESTABLISHED && newstate == TCP_FIN_WAIT1;
}

enum { PIECE_WITNESS_NONE, PIECE_WITNESS_CLOSE, PIECE_WITNESS_END };

/*
 * What both witness pieces do before their own map: the owner's storage (created at a connection's
 * start, as piece_storage), the socket's cookie at a close and at the end, and at the active close
 * the record (`rec`). Says which of the two this transition is for the witness; `*o` is set for both.
 */
static __always_inline int piece_witness_site(const struct sock *sk, int oldstate, int newstate, struct piece_owner **o,
					      struct piece_closing_rec *rec)
{
	int where = piece_where(sk, oldstate, newstate);

	if (!where)
		return PIECE_WITNESS_NONE;
	*o = bpf_sk_storage_get(&piece_storage_map, (struct sock *)sk, 0, where == 1 ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (!*o || where == 1)
		return PIECE_WITNESS_NONE;
	rec->cookie = bpf_get_socket_cookie((struct sock *)sk);
	if (piece_active_close(oldstate, newstate)) {
		rec->words[0] = sk->__sk_common.skc_daddr;
		rec->words[1] = sk->__sk_common.skc_dport;
		return PIECE_WITNESS_CLOSE;
	}
	return where == 3 && (*o)->words[1] ? PIECE_WITNESS_END : PIECE_WITNESS_NONE;
}

/* As twtrace: at the active close a 112-byte record inserted by cookie; at the end looked up, claimed, deleted. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(piece_closing, const struct sock *sk, const int oldstate, const int newstate)
{
	struct piece_closing_rec rec = {}, *r;
	struct piece_owner *o = NULL;

	switch (piece_witness_site(sk, oldstate, newstate, &o, &rec)) {
	case PIECE_WITNESS_CLOSE:
		o->words[1] = bpf_map_update_elem(&piece_closing_map, &rec.cookie, &rec, BPF_ANY) == 0;
		break;
	case PIECE_WITNESS_END:
		o->words[1] = 0;
		r = bpf_map_lookup_elem(&piece_closing_map, &rec.cookie);
		if (r) {
			piece_sink += __sync_val_compare_and_swap(&r->claim, 0, 2);
			bpf_map_delete_elem(&piece_closing_map, &rec.cookie);
		}
		break;
	}
	return 0;
}

#define PIECE_RING_SLOTS 131072

/* One ring for every CPU: a slot taken by an atomic add on one counter, written with plain stores. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PIECE_RING_SLOTS);
	__type(key, __u32);
	__type(value, struct piece_closing_rec);
} piece_ring_map SEC(".maps");

__u64 piece_ring_head;

/* The ring: at the active close the record written into the next slot, its index kept in the storage;
 * at the end the slot claimed if it still holds the socket's cookie. Nothing allocated, nothing deleted. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(piece_closing_ring, const struct sock *sk, const int oldstate, const int newstate)
{
	struct piece_closing_rec rec = {}, *r;
	struct piece_owner *o = NULL;
	__u32 slot;

	switch (piece_witness_site(sk, oldstate, newstate, &o, &rec)) {
	case PIECE_WITNESS_CLOSE:
		slot = __sync_fetch_and_add(&piece_ring_head, 1) & (PIECE_RING_SLOTS - 1);
		r = bpf_map_lookup_elem(&piece_ring_map, &slot);
		if (!r)
			return 0;
		__builtin_memcpy(r, &rec, sizeof(rec)); /* the whole record, as the hash's insert copies it */
		o->words[1] = (__u64)slot + 1;
		break;
	case PIECE_WITNESS_END:
		slot = o->words[1] - 1;
		o->words[1] = 0;
		r = bpf_map_lookup_elem(&piece_ring_map, &slot);
		if (r && r->cookie == rec.cookie)
			piece_sink += __sync_val_compare_and_swap(&r->claim, 0, 2);
		break;
	}
	return 0;
}
