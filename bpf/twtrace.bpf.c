// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * twtrace: attribute TCP TIME_WAIT, resets and connect/bind failures to the process that caused them.
 *
 * Why not just take the current pid: the kernel moves a socket into TIME_WAIT while processing the
 * peer's FIN or ACK, in softirq or timer context, where `current` is the peer process, swapper or
 * ksoftirqd (kernel-facts §1.2: docs/kernel-facts.md). Only transitions made inside a syscall carry
 * the owner. So the owner is captured there and kept in the socket's own storage (sock_owner,
 * BPF_MAP_TYPE_SK_STORAGE: freed with the socket, nothing keyed by a reusable address). Records carry
 * the socket cookie, which the timewait socket inherits (§1.4), and the owner's and closer's task ids:
 * what belongs to a task (pid, uid, name) goes out once, in a struct twt_task record (current_task).
 *
 * handle_inet_sock_set_state, per transition (old -> new):
 *   CLOSE -> SYN_SENT       connect(), process context: owner = current, side = client.
 *   CLOSE -> LISTEN         listen(), process context: listeners[netns, port] = current.
 *   LISTEN -> SYN_RECV      the accepted child, softirq: owner = listeners[netns, port], side = server.
 *   SYN_SENT -> ESTABLISHED emit connect (the local port is chosen after CLOSE -> SYN_SENT).
 *   SYN_RECV -> ESTABLISHED emit accept.
 *   ESTABLISHED -> FIN_WAIT1 close()/shutdown()/exit, process context: closer = current; emit active_close;
 *                           with walks (cfg.witness), remember the close in `closing` until the socket ends.
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
 *   any -> CLOSE            claim and delete the socket's `closing` entry: a walk that claimed it first
 *                           already delivered the time_wait event (§8).
 *   everything else         (SYN_SENT -> ESTABLISHED on the server, FIN_WAIT1 -> FIN_WAIT2, ...) carries
 *                           no information and is dropped before any map or storage access (relevant()).
 *   Nested runs: the primary program marks each transition it handled in the socket's storage; the
 *   fallback handles those the kernel skipped for the primary (handle_inet_sock_set_state_nested).
 *
 * dump_tcp (iter/tcp): one struct twt_sock per socket of the namespace the iterator was created in,
 * for the loader's reconciliation, with the timer as the wheel will run it (§9). TIME_WAIT has no
 * tracepoint at its end (§1.3); this walk is exact. A timewait socket whose close is still in
 * `closing` entered TIME_WAIT without any tracepoint call (§8): the walk delivers its time_wait event.
 *
 * recover_time_wait (syscall, run by the loader): the same delivery for one socket. The loader looks up
 * the closes that wait too long in `closing` by their 4-tuple and cookie (sock_diag) and runs this
 * program for those it finds in TIME_WAIT: a few lookups instead of a walk of the namespace.
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

_Static_assert(sizeof(struct twt_event) == 96, "twt_event size changed: regenerate the layout");
_Static_assert(sizeof(struct twt_task) == sizeof(struct twt_event), "a capture keeps fixed-size records");
_Static_assert(__builtin_offsetof(struct twt_event, kind) == 0 && __builtin_offsetof(struct twt_task, kind) == 0, "every record starts with its kind");
_Static_assert(sizeof(struct twt_event) % 8 == 0, "twt_event must keep 8-byte alignment in the ring");
_Static_assert(sizeof(struct twt_sock) == 64, "twt_sock size changed: regenerate the layout");
_Static_assert(sizeof(struct twt_open_socket) == 64, "twt_open_socket size changed: regenerate the layout");
_Static_assert(sizeof(struct twt_config) == 64, "twt_config size changed: regenerate the layout");
_Static_assert(sizeof(struct twt_listener) == 32, "twt_listener size changed: regenerate the layout");
_Static_assert(sizeof(struct twt_count_key) == 56, "twt_count_key size changed: regenerate the layout");
_Static_assert(sizeof(struct twt_count) == (10 + TWT_LIFETIME_BUCKETS) * 8, "twt_count size changed: regenerate the layout");

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
	struct twt_task task;
	struct twt_sock sock;
	struct twt_open_socket open_socket;
	enum twt_event_kind kind;
	enum twt_side side;
	enum twt_owner_source owner_source;
	enum twt_counter counter;
	enum twt_event_flag flag;
	struct twt_closing closing; /* read by the loader when it sweeps the closing map */
	enum twt_claim claim;
	struct twt_walk_settings walk_settings;
	struct twt_recover recover;
	struct twt_clock clock;
	struct twt_listener_key listener_key;
	struct twt_listener listener;
	struct twt_count_key count_key;
	struct twt_count count;
	enum twt_lifetime_bound_ms lifetime_bound;
} twt_btf_anchor;

/* The last task record sent for a thread: a new one goes out when its pid or name changes. */
struct twt_task_seen {
	__u32 id;
	__u32 pid;
	__u64 comm[2];
};

/* tid -> the task record sent for it. LRU: an evicted thread just gets a new id and record. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct twt_task_seen);
} tasks SEC(".maps");

/* The last task id handed out (ids start at 1; 0 means none). */
__u32 last_task_id = 0;

/* The task each CPU saw last: a thread that connects and closes in a loop finds itself here, without
 * a hash lookup. A copy of a `tasks` entry; `tid` 0: empty. */
struct twt_task_cached {
	__u32 tid;
	__u32 _pad;
	struct twt_task_seen seen;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct twt_task_cached);
} last_task SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* the loader sets --ring-size */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct twt_owner);
} sock_owner SEC(".maps");

/*
 * Cookies of sockets that closed first (ESTABLISHED -> FIN_WAIT1) and have not yet been seen to end:
 * the witness for time_wait events the kernel never reports (README, "Design notes"). When the
 * socket ends, the tracepoint claims the entry and deletes it; a socket walk that finds a timewait
 * socket whose entry is still unclaimed claims it and delivers the time_wait event itself
 * (dump_tcp). The claim is a compare-and-swap, so the event is delivered exactly once whatever the
 * interleaving. Only when cfg.witness is set (the loader walks sockets). The loader deletes entries
 * that are claimed by a walk, or that are older than any close can take: then a late tracepoint
 * finds nothing and delivers the event as usual, so a deletion can never lose one.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* Preallocated: an insert and a delete per active close must not allocate. An entry lives from
	 * the close to TIME_WAIT (an RTT) unless the kernel misses the end; 65,536 is far above the
	 * closes in flight at 45k connections/s, and the loader sweeps what the kernel left. */
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct twt_closing);
} closing SEC(".maps");

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

