// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The pieces of twtrace's primary program (bpf/twtrace.bpf.c, handle_inet_sock_set_state), one
 * program each, so that bench/bpf-pieces.ts can time what each costs a run on
 * tp_btf/inet_sock_set_state: nothing, reading the socket's namespace, its storage (created on first
 * use, as twtrace's is), its cookie, the clock.
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

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(piece_storage, const struct sock *sk, const int oldstate, const int newstate)
{
	struct piece_owner *o = bpf_sk_storage_get(&piece_storage_map, (struct sock *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (o)
		o->words[0]++;
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
