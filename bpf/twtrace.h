/* SPDX-License-Identifier: MIT */
/*
 * Every struct that crosses between twtrace's BPF programs and user space: the records streamed on
 * the ring (events, task records), the records of socket and process walks, the configuration
 * block, the walk settings, and the values of the maps the loader reads (closing entries,
 * listeners). This header is their only hand-written definition: scripts/gen-layout.ts reads them
 * back from the BTF of build/twtrace.bpf.o and writes src/event/layout.generated.ts, and
 * test/unit/layout.test.ts fails when the two drift apart. Structs the BPF side alone reads stay in
 * bpf/twtrace.bpf.c.
 *
 * Rules: fixed size, fields largest to smallest, explicit padding, no implicit holes.
 */
#ifndef TWTRACE_H
#define TWTRACE_H

#define TWT_COMM_LEN 16
#define TWT_ADDR_LEN 16
#define TWT_MAX_NETNS 8

enum twt_event_kind {
	TWT_KIND_CONNECT = 1,      /* SYN_SENT -> ESTABLISHED: outgoing connection up, local port known */
	TWT_KIND_ACCEPT = 2,       /* SYN_RECV -> ESTABLISHED: incoming connection up */
	TWT_KIND_ACTIVE_CLOSE = 3, /* ESTABLISHED -> FIN_WAIT1: this end closes first */
	TWT_KIND_TIME_WAIT = 4,    /* FIN_WAIT2|CLOSING -> CLOSE replaced by a timewait socket */
	TWT_KIND_RESET = 5,        /* abortive end: RST sent or received, or a timeout; never TIME_WAIT */
	TWT_KIND_CONNECT_FAIL = 6, /* SYN_SENT -> CLOSE */
	TWT_KIND_BIND_FAIL = 7,    /* bind() returned -EADDRINUSE */
	TWT_KIND_TASK = 8,         /* not an event: a struct twt_task, what owner and closer ids refer to */
	TWT_KIND__MAX = 9,
};

enum twt_side {
	TWT_SIDE_UNKNOWN = 0, /* the socket existed before twtrace started */
	TWT_SIDE_CLIENT = 1,  /* created by connect() */
	TWT_SIDE_SERVER = 2,  /* accepted from a listener */
};

/* How the owner was obtained. */
enum twt_owner_source {
	TWT_OWNER_NONE = 0,    /* not seen: the socket predates twtrace, or its entry was evicted */
	TWT_OWNER_CONNECT = 1, /* the task that called connect() (CLOSE -> SYN_SENT) */
	TWT_OWNER_LISTEN = 2,  /* the task that called listen() on the accepting listener */
	TWT_OWNER_SYSCALL = 3, /* the task in the failing syscall (bind_fail) */
};

/* Bits of twt_event.flags. */
enum twt_event_flag {
	TWT_FLAG_RECOVERED = 1, /* time_wait found by a socket walk: the kernel ran no program for this
	                         * socket's entry into TIME_WAIT (README, "Design notes": missed transitions) */
	TWT_FLAG_ODD_BUCKET = 2, /* time_wait: counted into time_wait_odd or fin_wait2_odd (the timer
	                          * wheel's bucket a 60 s timer armed at the entry goes into is odd) */
};

/* Per-CPU counters, index into the `counters` map. Each is a loss, a gap in attribution or a witness. */
enum twt_counter {
	TWT_CNT_RING_FULL = 0,           /* bpf_ringbuf_reserve failed: event lost */
	TWT_CNT_OWNER_STORAGE_FAIL = 1,  /* socket storage could not be allocated: socket left unattributed */
	TWT_CNT_LISTENER_MAP_FULL = 2,   /* listeners insert failed: its accepted sockets unattributed */
	TWT_CNT_OWNER_MISSING = 3,       /* a time_wait/reset with no known owner (the socket predates twtrace) */
	TWT_CNT_NESTED_RECOVERED = 4,    /* a nested transition the kernel skipped for the primary program,
	                                  * handled by the fallback program instead (not lost) */
	TWT_CNT_CLOSING_MAP_FULL = 5,    /* an active close not entered in `closing`: a missed time_wait of
	                                  * that socket could not be witnessed by a walk */
	TWT_CNT_WALK_MISSED = 6,         /* timewait sockets a walk found that no time_wait event reported:
	                                  * the kernel ran no program for their entry (each is re-sent with
	                                  * TWT_FLAG_RECOVERED, unless the ring is full: then also RING_FULL) */
	TWT_CNT_COUNTS_FULL = 7,         /* an event not counted in `counts`: its generation's map was full */
	TWT_CNT__MAX = 8,
};

