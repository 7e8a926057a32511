// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * twtrace: attribute TCP TIME_WAIT, resets and connect/bind failures to the process that caused them.
 *
 * Why not just take the current pid: the kernel moves a socket into TIME_WAIT while processing the
 * peer's FIN or ACK, in softirq or timer context, where `current` is the peer process, swapper or
 * ksoftirqd (../shared/kernel-facts.md §1.2). Only transitions made inside a syscall carry the owner.
 * So the owner is captured there and kept per socket, keyed by the socket cookie, which the timewait
 * socket later inherits (§1.4) and which is never reused, unlike the sock pointer.
 *
 * handle_inet_sock_set_state, per transition (old -> new):
 *   CLOSE -> SYN_SENT       connect(), process context: owner = current, side = client.
 *   CLOSE -> LISTEN         listen(), process context: listeners[netns, port] = current.
 *   LISTEN -> SYN_RECV      the accepted child, softirq: owner = listeners[netns, port], side = server.
 *   SYN_SENT -> ESTABLISHED emit connect (the local port is chosen after CLOSE -> SYN_SENT).
 *   SYN_RECV -> ESTABLISHED emit accept.
 *   ESTABLISHED -> FIN_WAIT1 close()/shutdown()/exit, process context: closer = current; emit active_close.
 *   CLOSE_WAIT -> LAST_ACK  the passive closer, process context: closer = current.
 *   SYN_SENT -> CLOSE       emit connect_fail. sport 0 means inet_hash_connect() found no free port:
 *                           EADDRNOTAVAIL (§2); otherwise errno = sk_err (ECONNREFUSED, ETIMEDOUT), or 0
 *                           when close() cancelled the connect or a local error left sk_err unset.
 *   FIN_WAIT2|CLOSING -> CLOSE
 *                           TIME_WAIT entry when sk_err == 0 and not (fd open and no FIN received):
 *                           tcp_time_wait() swaps in an inet_timewait_sock and then tcp_done() emits
 *                           this transition; no tracepoint ever reports TIME_WAIT itself (§1.3).
 *                           A received RST (tcp_reset) sets sk_err first. An abortive close() from
 *                           FIN_WAIT2 (linger {1,0}, unread data) runs before __tcp_close()'s
 *                           sock_orphan(), so SOCK_DEAD is clear, and without the peer's FIN SOCK_DONE
 *                           is clear too; every real TIME_WAIT path has one of them set. Substate:
 *                           SOCK_DONE set = TIME_WAIT (60 s), clear = FIN_WAIT2 (tcp_fin_timeout).
 *                           Otherwise: emit reset.
 *   ESTABLISHED|CLOSE_WAIT|FIN_WAIT1|SYN_RECV -> CLOSE
 *                           emit reset: sk_err != 0 is a received RST or a timeout; sk_err == 0 is an
 *                           abortive close() in process context (closer = current).
 *   LAST_ACK -> CLOSE       the normal end of a passive close; a reset only if sk_err != 0.
 *   LISTEN -> CLOSE         forget the listener.
 *   any -> CLOSE            delete the owner entry (cookies are unique, but the LRU must not fill up).
 *   everything else         (SYN_SENT -> ESTABLISHED on the server, FIN_WAIT1 -> FIN_WAIT2, ...) carries
 *                           no information and is dropped before any map access.
 *
 * dump_tcp (iter/tcp): one struct twt_sock per socket of the namespace the iterator was created in,
 * for `top`'s reconciliation. TIME_WAIT has no tracepoint at its end (§1.3); this walk is exact.
 *
 * handle_sys_exit: bind() returning -EADDRINUSE on a TCP socket emits bind_fail with the requested
 * address; there is no state transition for it (§2).
 *
 * Blind spots (no tracepoint, §1.3): the end of TIME_WAIT, a FIN_WAIT2-substate timewait socket that
 * later becomes TIME_WAIT, tcp_tw_reuse taking over a timewait socket, and tcp_max_tw_buckets overflow.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "twtrace.h"

