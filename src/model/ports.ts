/**
 * Ephemeral port arithmetic, pure. connect() needs a local port that is free for its 4-tuple
 * (__inet_hash_connect / __inet_check_established), so the pool runs out per destination
 * (netns, saddr, daddr, dport), and a port stays taken for the 60 s of TIME_WAIT after each
 * connection that closed first (TCP_TIMEWAIT_LEN, fixed in include/net/tcp.h).
 * The port range and its parsing are facts of a namespace (facts/netns-settings.ts).
 */

export const TIME_WAIT_SECONDS = 60;

/** New connections per second one destination sustains: each holds a port for 60 s of TIME_WAIT. */
export function sustainableRate(portsUsable: number): number {
	return portsUsable / TIME_WAIT_SECONDS;
}

export interface PoolState {
	portsUsable: number;
	/** Ports held by sockets that are not in TIME_WAIT (open connections): held until closed. */
	portsHeldOpen: number;
	/**
	 * TIME_WAIT sockets holding ports, by the whole second they expire at (a destination's own table,
	 * Destination.expiring: read in place, so that a scrape asking this of every destination copies
	 * nothing; a Map reads the same way).
	 */
	timeWaitExpiring: { forEach(visit: (n: number, second: number) => void): void };
	/** The second now, on the clock of timeWaitExpiring's keys: a key at or before it has 0 s left. */
	nowSecond: number;
	/** New connections per second, assumed constant from now on; each enters TIME_WAIT. */
	ratePerSec: number;
	/**
	 * TIME_WAIT sockets this pool can hold at most: the namespace's tcp_max_tw_buckets less those held
	 * towards other destinations. Past it, a closing socket skips TIME_WAIT and frees its port at once
	 * (inet_twsk_alloc fails, tcp_time_wait counts TCPTimeWaitOverflow).
	 */
	maxTimeWait?: number;
}

/**
 * Seconds until every usable port is held, at a constant connection rate; undefined when the rate
 * is sustainable. Ports in use at time T = open + TIME_WAIT still left at T + rate·min(T, 60): the
 * first T where that reaches the pool is found interval by interval between expiries.
 */
export function secondsToExhaustion(s: PoolState): number | undefined {
	const { portsUsable, portsHeldOpen, ratePerSec } = s;
	let held = portsHeldOpen;
	s.timeWaitExpiring.forEach((n) => {
		if (n > 0) held += n;
	});
	if (held >= portsUsable) return 0;
	if (ratePerSec <= 0) return undefined;
	// The cap keeps TIME_WAIT from ever filling the pool: closes past it free their ports.
	if (s.maxTimeWait !== undefined && portsHeldOpen + s.maxTimeWait < portsUsable) return undefined;
	// Ports in use never exceed those held now plus 60 s of new connections: no crossing, and no
	// sort of the expiries (a scrape asks this of every destination; most are far from the edge).
	if (held + ratePerSec * TIME_WAIT_SECONDS < portsUsable) return undefined;
	const expiries: [secondsLeft: number, n: number][] = [];
	s.timeWaitExpiring.forEach((n, second) => {
		if (n > 0) expiries.push([Math.max(0, second - s.nowSecond), n]);
	});
	expiries.sort((a, b) => a[0] - b[0]);
	let from = 0;
	for (const [secondsLeft, n] of expiries) {
		const to = Math.min(secondsLeft, TIME_WAIT_SECONDS);
		const crossing = (portsUsable - held) / ratePerSec; // time from 0 at which held + rate·T reaches the pool
		if (crossing <= to) return Math.max(crossing, from);
		from = to;
		held -= n;
	}
	const crossing = (portsUsable - held) / ratePerSec;
	return crossing <= TIME_WAIT_SECONDS ? Math.max(crossing, from) : undefined;
}