/*
 * Counting in the kernel (docs/counting-in-the-kernel.md), with cfg.counting: every event the
 * filters pass is counted here, at the place it is emitted, whether or not its kind is sent. Two
 * generations: the programs count into the map the one slot of `counts` names; the loader retires a
 * generation by pointing the slot at the other map, which returns only after an RCU grace period
 * (maybe_wait_bpf_programs() in kernel/bpf/syscall.c, for updates of map-in-map slots), so no
 * program still counts into the retired map when the loader reads and clears it. Keys idle for a
 * generation then cost nothing, and no delete races an increment.
 *
 * A plain hash, not LRU: an evicted key would be counts lost without a trace. Preallocated: counting
 * must not allocate in softirq. Full: the event is counted in TWT_CNT_COUNTS_FULL instead. The loader
 * sets the size (1 when not counting).
 */
struct twt_counts_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct twt_count_key);
	__type(value, struct twt_count);
} counts_a SEC(".maps"), counts_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct twt_counts_map);
} counts SEC(".maps") = {
	.values = { [0] = &counts_a },
};

/* What a new key starts from (a map value, so that it needs no stack). */
const struct twt_count count_zero = {};

/* Written by the loader between walks (struct twt_walk_settings in twtrace.h). */
volatile struct twt_walk_settings walk = { .min_age_ns = 1000000000 };
/* Timewait sockets the walk under way left out (walk.counted_from_jiffies): reset at its first socket,
 * written in its trailer. The loader reads one walk at a time. */
__u64 walk_left_out = 0;

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

/*
 * Reading a socket. The tracepoint's `sk` is a BTF pointer (tp_btf): its fields, and the pointers in
 * them, are read with direct loads, which the verifier turns into fault-safe loads in place, still
 * relocated by CO-RE (vmlinux.h types preserve access indexes). BPF_CORE_READ would make a
 * bpf_probe_read_kernel() call per pointer instead, on every transition: relevant() reads the
 * namespace of every socket that changes state. Only the bind() path, whose socket comes from a
 * probe read (sock_of_fd), needs the _probe versions.
 */
static __always_inline __u32 sock_netns(const struct sock *sk)
{
	return sk->__sk_common.skc_net.net->ns.inum;
}

static __always_inline __u32 sock_netns_probe(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline __u16 sock_sport(const struct sock *sk)
{
	/* inet_sport, not skc_num: inet_put_port() has zeroed skc_num by the time of any -> CLOSE (§1.4).
	 * It is a field of struct inet_sock, past the struct sock the verifier knows `sk` as: reached
	 * through bpf_skc_to_tcp_sock(), which checks that `sk` is one (a TCP socket changing state is). */
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);

	return tp ? bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport) : 0;
}

static __always_inline __u64 sock_cgroup(const struct sock *sk)
{
	if (!bpf_core_field_exists(sk->sk_cgrp_data.cgroup))
		return 0;
	return sk->sk_cgrp_data.cgroup->kn->id;
}

static __always_inline __u64 sock_cgroup_probe(const struct sock *sk)
{
	if (!bpf_core_field_exists(sk->sk_cgrp_data.cgroup))
		return 0;
	return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
}

/*
 * The task id of the current thread, sending a task record first when the thread is new to twtrace
 * or changed its pid or name since. Call only in process context. 0 when the record could not be
 * sent (ring full, counted): the event is then unattributed, and the next capture tries again.
 */
static __always_inline __u32 current_task(__u32 *pid)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, zero = 0;
	struct twt_task_cached *cached = bpf_map_lookup_elem(&last_task, &zero);
	struct twt_task_seen *seen;
	struct twt_task_seen now = { .pid = pid_tgid >> 32 };
	struct twt_task *t;

	*pid = now.pid;
	bpf_get_current_comm(now.comm, TWT_COMM_LEN);
	if (cached && cached->tid == tid && cached->seen.pid == now.pid && cached->seen.comm[0] == now.comm[0] &&
	    cached->seen.comm[1] == now.comm[1])
		return cached->seen.id;
	seen = bpf_map_lookup_elem(&tasks, &tid);
	if (seen && seen->pid == now.pid && seen->comm[0] == now.comm[0] && seen->comm[1] == now.comm[1]) {
		if (cached) {
			cached->tid = tid;
			cached->seen = *seen;
		}
		return seen->id;
	}
	t = bpf_ringbuf_reserve(&events, sizeof(*t), 0);
	if (!t) {
		count(TWT_CNT_RING_FULL);
		return 0;
	}
	now.id = __sync_fetch_and_add(&last_task_id, 1) + 1;
	__builtin_memset(t, 0, sizeof(*t));
	t->kind = TWT_KIND_TASK;
	t->id = now.id;
	t->ts_us = bpf_ktime_get_ns() / 1000;
	t->pid = now.pid;
	t->tid = tid;
	t->uid = (__u32)bpf_get_current_uid_gid();
	__builtin_memcpy(t->comm, now.comm, TWT_COMM_LEN);
	/* Submitted before any event that carries the id is reserved: the ring keeps that order. */
	bpf_ringbuf_submit(t, 0);
	bpf_map_update_elem(&tasks, &tid, &now, BPF_ANY);
	if (cached) {
		cached->tid = tid;
		cached->seen = now;
	}
	return now.id;
}

static __always_inline void set_closer(struct twt_owner *o)
{
	o->closer = current_task(&o->closer_pid);
}

/* The filters that need the owner or the ports; the cheap ones ran in relevant(). */
static __always_inline bool owner_and_ports_wanted(const struct twt_owner *o, __u16 sport, __u16 dport, __u64 cgroup_id)
{
	if (cfg.pid && (!o || (o->pid != cfg.pid && o->closer_pid != cfg.pid)))
		return false;
	if (cfg.port && sport != cfg.port && dport != cfg.port)
		return false;
	return !cfg.cgroup_id || cgroup_id == cfg.cgroup_id;
}

/*
 * Start to close() when the close was seen, else to `end_ns`: the same span in active_close,
 * time_wait and reset, so a consumer may take lifetimes from whichever kinds it asked for. 0 when
 * the start was not seen.
 */