_Static_assert(sizeof(struct twt_event) == 144, "twt_event size changed: regenerate the layout");
_Static_assert(sizeof(struct twt_event) % 8 == 0, "twt_event must keep 8-byte alignment in the ring");
_Static_assert(sizeof(struct twt_sock) == 56, "twt_sock size changed: regenerate the layout");
_Static_assert(sizeof(struct twt_config) == 56, "twt_config size changed: regenerate the layout");

#define AF_INET 2
#define AF_INET6 10
#define EADDRINUSE 98
#define EADDRNOTAVAIL 99
#define IPPROTO_TCP 6
#define SOCK_DEAD 0
#define SOCK_DONE 1

#if defined(__TARGET_ARCH_x86)
#define NR_BIND 49
#else
#error "twtrace: only x86_64 is supported (syscall number of bind)"
#endif

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* From /proc/config.gz or /boot/config-*, read by libbpf at load; 0 when neither exists. */
extern unsigned int CONFIG_HZ __kconfig __weak;

const volatile struct twt_config cfg = {};

/* Puts the record, config and enum types into BTF for scripts/gen-layout.ts. Never accessed. */
struct twt_btf_anchor {
	struct twt_event event;
	struct twt_sock sock;
	enum twt_event_kind kind;
	enum twt_side side;
	enum twt_owner_source owner_source;
	enum twt_counter counter;
} twt_btf_anchor;

struct twt_owner {
	__u64 start_ns; /* 0: the socket's start was not seen */
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__u32 closer_pid;
	__u32 closer_tid;
	__u32 closer_uid;
	__u8 side;
	__u8 source;
	__u8 _pad[6];
	char comm[TWT_COMM_LEN];
	char closer_comm[TWT_COMM_LEN];
};

struct twt_listener_key {
	__u32 netns;
	__u32 port;
};

struct twt_listener {
	__u64 cookie; /* of the listening socket: SO_REUSEPORT groups share (netns, port) */
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__u32 _pad;
	char comm[TWT_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* the loader sets --ring-size */
} events SEC(".maps");

/* Live sockets only: entries go at -> CLOSE. LRU so that missed deletions can never fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct twt_owner);
} sock_owner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct twt_listener_key);
	__type(value, struct twt_listener);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TWT_CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &which);

	if (n)
		*n += 1; /* per-CPU slot: no atomic needed */
}

static __always_inline bool kind_wanted(__u8 kind)
{
	return cfg.kinds == 0 || (cfg.kinds & (1u << kind));
}

static __always_inline bool netns_wanted(__u32 netns)
{
	if (cfg.netns_count == 0)
		return true;
	for (int i = 0; i < TWT_MAX_NETNS; i++) {
		if (i >= cfg.netns_count)
			break;
		if (cfg.netns[i] == netns)
			return true;
	}
	return false;
}

static __always_inline __u32 sock_netns(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline __u16 sock_sport(const struct sock *sk)
{
	/* inet_sport, not skc_num: inet_put_port() has zeroed skc_num by the time of any -> CLOSE (§1.4). */
	return bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
}

static __always_inline __u64 sock_cgroup(const struct sock *sk)
{
	if (!bpf_core_field_exists(sk->sk_cgrp_data.cgroup))
		return 0;
	return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
}

/* Fills the owner fields from the current task. Call only in process context. */
static __always_inline void owner_from_current(__u32 *pid, __u32 *tid, __u32 *uid, char *comm)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	*pid = pid_tgid >> 32;
	*tid = (__u32)pid_tgid;
	*uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(comm, TWT_COMM_LEN);
}

static __always_inline void set_closer(struct twt_owner *o)
{
	owner_from_current(&o->closer_pid, &o->closer_tid, &o->closer_uid, o->closer_comm);
}