/*
 * Upper bounds of the lifetime histogram's buckets in `counts` (struct twt_count.lifetime), in ms:
 * 1 ms to 1 h; churn lives at the low end, pools at the high end. The loader's histogram uses the
 * same bounds (src/model/churn-metrics.ts reads them from the generated layout).
 */
enum twt_lifetime_bound_ms {
	TWT_LIFETIME_LE_1MS = 1,
	TWT_LIFETIME_LE_5MS = 5,
	TWT_LIFETIME_LE_10MS = 10,
	TWT_LIFETIME_LE_50MS = 50,
	TWT_LIFETIME_LE_100MS = 100,
	TWT_LIFETIME_LE_500MS = 500,
	TWT_LIFETIME_LE_1S = 1000,
	TWT_LIFETIME_LE_5S = 5000,
	TWT_LIFETIME_LE_10S = 10000,
	TWT_LIFETIME_LE_1MIN = 60000,
	TWT_LIFETIME_LE_5MIN = 300000,
	TWT_LIFETIME_LE_1H = 3600000,
};
#define TWT_LIFETIME_BUCKETS 12

/*
 * One event, 96 bytes. What belongs to a task (pid, uid, command name) is not repeated in every
 * record: `owner` and `closer` are ids of struct twt_task records, sent once per task before the
 * first event that refers to them. Every record starts with its kind, so the two are told apart.
 */
struct twt_event {
	__u8 kind;          /* enum twt_event_kind; first in every record, struct twt_task too */
	__u8 side;          /* enum twt_side */
	__u8 owner_source;  /* enum twt_owner_source */
	__u8 substate;      /* time_wait: TCP_TIME_WAIT (peer FIN seen) or TCP_FIN_WAIT2 */
	__u8 oldstate;      /* the transition that produced the event (TCP_* numbers) */
	__u8 newstate;
	__u8 flags;         /* enum twt_event_flag bits */
	__u8 _pad;
	__u64 ts_us;        /* bpf_ktime_get_ns() / 1000: CLOCK_MONOTONIC, exact as a JS number */
	__u64 cookie;       /* bpf_get_socket_cookie(), stable for the socket's life and its timewait socket's; 0 in bind_fail */
	__u64 cgroup_id;    /* cgroup v2 id of the socket (sk_cgrp_data: its creator's, or its listener's) */
	__u64 lifetime_us;  /* from connect() or accept to close() (or to now, when no close was seen); 0 when the start was not seen */
	__u8 saddr[TWT_ADDR_LEN]; /* network order; IPv4 in the first 4 bytes, rest zero */
	__u8 daddr[TWT_ADDR_LEN];
	__u32 netns;        /* inode of the socket's network namespace */
	__u32 owner;        /* twt_task.id of the owner (enum twt_owner_source); 0: none */
	__u32 closer;       /* twt_task.id of the task that closed this end (close(), shutdown(), exit, abort); 0: not seen */
	__s32 err;          /* positive errno: connect_fail, bind_fail, reset received; 0 otherwise */
	__u16 sport;        /* host order */
	__u16 dport;        /* host order */
	__u16 family;       /* AF_INET or AF_INET6 */
	__u16 tw_slack_ms;  /* time_wait, substate TIME_WAIT: how long after the nominal 60 s the kernel's
	                     * timer wheel fires the timewait timer (rounding of calc_wheel_index); 0 when
	                     * HZ is unknown. A recovered one's as if it entered when found (ts_us), as
	                     * its count takes it (and TWT_FLAG_ODD_BUCKET) */
};

