/**
 * Lookups on the host that turn user arguments and kernel ids into names: network namespace
 * paths → inodes, cgroup ids → paths, the monotonic → wall clock offset.
 */
import fs from 'node:fs';
import path from 'node:path';
import { workloadOf } from '../facts/workload.js';

/**
 * The inode of a network namespace given as a number or as a path (/run/netns/NAME,
 * /proc/PID/ns/net). Throws a plain Error with the reason when the path cannot be used.
 */
export function netnsInode(arg: string): number {
	if (/^\d+$/.test(arg)) {
		const inode = Number(arg);
		if (!netnsInodesInUse().has(inode)) throw new Error(`${arg}: no network namespace with this inode is in use (not under /run/netns, nor any process's)`);
		return inode;
	}
	const p = arg.includes('/') ? arg : path.join('/run/netns', arg);
	let st: fs.Stats;
	try {
		st = fs.statSync(p);
	} catch (error) {
		throw new Error(`${p}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such network namespace' : (error as Error).message}`);
	}
	// Namespace files live on nsfs: anything else (a directory, a regular file) is not one.
	const nsfs = fs.statSync('/proc/self/ns/net').dev;
	if (st.dev !== nsfs) throw new Error(`${p} is not a network namespace (give /run/netns/NAME, NAME, /proc/PID/ns/net or an inode)`);
	return st.ino;
}

/** Inodes of the network namespaces in use: those under /run/netns and those of every process. */
export function netnsInodesInUse(): Set<number> {
	const inodes = new Set<number>();
	for (const { inode } of namedNamespaces()) inodes.add(inode);
	for (const { inode } of processNamespaces()) inodes.add(inode);
	return inodes;
}

/** The namespaces `ip netns` named: /run/netns/NAME (those removed meanwhile left out). */
function* namedNamespaces(): Generator<{ name: string; inode: number }> {
	for (const name of safeList('/run/netns')) {
		const st = fs.statSync(path.join('/run/netns', name), { throwIfNoEntry: false });
		if (st) yield { name, inode: st.ino };
	}
}

/**
 * When a lookup that missed may walk the host again: at most once per `intervalMs`, so that ids
 * that never resolve (a cgroup gone, a namespace of nobody) cost one walk per interval, not one per event.
 */
class RescanOnMiss {
	readonly #intervalMs: number;
	#lastMs = -Infinity;

	constructor(intervalMs: number) {
		this.#intervalMs = intervalMs;
	}

