/**
 * The lifecycle of the BPF side: open build/twtrace.bpf.o → write filters into .rodata → size the
 * ring → load → attach → map the ring → drain it. close() undoes all of it, in reverse, once.
 */
import * as bpf from '../../native/libbpf.js';
import { RingMap } from '../../native/ring-map.js';
import { decodeClock, type WheelClock } from '../event/clock.js';
import { Claim, CLOCK_SIZE, CONFIG_FIELDS, CONFIG_SIZE, Counter, RECOVER_FIELDS, RECOVER_SIZE, RODATA_CFG_OFFSET, WALK_SETTINGS_FIELDS, WALK_SETTINGS_SIZE } from '../event/layout.generated.js';
import { closingClaim, CLOSING_SIZE, closingSockRecord, decodeClosing, type Closing } from '../event/closing.js';
import { kindValue, type EventKindName } from '../event/kinds.js';
import { HOST_LITTLE_ENDIAN } from '../event/host-order.js';
import { decodeListener, encodeListenerKey, LISTENER_SIZE, type ListenerOwner } from '../event/listener.js';
import { RingReader, type RecordHandler } from './ring-reader.js';
import { COUNTS_MAX_KEYS, KernelCounts } from './counts.js';
import type { DropCounts } from '../facts/losses.js';

export type { DropCounts };

export interface Filters {
	/** Network namespace inodes; empty: all. At most CONFIG_FIELDS.netns.count. */
	netns: number[];
	pid?: number;
	/** Local or remote port. */
	port?: number;
	cgroupId?: number;
	family?: 4 | 6;
	/** Empty: all kinds. */
	kinds: EventKindName[];
}

export interface TracerOptions {
	objectPath: string;
	filters: Filters;
	/** Ring buffer data size: a power of two, at least one page. */
	ringBytes: number;
	/** libbpf and verifier messages, for --verbose. */
	log?: (line: string) => void;
	/**
	 * Keep active closes in the `closing` map until their socket ends, and load recover_time_wait:
	 * the time_wait events the kernel never reported are then delivered (staleCloses, recoverTimeWait).
	 */
	witness?: boolean;
	/** Load the iter/tcp program too, for openWalk() (reconciliation); its walks witness as well. Implies witness. */
	socketWalks?: boolean;
	/**
	 * Count every event the filters pass in the kernel (`counts`, read through Tracer.counts),
	 * whether or not its kind is sent: docs/counting-in-the-kernel.md.
	 */
	counting?: boolean;
	/**
	 * With counting and socketWalks: walks leave out the timewait sockets armed since the attach, whose
	 * entries the counters hold, and end with how many they left out (bpf/twtrace.h
	 * TWT_WALK_TRAILER_STATE). For a model that takes TIME_WAIT from the counts (reconcile.ts takes
	 * only those armed before counting began): a walk then reads the sockets the counts do not stand for.
	 */
	walksLeaveCounted?: boolean;
}

export type { ListenerOwner };

/** A closing entry older than this is deleted by sweepClosing(): no close takes that long to end
 * (FIN_WAIT1 retries, tcp_fin_timeout, a half-closed socket) without the tracepoint or a walk settling it. */
export const CLOSING_MAX_AGE_NS = 600_000_000_000n;
/**
 * A walk claims only closes at least this old (walk_min_age_ns in bpf/twtrace.bpf.c, set at load):
 * a younger one's time_wait event may still be on its way from the tracepoint.
 */
export const WALK_MIN_AGE_NS = 1_000_000_000n;

const PROGRAMS = {
	stateChange: { name: 'handle_inet_sock_set_state', attachPoint: 'tp_btf/inet_sock_set_state' },
	// Runs only when nested inside stateChange on one CPU: the run the kernel skipped (bpf/twtrace.bpf.c).
	stateChangeNested: { name: 'handle_inet_sock_set_state_nested', attachPoint: 'tp_btf/inet_sock_set_state' },
	sysExit: { name: 'handle_sys_exit', attachPoint: 'tp_btf/sys_exit' },
	socketWalk: { name: 'dump_tcp', attachPoint: 'iter/tcp' },
} as const;
/** The two generations of the kernel's counters; the slot of `counts` names counts_a at load. */
const COUNT_GENERATIONS = ['counts_a', 'counts_b'] as const;
/** Run by the loader (BPF_PROG_RUN), not attached: delivers one missed TIME_WAIT entry (recoverTimeWait). */
const RECOVER_PROGRAM = 'recover_time_wait';
/** Run once by the loader where it counts: the timer wheel's clock (readClock). */
const CLOCK_PROGRAM = 'read_clock';

