/**
 * The lifecycle of the BPF side: open build/twtrace.bpf.o → write filters into .rodata → size the
 * ring → load → attach → map the ring → drain it. close() undoes all of it, in reverse, once.
 */
import * as bpf from '../../native/libbpf.js';
import { readIterator } from '../../native/iter.js';
import { RingMap } from '../../native/ring-map.js';
import { CONFIG_FIELDS, CONFIG_SIZE, Counter, RODATA_CFG_OFFSET } from '../event/layout.generated.js';
import { kindValue, type EventKindName } from '../event/kinds.js';
import { RingReader, type RecordHandler } from './ring-reader.js';

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
	/** Load the iter/tcp program too, for walkSockets() (top's reconciliation). */
	socketWalks?: boolean;
}

/** The process that called listen() on a port, from the BPF listeners map. */
export interface ListenerOwner {
	pid: number;
	comm: string;
}

export interface DropCounts {
	/** Events lost because the ring buffer was full. */
	ringFull: number;
	/** Sockets left unattributed because sock_owner or listeners could not take an entry. */
	mapFull: number;
	/** Program runs the kernel skipped (already running on that CPU) that the fallback did not recover: lost. */
	missedRuns: number;
	/** Nested runs the kernel skipped for the primary program and the fallback handled: not lost. */
	nestedRecovered: number;
	/** time_wait/reset events whose socket had no recorded owner (it predates twtrace, or was evicted). */
	ownerMissing: number;
}

const PROGRAMS = {
	stateChange: { name: 'handle_inet_sock_set_state', attachPoint: 'tp_btf/inet_sock_set_state' },
	// Runs only when nested inside stateChange on one CPU: the run the kernel skipped (bpf/twtrace.bpf.c).
	stateChangeNested: { name: 'handle_inet_sock_set_state_nested', attachPoint: 'tp_btf/inet_sock_set_state' },
	sysExit: { name: 'handle_sys_exit', attachPoint: 'tp_btf/sys_exit' },
	socketWalk: { name: 'dump_tcp', attachPoint: 'iter/tcp' },
} as const;

const LISTENER_VALUE_BYTES = 40;

/** Encodes the filters as `struct twt_config` (host byte order). Pure; exported for tests. */
export function encodeConfig(filters: Filters): Uint8Array {
	const bytes = new Uint8Array(CONFIG_SIZE);
	const v = new DataView(bytes.buffer);
	const le = true; // x86_64 only, as bpf/twtrace.bpf.c
	const F = CONFIG_FIELDS;
	if (filters.netns.length > F.netns.count) throw new RangeError(`at most ${F.netns.count} network namespaces`);
	v.setBigUint64(F.cgroup_id.offset, BigInt(filters.cgroupId ?? 0), le);
	filters.netns.forEach((ino, i) => v.setUint32(F.netns.offset + 4 * i, ino, le));
	v.setUint32(F.netns_count.offset, filters.netns.length, le);
	v.setUint32(F.pid.offset, filters.pid ?? 0, le);
	let kinds = 0;
	for (const k of filters.kinds) kinds |= 1 << kindValue(k)!;
	v.setUint32(F.kinds.offset, kinds >>> 0, le);
	v.setUint16(F.port.offset, filters.port ?? 0, le);
	v.setUint16(F.family.offset, filters.family === 4 ? 2 : filters.family === 6 ? 10 : 0, le);
	return bytes;
}

export class Tracer {
	readonly #object: bpf.Handle;
	readonly #links: bpf.Handle[] = [];
	readonly #programFds: number[] = [];
	readonly #countersFd: number;
	readonly #listenersFd: number;
	readonly #walkLink: bpf.Handle | undefined;
	readonly #cpus: number;
	readonly #ring: RingMap;
	readonly ringBytes: number;
	readonly reader: RingReader;
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
			bpf.mapWriteInitialValue(bpf.findMap(this.#object, '.rodata'), RODATA_CFG_OFFSET, encodeConfig(options.filters));
			bpf.mapSetMaxEntries(bpf.findMap(this.#object, 'events'), options.ringBytes);
			const wantsBind = options.filters.kinds.length === 0 || options.filters.kinds.includes('bind_fail');
			const sysExit = bpf.findProgram(this.#object, PROGRAMS.sysExit.name);
			// sys_exit fires on every syscall of the host: load it only when bind failures are wanted.
			bpf.programSetAutoload(sysExit, wantsBind);
			bpf.programSetAutoload(bpf.findProgram(this.#object, PROGRAMS.socketWalk.name), options.socketWalks === true);
			bpf.objectLoad(this.#object);
			if (options.socketWalks) {
				this.#walkLink = bpf.programAttach(bpf.findProgram(this.#object, PROGRAMS.socketWalk.name), PROGRAMS.socketWalk.attachPoint);
				this.#links.push(this.#walkLink);
			}

			const wanted = [PROGRAMS.stateChange, PROGRAMS.stateChangeNested, ...(wantsBind ? [PROGRAMS.sysExit] : [])];
			for (const p of wanted) {
				const prog = bpf.findProgram(this.#object, p.name);
				// The fallback's own skips are harmless: it is only skipped while it runs, when the primary is idle.
				if (p !== PROGRAMS.stateChangeNested) this.#programFds.push(bpf.programFd(prog));
				this.#links.push(bpf.programAttach(prog, p.attachPoint));
			}
			this.#countersFd = bpf.mapFd(bpf.findMap(this.#object, 'counters'));
			this.#listenersFd = bpf.mapFd(bpf.findMap(this.#object, 'listeners'));
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
		// Recovered first: the kernel counts a skip before the fallback counts its recovery, so
		// misses read afterwards are never fewer than the recoveries read here.
		const recovered = read(Counter.NESTED_RECOVERED);
		const skipped = this.#programFds.reduce((sum, fd) => sum + Number(bpf.programRecursionMisses(fd)), 0);
		return {
			ringFull: read(Counter.RING_FULL),
			mapFull: read(Counter.OWNER_MAP_FULL) + read(Counter.LISTENER_MAP_FULL),
			ownerMissing: read(Counter.OWNER_MISSING),
			missedRuns: skipped - recovered,
			nestedRecovered: recovered,
		};
	}

	/**
	 * One iter/tcp walk: struct twt_sock records for every TCP socket of the network namespace the
	 * calling thread is in now (see native/iter.ts inNetns). Requires `socketWalks`.
	 */
	walkSockets(betweenChunks?: () => void): Buffer {
		if (this.#closed || !this.#walkLink) throw new Error('socket walks not enabled');
		return readIterator(this.#walkLink, betweenChunks);
	}

	/** Who called listen() on (netns, port) since twtrace started, from the listeners map. */
	listenerOwner(netns: number, port: number): ListenerOwner | undefined {
		if (this.#closed) return undefined;
		const key = Buffer.alloc(8);
		key.writeUInt32LE(netns, 0);
		key.writeUInt32LE(port, 4);
		const value = Buffer.alloc(LISTENER_VALUE_BYTES);
		if (!bpf.mapLookup(this.#listenersFd, key, value)) return undefined;
		// struct twt_listener: cookie u64, pid, tid, uid, _pad u32, comm[16] (bpf/twtrace.bpf.c)
		const comm = value.subarray(24, 40);
		const end = comm.indexOf(0);
		return { pid: value.readUInt32LE(8), comm: comm.toString('utf8', 0, end < 0 ? 16 : end) };
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
		for (const link of this.#links.splice(0)) bpf.linkDestroy(link);
	}
}