/*
 * A task (thread) events refer to by id: sent when a task is first seen as an owner or closer, and
 * again, under a new id, when its pid or command name changes (exec, prctl(PR_SET_NAME), a reused
 * tid). Ids are never reused. The size of struct twt_event, so that a capture keeps fixed-size records.
 */
struct twt_task {
	__u8 kind;          /* TWT_KIND_TASK */
	__u8 _pad[3];
	__u32 id;           /* > 0 */
	__u64 ts_us;
	__u32 pid;          /* thread group id */
	__u32 tid;
	__u32 uid;
	__u32 _pad2;
	char comm[TWT_COMM_LEN];
	__u8 _reserved[48];
};

/*
 * One socket of a network namespace, written by the iter/tcp program (dump_tcp) for `top`'s
 * reconciliation: the exact set of sockets, TIME_WAIT ones included, with their cookies and timers.
 */
struct twt_sock {
	__u64 cookie;       /* a timewait socket keeps the cookie of the socket it replaced */
	__u64 expires_us;   /* timewait socket: CLOCK_MONOTONIC µs at which the timer wheel runs its timer
	                     * (not the nominal expiry, kernel-facts §9); absolute, so that a walk that takes
	                     * seconds reads every socket's as exactly; 0 otherwise or when HZ is unknown */
	__u8 saddr[TWT_ADDR_LEN];
	__u8 daddr[TWT_ADDR_LEN];
	__u32 netns;
	__u16 sport;        /* host order */
	__u16 dport;
	__u16 family;
	__u8 state;         /* TCP_* (TCP_TIME_WAIT for every timewait socket) */
	__u8 substate;      /* timewait socket: TCP_TIME_WAIT or TCP_FIN_WAIT2; 0 otherwise */
	__u32 slack_us;     /* timewait socket: expires_us less the timer's own expiry (the wheel's slack,
	                     * kernel-facts §9), so that expires_us - slack_us - the timer's length is when it
	                     * was armed, to a jiffy; 0 otherwise or when HZ is unknown */
};

/*
 * One TCP socket a process holds open, from the iter/task_file program (dump_open_sockets): who holds
 * connections towards a destination now, and who holds each listening socket; the evidence for a
 * likely owner of TIME_WAIT sockets that predate twtrace (their own owner is gone from the kernel's
 * view: a timewait socket has no file).
 */
struct twt_open_socket {
	__u8 saddr[TWT_ADDR_LEN];
	__u8 daddr[TWT_ADDR_LEN];
	char comm[TWT_COMM_LEN];
	__u32 pid;          /* thread group id */
	__u32 netns;
	__u16 sport;        /* host order */
	__u16 dport;
	__u16 family;
	__u8 state;         /* TCP_* */
	__u8 _pad;
};

/* Key of the `listeners` map: a listening port of a network namespace. */
struct twt_listener_key {
	__u32 netns;
	__u32 port;         /* host order */
};

/*
 * Who called listen() on a port (a value of the `listeners` map): the owner of the connections it
 * accepts (LISTEN -> SYN_RECV runs in softirq, where no process is current: kernel-facts §1.2), and,
 * read by the loader at each walk, of TIME_WAIT sockets on that port older than twtrace.
 */
struct twt_listener {
	__u64 cookie;       /* of the listening socket: SO_REUSEPORT groups share (netns, port) */
	__u32 pid;          /* thread group id of the listen() caller */
	__u32 task;         /* twt_task.id of the listen() caller */
	char comm[TWT_COMM_LEN]; /* its name, for the loader, which keeps no task table of its own */
};

/* Filters, written into .rodata by the loader between open and load (const volatile: the verifier
 * sees them as constants and prunes disabled branches). Zero means "any" everywhere. */
struct twt_config {
	__u64 cgroup_id;             /* socket cgroup id must equal this */
	__u32 netns[TWT_MAX_NETNS];  /* socket netns must be one of the first netns_count entries */
	__u32 netns_count;
	__u32 pid;                   /* owner, closer, or (bind_fail) current process */
	__u32 kinds;                 /* bit (1 << kind) set: emit that kind */
	__u32 witness;               /* 1: keep active closes in `closing` for socket walks to witness */
	__u16 port;                  /* local or remote port */
	__u16 family;                /* AF_INET or AF_INET6 */
	__u32 counting;              /* 1: count every event into `counts`, whether or not its kind is sent */
};

