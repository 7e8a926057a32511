// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * twtrace open sockets: dump_open_sockets (iter/task_file) writes one struct twt_open_socket per TCP socket a
 * process holds open, in every network namespace: who is connected to a destination now, and who
 * holds each listening socket (every process a pre-forked server shares it with). It is the
 * evidence for a *likely* owner of TIME_WAIT sockets that predate twtrace, whose real owner the
 * kernel no longer shows (a timewait socket has no file, and the kernel enters TIME_WAIT in
 * softirq context: docs/kernel-facts.md §1.2, §1.3): a client's, from who connects to the same
 * destination; a server's, from who holds the listening socket of its port. Never an
 * attribution: the loader labels what it infers from it.
 *
 * A separate object from twtrace.bpf.o: bpf_sock_from_file() needs Linux 5.11, and a kernel without
 * it must still load the tracer. Loaded only for `top` and `doctor` without an agent.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "twtrace.h"

_Static_assert(sizeof(struct twt_open_socket) == 64, "twt_open_socket size changed: regenerate the layout");

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("iter/task_file")
int dump_open_sockets(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct twt_open_socket h = {};
	struct socket *sock;
	struct sock *sk;

	if (!task || !file)
		return 0;
	/* Threads share their process's files: one record per process (bpf_iter task_file already
	 * skips threads whose files are the previous task's, but not on every kernel). */
	if (task->pid != task->tgid)
		return 0;
	sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	h.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (h.family != AF_INET && h.family != AF_INET6)
		return 0;
	h.state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (h.state == TCP_CLOSE)
		return 0;
	h.pid = task->tgid;
	bpf_probe_read_kernel_str(h.comm, sizeof(h.comm), task->comm);
	h.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	h.sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	h.dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (h.family == AF_INET6) {
		BPF_CORE_READ_INTO(&h.saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&h.daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		BPF_CORE_READ_INTO((__u32 *)h.saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)h.daddr, sk, __sk_common.skc_daddr);
	}
	bpf_seq_write(ctx->meta->seq, &h, sizeof(h));
	return 0;
}

/*
 * dump_open_tcp (iter/task_file): one struct twt_sock per TCP socket a process holds open, in the
 * socket table's own terms (cookie, 4-tuple, state): the part of an open-socket walk
 * (src/pipeline/open-walks.ts) that processes hold. With the closes in flight (the tracer's
 * `closing` map: orphaned sockets have no file), it is every socket of a namespace but its timewait,
 * request and kernel-owned ones, found without visiting the million timewait sockets the counters
 * already hold. A socket shared by several processes comes once per process; the loader keeps one.
 */
SEC("iter/task_file")
int dump_open_tcp(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct twt_sock s = {};
	struct socket *sock;
	struct sock *sk;

	if (!task || !file || task->pid != task->tgid)
		return 0;
	sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	sk = sock->sk;
	if (!sk || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	s.family = sk->__sk_common.skc_family;
	s.state = sk->__sk_common.skc_state;
	/* CLOSE: not in the kernel's tables (never connected, or ended with its file still open). */
	if ((s.family != AF_INET && s.family != AF_INET6) || s.state == TCP_CLOSE)
		return 0;
	/* bpf_get_socket_cookie() refuses a socket reached through a file (an untrusted pointer): its
	 * cookie is read where sock_gen_cookie() keeps it. Every socket twtrace saw change state, or a
	 * walk visited, has one; 0 only for one that neither did (the loader keeps it by its 4-tuple). */
	s.cookie = sk->__sk_common.skc_cookie.counter;
	s.netns = sk->__sk_common.skc_net.net->ns.inum;
	s.sport = sk->__sk_common.skc_num;
	s.dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (s.family == AF_INET6) {
		__builtin_memcpy(s.saddr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, TWT_ADDR_LEN);
		__builtin_memcpy(s.daddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, TWT_ADDR_LEN);
	} else {
		*(__u32 *)s.saddr = sk->__sk_common.skc_rcv_saddr;
		*(__u32 *)s.daddr = sk->__sk_common.skc_daddr;
	}
	bpf_seq_write(ctx->meta->seq, &s, sizeof(s));
	return 0;
}
