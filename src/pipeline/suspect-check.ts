/**
 * Suspect checks: how the live feed delivers the TIME_WAIT entries the kernel never reports
 * (kernel-facts §8) without walking whole socket tables. A close that waits too long for its socket's
 * end (its entry in the `closing` map still unclaimed) is a suspect: its socket entered TIME_WAIT
 * unreported, or is still half closed, or ended unreported. Each is looked up by its 4-tuple and
 * cookie (sock_diag), a hash lookup in the kernel:
 *   - in TIME_WAIT: recover_time_wait delivers its event (flagged recovered); the close is settled;
 *   - not there: the socket ended without reaching TIME_WAIT; the close is settled;
 *   - a full socket (FIN_WAIT1, FIN_WAIT2, CLOSING): looked up again later, less and less often.
 * A witness walk did the same by reading every socket of the namespace: at full churn (30,000
 * sockets in TIME_WAIT) that was a third of serve's main thread (bench/RESULTS.md, issue 21).
 */
import type { Closing } from '../event/closing.js';
import type { Lookup, SocketKey } from '../tracer/sock-diag.js';

/** A close that has waited longer than this for its end is a suspect (an RTT or two is the norm). */
export const STALE_CLOSE_NS = 1_500_000_000n;
/** Suspects looked up per check at most: a burst of half-closed sockets cannot stall the event loop. */
export const MAX_LOOKUPS = 512;
/** A half-closed socket is looked up again after 1 s, then 2, 4, ... up to this. */
const MAX_RETRY_NS = 32_000_000_000n;
const FIRST_RETRY_NS = 1_000_000_000n;

/** What a check needs of the session (tracer/tracer.ts). */
export interface SuspectSession {
	staleCloses(nowNs: bigint, minAgeNs: bigint, max: number): { cookie: bigint; closing: Closing }[];
	recoverTimeWait(cookie: bigint, substate: number): boolean;
	forgetClose(cookie: bigint): boolean;
}

/** What a check needs of the namespace walker (tracer/namespaces.ts). */
export interface SuspectLookup {
	lookup(netns: number, pids: Iterable<number>, sockets: readonly SocketKey[]): (Lookup | undefined)[] | { netns: number; error: string };
}

export interface SuspectCheckResult {
	/** Suspects looked up. */
	looked: number;
	/** Found in TIME_WAIT: their events delivered now. */
	recovered: number;
	/** Not found: ended without TIME_WAIT; forgotten. */
	ended: number;
	/** Still closing (or the kernel gave no answer): looked up again later. */
	waiting: number;
	/** Namespaces that could not be entered, with the reason: their suspects wait. */
	unreachable: Map<number, string>;
}

export class SuspectChecker {
	readonly #session: SuspectSession;
	readonly #lookup: SuspectLookup;
	/** Suspects still closing: when to look again, and the gap after that. */
	readonly #retry = new Map<bigint, { atNs: bigint; gapNs: bigint }>();

	constructor(session: SuspectSession, lookup: SuspectLookup) {
		this.#session = session;
		this.#lookup = lookup;
	}

	/**
	 * Looks up the closes older than `minAgeNs` (CLOCK_MONOTONIC `nowNs`) that are due, at most
	 * `maxLookups`; `pidsIn` adds ways into a namespace to the closes' own owner and closer.
	 */
	check(nowNs: bigint, minAgeNs: bigint, pidsIn: (netns: number) => Iterable<number>, maxLookups = MAX_LOOKUPS): SuspectCheckResult {
		const result: SuspectCheckResult = { looked: 0, recovered: 0, ended: 0, waiting: 0, unreachable: new Map() };
		const stale = this.#session.staleCloses(nowNs, minAgeNs, 4 * maxLookups);
		const staleCookies = new Set(stale.map((s) => s.cookie));
		// Bounded by the map's stale closes: one settled otherwise (the tracepoint, a walk) is dropped here.
		for (const cookie of this.#retry.keys()) if (!staleCookies.has(cookie)) this.#retry.delete(cookie);
		const byNetns = new Map<number, { cookie: bigint; closing: Closing }[]>();
		for (const s of stale) {
			if (result.looked >= maxLookups) break;
			if ((this.#retry.get(s.cookie)?.atNs ?? 0n) > nowNs) continue;
			const group = byNetns.get(s.closing.netns) ?? [];
			group.push(s);
			byNetns.set(s.closing.netns, group);
			result.looked++;
		}
		for (const [netns, group] of byNetns) {
			const ways = new Set<number>();
			for (const { closing } of group) ways.add(closing.pid).add(closing.closerPid);
			for (const pid of pidsIn(netns)) ways.add(pid);
			const answers = this.#lookup.lookup(netns, ways, group.map(({ cookie, closing }) => ({ cookie, ...closing.socket })));
			if ('error' in answers) {
				// Not looked up: tried again at the next check (the caller looks for ways in meanwhile).
				result.unreachable.set(netns, answers.error);
				result.waiting += group.length;
				continue;
			}
			group.forEach(({ cookie }, i) => {
				const answer = answers[i];
				if (answer?.found === false) {
					result.ended++;
				} else if (answer?.isTimeWait) {
					// Claimed by the program, or already by a walk or the tracepoint: settled either way.
					if (this.#session.recoverTimeWait(cookie, answer.state)) result.recovered++;
				} else {
					this.#later(cookie, nowNs);
					result.waiting++;
					return;
				}
				this.#session.forgetClose(cookie);
				this.#retry.delete(cookie);
			});
		}
		return result;
	}

	#later(cookie: bigint, nowNs: bigint): void {
		const gapNs = this.#retry.get(cookie)?.gapNs ?? FIRST_RETRY_NS;
		this.#retry.set(cookie, { atNs: nowNs + gapNs, gapNs: gapNs * 2n > MAX_RETRY_NS ? MAX_RETRY_NS : gapNs * 2n });
	}
}