/** What the programs do besides filtering (struct twt_config's switches). */
export interface ConfigSwitches {
	witness?: boolean;
	counting?: boolean;
}

/** Encodes the filters as `struct twt_config` in host byte order (`le`: a test's choice). Pure. */
export function encodeConfig(filters: Filters, switches: ConfigSwitches = {}, le = HOST_LITTLE_ENDIAN): Uint8Array {
	const bytes = new Uint8Array(CONFIG_SIZE);
	const v = new DataView(bytes.buffer);
	const F = CONFIG_FIELDS;
	if (filters.netns.length > F.netns.count) throw new RangeError(`at most ${F.netns.count} network namespaces`);
	v.setBigUint64(F.cgroup_id.offset, BigInt(filters.cgroupId ?? 0), le);
	filters.netns.forEach((ino, i) => v.setUint32(F.netns.offset + 4 * i, ino, le));
	v.setUint32(F.netns_count.offset, filters.netns.length, le);
	v.setUint32(F.pid.offset, filters.pid ?? 0, le);
	let kinds = 0;
	for (const k of filters.kinds) kinds |= 1 << kindValue(k)!;
	v.setUint32(F.kinds.offset, kinds >>> 0, le);
	v.setUint32(F.witness.offset, switches.witness ? 1 : 0, le);
	v.setUint32(F.counting.offset, switches.counting ? 1 : 0, le);
	v.setUint16(F.port.offset, filters.port ?? 0, le);
	v.setUint16(F.family.offset, filters.family === 4 ? 2 : filters.family === 6 ? 10 : 0, le);
	return bytes;
}

export class Tracer {
	readonly #object: bpf.Handle;
	readonly #programFds: number[] = [];
	readonly #countersFd: number;
	readonly #listenersFd: number;
	readonly #closingFd: number;
	readonly #dataFd: number;
	/** recover_time_wait's fd, with socket walks. */
	readonly #recoverFd: number | undefined;
	/** The programs that make events (tracepoints); the socket walk's link is apart: it outlives them. */
	readonly #eventLinks: bpf.Handle[] = [];
	#walkMinAgeNs = WALK_MIN_AGE_NS;
	/** walk.counted_from_jiffies: 0n, or the jiffy after the attach (walksLeaveCounted). */
	#walkCountedFromJiffies = 0n;
	#walkLink: bpf.Handle | undefined;
	readonly #cpus: number;
	readonly #ring: RingMap;
	readonly ringBytes: number;
	readonly reader: RingReader;
	/** The kernel's counters, with the `counting` option. */
	readonly counts: KernelCounts | undefined;
	/** The mapped ring memory the handler's offsets point into; do not keep references past close(). */
	readonly memory: ArrayBuffer;
	#closed = false;