	/** True, and the interval starts again, when a walk may run now. */
	due(): boolean {
		const now = Date.now();
		if (now - this.#lastMs < this.#intervalMs) return false;
		this.#lastMs = now;
		return true;
	}
}

/** Every process and the inode of its network namespace (those that exit meanwhile, or are not ours to read, left out). */
function* processNamespaces(): Generator<{ pid: string; inode: number }> {
	for (const pid of safeList('/proc')) {
		if (!/^\d+$/.test(pid)) continue;
		try {
			const m = /^net:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/ns/net`));
			if (m) yield { pid, inode: Number(m[1]) };
		} catch {
			// exited, or not ours to read
		}
	}
}

function safeList(dir: string): string[] {
	try {
		return fs.readdirSync(dir);
	} catch {
		return [];
	}
}

/** The mount point of the cgroup v2 hierarchy (/sys/fs/cgroup, or /sys/fs/cgroup/unified in hybrid mode). */
export function cgroup2Root(mountinfo = safeRead('/proc/self/mountinfo')): string | undefined {
	for (const line of mountinfo.split('\n')) {
		const [left, right] = line.split(' - ');
		if (right?.startsWith('cgroup2 ')) return left?.split(' ')[4];
	}
	return undefined;
}

function safeRead(file: string): string {
	try {
		return fs.readFileSync(file, 'utf8');
	} catch {
		return '';
	}
}

/**
 * cgroup v2 id → path, for display. The id of a cgroup is the inode number of its directory
 * (kernfs: kn->id). The tree is walked lazily, at most once per `rescanMs` on a miss, and bounded.
 */
export class CgroupPaths {
	readonly #root: string | undefined;
	readonly #byId = new Map<number, string>();
	readonly #rescan: RescanOnMiss;

	constructor(root = cgroup2Root(), rescanMs = 2000) {
		this.#root = root;
		this.#rescan = new RescanOnMiss(rescanMs);
	}

	/** The path relative to the cgroup root ("/" for the root itself), or undefined. Never throws. */
	lookup(id: number): string | undefined {
		if (id === 0 || !this.#root) return undefined;
		const hit = this.#byId.get(id);
		if (hit !== undefined || !this.#rescan.due()) return hit;
		this.#scan();
		return this.#byId.get(id);
	}

	#scan(): void {
		const MAX_CGROUPS = 100_000;
		this.#byId.clear();
		const stack = [this.#root!];
		while (stack.length > 0 && this.#byId.size < MAX_CGROUPS) {
			const dir = stack.pop()!;
			try {
				this.#byId.set(fs.statSync(dir).ino, '/' + path.relative(this.#root!, dir));
				for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
					if (entry.isDirectory()) stack.push(path.join(dir, entry.name));
				}
			} catch {
				// A cgroup removed during the walk: skip it.
			}
		}
	}
}

/** CLOCK_MONOTONIC in µs: the clock of BPF's timestamps (bpf_ktime_get_ns), of walks and of the model. */
export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** Add to a CLOCK_MONOTONIC µs timestamp (bpf_ktime_get_ns) to get Unix epoch µs. libuv's hrtime is CLOCK_MONOTONIC. */
export function epochOffsetUs(): number {
	const monoUs = Number(process.hrtime.bigint() / 1000n);
	return Date.now() * 1000 - monoUs;
}

export { isWriteEndOrphaned } from '../../native/libc.js';

/**
 * Whether process `pid` still exists. Not compared by command name: the thread that connected may
 * be named otherwise than the process (/proc/PID/comm is the main thread's). A pid reused within
 * the minute a TIME_WAIT outlives its process would be taken for it: rare, and only a label.
 */
export function processRuns(pid: number): boolean {
	return fs.statSync(`/proc/${pid}`, { throwIfNoEntry: false }) !== undefined;
}

/**
 * Names for network namespaces, as people know them: NAME for /run/netns/NAME (ip netns), else the
 * workload (container, pod, unit) of a process in it, from /proc/PID/cgroup. Looked up on a miss,
 * at most every `rescanMs`, and remembered; never throws.
 */
export class NamespaceNames {
	readonly #names = new Map<number, string | undefined>();
	readonly #rescan: RescanOnMiss;

	constructor(rescanMs = 5000) {
		this.#rescan = new RescanOnMiss(rescanMs);
	}

	name(inode: number): string | undefined {
		if (this.#names.has(inode) || !this.#rescan.due()) return this.#names.get(inode);
		this.#scan();
		return this.#names.get(inode);
	}

	#scan(): void {
		for (const { name, inode } of namedNamespaces()) {
			if (!this.#names.has(inode)) this.#names.set(inode, name);
		}
		// Not named by ip netns: the workload of the first process found in it that has one.
		const unnamed = new Set<number>();
		for (const { pid, inode } of processNamespaces()) {
			if (this.#names.get(inode) !== undefined) continue;
			const cgroup = /^0::(.*)$/m.exec(safeRead(`/proc/${pid}/cgroup`))?.[1];
			const w = workloadOf(cgroup);
			if (w && w.kind !== 'cgroup') this.#names.set(inode, w.name);
			else unnamed.add(inode);
		}
		for (const inode of unnamed) if (!this.#names.has(inode)) this.#names.set(inode, undefined);
	}
}

/**
 * Whether twtrace runs in the host's pid namespace, whose task iterators see every process: one
 * nested in another has more than one pid in /proc/self/status NSpid. Unknown: no.
 */
export function inHostPidNamespace(): boolean {
	try {
		const m = /^NSpid:\s*(.*)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
		return m !== null && m[1]!.trim().split(/\s+/).length === 1;
	} catch {
		return false;
	}
}