static __always_inline __u64 lifetime_us_of(const struct twt_owner *o, __u64 end_ns)
{
	if (o->closed_ns && o->closed_ns < end_ns)
		end_ns = o->closed_ns;
	return o->start_ns && end_ns > o->start_ns ? (end_ns - o->start_ns) / 1000 : 0;
}

static __always_inline __u32 owner_id_of(const struct twt_owner *o)
{
	return o && o->source != TWT_OWNER_NONE ? o->owner : 0;
}

/*
 * The task a socket's events are blamed on, as users know it (src/model/attribution.ts blame(), which
 * the metrics group by): the connect() caller of an outgoing connection, even when a forked child
 * closed it; the process that closed an accepted one (a pre-forked server's worker), else whoever
 * owns it. Counted at the start of a connection (closer still 0), this is its owner.
 */
static __always_inline __u32 blamed_id_of(const struct twt_owner *o)
{
	if (!o)
		return 0;
	if (o->source != TWT_OWNER_NONE && (o->side == TWT_SIDE_CLIENT || o->source == TWT_OWNER_SYSCALL || !o->closer))
		return o->owner;
	return o->closer;
}

static __always_inline void fill_owner(struct twt_event *e, const struct twt_owner *o, __u64 end_ns)
{
	e->owner = owner_id_of(o);
	if (o) {
		e->closer = o->closer;
		e->side = o->side;
		e->owner_source = o->source;
		e->lifetime_us = lifetime_us_of(o, end_ns);
	} else {
		e->closer = 0;
		e->side = TWT_SIDE_UNKNOWN;
		e->owner_source = TWT_OWNER_NONE;
		e->lifetime_us = 0;
	}
}

/* The socket's addresses as records carry them: network order, IPv4 in the first 4 bytes, then zeros. */
static __always_inline void fill_addrs(__u8 *saddr, __u8 *daddr, const struct sock *sk, __u16 family)
{
	if (family == AF_INET6) {
		__builtin_memcpy(saddr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, TWT_ADDR_LEN);
		__builtin_memcpy(daddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, TWT_ADDR_LEN);
	} else {
		__builtin_memset(saddr, 0, TWT_ADDR_LEN);
		__builtin_memset(daddr, 0, TWT_ADDR_LEN);
		*(__u32 *)saddr = sk->__sk_common.skc_rcv_saddr;
		*(__u32 *)daddr = sk->__sk_common.skc_daddr;
	}
}

/*
 * The granularity (log2 jiffies) of the timer wheel's level a timer armed `delta` jiffies ahead goes
 * into: kernel/time/timer.c calc_wheel_index() picks the level by delta (64 buckets per level, each
 * level 8 times coarser). Level starts: LVL_START(n) = 63 << 3(n-1).
 */
static __always_inline __u32 wheel_shift(__u64 delta)
{
	if (delta < 63)
		return 0;
	if (delta < 504)
		return 3;
	if (delta < 4032)
		return 6;
	if (delta < 32256)
		return 9;
	if (delta < 258048)
		return 12;
	if (delta < 2064384)
		return 15;
	return 18;
}

/*
 * The end, in buckets of its level (`shift`: wheel_shift), of the bucket a timer due at `expires`
 * goes into: calc_index() puts the timer in the bucket after `expires` at its level's granularity,
 * and the wheel runs a bucket's timers together at its end.
 */
static __always_inline __u64 wheel_bucket_end(__u64 expires, __u32 shift)
{
	return (expires >> shift) + 1;
}

/*
 * When the timer wheel runs a timer armed `delta` jiffies ahead to `expires`. A TIME_WAIT timer
 * (60 s) lands in level 3 at HZ 250: up to 2.048 s late, which is why a timewait socket lives
 * 60-62 s (README, "Design notes": TIME_WAIT expiry).
 */
static __always_inline __u64 wheel_fire_jiffies(__u64 expires, __u64 delta)
{
	__u32 shift = wheel_shift(delta);

	return wheel_bucket_end(expires, shift) << shift;
}

/* Where the wheel runs the timer of a timewait socket made just now (event and count agree on it). */
struct tw_timer {
	__u16 slack_ms; /* after its 60 s: twt_event.tw_slack_ms */
	__u8 odd;       /* its bucket's end, in buckets of its level, is odd: TWT_FLAG_ODD_BUCKET, and
	                 * twt_count.time_wait_odd or fin_wait2_odd */
};

/*
 * tcp_time_wait() armed the timer of the new timewait socket just now (inet_twsk_schedule()):
 * jiffies + TCP_TIMEWAIT_LEN for substate TIME_WAIT; for substate FIN_WAIT2 the FIN timeout, which
 * the peer's FIN replaces with TCP_TIMEWAIT_LEN within moments, mostly (kernel-facts §1.3): taken as
 * 60 s for both. Both figures are 0 where CONFIG_HZ is not known (nor is the wheel's clock then:
 * read_clock, and user space spreads counted entries instead).
 */
static __always_inline struct tw_timer time_wait_timer(void)
{
	struct tw_timer t = {};
	__u64 len, expires, end;
	__u32 shift;

	if (!CONFIG_HZ)
		return t;
	len = 60 * (__u64)CONFIG_HZ;
	shift = wheel_shift(len);
	expires = bpf_jiffies64() + len;
	end = wheel_bucket_end(expires, shift);
	t.slack_ms = ((end << shift) - expires) * 1000 / CONFIG_HZ;
	t.odd = end & 1;
	return t;
}

/*
 * A time_wait record's timer, from `tw`: the slack only for substate TIME_WAIT (a FIN_WAIT2
 * substate's own timer is the FIN timeout: none is claimed for it), the odd bucket for both, as
 * they were counted.
 */
static __always_inline void set_tw_timer(struct twt_event *e, __u8 substate, struct tw_timer tw)
{
	e->tw_slack_ms = substate == TCP_TIME_WAIT ? tw.slack_ms : 0;
	if (tw.odd)
		e->flags |= TWT_FLAG_ODD_BUCKET;
}

/*
 * Counts one event of `key` into the current generation of `counts` (cfg.counting). The same
 * increments as src/model/fold.ts makes from the event's record: a test holds them equal.
 */