	/**
	 * Loads and attaches everything; on any failure releases what was acquired and rethrows (a
	 * NativeError with libbpf's context). Requires the privileges checked by preflight.
	 */
	constructor(options: TracerOptions, onRecord: RecordHandler) {
		bpf.captureLibbpfLog(options.log);
		this.ringBytes = options.ringBytes;
		this.#object = bpf.objectOpen(options.objectPath);
		try {
			const witness = options.witness === true || options.socketWalks === true;
			const counting = options.counting === true;
			bpf.mapWriteInitialValue(bpf.findMap(this.#object, '.rodata'), RODATA_CFG_OFFSET, encodeConfig(options.filters, { witness, counting }));
			bpf.mapSetMaxEntries(bpf.findMap(this.#object, 'events'), options.ringBytes);
			// Preallocated: unused generations are sized down to one key.
			for (const name of COUNT_GENERATIONS) bpf.mapSetMaxEntries(bpf.findMap(this.#object, name), counting ? COUNTS_MAX_KEYS : 1);
			const wantsBind = options.filters.kinds.length === 0 || options.filters.kinds.includes('bind_fail');
			const sysExit = bpf.findProgram(this.#object, PROGRAMS.sysExit.name);
			// sys_exit fires on every syscall of the host: load it only when bind failures are wanted.
			bpf.programSetAutoload(sysExit, wantsBind);
			bpf.programSetAutoload(bpf.findProgram(this.#object, PROGRAMS.socketWalk.name), options.socketWalks === true);
			bpf.programSetAutoload(bpf.findProgram(this.#object, RECOVER_PROGRAM), witness);
			bpf.programSetAutoload(bpf.findProgram(this.#object, CLOCK_PROGRAM), counting);
			bpf.objectLoad(this.#object);
			if (options.socketWalks) {
				this.#walkLink = bpf.programAttach(bpf.findProgram(this.#object, PROGRAMS.socketWalk.name), PROGRAMS.socketWalk.attachPoint);
			}
			if (witness) this.#recoverFd = bpf.programFd(bpf.findProgram(this.#object, RECOVER_PROGRAM));

			// Primary before fallback: the kernel calls a tracepoint's programs in attach order.
			const wanted = [PROGRAMS.stateChange, PROGRAMS.stateChangeNested, ...(wantsBind ? [PROGRAMS.sysExit] : [])];
			for (const p of wanted) {
				const prog = bpf.findProgram(this.#object, p.name);
				// Only sys_exit has no fallback: its skipped runs are lost. The state programs' skips are
				// recovered by each other (bpf/twtrace.bpf.c).
				if (p === PROGRAMS.sysExit) this.#programFds.push(bpf.programFd(prog));
				this.#eventLinks.push(bpf.programAttach(prog, p.attachPoint));
			}
			this.#countersFd = bpf.mapFd(bpf.findMap(this.#object, 'counters'));
			this.#listenersFd = bpf.mapFd(bpf.findMap(this.#object, 'listeners'));
			this.#closingFd = bpf.mapFd(bpf.findMap(this.#object, 'closing'));
			this.#dataFd = bpf.mapFd(bpf.findMap(this.#object, '.data'));
			const generationFds = COUNT_GENERATIONS.map((name) => bpf.mapFd(bpf.findMap(this.#object, name)));
			// Read after the attach: a timer armed after the jiffy it reads was armed while counting.
			const clock = counting ? readClock(bpf.programFd(bpf.findProgram(this.#object, CLOCK_PROGRAM))) : undefined;
			this.counts = counting ? new KernelCounts(bpf.mapFd(bpf.findMap(this.#object, 'counts')), [generationFds[0]!, generationFds[1]!], clock) : undefined;
			if (options.walksLeaveCounted && options.socketWalks && clock) this.#walkCountedFromJiffies = BigInt(clock.jiffies + 1);
			this.#setWalkMinAge(WALK_MIN_AGE_NS);
			this.#cpus = bpf.possibleCpus();
			this.#ring = new RingMap(bpf.mapFd(bpf.findMap(this.#object, 'events')), options.ringBytes);
		} catch (error) {
			this.#detach();
			bpf.objectClose(this.#object);
			throw error;
		}
		this.memory = this.#ring.views.memory;
		this.reader = new RingReader(this.#ring.views, onRecord, () => this.#ring.close());
	}

	/** Current loss counters, summed over CPUs. Cheap: a few map lookups. */
	drops(): DropCounts {
		if (this.#closed) throw new Error('tracer closed');
		const read = (c: number) => Number(bpf.perCpuSum(this.#countersFd, c, this.#cpus));
		return {
			ringFull: read(Counter.RING_FULL),
			mapFull: read(Counter.OWNER_STORAGE_FAIL) + read(Counter.LISTENER_MAP_FULL) + read(Counter.COUNTS_FULL),
			ownerMissing: read(Counter.OWNER_MISSING),
			missedRuns: this.#programFds.reduce((sum, fd) => sum + Number(bpf.programRecursionMisses(fd)), 0),
			nestedRecovered: read(Counter.NESTED_RECOVERED),
			walkMissed: read(Counter.WALK_MISSED),
			unwitnessed: read(Counter.CLOSING_MAP_FULL),
		};
	}

	/**
	 * Detaches the tracepoint programs (no new events), keeping the socket walk. A walk after this
	 * may claim every closing entry at once: no time_wait event is on its way any more.
	 */
	detachTracepoints(): void {
		if (this.#closed) return;
		for (const link of this.#eventLinks.splice(0)) bpf.linkDestroy(link);
		this.#setWalkMinAge(0n);
	}

	#setWalkMinAge(ns: bigint): void {
		this.#walkMinAgeNs = ns;
		this.#writeWalkSettings();
	}

	#writeWalkSettings(): void {
		if (this.#closed) return;
		const value = Buffer.alloc(WALK_SETTINGS_SIZE);
		const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
		v.setBigUint64(WALK_SETTINGS_FIELDS.min_age_ns.offset, this.#walkMinAgeNs, HOST_LITTLE_ENDIAN);
		v.setBigUint64(WALK_SETTINGS_FIELDS.counted_from_jiffies.offset, this.#walkCountedFromJiffies, HOST_LITTLE_ENDIAN);
		bpf.mapUpdate(this.#dataFd, Buffer.alloc(4), value);
	}

	/**
	 * Deletes the closing entries that are settled: claimed by a walk; unclaimed but older than a
	 * walk's witness age when `walk` (its start, CLOCK_MONOTONIC ns, and the namespaces it covered)
	 * went through their namespace without finding them in TIME_WAIT (the socket ended otherwise, or
	 * is still half closed); or older than CLOSING_MAX_AGE_NS. Safe at any time: a tracepoint that finds
	 * no entry delivers its event as usual. Visits at most `maxEntries`; returns how many it deleted.
	 */
	sweepClosing(nowNs: bigint, walk?: { startNs: bigint; netns: ReadonlySet<number> }, maxEntries = 1_000_000): number {
		const doomed: Buffer[] = [];
		this.#forEachClosing(maxEntries, (key, claim, closedNs, netns) => {
			const isUnfound = walk !== undefined && walk.netns.has(netns) && closedNs + WALK_MIN_AGE_NS < walk.startNs;
			if (claim === Claim.WALK || (claim === Claim.NONE && isUnfound) || nowNs - closedNs > CLOSING_MAX_AGE_NS) doomed.push(Buffer.from(key));
			return true;
		});
		// Deleted after the pass: deleting the current key restarts get_next_key from the first.
		return doomed.filter((k) => bpf.mapDelete(this.#closingFd, k)).length;
	}

	/**
	 * The closes older than `minAgeNs` still waiting for their end (unclaimed): each the sign of a
	 * TIME_WAIT entry the kernel did not report (kernel-facts §8), or a socket still half closed. At
	 * most `max`, the oldest of those visited first is not guaranteed: the map's order.
	 */
	staleCloses(nowNs: bigint, minAgeNs: bigint, max = 1024): { cookie: bigint; closing: Closing }[] {
		const stale: { cookie: bigint; closing: Closing }[] = [];
		this.#forEachClosing(1_000_000, (key, claim, closedNs, _netns, value) => {
			if (claim !== Claim.NONE || nowNs - closedNs <= minAgeNs) return true;
			const closing = decodeClosing(value);
			if (closing) stale.push({ cookie: cookieOf(key), closing });
			return stale.length < max;
		});
		return stale;
	}

	/**
	 * The closes in flight (claimed by nobody yet), of every namespace, as struct twt_sock records in state
	 * FIN_WAIT1 (the last transition seen; the socket may be in FIN_WAIT2 or CLOSING by now): sockets
	 * that hold their ports with no process holding them (an orphan has no file), for an open-socket
	 * walk (pipeline/open-walks.ts). A missed TIME_WAIT entry not yet recovered is among them: it holds
	 * its port as well. Reads the whole map (the closes of an RTT or so, and the suspects): once a pass.
	 */
	closesInFlight(): Buffer {
		const records: Uint8Array[] = [];
		this.#forEachClosing(1_000_000, (key, claim, _closedNs, _netns, value) => {
			const closing = claim === Claim.NONE ? decodeClosing(value) : undefined;
			if (closing) records.push(closingSockRecord(cookieOf(key), closing));
			return true;
		});
		return Buffer.concat(records);
	}

	/**
	 * What an open-socket walk's soundness depends on, a number that only grows: active closes not
	 * kept in the `closing` map (it was full, or the socket's storage could not be made), each an
	 * orphan the walk would miss. (A transition neither state program runs for needs a third nesting
	 * level, which TCP does not make: bpf/twtrace.bpf.c. The fallback's own skipped runs are
	 * transitions the primary handled: no hazard.)
	 */
	openWalkHazards(): number {
		if (this.#closed) return 0;
		const read = (c: number) => Number(bpf.perCpuSum(this.#countersFd, c, this.#cpus));
		return read(Counter.CLOSING_MAP_FULL) + read(Counter.OWNER_STORAGE_FAIL);
	}

	/**
	 * Delivers the time_wait event of the close of `cookie`, whose socket was found in TIME_WAIT
	 * (substate `substate`, TCP_*) although the kernel reported no entry: recover_time_wait claims the
	 * close as a walk would. True when it delivered (or counted) the event; false when the close was
	 * claimed already, is gone, or is younger than a walk's witness age.
	 */
	recoverTimeWait(cookie: bigint, substate: number): boolean {
		if (this.#closed || this.#recoverFd === undefined) return false;
		const ctx = Buffer.alloc(RECOVER_SIZE);
		const v = new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength);
		v.setBigUint64(RECOVER_FIELDS.cookie.offset, cookie, HOST_LITTLE_ENDIAN);
		v.setUint8(RECOVER_FIELDS.substate.offset, substate);
		return bpf.programRun(this.#recoverFd, ctx) === 1;
	}

	/** Deletes the close of `cookie` from the map (settled: its socket ended, or its event was delivered). */
	forgetClose(cookie: bigint): boolean {
		return !this.#closed && bpf.mapDelete(this.#closingFd, keyOf(cookie));
	}

	/** Visits the closing map's entries until `visit` returns false. */
	#forEachClosing(maxEntries: number, visit: (key: Buffer, claim: number, closedNs: bigint, netns: number, value: Buffer) => boolean): void {
		if (this.#closed) return;
		const key = Buffer.alloc(8);
		const next = Buffer.alloc(8);
		const value = Buffer.alloc(CLOSING_SIZE);
		let has = bpf.mapNextKey(this.#closingFd, null, next);
		for (let visited = 0; has && visited < maxEntries; visited++) {
			next.copy(key);
			if (bpf.mapLookup(this.#closingFd, key, value)) {
				const { claim, closedNs, netns } = closingClaim(value);
				if (!visit(key, claim, closedNs, netns, value)) return;
			}
			has = bpf.mapNextKey(this.#closingFd, key, next);
		}
	}

	/**
	 * An iterator fd for one walk of the network namespace the calling thread is in now, to read in
	 * chunks (native/iter.ts readIteratorChunk) and close. Requires `socketWalks`.
	 */
	openWalk(): number {
		if (this.#closed || !this.#walkLink) throw new Error('socket walks not enabled');
		return bpf.iterCreate(this.#walkLink);
	}

	/** Who called listen() on (netns, port) since twtrace started, from the listeners map. */
	listenerOwner(netns: number, port: number): ListenerOwner | undefined {
		if (this.#closed) return undefined;
		const value = Buffer.alloc(LISTENER_SIZE);
		if (!bpf.mapLookup(this.#listenersFd, encodeListenerKey(netns, port), value)) return undefined;
		return decodeListener(value);
	}

	/** Detaches the programs first (no new records), drains the rest, unmaps, frees the object. Idempotent. */
	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		this.#detach();
		this.reader.close();
		bpf.objectClose(this.#object);
	}

	#detach(): void {
		for (const link of this.#eventLinks.splice(0)) bpf.linkDestroy(link);
		if (this.#walkLink) bpf.linkDestroy(this.#walkLink);
		this.#walkLink = undefined;
	}
}

/** A `closing` key: the socket cookie, a u64 in host order. */
function keyOf(cookie: bigint): Buffer {
	const key = Buffer.alloc(8);
	if (HOST_LITTLE_ENDIAN) key.writeBigUInt64LE(cookie);
	else key.writeBigUInt64BE(cookie);
	return key;
}

function cookieOf(key: Buffer): bigint {
	return HOST_LITTLE_ENDIAN ? key.readBigUInt64LE() : key.readBigUInt64BE();
}

/**
 * The timer wheel's clock, read by running read_clock (struct twt_clock): where counted TIME_WAIT
 * entries end (model/wheel.ts). Undefined where the kernel's HZ is unknown, or the program cannot
 * run: the model then ends them 60 s after their reading, as before.
 */
function readClock(progFd: number): WheelClock | undefined {
	const ctx = Buffer.alloc(CLOCK_SIZE);
	try {
		bpf.programRun(progFd, ctx);
	} catch {
		return undefined;
	}
	return decodeClock(ctx);
}