/*
 * A key of the `counts` maps (docs/counting-in-the-kernel.md): the connections of the task blamed for
 * them between two addresses towards one service port. Built from the same values as the event it counts, so that
 * a fold of the delivered records gives the same keys (src/model/fold.ts).
 */
struct twt_count_key {
	__u64 cgroup_id;          /* as twt_event.cgroup_id */
	__u8 saddr[TWT_ADDR_LEN]; /* as twt_event: network order, IPv4 in the first 4 bytes */
	__u8 daddr[TWT_ADDR_LEN]; /* zeros for side server: a server is counted per service, not per peer */
	__u32 netns;
	__u32 blamed;             /* twt_task.id of the task the key's events are blamed on (blamed_id_of(),
	                           * as src/model/attribution.ts blame()); 0: none known */
	__u16 family;             /* AF_INET or AF_INET6 */
	__u16 port;               /* the service's port: the local port of an accepted socket (side
	                           * server), the remote port otherwise */
	__u8 side;                /* enum twt_side, as twt_event.side */
	__u8 _pad[3];
};

/*
 * A value of the `counts` maps: what happened to the key's sockets since the generation began. Only
 * ever increased, by atomic adds (several CPUs, and the primary and fallback programs, may count one
 * key at once).
 */
struct twt_count {
	__u64 connections;    /* started: connect() (CLOSE -> SYN_SENT) or an accepted child (LISTEN ->
	                       * SYN_RECV); each then ends its start as a connect or connect_fail event
	                       * (client), an accept or a reset from SYN_RECV (server) */
	__u64 time_wait;      /* time_wait events, substate TIME_WAIT (held 60 s) */
	__u64 fin_wait2;      /* time_wait events, substate FIN_WAIT2 (held tcp_fin_timeout) */
	__u64 resets;         /* reset events */
	__u64 connect_fails;  /* connect_fail events */
	__u64 addr_not_avail; /* of them, EADDRNOTAVAIL: no free local port */
	__u64 lifetime_sum_us;                /* time_wait and reset events with a lifetime (start seen) */
	__u64 lifetime_count;
	__u64 lifetime[TWT_LIFETIME_BUCKETS]; /* of them, lifetime_us <= the bucket's bound, not cumulative;
	                                       * longer than the last bound: in lifetime_count only */
	__u64 time_wait_odd;  /* of time_wait, those whose timer the wheel runs at the end of an odd bucket
	                       * of its level (the end's jiffies >> the level's shift, odd; 0 where
	                       * CONFIG_HZ is not known). A reading's entries, a second's, go into at most
	                       * two buckets, one odd and one even (2.048 s each at HZ 250): this says how
	                       * many went into each, so user space ends them when the kernel does
	                       * (src/model/wheel.ts, kernel-facts §9) */
	__u64 fin_wait2_odd;  /* of fin_wait2, the same for a 60 s timer armed at the entry: the peer's
	                       * FIN re-arms most for 60 s within moments (kernel-facts §1.3) */
};

/*
 * What twtrace knows of one socket, in its socket-local storage (BPF_MAP_TYPE_SK_STORAGE): created at
 * the socket's first relevant transition, freed by the kernel with the socket (bpf_sk_storage_free
 * from __sk_destruct), so nothing is ever left behind and nothing keyed by a reusable address exists.
 */
struct twt_owner {
	__u64 start_ns;  /* 0: the socket's start was not seen */
	__u64 closed_ns; /* close() or shutdown(): ESTABLISHED -> FIN_WAIT1 or CLOSE_WAIT -> LAST_ACK; 0: not yet */
	__u64 cgroup_id; /* sk_cgrp_data at the socket's start (a timewait socket has none) */
	__u32 owner;     /* twt_task.id */
	__u32 closer;    /* twt_task.id */
	__u32 pid;       /* of the owner and the closer: the --pid filter */
	__u32 closer_pid;
	__u32 handled;   /* states_key() of the transition the primary program handled last; 0 once the
	                  * fallback program saw it (see handle_inet_sock_set_state_nested) */
	__u8 side;
	__u8 source;
	__u8 closing;    /* this socket's cookie is in `closing` (made at its active close) */
	__u8 _pad;
};

