/**
 * Network namespaces, entered (setns) to walk their TCP sockets with the iter/tcp program and read
 * their sysctls and TIME_WAIT overflow counter, or to look a few sockets up by 4-tuple (sock_diag),
 * then come back. A namespace is known by its inode; it is entered through /run/netns/NAME or
 * /proc/PID/ns/net of a process seen in it, checked by inode. No /proc socket-table walks.
 */
import fs from 'node:fs';
import path from 'node:path';
import { inNetns, readIteratorChunk, readIteratorChunkAsync } from '../../native/iter.js';
import { closeSockDiag, openSockDiag, sockDiagExchange } from '../../native/netlink.js';
import { decodeLookup, encodeLookup, type Lookup, type SocketKey } from './sock-diag.js';
import { DEFAULT_PORT_RANGE, parsePortList, parsePortRange, type NetnsSettings } from '../facts/netns-settings.js';
import type { Tracer } from './tracer.js';

/** Bytes of socket records read per step of a walk (~4,700 full records): a few ms of work between yields. */
export const WALK_CHUNK_BYTES = 256 << 10;

/** A walk started by open(): its iterator to read a chunk at a time (and close), and what was read on the way in. */
export interface OpenedWalk {
	netns: number;
	/** CLOCK_MONOTONIC µs when the iterator was created. */
	takenAtUs: number;
	settings: NetnsSettings;
	/** Reads the next struct twt_sock records into `buf` (a read may end inside one); 0 at the end. */
	read(buf: Buffer): number;
	/** The same read off the main thread (native/iter.ts readIteratorChunkAsync): what readWalk uses when there. */
	readAsync?(buf: Buffer): Promise<number>;
	/** Releases the iterator; once. */
	close(): void;
}

/** What open() learns in the namespace before it creates the iterator: enough to decide whether to walk. */
export interface WalkPeek {
	netns: number;
	takenAtUs: number;
	settings: NetnsSettings;
	/**
	 * The namespace's timewait sockets by the kernel's own count (/proc/net/sockstat `tw`: the
	 * namespace's tcp_death_row.tw_refcount, both families), or undefined where the kernel does not
	 * give it: what a walk would find, known in O(1).
	 */
	timeWaitKernel: number | undefined;
}

/** An iterator fd as an OpenedWalk's reading end. */
function iteratorReader(fd: number): Pick<OpenedWalk, 'read' | 'readAsync' | 'close'> {
	return { read: (buf) => readIteratorChunk(fd, buf), readAsync: (buf) => readIteratorChunkAsync(fd, buf), close: () => fs.closeSync(fd) };
}

const SYSCTL = '/proc/sys/net/ipv4';

/** The inode of the calling thread's network namespace. */
export function ownNetns(): number {
	return fs.statSync('/proc/thread-self/ns/net').ino;
}

export class NamespaceWalker {
	readonly #tracer: Tracer;
	readonly #clockUs: () => number;
	readonly #home = ownNetns();
	/** Ways into namespaces found by discover(): inode → /run/netns/NAME or /proc/PID/ns/net. */
	#paths = new Map<number, string>();
	/** Netlink sequence numbers of lookups. */
	#lookups = 0;

	constructor(tracer: Tracer, clockUs: () => number) {
		this.#tracer = tracer;
		this.#clockUs = clockUs;
	}

	get home(): number {
		return this.#home;
	}