static __always_inline void count_event(const struct twt_count_key *key, __u8 kind, __u8 substate, __s32 err,
					__u64 lifetime_us, struct tw_timer tw)
{
	__u32 zero = 0;
	struct twt_count *c;
	void *map = bpf_map_lookup_elem(&counts, &zero);

	if (!map)
		return;
	c = bpf_map_lookup_elem(map, key);
	if (!c) {
		/* Another CPU may create the key first (EEXIST): the lookup after finds it either way. */
		bpf_map_update_elem(map, key, &count_zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(map, key);
		if (!c) {
			count(TWT_CNT_COUNTS_FULL);
			return;
		}
	}
	switch (kind) {
	case TWT_KIND_CONNECT: /* counted at the start (count_start), whichever event ends it */
	case TWT_KIND_ACCEPT:
		__sync_fetch_and_add(&c->connections, 1);
		return;
	case TWT_KIND_CONNECT_FAIL:
		__sync_fetch_and_add(&c->connect_fails, 1);
		if (err == EADDRNOTAVAIL)
			__sync_fetch_and_add(&c->addr_not_avail, 1);
		return;
	case TWT_KIND_TIME_WAIT:
		if (substate == TCP_TIME_WAIT) {
			__sync_fetch_and_add(&c->time_wait, 1);
			if (tw.odd)
				__sync_fetch_and_add(&c->time_wait_odd, 1);
		} else {
			__sync_fetch_and_add(&c->fin_wait2, 1);
			if (tw.odd)
				__sync_fetch_and_add(&c->fin_wait2_odd, 1);
		}
		break;
	case TWT_KIND_RESET:
		__sync_fetch_and_add(&c->resets, 1);
		break;
	default:
		return;
	}
	if (!lifetime_us)
		return;
	__sync_fetch_and_add(&c->lifetime_sum_us, lifetime_us);
	__sync_fetch_and_add(&c->lifetime_count, 1);
	/* Unrolled comparisons against the bounds (enum twt_lifetime_bound_ms), first that holds. */
	if (lifetime_us <= TWT_LIFETIME_LE_1MS * 1000ULL)
		__sync_fetch_and_add(&c->lifetime[0], 1);
	else if (lifetime_us <= TWT_LIFETIME_LE_5MS * 1000ULL)
		__sync_fetch_and_add(&c->lifetime[1], 1);
	else if (lifetime_us <= TWT_LIFETIME_LE_10MS * 1000ULL)
		__sync_fetch_and_add(&c->lifetime[2], 1);
	else if (lifetime_us <= TWT_LIFETIME_LE_50MS * 1000ULL)
		__sync_fetch_and_add(&c->lifetime[3], 1);
	else if (lifetime_us <= TWT_LIFETIME_LE_100MS * 1000ULL)
		__sync_fetch_and_add(&c->lifetime[4], 1);
	else if (lifetime_us <= TWT_LIFETIME_LE_500MS * 1000ULL)
		__sync_fetch_and_add(&c->lifetime[5], 1);
	else if (lifetime_us <= TWT_LIFETIME_LE_1S * 1000ULL)
		__sync_fetch_and_add(&c->lifetime[6], 1);
	else if (lifetime_us <= TWT_LIFETIME_LE_5S * 1000ULL)
		__sync_fetch_and_add(&c->lifetime[7], 1);
	else if (lifetime_us <= TWT_LIFETIME_LE_10S * 1000ULL)
		__sync_fetch_and_add(&c->lifetime[8], 1);
	else if (lifetime_us <= TWT_LIFETIME_LE_1MIN * 1000ULL)
		__sync_fetch_and_add(&c->lifetime[9], 1);
	else if (lifetime_us <= TWT_LIFETIME_LE_5MIN * 1000ULL)
		__sync_fetch_and_add(&c->lifetime[10], 1);
	else if (lifetime_us <= TWT_LIFETIME_LE_1H * 1000ULL)
		__sync_fetch_and_add(&c->lifetime[11], 1);
}

/*
 * The key's side and service, once its addresses are set: an accepted socket is counted under its
 * local (the listener's) address and port, whoever the peer: a server's keys grow with what it
 * serves, not with its clients, which would fill the map at a few thousand peers a minute. A
 * connection made is counted under its destination (what a port range's headroom is about).
 */
static __always_inline void set_key_side(struct twt_count_key *key, __u8 side, __u16 sport, __u16 dport)
{
	key->side = side;
	key->port = side == TWT_SIDE_SERVER ? sport : dport;
	if (side == TWT_SIDE_SERVER)
		__builtin_memset(key->daddr, 0, TWT_ADDR_LEN);
}

/* Counts an event of a socket (cfg.counting), from the values its record carries. */
static __always_inline void count_sock_event(const struct sock *sk, __u8 kind, __u32 netns, const struct twt_owner *o,
					     __u16 sport, __u16 dport, __u64 cgroup_id, __u64 now_ns, __s32 err,
					     __u8 substate, struct tw_timer tw)
{
	struct twt_count_key key;

	key.cgroup_id = cgroup_id;
	key.netns = netns;
	key.blamed = blamed_id_of(o);
	key.family = sk->__sk_common.skc_family;
	key._pad[0] = key._pad[1] = key._pad[2] = 0;
	fill_addrs(key.saddr, key.daddr, sk, key.family);
	set_key_side(&key, o ? o->side : TWT_SIDE_UNKNOWN, sport, dport);
	count_event(&key, kind, substate, err, o ? lifetime_us_of(o, now_ns) : 0, tw);
}

/*
 * Counts a connection at its start (cfg.counting): connect() (CLOSE -> SYN_SENT, in process context)
 * or an accepted child (LISTEN -> SYN_RECV), once the owner is set. Not at SYN_SENT|SYN_RECV ->
 * ESTABLISHED: those transitions are then left alone unless their events are asked for (relevant()),
 * which spares two runs' storage, clock and count a connection. The addresses and the remote port are
 * set by then (tcp_v4_connect() and tcp_v6_connect() choose the source address before SYN_SENT); a
 * client's local port may not be, so a --port filter on it counts only connections bound before.
 */
static __always_inline void count_start(const struct sock *sk, const struct twt_owner *o, __u32 netns, __u8 kind)
{
	__u16 sport = sock_sport(sk), dport = bpf_ntohs(sk->__sk_common.skc_dport);

	/* reset_owner() has just read the socket's cgroup into the owner. */
	if (owner_and_ports_wanted(o, sport, dport, o->cgroup_id))
		count_sock_event(sk, kind, netns, o, sport, dport, o->cgroup_id, 0, 0, 0, (struct tw_timer){});
}

/*
 * Counts the event (cfg.counting), then reserves and fills the socket part of its record. NULL when
 * filtered out, not asked for, or the ring is full. A time_wait's timer goes into `tw`, for the
 * record's slack and flag.
 */
static __always_inline struct twt_event *reserve_sock_event(const struct sock *sk, __u8 kind, __u32 netns, __u64 cookie,
							     const struct twt_owner *o, int oldstate,
							     int newstate, __u64 now_ns, __s32 err, __u8 substate,
							     struct tw_timer *tw)
{
	__u16 sport, dport;
	__u64 cgroup_id;
	struct twt_event *e;

	/* A connection is counted at its start (count_start), an active close not at all. */
	bool counted = cfg.counting && kind != TWT_KIND_CONNECT && kind != TWT_KIND_ACCEPT && kind != TWT_KIND_ACTIVE_CLOSE;

	if (!counted && !kind_wanted(kind))
		return NULL;
	sport = sock_sport(sk);
	dport = bpf_ntohs(sk->__sk_common.skc_dport);
	cgroup_id = sock_cgroup(sk);
	if (!owner_and_ports_wanted(o, sport, dport, cgroup_id))
		return NULL;
	/* Read once, for the count and the record alike (a tick between two reads could put them in
	 * different buckets), and only for an entry counted or sent. */
	if (kind == TWT_KIND_TIME_WAIT)
		*tw = time_wait_timer();
	if (counted) {
		count_sock_event(sk, kind, netns, o, sport, dport, cgroup_id, now_ns, err, substate, *tw);
		if (!kind_wanted(kind))
			return NULL;
	}

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(TWT_CNT_RING_FULL);
		return NULL;
	}
	e->ts_us = now_ns / 1000;
	e->cookie = cookie;
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
	e->side = 0;
	e->flags = 0;
	e->_pad = 0;
	e->tw_slack_ms = 0;
	fill_addrs(e->saddr, e->daddr, sk, e->family);
	fill_owner(e, o, now_ns);
	return e;
}