enum twt_claim {
	TWT_CLAIM_NONE = 0,
	TWT_CLAIM_WALK = 1,       /* a socket walk found it in TIME_WAIT and delivered the event */
	TWT_CLAIM_TRACEPOINT = 2, /* the tracepoint saw it end */
};

/*
 * An active close waiting for its time_wait event: a value of the `closing` map. The loader reads it
 * to find closes that wait too long (suspects of a missed TIME_WAIT entry, kernel-facts §8) and looks
 * their socket up by its 4-tuple (sock_diag); recover_time_wait then delivers the event.
 */
struct twt_closing {
	struct twt_owner owner;
	__u64 closed_ns; /* ESTABLISHED -> FIN_WAIT1 */
	__u8 saddr[TWT_ADDR_LEN]; /* network order; IPv4 in the first 4 bytes, rest zero */
	__u8 daddr[TWT_ADDR_LEN];
	__u32 netns;
	__u32 claim;     /* enum twt_claim: whoever delivers the time_wait event claims it (compare-and-swap) */
	__u16 sport;     /* host order */
	__u16 dport;
	__u16 family;    /* AF_INET or AF_INET6 */
	__u16 _pad;
	__u32 bound_dev_if; /* SO_BINDTODEVICE's ifindex, 0: none (a lookup must name it to find the socket) */
};

/*
 * What the loader hands recover_time_wait (a BPF_PROG_TYPE_SYSCALL program it runs itself): a
 * suspect close whose socket a sock_diag lookup found in TIME_WAIT, so the kernel never reported
 * its entry. The program claims the close and delivers the event, as a walk's witness would.
 */
struct twt_recover {
	__u64 cookie;
	__u8 substate;      /* TCP_TIME_WAIT or TCP_FIN_WAIT2, as sock_diag reported the timewait socket */
	__u8 _pad[7];
};

/*
 * What read_clock (a BPF_PROG_TYPE_SYSCALL program the loader runs once; BPF_PROG_RUN copies the
 * context back) reports: the kernel's jiffies and CLOCK_MONOTONIC read together, and CONFIG_HZ. With
 * them user space places the timer wheel's buckets on its own clock (kernel-facts §9), and so when a
 * TIME_WAIT entry it only counted (no event, no timer read) really ends: src/model/wheel.ts.
 */
struct twt_clock {
	__u64 jiffies;   /* bpf_jiffies64() */
	__u64 ktime_ns;  /* bpf_ktime_get_ns(), just after */
	__u32 hz;        /* CONFIG_HZ as libbpf resolved it; 0: unknown (no kernel config found) */
	__u32 _pad;
};

/* How a socket walk runs (the .data variable `walk`, written by the loader before each walk). */
struct twt_walk_settings {
	__u64 min_age_ns;  /* a walk or recover_time_wait claims a `closing` entry only when its close is this old, so
	                    * that a time_wait event still on its way (tcp_time_wait() hashes the timewait
	                    * socket before tcp_done() fires the tracepoint) is not taken for a missed one;
	                    * 0 once the tracepoint programs are detached */
	__u64 counted_from_jiffies; /* nonzero: a timewait socket of substate TIME_WAIT whose timer was armed at or
	                             * after this jiffy is left out of the walk (the kernel's counters hold its
	                             * entry: docs/counting-in-the-kernel.md), and the walk ends with a trailer
	                             * that says how many were (TWT_WALK_TRAILER) */
};

/*
 * A walk that leaves counted timewait sockets out ends with one more struct twt_sock: state 0 (no TCP
 * state is 0), `cookie` the number left out. Written at the iterator's end (bpf_iter_tcp_seq_stop
 * calls the program once more, with no socket).
 */
#define TWT_WALK_TRAILER_STATE 0

#endif /* TWTRACE_H */
