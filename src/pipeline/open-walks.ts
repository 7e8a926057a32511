/**
 * Open-socket walks: a namespace's open sockets, read without its timewait sockets, in place of a
 * walk of its whole table. Where the kernel's counters hold TIME_WAIT, a walk of the table visits a
 * million timewait sockets to hand over the few thousand others: at 1.8M TIME_WAIT under full churn
 * the kernel's iterator alone took 1.66 s (docs/counting-in-the-kernel.md, "Open-socket walks").
 * An open-socket walk reads the sockets processes hold (iter/task_file: every file of every process,
 * OpenSocketWalker walkTcp) and the closes in flight, which no process holds any more (the tracer's
 * `closing` map): its cost follows the open sockets, not the timewait ones. (The map of twtrace's
 * socket storage would name the same sockets, but map iterators do not load here: kernel-facts §0.)
 *
 * What a walk of the table finds besides: timewait sockets (held by the counters, or older than
 * counting: hence the rule below), request sockets and a listener's children not yet accepted
 * (reconcile.ts ignores both), a passive close's orphan in LAST_ACK (for an RTT), and sockets the
 * kernel itself holds (NFS, iSCSI: no process file). The last two are the gap, for ports held open.
 *
 * So a namespace is read by open-socket walks once a walk of its table, made while counting, took no
 * timewait socket into the model (reconcile.ts: none older than counting, none the counters do not
 * hold), while nothing since could have hidden a close in flight (NamespaceWalker.openWalkHazards: a
 * close the `closing` map could not keep). Otherwise, and after the tracepoints are detached, walks
 * read the table, as before.
 */
import type { OpenedWalk, WalkPeek } from '../tracer/namespaces.js';
import type { FeedWalker } from './feed-parts.js';
import { timedAsync, type WalkTime } from './walk-reader.js';

/** One pass over the namespaces: the process walk is read once, for every namespace that needs it. */
export interface OpenWalkPass { processSockets?: Uint8Array | undefined; time: WalkTime }

export class OpenWalks {
	readonly #walker: FeedWalker;
	readonly #processSockets: (() => Promise<Uint8Array>) | undefined;
	/** Namespaces whose next walks may be open-socket walks, with the hazards as of the table walk that made them so. */
	readonly #sound = new Map<number, number>();
	#off = false;

	/**
	 * `processSockets`: the sockets every process holds (OpenSocketWalker walkTcp), where they can be
	 * read and the walks leave the counted timewait sockets out (else every walk reads the table).
	 */
	constructor(walker: FeedWalker, processSockets: (() => Promise<Uint8Array>) | undefined) {
		this.#walker = walker;
		this.#processSockets = processSockets;
		this.#off = !processSockets || walker.openWalkHazards === undefined || walker.peek === undefined;
	}

	/**
	 * Opens the next walk of `netns` (NamespaceWalker.open): an open-socket walk where allowed, after
	 * `needed` said yes (the process walk is read only for a walk that is), else a walk of its table.
	 * Undefined when `needed` said no. A process walk that fails leaves the table to walk, as before.
	 */
	async open(netns: number, pids: number[], needed: ((peek: WalkPeek) => boolean) | undefined, pass: OpenWalkPass): Promise<OpenedWalk | { netns: number; error: string } | undefined> {
		if (!this.allowed(netns)) return this.#walker.open(netns, pids, needed);
		if (needed) {
			const peek = this.#walker.peek!(netns, pids);
			if ('error' in peek) return peek;
			if (!needed(peek)) return undefined;
		}
		pass.processSockets ??= await timedAsync(pass.time, () => this.#processSockets!().catch(() => undefined));
		return this.#walker.open(netns, pids, undefined, pass.processSockets);
	}

	/** Whether the next walk of `netns` may be an open-socket walk. */
	allowed(netns: number): boolean {
		const hazards = this.#sound.get(netns);
		if (this.#off || hazards === undefined) return false;
		// A hazard of any namespace may be in this one (the counters are the host's): every namespace's table is read again.
		if (this.#hazards() !== hazards) {
			this.#sound.clear();
			return false;
		}
		return true;
	}

	/** The hazards before a walk of a table; undefined where open-socket walks cannot be made. */
	before(): number | undefined {
		return this.#off ? undefined : this.#hazards();
	}

	/**
	 * After a walk of `netns`'s table that began with `hazardsBefore` (before()) and took `uncounted`
	 * timewait sockets into the model: its next walks may be open-socket walks if it took none and no
	 * hazard came.
	 */
	tableWalked(netns: number, hazardsBefore: number | undefined, uncounted: number): void {
		if (hazardsBefore !== undefined && uncounted === 0 && this.#hazards() === hazardsBefore) this.#sound.set(netns, hazardsBefore);
		else this.#sound.delete(netns);
	}

	/** The tracepoints are detached: closes from now on are not kept. */
	stop(): void {
		this.#off = true;
	}

	#hazards(): number {
		return this.#walker.openWalkHazards?.() ?? 0;
	}
}
