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
