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
 * hold), while nothing since could have hidden a close in flight (Tracer.openWalkHazards: a close the
 * `closing` map could not keep). Otherwise, and after the tracepoints are detached, walks
 * read the table, as before.
 */
import { SOCK_FIELDS, SOCK_SIZE } from '../event/layout.generated.js';
import { HOST_LITTLE_ENDIAN } from '../event/host-order.js';
import type { NetnsSettings } from '../facts/netns-settings.js';
import type { OpenedWalk, WalkPeek } from '../tracer/namespaces.js';
import type { FeedSession, FeedWalker } from './feed-parts.js';
import { timedAsync, type WalkTime } from './walk-reader.js';

/**
 * An open-socket walk of one namespace: its records (struct twt_sock: the sockets processes hold,
 * then the closes in flight no process holds), in no particular order (a socket may come before its
 * listener), none of them timewait sockets; with the kernel's count of those as it was read.
 */
export interface OpenSocketsWalk {
	netns: number;
	takenAtUs: number;
	settings: NetnsSettings;
	timeWaitKernel: number;
	records: Buffer;
}

/** One pass over the namespaces: the processes' sockets and the closes in flight are read once, for every namespace that needs them. */
export interface OpenWalkPass { processSockets?: Uint8Array | undefined; closes?: Uint8Array; time: WalkTime }

export class OpenWalks {
	readonly #walker: FeedWalker;
	readonly #session: Pick<FeedSession, 'closesInFlight' | 'openWalkHazards'>;
	readonly #processSockets: (() => Promise<Uint8Array>) | undefined;
	/** Namespaces whose next walks may be open-socket walks, with the hazards as of the table walk that made them so. */
	readonly #sound = new Map<number, number>();
	#off = false;

	/**
	 * `processSockets`: the sockets every process holds (OpenSocketWalker walkTcp), where they can be
	 * read and the walks leave the counted timewait sockets out (else every walk reads the table).
	 */
	constructor(walker: FeedWalker, session: Pick<FeedSession, 'closesInFlight' | 'openWalkHazards'>, processSockets: (() => Promise<Uint8Array>) | undefined) {
		this.#walker = walker;
		this.#session = session;
		this.#processSockets = processSockets;
		this.#off = !processSockets || !walker.peek || !session.closesInFlight || !session.openWalkHazards;
	}

	/**
	 * The next walk of `netns`: an open-socket walk where allowed, after `needed` said yes (the
	 * processes are walked only for a walk that is), else a walk of its table (NamespaceWalker.open).
	 * Undefined when `needed` said no. Without the kernel's count, or when the process walk fails, the
	 * table, as before.
	 */
	async open(netns: number, pids: number[], needed: ((peek: WalkPeek) => boolean) | undefined, pass: OpenWalkPass): Promise<OpenedWalk | OpenSocketsWalk | { netns: number; error: string } | undefined> {
		if (!this.allowed(netns)) return this.#walker.open(netns, pids, needed);
		const peek = this.#walker.peek!(netns, pids);
		if ('error' in peek) return peek;
		if (needed && !needed(peek)) return undefined;
		pass.processSockets ??= await timedAsync(pass.time, () => this.#processSockets!().catch(() => undefined));
		if (peek.timeWaitKernel === undefined || !pass.processSockets) return this.#walker.open(netns, pids);
		pass.closes ??= this.#session.closesInFlight!();
		const records = openSocketRecords(netns, pass.processSockets, pass.closes);
		return { netns, takenAtUs: peek.takenAtUs, settings: peek.settings, timeWaitKernel: peek.timeWaitKernel, records };
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
		return this.#session.openWalkHazards?.() ?? 0;
	}
}

/**
 * The records of an open-socket walk of `netns`, from those of every namespace: the sockets processes
 * hold there (one per socket: several processes may hold one), then the closes in flight there that
 * no process holds. A socket is known by its cookie; by its 4-tuple where it has none (0: never seen
 * by twtrace). Pure.
 */
export function openSocketRecords(netns: number, processSockets: Uint8Array, closes: Uint8Array): Buffer {
	const seen = new Set<string>();
	const kept: Uint8Array[] = [];
	const keepAll = (records: Uint8Array) => {
		const v = new DataView(records.buffer, records.byteOffset, records.byteLength);
		for (let at = 0; at + SOCK_SIZE <= records.length; at += SOCK_SIZE) {
			if (v.getUint32(at + SOCK_FIELDS.netns.offset, HOST_LITTLE_ENDIAN) !== netns) continue;
			const cookie = v.getBigUint64(at + SOCK_FIELDS.cookie.offset, HOST_LITTLE_ENDIAN);
			// The 4-tuple and family: saddr to family, in the record's order.
			const key = cookie !== 0n ? cookie.toString() : Buffer.from(records.subarray(at + SOCK_FIELDS.saddr.offset, at + SOCK_FIELDS.family.offset + SOCK_FIELDS.family.size)).toString('hex');
			if (seen.has(key)) continue;
			seen.add(key);
			kept.push(records.subarray(at, at + SOCK_SIZE));
		}
	};
	keepAll(processSockets);
	keepAll(closes);
	return Buffer.concat(kept);
}