	/**
	 * Finds the network namespaces in use on the host: named ones (/run/netns) and those of running
	 * processes (the ns/net link of each /proc/PID, not its socket tables). Returns their inodes.
	 */
	discover(): number[] {
		const paths = new Map<number, string>();
		try {
			for (const name of fs.readdirSync('/run/netns')) {
				const p = path.join('/run/netns', name);
				try {
					paths.set(fs.statSync(p).ino, p);
				} catch {
					// Being deleted.
				}
			}
		} catch {
			// No named namespaces.
		}
		for (const entry of fs.readdirSync('/proc')) {
			if (!/^\d+$/.test(entry)) continue;
			try {
				const m = /^net:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${entry}/ns/net`));
				if (m && !paths.has(Number(m[1]))) paths.set(Number(m[1]), `/proc/${entry}/ns/net`);
			} catch {
				// Exited, or a kernel thread.
			}
		}
		this.#paths = paths;
		return [...paths.keys()];
	}

	/**
	 * Enters `netns` just long enough to read its settings and create a walk's iterator, which keeps
	 * that namespace: the caller reads it a chunk at a time, at its own pace. `pids` are processes
	 * seen in it, tried as ways in. With `needed`, asks it first, with the kernel's count of the
	 * namespace's timewait sockets: undefined, and no iterator, when it says no. Never throws.
	 */
	open(netns: number, pids?: Iterable<number>): OpenedWalk | { netns: number; error: string };
	open(netns: number, pids: Iterable<number>, needed?: (peek: WalkPeek) => boolean): OpenedWalk | { netns: number; error: string } | undefined;
	open(netns: number, pids: Iterable<number> = [], needed?: (peek: WalkPeek) => boolean): OpenedWalk | { netns: number; error: string } | undefined {
		return this.#enter(netns, pids, () => {
			// The kernel's count only for a caller that decides by it; no iterator when it need not walk.
			const peek = this.#peekHere(netns, needed !== undefined);
			if (needed && !needed(peek)) return undefined;
			return { netns, takenAtUs: peek.takenAtUs, settings: peek.settings, ...iteratorReader(this.#tracer.openWalk()) };
		});
	}

	/**
	 * Enters `netns` to read what open() asks `needed` with, and creates no iterator: its settings and
	 * the kernel's count (an open-socket walk needs nothing else of the namespace). Never throws.
	 */
	peek(netns: number, pids: Iterable<number> = []): WalkPeek | { netns: number; error: string } {
		return this.#enter(netns, pids, () => this.#peekHere(netns, true));
	}

	/** The calling thread's namespace (`netns`) now: its settings, and with `count` the kernel's count of its timewait sockets. */
	#peekHere(netns: number, count: boolean): WalkPeek {
		return { netns, takenAtUs: this.#clockUs(), settings: readNetnsSettings(), timeWaitKernel: count ? sockstatTimeWait(readOr('/proc/thread-self/net/sockstat')) : undefined };
	}

	/**
	 * Looks `sockets` up in `netns` by 4-tuple and cookie (sock_diag: what `ss` does, for one socket
	 * each): a netlink socket made inside the namespace, then one request each, answered from the
	 * kernel's hash tables, timewait sockets included. `pids` are ways in. An answer the kernel did
	 * not give (an error other than "no such socket") is undefined. Never throws.
	 */
	lookup(netns: number, pids: Iterable<number>, sockets: readonly SocketKey[]): (Lookup | undefined)[] | { netns: number; error: string } {
		const fd = this.#enter(netns, pids, openSockDiag);
		if (typeof fd !== 'number') return fd;
		const reply = Buffer.alloc(1024); // inet_diag_msg and a few attributes; the rest is cut, not needed
		try {
			return sockets.map((socket) => {
				try {
					const answer = decodeLookup(reply, sockDiagExchange(fd, encodeLookup(socket, ++this.#lookups), reply));
					return answer && !('error' in answer) ? answer : undefined;
				} catch {
					return undefined;
				}
			});
		} finally {
			closeSockDiag(fd);
		}
	}

	#enter<T>(netns: number, pids: Iterable<number>, body: () => T): T | { netns: number; error: string } {
		try {
			if (netns === this.#home) return body();
			const nsPath = this.#find(netns, pids);
			if (!nsPath) return { netns, error: 'no way in: no process in it is still running and it is not under /run/netns' };
			const fd = fs.openSync(nsPath, 'r');
			try {
				if (fs.fstatSync(fd).ino !== netns) return { netns, error: `${nsPath} changed namespace` };
				return inNetns(fd, body);
			} finally {
				fs.closeSync(fd);
			}
		} catch (error) {
			return { netns, error: (error as Error).message };
		}
	}

	#find(netns: number, pids: Iterable<number>): string | undefined {
		const candidates: string[] = [];
		const known = this.#paths.get(netns);
		if (known) candidates.push(known);
		let tried = 0;
		for (const pid of pids) {
			if (pid > 0 && tried++ < 8) candidates.push(`/proc/${pid}/ns/net`);
		}
		return candidates.find((p) => {
			try {
				return fs.statSync(p).ino === netns;
			} catch {
				return false;
			}
		});
	}
}

/** The calling thread's namespace's settings: /proc/sys/net is per namespace (net->sysctls). */
export function readNetnsSettings(): NetnsSettings {
	const read = (name: string) => readOr(path.join(SYSCTL, name));
	const num = (name: string) => {
		const text = read(name).trim();
		return text !== '' && Number.isFinite(Number(text)) ? Number(text) : undefined;
	};
	return {
		portRange: parsePortRange(read('ip_local_port_range')) ?? DEFAULT_PORT_RANGE,
		reservedPorts: parsePortList(read('ip_local_reserved_ports')),
		maxTimeWaitBuckets: num('tcp_max_tw_buckets'),
		finTimeoutSec: num('tcp_fin_timeout') ?? 60,
		twReuse: num('tcp_tw_reuse'),
		twReuseDelayMs: num('tcp_tw_reuse_delay'),
		twRecycle: num('tcp_tw_recycle'),
		timestamps: num('tcp_timestamps'),
		timeWaitOverflow: tcpExtCounter(readOr('/proc/thread-self/net/netstat'), 'TCPTimeWaitOverflow'),
	};
}

/** The `tw` figure of /proc/net/sockstat text (`TCP: inuse 5 orphan 0 tw 12 alloc 7 mem 1`). Pure. */
export function sockstatTimeWait(sockstat: string): number | undefined {
	const m = /^TCP:.*\btw (\d+)/m.exec(sockstat);
	return m ? Number(m[1]) : undefined;
}

/** A TcpExt counter from /proc/net/netstat text (a header line of names, then a line of values). */
export function tcpExtCounter(netstat: string, name: string): number | undefined {
	const lines = netstat.split('\n').filter((l) => l.startsWith('TcpExt:'));
	if (lines.length < 2) return undefined;
	const names = lines[0]!.split(/\s+/);
	const values = lines[1]!.split(/\s+/);
	const i = names.indexOf(name);
	return i > 0 && values[i] !== undefined ? Number(values[i]) : undefined;
}

function readOr(file: string): string {
	try {
		return fs.readFileSync(file, 'utf8');
	} catch {
		return '';
	}
}
