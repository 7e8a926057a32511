// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The floor: what any tracer on these tracepoints pays before doing anything. Two programs that
 * return at once on tp_btf/inet_sock_set_state, as many as twtrace attaches there (its primary and
 * its fallback, bpf/twtrace.bpf.c), so that the benchmark can state twtrace's distance to it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(floor_primary, const struct sock *sk, const int oldstate, const int newstate)
{
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(floor_fallback, const struct sock *sk, const int oldstate, const int newstate)
{
	return 0;
}

/*
 * The floor of a socket walk: an iter/tcp program that copies nothing, so that a walk's time can be
 * set beside what the kernel's iterator takes to visit every socket of a namespace (bpf_iter_tcp holds
 * each socket of a hash bucket, runs the program on it, releases it). At the iterator's end (no
 * socket) it writes how many sockets it visited. bench/walk-floor.ts.
 */
SEC("iter/tcp")
int floor_walk(struct bpf_iter__tcp *ctx)
{
	__u64 visited = ctx->meta->seq_num;

	if (!ctx->sk_common)
		bpf_seq_write(ctx->meta->seq, &visited, sizeof(visited));
	return 0;
}