static __always_inline void emit(const struct sock *sk, __u8 kind, __u32 netns, __u64 cookie, const struct twt_owner *o,
				 int oldstate, int newstate, __u64 now_ns, __s32 err, __u8 substate)
{
	struct tw_timer tw = {};
	struct twt_event *e = reserve_sock_event(sk, kind, netns, cookie, o, oldstate, newstate, now_ns, err, substate, &tw);

	if (!e)
		return;
	e->err = err;
	e->substate = substate;
	if (kind == TWT_KIND_TIME_WAIT)
		set_tw_timer(e, substate, tw);
	bpf_ringbuf_submit(e, 0);
}

/* A fresh owner: everything known of an earlier life of the socket (a failed connect) is dropped. */
static __always_inline void reset_owner(struct twt_owner *o, const struct sock *sk, __u64 now_ns, __u8 side)
{
	__u32 handled = o->handled;

	__builtin_memset(o, 0, sizeof(*o));
	o->handled = handled;
	o->start_ns = now_ns;
	o->side = side;
	o->cgroup_id = sock_cgroup(sk);
}

static __always_inline void on_connect_start(const struct sock *sk, struct twt_owner *o, __u32 netns, __u64 now_ns)
{
	reset_owner(o, sk, now_ns, TWT_SIDE_CLIENT);
	o->source = TWT_OWNER_CONNECT;
	o->owner = current_task(&o->pid);
	if (cfg.counting)
		count_start(sk, o, netns, TWT_KIND_CONNECT);
}