/* Reserves and fills the socket part of a record. NULL when filtered out or the ring is full. */
static __always_inline struct twt_event *reserve_sock_event(const struct sock *sk, __u8 kind, __u32 netns,
							     const struct twt_owner *o, int oldstate,
							     int newstate, __u64 now_ns)
{
	__u16 sport, dport;
	__u64 cgroup_id;
	struct twt_event *e;

	if (!kind_wanted(kind))
		return NULL;
	if (cfg.pid && (!o || (o->pid != cfg.pid && o->closer_pid != cfg.pid)))
		return NULL;
	sport = sock_sport(sk);
	dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (cfg.port && sport != cfg.port && dport != cfg.port)
		return NULL;
	cgroup_id = sock_cgroup(sk);
	if (cfg.cgroup_id && cgroup_id != cfg.cgroup_id)
		return NULL;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(TWT_CNT_RING_FULL);
		return NULL;
	}
	e->ts_us = now_ns / 1000;
	e->cookie = bpf_get_socket_cookie((struct sock *)sk);
	e->cgroup_id = cgroup_id;
	e->netns = netns;
	e->sport = sport;
	e->dport = dport;
	e->family = sk->__sk_common.skc_family;
	e->kind = kind;
	e->oldstate = oldstate;
	e->newstate = newstate;
	e->substate = 0;
	e->err = 0;
	e->_pad = 0;
	if (e->family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		/* Copy exactly the 4 address bytes and zero the rest. */
		__builtin_memset(e->saddr, 0, sizeof(e->saddr));
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		BPF_CORE_READ_INTO((__u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->daddr, sk, __sk_common.skc_daddr);
	}
	if (o) {
		e->pid = o->pid;
		e->tid = o->tid;
		e->uid = o->uid;
		e->closer_pid = o->closer_pid;
		e->closer_tid = o->closer_tid;
		e->closer_uid = o->closer_uid;
		e->side = o->side;
		e->owner_source = o->source;
		e->lifetime_us = o->start_ns ? (now_ns - o->start_ns) / 1000 : 0;
		__builtin_memcpy(e->comm, o->comm, TWT_COMM_LEN);
		__builtin_memcpy(e->closer_comm, o->closer_comm, TWT_COMM_LEN);
	} else {
		e->pid = e->tid = e->uid = 0;
		e->closer_pid = e->closer_tid = e->closer_uid = 0;
		e->side = TWT_SIDE_UNKNOWN;
		e->owner_source = TWT_OWNER_NONE;
		e->lifetime_us = 0;
		__builtin_memset(e->comm, 0, TWT_COMM_LEN);
		__builtin_memset(e->closer_comm, 0, TWT_COMM_LEN);
	}
	return e;
}

static __always_inline void emit(const struct sock *sk, __u8 kind, __u32 netns, const struct twt_owner *o,
				 int oldstate, int newstate, __u64 now_ns, __s32 err, __u8 substate)
{
	struct twt_event *e = reserve_sock_event(sk, kind, netns, o, oldstate, newstate, now_ns);

	if (!e)
		return;
	e->err = err;
	e->substate = substate;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void on_connect_start(__u64 cookie, __u64 now_ns)
{
	struct twt_owner o = {};

	o.start_ns = now_ns;
	o.side = TWT_SIDE_CLIENT;
	o.source = TWT_OWNER_CONNECT;
	owner_from_current(&o.pid, &o.tid, &o.uid, o.comm);
	if (bpf_map_update_elem(&sock_owner, &cookie, &o, BPF_ANY))
		count(TWT_CNT_OWNER_MAP_FULL);
}

static __always_inline void on_listen(const struct sock *sk, __u32 netns, __u64 cookie)
{
	struct twt_listener_key key = { .netns = netns, .port = sk->__sk_common.skc_num };
	struct twt_listener l = { .cookie = cookie };

	if (!key.port) /* listen() without bind(): the port is assigned after this transition */
		key.port = sock_sport(sk);
	owner_from_current(&l.pid, &l.tid, &l.uid, l.comm);
	if (bpf_map_update_elem(&listeners, &key, &l, BPF_ANY))
		count(TWT_CNT_LISTENER_MAP_FULL);
}

static __always_inline void on_listen_close(const struct sock *sk, __u32 netns, __u64 cookie)
{
	struct twt_listener_key key = { .netns = netns, .port = sock_sport(sk) };
	struct twt_listener *l = bpf_map_lookup_elem(&listeners, &key);

	/* Another SO_REUSEPORT listener may own the entry now. */
	if (l && l->cookie == cookie)
		bpf_map_delete_elem(&listeners, &key);
}

static __always_inline void on_accept_child(const struct sock *sk, __u32 netns, __u64 cookie, __u64 now_ns)
{
	struct twt_listener_key key = { .netns = netns, .port = sock_sport(sk) };
	struct twt_listener *l = bpf_map_lookup_elem(&listeners, &key);
	struct twt_owner o = {};

	o.start_ns = now_ns;
	o.side = TWT_SIDE_SERVER;
	if (l) {
		o.source = TWT_OWNER_LISTEN;
		o.pid = l->pid;
		o.tid = l->tid;
		o.uid = l->uid;
		__builtin_memcpy(o.comm, l->comm, TWT_COMM_LEN);
	}
	if (bpf_map_update_elem(&sock_owner, &cookie, &o, BPF_ANY))
		count(TWT_CNT_OWNER_MAP_FULL);
}

/* The closing task, in process context. Creates an entry for a socket that predates twtrace. */
static __always_inline struct twt_owner *record_closer(const struct sock *sk, __u32 netns, __u64 cookie)
{
	struct twt_owner *o = bpf_map_lookup_elem(&sock_owner, &cookie);
	struct twt_owner fresh = {};

	if (o) {
		set_closer(o);
		return o;
	}
	set_closer(&fresh);
	{
		/* Side of a socket we did not see start: a server if its local port has a known listener. */
		struct twt_listener_key key = { .netns = netns, .port = sock_sport(sk) };

		fresh.side = bpf_map_lookup_elem(&listeners, &key) ? TWT_SIDE_SERVER : TWT_SIDE_UNKNOWN;
	}
	if (bpf_map_update_elem(&sock_owner, &cookie, &fresh, BPF_ANY)) {
		count(TWT_CNT_OWNER_MAP_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&sock_owner, &cookie);
}

static __always_inline bool entered_time_wait(const struct sock *sk, int oldstate, __u8 *substate)
{
	unsigned long flags = sk->__sk_common.skc_flags;
	bool dead = flags & (1UL << SOCK_DEAD);
	bool done = flags & (1UL << SOCK_DONE);

	if (oldstate != TCP_FIN_WAIT2 && oldstate != TCP_CLOSING)
		return false;
	if (sk->sk_err != 0 || (!dead && !done))
		return false;
	*substate = done ? TCP_TIME_WAIT : TCP_FIN_WAIT2;
	return true;
}

static __always_inline void on_close(const struct sock *sk, __u32 netns, __u64 cookie, int oldstate,
				     __u64 now_ns)
{
	struct twt_owner *o;
	__u8 substate = 0;
	__s32 err;

	if (oldstate == TCP_LISTEN) {
		on_listen_close(sk, netns, cookie);
		return;
	}
	err = sk->sk_err;
	o = bpf_map_lookup_elem(&sock_owner, &cookie);

	if (oldstate == TCP_SYN_SENT) {
		if (sock_sport(sk) == 0)
			err = EADDRNOTAVAIL;
		emit(sk, TWT_KIND_CONNECT_FAIL, netns, o, oldstate, TCP_CLOSE, now_ns, err, 0);
	} else if (entered_time_wait(sk, oldstate, &substate)) {
		if (!o || o->source == TWT_OWNER_NONE)
			count(TWT_CNT_OWNER_MISSING);
		emit(sk, TWT_KIND_TIME_WAIT, netns, o, oldstate, TCP_CLOSE, now_ns, 0, substate);
	} else if (oldstate != TCP_LAST_ACK || err != 0) {
		/* sk_err == 0 from ESTABLISHED/CLOSE_WAIT is an abortive close() in process context: the
		 * caller is the closer. Later states already have one (FIN_WAIT1), and may end in softirq. */
		if (err == 0 && (!o || !o->closer_pid))
			o = record_closer(sk, netns, cookie);
		if (!o || o->source == TWT_OWNER_NONE)
			count(TWT_CNT_OWNER_MISSING);
		emit(sk, TWT_KIND_RESET, netns, o, oldstate, TCP_CLOSE, now_ns, err, 0);
	}
	if (o)
		bpf_map_delete_elem(&sock_owner, &cookie);
}

static __always_inline int on_set_state(const struct sock *sk, const int oldstate, const int newstate)
{
	struct twt_owner *o;
	__u32 netns;
	__u64 cookie, now_ns;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	/* Cheapest first: most transitions are dropped here, before any map access. */
	switch (newstate) {
	case TCP_SYN_SENT:
	case TCP_LISTEN:
	case TCP_CLOSE:
	case TCP_LAST_ACK:
		break;
	case TCP_SYN_RECV:
		if (oldstate != TCP_LISTEN)
			return 0;
		break;
	case TCP_ESTABLISHED:
		if (oldstate == TCP_SYN_SENT && !kind_wanted(TWT_KIND_CONNECT))
			return 0;
		if (oldstate == TCP_SYN_RECV && !kind_wanted(TWT_KIND_ACCEPT))
			return 0;
		break;
	case TCP_FIN_WAIT1:
		break;
	default:
		return 0;
	}
	if (cfg.family && sk->__sk_common.skc_family != cfg.family)
		return 0;
	netns = sock_netns(sk);
	if (!netns_wanted(netns))
		return 0;

	cookie = bpf_get_socket_cookie((struct sock *)sk);
	now_ns = bpf_ktime_get_ns();

	switch (newstate) {
	case TCP_SYN_SENT:
		if (oldstate == TCP_CLOSE)
			on_connect_start(cookie, now_ns);
		return 0;
	case TCP_LISTEN:
		on_listen(sk, netns, cookie);
		return 0;
	case TCP_SYN_RECV:
		on_accept_child(sk, netns, cookie, now_ns);
		return 0;
	case TCP_ESTABLISHED:
		o = bpf_map_lookup_elem(&sock_owner, &cookie);
		if (oldstate == TCP_SYN_SENT)
			emit(sk, TWT_KIND_CONNECT, netns, o, oldstate, newstate, now_ns, 0, 0);
		else if (oldstate == TCP_SYN_RECV)
			emit(sk, TWT_KIND_ACCEPT, netns, o, oldstate, newstate, now_ns, 0, 0);
		return 0;
	case TCP_FIN_WAIT1:
		o = record_closer(sk, netns, cookie);
		emit(sk, TWT_KIND_ACTIVE_CLOSE, netns, o, oldstate, newstate, now_ns, 0, 0);
		return 0;
	case TCP_LAST_ACK:
		if (oldstate == TCP_CLOSE_WAIT)
			record_closer(sk, netns, cookie);
		return 0;
	case TCP_CLOSE:
		on_close(sk, netns, cookie, oldstate, now_ns);
		return 0;
	}
	return 0;
}

/*
 * The kernel runs a BPF program at most once per CPU at a time: __bpf_trace_run() skips a run that
 * would nest (prog->active) and counts it in recursion_misses. inet_sock_set_state does nest: a
 * transition in process context (connect, close) can be interrupted by a softirq that receives a
 * packet and moves another socket (0.4 % of transitions at 40k connections/s here). So the tracepoint
 * carries two programs, probes called one after the other in attach order, the primary first:
 *
 *   primary   handles the transition, then pushes (sk, oldstate, newstate) on a per-CPU stack;
 *   fallback  pops that entry if it is there: the primary handled this transition in this context.
 *             If it is not, the primary was skipped (it is active in the context this one
 *             interrupted, anywhere from its entry to its exit), so the fallback handles it.
 *
 * Nesting is LIFO, so a matching entry is found at the top, unless fallbacks of nested transitions
 * were themselves skipped (they nested inside the fallback, while the primary was idle and handled
 * them): those entries sit above the match, and are dropped with it. Such an entry can also be left
 * behind, when the skip came after the outer fallback's pop; entries are timestamped, and one older
 * than TWT_HANDLED_STALE_JIFFIES cannot belong to a transition still in progress (softirq processing
 * nested in one is bounded to about 2 jiffies by net_rx_action and __do_softirq), so the primary
 * drops it and everything below before pushing. (Jiffies: bpf_ktime_get_coarse_ns is not allowed in
 * tracing programs, and bpf_ktime_get_ns costs more.) The primary and the fallback are never both active in one context, so a
 * transition is never skipped by both.
 * Lost transitions = primary's recursion_misses - TWT_CNT_NESTED_RECOVERED (the loader reports it).
 */
#define TWT_HANDLED_SLOTS 8
#define TWT_HANDLED_STALE_JIFFIES 25 /* 25 ms at HZ=1000, 250 ms at HZ=100 */

struct twt_handled {
	struct {
		__u64 sk;
		__u64 at;     /* bpf_jiffies64() at the push */
		__u32 states; /* oldstate << 8 | newstate, with bit 16 set so that it is never 0 */
		__u32 _pad;
	} slot[TWT_HANDLED_SLOTS];
	__u32 depth;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct twt_handled);
} primary_handled SEC(".maps");

static __always_inline __u32 states_key(int oldstate, int newstate)
{
	return 1u << 16 | (oldstate & 0xff) << 8 | (newstate & 0xff);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u32 zero = 0, i;
	struct twt_handled *h;
	__u64 now;

	on_set_state(sk, oldstate, newstate);
	h = bpf_map_lookup_elem(&primary_handled, &zero);
	if (!h)
		return 0;
	now = bpf_jiffies64();
	i = h->depth;
	if (i >= TWT_HANDLED_SLOTS) /* stale entries can fill it: overwrite the top one */
		i = TWT_HANDLED_SLOTS - 1;
	/* The newest entry is stale, so every one below it is too. (Masks: for the verifier.) */
	if (i > 0 && now - h->slot[(i - 1) & (TWT_HANDLED_SLOTS - 1)].at > TWT_HANDLED_STALE_JIFFIES)
		i = 0;
	i &= TWT_HANDLED_SLOTS - 1;
	h->slot[i].sk = (__u64)sk;
	h->slot[i].at = now;
	h->slot[i].states = states_key(oldstate, newstate);
	h->depth = i + 1;
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_inet_sock_set_state_nested, const struct sock *sk, const int oldstate, const int newstate)
{
	__u32 zero = 0, key = states_key(oldstate, newstate);
	struct twt_handled *h = bpf_map_lookup_elem(&primary_handled, &zero);
	int i;

	if (!h)
		return 0;
#pragma unroll
	for (i = TWT_HANDLED_SLOTS - 1; i >= 0; i--) {
		if (i < h->depth && h->slot[i].sk == (__u64)sk && h->slot[i].states == key) {
			h->depth = i;
			return 0;
		}
	}
	count(TWT_CNT_NESTED_RECOVERED);
	return on_set_state(sk, oldstate, newstate);
}

/* The struct sock behind fd in the current task, or NULL. Only on the (rare) bind failure path. */
static __always_inline struct sock *sock_of_fd(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	struct socket *sock;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	if (!file)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	return sock ? BPF_CORE_READ(sock, sk) : NULL;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(handle_sys_exit, struct pt_regs *regs, long ret)
{
	struct twt_event *e;
	struct sock *sk;
	void *uaddr;
	__u32 netns;
	__u16 family;
	__u64 pid_tgid;

	/* Runs on every syscall exit of the host: decide on the return value first. */
	if (ret != -EADDRINUSE || BPF_CORE_READ(regs, orig_ax) != NR_BIND)
		return 0;
	sk = sock_of_fd((int)BPF_CORE_READ(regs, di));
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (cfg.family && family != cfg.family)
		return 0;
	netns = sock_netns(sk);
	if (!netns_wanted(netns) || !kind_wanted(TWT_KIND_BIND_FAIL))
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	if (cfg.pid && (pid_tgid >> 32) != cfg.pid)
		return 0;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(TWT_CNT_RING_FULL);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_us = bpf_ktime_get_ns() / 1000;
	/* cookie stays 0: sk came from a probe read, which bpf_get_socket_cookie() does not accept. */
	e->cgroup_id = sock_cgroup(sk);
	e->netns = netns;
	e->family = family;
	e->kind = TWT_KIND_BIND_FAIL;
	e->owner_source = TWT_OWNER_SYSCALL;
	e->err = EADDRINUSE;
	owner_from_current(&e->pid, &e->tid, &e->uid, e->comm);
	/* The requested address, from the caller's sockaddr (bind(fd, addr, len): addr in rsi). */
	uaddr = (void *)BPF_CORE_READ(regs, si);
	if (family == AF_INET6) {
		struct sockaddr_in6 sa6 = {};

		bpf_probe_read_user(&sa6, sizeof(sa6), uaddr);
		e->sport = bpf_ntohs(sa6.sin6_port);
		__builtin_memcpy(e->saddr, &sa6.sin6_addr, TWT_ADDR_LEN);
	} else {
		struct sockaddr_in sa = {};

		bpf_probe_read_user(&sa, sizeof(sa), uaddr);
		e->sport = bpf_ntohs(sa.sin_port);
		__builtin_memcpy(e->saddr, &sa.sin_addr, 4);
	}
	if (cfg.port && e->sport != cfg.port) {
		bpf_ringbuf_discard(e, 0);
		return 0;
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/*
 * iter/tcp walks the listening and established hash tables of the network namespace of the task
 * that created the iterator (bpf_iter_tcp: seq_file_net), request and timewait sockets included.
 * The loader setns()es into each namespace of interest to create one (kernel-facts §5).
 */
SEC("iter/tcp")
int dump_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_timewait_sock *tw;
	struct twt_sock s = {};

	if (!skc)
		return 0;
	s.cookie = bpf_get_socket_cookie(skc);
	s.netns = BPF_CORE_READ(skc, skc_net.net, ns.inum);
	s.family = skc->skc_family;
	s.state = skc->skc_state;
	s.sport = skc->skc_num; /* host order; still set for timewait sockets (tw_num) */
	s.dport = bpf_ntohs(skc->skc_dport);
	s.timer_ms = -1;
	if (s.family == AF_INET6) {
		BPF_CORE_READ_INTO(&s.saddr, skc, skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&s.daddr, skc, skc_v6_daddr.in6_u.u6_addr8);
	} else {
		BPF_CORE_READ_INTO((__u32 *)s.saddr, skc, skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)s.daddr, skc, skc_daddr);
	}
	if (s.state == TCP_TIME_WAIT) {
		tw = bpf_skc_to_tcp_timewait_sock(skc);
		if (tw) {
			/* tw_timer is armed by inet_twsk_schedule() and re-armed (60 s) when a FIN_WAIT2
			 * substate socket receives the peer's FIN (tcp_timewait_state_process). */
			long left = (long)(BPF_CORE_READ(tw, tw_sk.tw_timer.expires) - bpf_jiffies64());

			s.substate = BPF_CORE_READ(tw, tw_sk.tw_substate);
			if (CONFIG_HZ)
				s.timer_ms = left <= 0 ? 0 : (__s32)((__u64)left * 1000 / CONFIG_HZ);
		}
	}
	bpf_seq_write(ctx->meta->seq, &s, sizeof(s));
	return 0;
}