static __always_inline void on_listen(const struct sock *sk, __u32 netns, __u64 cookie)
{
	struct twt_listener_key key = { .netns = netns, .port = sk->__sk_common.skc_num };
	struct twt_listener l = { .cookie = cookie };

	if (!key.port) /* listen() without bind(): the port is assigned after this transition */
		key.port = sock_sport(sk);
	l.task = current_task(&l.pid);
	bpf_get_current_comm(l.comm, TWT_COMM_LEN);
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

static __always_inline void on_accept_child(const struct sock *sk, struct twt_owner *o, __u32 netns, __u64 now_ns)
{
	struct twt_listener_key key = { .netns = netns, .port = sock_sport(sk) };
	struct twt_listener *l = bpf_map_lookup_elem(&listeners, &key);

	reset_owner(o, sk, now_ns, TWT_SIDE_SERVER);
	if (l) {
		o->source = TWT_OWNER_LISTEN;
		o->pid = l->pid;
		o->owner = l->task;
	}
	if (cfg.counting)
		count_start(sk, o, netns, TWT_KIND_ACCEPT);
}

/* The closing task, in process context. For a socket that predates twtrace, guesses its side. */
static __always_inline void record_closer(const struct sock *sk, struct twt_owner *o, __u32 netns)
{
	set_closer(o);
	if (o->source == TWT_OWNER_NONE && o->side == TWT_SIDE_UNKNOWN) {
		/* Side of a socket we did not see start: a server if its local port has a known listener. */
		struct twt_listener_key key = { .netns = netns, .port = sock_sport(sk) };

		if (bpf_map_lookup_elem(&listeners, &key))
			o->side = TWT_SIDE_SERVER;
	}
}

/* ESTABLISHED -> FIN_WAIT1: remember the socket until it ends, for walks to witness a missed end. */
static __always_inline void on_active_close(const struct sock *sk, struct twt_owner *o, __u32 netns, __u64 cookie, __u64 now_ns)
{
	struct twt_closing c;

	if (!cfg.witness)
		return;
	__builtin_memset(&c, 0, sizeof(c));
	__builtin_memcpy(&c.owner, o, sizeof(c.owner));
	c.closed_ns = now_ns;
	c.netns = netns;
	c.family = sk->__sk_common.skc_family;
	c.sport = sock_sport(sk);
	c.dport = bpf_ntohs(sk->__sk_common.skc_dport);
	c.bound_dev_if = sk->__sk_common.skc_bound_dev_if;
	fill_addrs(c.saddr, c.daddr, sk, c.family);
	o->closing = bpf_map_update_elem(&closing, &cookie, &c, BPF_ANY) == 0;
	if (!o->closing)
		count(TWT_CNT_CLOSING_MAP_FULL);
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

static __always_inline void on_close(const struct sock *sk, struct twt_owner *o, __u32 netns, __u64 cookie,
				     int oldstate, __u64 now_ns)
{
	bool claimed_by_walk = false;
	__u8 substate = 0;
	__s32 err;

	if (oldstate == TCP_LISTEN) {
		on_listen_close(sk, netns, cookie);
		return;
	}
	if (o->closing) {
		struct twt_closing *c = bpf_map_lookup_elem(&closing, &cookie);

		o->closing = 0;
		if (c) {
			/* A walk found this socket in TIME_WAIT before we ran, and delivered its event. */
			claimed_by_walk = __sync_val_compare_and_swap(&c->claim, 0, TWT_CLAIM_TRACEPOINT) == TWT_CLAIM_WALK;
			bpf_map_delete_elem(&closing, &cookie);
		}
	}
	err = sk->sk_err;
	if (oldstate == TCP_SYN_SENT) {
		if (sock_sport(sk) == 0)
			err = EADDRNOTAVAIL;
		emit(sk, TWT_KIND_CONNECT_FAIL, netns, cookie, o, oldstate, TCP_CLOSE, now_ns, err, 0);
	} else if (entered_time_wait(sk, oldstate, &substate)) {
		if (claimed_by_walk)
			return;
		if (o->source == TWT_OWNER_NONE)
			count(TWT_CNT_OWNER_MISSING);
		emit(sk, TWT_KIND_TIME_WAIT, netns, cookie, o, oldstate, TCP_CLOSE, now_ns, 0, substate);
	} else if (oldstate != TCP_LAST_ACK || err != 0) {
		/* sk_err == 0 from ESTABLISHED/CLOSE_WAIT is an abortive close() in process context: the
		 * caller is the closer. Later states already have one (FIN_WAIT1), and may end in softirq. */
		if (err == 0 && !o->closer_pid)
			record_closer(sk, o, netns);
		if (o->source == TWT_OWNER_NONE)
			count(TWT_CNT_OWNER_MISSING);
		emit(sk, TWT_KIND_RESET, netns, cookie, o, oldstate, TCP_CLOSE, now_ns, err, 0);
	}
}

/*
 * The transitions handle_inet_sock_set_state acts on, decided from the arguments and the
 * configuration alone, so that the primary and the fallback program always agree on it. Cheapest
 * first: most transitions end here, before any map or storage access.
 */
static __always_inline bool relevant(const struct sock *sk, int oldstate, int newstate, __u32 *netns)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return false;
	switch (newstate) {
	case TCP_CLOSE:
		/* A passive close's normal end (LAST_ACK -> CLOSE, the peer's ACK of our FIN, in softirq) is
		 * no event and no count: on_close() does nothing for it. One of the six transitions of a
		 * connection whose both ends are on the host that twtrace acted on, for nothing. With an
		 * error (a timeout, a reset) it is a reset event, as before. sk_err is set before tcp_done()
		 * moves the socket (tcp_reset, tcp_write_err), so both programs read the same. */
		if (oldstate == TCP_LAST_ACK && sk->sk_err == 0)
			return false;
		break;
	case TCP_SYN_SENT:
	case TCP_LISTEN:
	case TCP_FIN_WAIT1:
		break;
	case TCP_LAST_ACK:
		if (oldstate != TCP_CLOSE_WAIT)
			return false;
		break;
	case TCP_SYN_RECV:
		if (oldstate != TCP_LISTEN)
			return false;
		break;
	case TCP_ESTABLISHED:
		if (oldstate == TCP_SYN_SENT && !kind_wanted(TWT_KIND_CONNECT))
			return false;
		if (oldstate == TCP_SYN_RECV && !kind_wanted(TWT_KIND_ACCEPT))
			return false;
		if (oldstate != TCP_SYN_SENT && oldstate != TCP_SYN_RECV)
			return false;
		break;
	default:
		return false;
	}
	if (oldstate == newstate) /* FIN_WAIT2 -> FIN_WAIT2 in close() after shutdown() (§1.3) */
		return false;
	if (cfg.family && sk->__sk_common.skc_family != cfg.family)
		return false;
	*netns = sock_netns(sk);
	return netns_wanted(*netns);
}

/* Handles one relevant transition; `o` is the socket's storage. */
static __always_inline void on_set_state(const struct sock *sk, struct twt_owner *o, __u32 netns, int oldstate,
					 int newstate)
{
	__u64 cookie = bpf_get_socket_cookie((struct sock *)sk);
	__u64 now_ns = bpf_ktime_get_ns();

	switch (newstate) {
	case TCP_SYN_SENT:
		if (oldstate == TCP_CLOSE)
			on_connect_start(sk, o, netns, now_ns);
		return;
	case TCP_LISTEN:
		on_listen(sk, netns, cookie);
		return;
	case TCP_SYN_RECV:
		on_accept_child(sk, o, netns, now_ns);
		return;
	case TCP_ESTABLISHED:
		emit(sk, oldstate == TCP_SYN_SENT ? TWT_KIND_CONNECT : TWT_KIND_ACCEPT, netns, cookie, o, oldstate,
		     newstate, now_ns, 0, 0);
		return;
	case TCP_FIN_WAIT1:
		record_closer(sk, o, netns);
		o->closed_ns = now_ns;
		if (oldstate == TCP_ESTABLISHED)
			on_active_close(sk, o, netns, cookie, now_ns);
		emit(sk, TWT_KIND_ACTIVE_CLOSE, netns, cookie, o, oldstate, newstate, now_ns, 0, 0);
		return;
	case TCP_LAST_ACK:
		record_closer(sk, o, netns);
		o->closed_ns = now_ns;
		return;
	case TCP_CLOSE:
		on_close(sk, o, netns, cookie, oldstate, now_ns);
		return;
	}
}

static __always_inline __u32 states_key(int oldstate, int newstate)
{
	return 1u << 16 | (oldstate & 0xff) << 8 | (newstate & 0xff);
}

static __always_inline struct twt_owner *storage_of(const struct sock *sk)
{
	struct twt_owner *o = bpf_sk_storage_get(&sock_owner, (struct sock *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!o)
		count(TWT_CNT_OWNER_STORAGE_FAIL);
	return o;
}

/*
 * The kernel runs a BPF program at most once per CPU at a time: __bpf_trace_run() skips a run that
 * would nest (prog->active) and counts it in the program's recursion_misses. inet_sock_set_state
 * does nest: a transition in process context (connect, close) can be interrupted by a softirq that
 * receives a packet and moves another socket (0.4 % of transitions at 40k connections/s here). So the
 * tracepoint carries two programs, which the kernel calls one after the other for each transition,
 * the primary first:
 *
 *   primary   handles the transition and writes its key (old and new state) into the socket's
 *             storage, `handled`;
 *   fallback  finds that key there and clears it: the primary handled this transition. If it is not
 *             there, the kernel skipped the primary (it is running in the context this one
 *             interrupted), so the fallback handles the transition itself.
 *
 * The mark lives in the socket's own storage, so it cannot be mistaken for another socket's, and it
 * is overwritten by the socket's next relevant transition, whichever program handles it. Two
 * consecutive relevant transitions of one socket never have the same key (the state moves on, and
 * self-transitions are not relevant), so a mark left behind (the fallback itself skipped) can never
 * pass for a later transition. Nothing expires, nothing is keyed by an address that gets reused.
 * Both programs decide relevance with relevant(), from the arguments alone, so they agree on it.
 *
 * A transition is lost only if the kernel skips both programs, which needs a third nesting level
 * (the primary busy in process context, the fallback in a softirq on top of it, and a state change
 * in a hard interrupt): TCP changes state in process and softirq context only. Whatever the cause, a
 * missed entry into TIME_WAIT is still caught by the walk witness (`closing`, dump_tcp).
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct twt_owner *o;
	__u32 netns = 0;

	if (!relevant(sk, oldstate, newstate, &netns))
		return 0;
	o = storage_of(sk);
	if (!o)
		return 0;
	on_set_state(sk, o, netns, oldstate, newstate);
	o->handled = states_key(oldstate, newstate);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_inet_sock_set_state_nested, const struct sock *sk, const int oldstate, const int newstate)
{
	__u32 key = states_key(oldstate, newstate), netns = 0;
	struct twt_owner *o;

	if (!relevant(sk, oldstate, newstate, &netns))
		return 0;
	o = bpf_sk_storage_get(&sock_owner, (struct sock *)sk, 0, 0);
	if (o && o->handled == key) {
		o->handled = 0;
		return 0;
	}
	count(TWT_CNT_NESTED_RECOVERED);
	if (!o)
		o = storage_of(sk);
	if (!o)
		return 0;
	on_set_state(sk, o, netns, oldstate, newstate);
	o->handled = 0;
	return 0;
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
	__u32 owner, owner_pid;

	/* Runs on every syscall exit of the host: decide on the return value first. */
	if (ret != -EADDRINUSE || BPF_CORE_READ(regs, orig_ax) != NR_BIND)
		return 0;
	sk = sock_of_fd((int)BPF_CORE_READ(regs, di));
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (cfg.family && family != cfg.family)
		return 0;
	netns = sock_netns_probe(sk);
	if (!netns_wanted(netns) || !kind_wanted(TWT_KIND_BIND_FAIL))
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	if (cfg.pid && (pid_tgid >> 32) != cfg.pid)
		return 0;

	/* Before the event is reserved: its task record must precede it in the ring. */
	owner = current_task(&owner_pid);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(TWT_CNT_RING_FULL);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_us = bpf_ktime_get_ns() / 1000;
	/* cookie stays 0: sk came from a probe read, which bpf_get_socket_cookie() does not accept. */
	e->owner = owner;
	e->cgroup_id = sock_cgroup_probe(sk);
	e->netns = netns;
	e->family = family;
	e->kind = TWT_KIND_BIND_FAIL;
	e->owner_source = TWT_OWNER_SYSCALL;
	e->err = EADDRINUSE;

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
 * A timewait socket whose `closing` entry is still unclaimed entered TIME_WAIT without its
 * tracepoint reaching either program (README, "Design notes": missed transitions). Claim the entry
 * and deliver the time_wait event, flagged as recovered, with the owner known since the socket's
 * start and the 4-tuple kept at its close. The entry stays for a tracepoint still on its way to find
 * claimed; the loader deletes it. `c` is the socket's entry, looked up by the caller; `min_age_ns`:
 * a younger close may still have its event on the way, and is left to a later look. True when the
 * event was delivered.
 */
static __always_inline bool recover_claimed(__u64 cookie, struct twt_closing *c, __u8 substate, __u64 min_age_ns)
{
	struct twt_closing copy;
	struct twt_event *e;
	__u64 now_ns = bpf_ktime_get_ns();
	struct tw_timer tw;

	if (now_ns - c->closed_ns < min_age_ns)
		return false; /* its event may still be on the way; a later look decides */
	if (__sync_val_compare_and_swap(&c->claim, 0, TWT_CLAIM_WALK) != 0)
		return false; /* already delivered: by the tracepoint, or by an earlier look */
	/* Its timer was armed when it entered, which was not seen: the count and the record both take it
	 * as entering now, when it was found. */
	tw = time_wait_timer();
	__builtin_memcpy(&copy, c, sizeof(copy));
	count(TWT_CNT_WALK_MISSED);
	if (!owner_and_ports_wanted(&copy.owner, copy.sport, copy.dport, copy.owner.cgroup_id))
		return true;
	if (cfg.counting) {
		struct twt_count_key key = {
			.cgroup_id = copy.owner.cgroup_id,
			.netns = copy.netns,
			.blamed = blamed_id_of(&copy.owner),
			.family = copy.family,
		};

		__builtin_memcpy(key.saddr, copy.saddr, TWT_ADDR_LEN);
		__builtin_memcpy(key.daddr, copy.daddr, TWT_ADDR_LEN);
		set_key_side(&key, copy.owner.side, copy.sport, copy.dport);
		count_event(&key, TWT_KIND_TIME_WAIT, substate, 0, lifetime_us_of(&copy.owner, copy.closed_ns), tw);
	}
	if (!kind_wanted(TWT_KIND_TIME_WAIT))
		return true;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(TWT_CNT_RING_FULL);
		return true;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_us = now_ns / 1000; /* when it was found: the entry itself was not seen */
	e->cookie = cookie;
	e->cgroup_id = copy.owner.cgroup_id;
	__builtin_memcpy(e->saddr, copy.saddr, TWT_ADDR_LEN);
	__builtin_memcpy(e->daddr, copy.daddr, TWT_ADDR_LEN);
	e->netns = copy.netns;
	e->sport = copy.sport;
	e->dport = copy.dport;
	e->family = copy.family;
	e->kind = TWT_KIND_TIME_WAIT;
	e->substate = substate;
	e->oldstate = TCP_FIN_WAIT1; /* the last transition seen */
	e->newstate = TCP_TIME_WAIT;
	e->flags = TWT_FLAG_RECOVERED;
	set_tw_timer(e, substate, tw);
	/* Lifetime up to the close: when the socket reached TIME_WAIT after it is not known. */
	fill_owner(e, &copy.owner, copy.closed_ns);
	bpf_ringbuf_submit(e, 0);
	return true;
}

/*
 * recover_time_wait: run by the loader (BPF_PROG_RUN) for a suspect close whose socket its
 * sock_diag lookup found in TIME_WAIT: the exact check of one socket, instead of a walk of every
 * socket of the namespace. Returns 1 when it delivered the event (or counted it, for a consumer
 * that did not ask for time_wait), 0 when the close was claimed already or is gone.
 */
SEC("syscall")
int recover_time_wait(struct twt_recover *ctx)
{
	__u64 cookie = ctx->cookie;
	struct twt_closing *c = bpf_map_lookup_elem(&closing, &cookie);

	if (!c)
		return 0;
	return recover_claimed(cookie, c, ctx->substate, walk.min_age_ns) ? 1 : 0;
}

/* Everything a walk reports of a socket but its cookie. `skc` is the iterator's BTF pointer: direct
 * loads, as in the tracepoint (sock_netns), not a bpf_probe_read_kernel() call per field. */
static __always_inline void fill_sock(struct twt_sock *s, struct sock_common *skc)
{
	struct tcp_timewait_sock *tw;

	s->netns = skc->skc_net.net->ns.inum;
	s->family = skc->skc_family;
	s->state = skc->skc_state;
	s->sport = skc->skc_num; /* host order; still set for timewait sockets (tw_num) */
	s->dport = bpf_ntohs(skc->skc_dport);
	s->expires_us = 0;
	s->slack_us = 0;
	if (s->family == AF_INET6) {
		__builtin_memcpy(s->saddr, skc->skc_v6_rcv_saddr.in6_u.u6_addr8, TWT_ADDR_LEN);
		__builtin_memcpy(s->daddr, skc->skc_v6_daddr.in6_u.u6_addr8, TWT_ADDR_LEN);
	} else {
		*(__u32 *)s->saddr = skc->skc_rcv_saddr;
		*(__u32 *)s->daddr = skc->skc_daddr;
	}
	if (s->state != TCP_TIME_WAIT)
		return;
	tw = bpf_skc_to_tcp_timewait_sock(skc);
	if (tw) {
		/* tw_timer is armed by inet_twsk_schedule() (60 s for substate TIME_WAIT; the FIN_WAIT2
		 * timeout otherwise) and re-armed for 60 s when a FIN_WAIT2 substate socket receives the
		 * peer's FIN (tcp_timewait_state_process). Report when the wheel will run it. */
		__u64 now_j = bpf_jiffies64();
		__u64 expires = tw->tw_sk.tw_timer.expires;
		__u64 delta = expires > now_j ? expires - now_j : 0;
		__u64 fire;
		long left;

		s->substate = tw->tw_sk.tw_substate;
		if (s->substate == TCP_TIME_WAIT && CONFIG_HZ)
			delta = 60 * (__u64)CONFIG_HZ;
		fire = wheel_fire_jiffies(expires, delta);
		left = (long)(fire - now_j);
		if (CONFIG_HZ) {
			s->expires_us = bpf_ktime_get_ns() / 1000 + (left <= 0 ? 0 : (__u64)left * 1000000 / CONFIG_HZ);
			s->slack_us = (__u32)((fire - expires) * 1000000 / CONFIG_HZ);
		}
	}
}

/*
 * iter/tcp walks the listening and established hash tables of the network namespace of the task
 * that created the iterator (bpf_iter_tcp: seq_file_net), request and timewait sockets included.
 * The loader setns()es into each namespace of interest to create one (kernel-facts §5).
 */
/*
 * read_clock: run by the loader (BPF_PROG_RUN) once, where the model takes TIME_WAIT from counts.
 * jiffies follow CLOCK_MONOTONIC one tick at a time (tick_do_update_jiffies64), so one reading dates
 * every later wheel bucket to within a tick.
 */
SEC("syscall")
int read_clock(struct twt_clock *ctx)
{
	ctx->jiffies = bpf_jiffies64();
	ctx->ktime_ns = bpf_ktime_get_ns();
	ctx->hz = CONFIG_HZ;
	return 0;
}

/*
 * Whether a timewait socket's entry is one the kernel's counters hold: substate TIME_WAIT, its timer
 * armed (tcp_time_wait(), or re-armed by a FIN in the FIN_WAIT2 substate: TCP_TIMEWAIT_LEN either way)
 * at or after walk.counted_from_jiffies, which the loader sets to the programs' attach.
 */
static __always_inline bool counted_entry(struct sock_common *skc)
{
	struct tcp_timewait_sock *tw = bpf_skc_to_tcp_timewait_sock(skc);

	if (!tw || !CONFIG_HZ || tw->tw_sk.tw_substate != TCP_TIME_WAIT)
		return false;
	return (long)(tw->tw_sk.tw_timer.expires - 60 * (__u64)CONFIG_HZ - walk.counted_from_jiffies) >= 0;
}

SEC("iter/tcp")
int dump_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct twt_closing *c = NULL;
	struct twt_sock s = {};

	if (!skc) {
		/* The iterator's end: how many sockets the walk left to the counts. */
		if (walk.counted_from_jiffies) {
			s.state = TWT_WALK_TRAILER_STATE;
			s.cookie = ctx->meta->seq_num ? walk_left_out : 0;
			bpf_seq_write(ctx->meta->seq, &s, sizeof(s));
		}
		return 0;
	}
	if (ctx->meta->seq_num == 0)
		walk_left_out = 0;
	/* Where the model takes TIME_WAIT from the counters, a walk of a million timewait sockets copies
	 * none of them: it visits each, and hands over the sockets the counts do not stand for. The
	 * `closing` witness of these is left to the suspect checks (recover_time_wait). */
	if (walk.counted_from_jiffies && skc->skc_state == TCP_TIME_WAIT && counted_entry(skc)) {
		__sync_fetch_and_add(&walk_left_out, 1);
		return 0;
	}
	s.cookie = bpf_get_socket_cookie(skc);
	if (cfg.witness && skc->skc_state == TCP_TIME_WAIT)
		c = bpf_map_lookup_elem(&closing, &s.cookie);
	fill_sock(&s, skc);
	if (c)
		recover_claimed(s.cookie, c, s.substate, walk.min_age_ns);
	bpf_seq_write(ctx->meta->seq, &s, sizeof(s));
	return 0;
}

