/**
 * The recent (owner, destination) pairs events counted against (ChurnModel's per-event lookup): most
 * events repeat the fields of a recent one (a churner talks to a few destinations), and comparing
 * fields costs far less than building the string keys the model's maps use.
 *
 * Two-way set associative, its slot from the fields mixed. The cache it replaces had one slot a key
 * at pid·31 + port·7 + netns: a client's destination ports and its server's service ports then
 * fall on slots an arithmetic run apart, and for about half of all (pid, namespace) pairs some
 * client key and server key share a slot, up to all 64 of a 64-port churn. Those pairs missed in
 * turn: in one CPU profile of serve at full churn (`npm run bench:profile -- --command serve`, the
 * model counting its misses), every connect and accept missed, and the string-key path (`#owner`)
 * was 17 % of the busy main thread; with this cache only each key's first event missed. Whether a
 * run thrashed depended on its pids, so serve's cost at full churn varied from run to run by it. Pure.
 */
import type { SideName } from '../event/kinds.js';
import type { Destination, Owner } from './owners.js';

/** Slots: a power of two, in pairs. */
const SLOTS = 4096;

export interface RecentOwner {
	/** The model's generation when cached: owners and destinations removed since make it stale. */
	generation: number;
	pid: number;
	comm: string;
	cgroupId: number;
	netns: number;
	side: SideName;
	peerKind: number;
	port: number;
	saddr: string;
	daddr: string;
	owner: Owner;
	dest: Destination | undefined;
}

/** What an event is looked up by (its blamed task's pid and comm, and its own fields). */
export type RecentKey = Omit<RecentOwner, 'owner' | 'dest'>;

export class RecentOwners {
	readonly #slots: (RecentOwner | undefined)[] = new Array(SLOTS);

	/** The cached pair for `k`, if any. */
	find(k: RecentKey): RecentOwner | undefined {
		const at = slotOf(k);
		const a = this.#slots[at];
		if (a && same(a, k)) return a;
		const b = this.#slots[at + 1];
		return b && same(b, k) ? b : undefined;
	}

	/** Caches `r`: the newer pair takes the first slot of its set, the one there moves to the second. */
	put(r: RecentOwner): void {
		const at = slotOf(r);
		const a = this.#slots[at];
		if (a && a.generation === r.generation) this.#slots[at + 1] = a;
		this.#slots[at] = r;
	}
}

function same(r: RecentOwner, k: RecentKey): boolean {
	return r.generation === k.generation && r.pid === k.pid && r.port === k.port && r.netns === k.netns && r.peerKind === k.peerKind &&
		r.cgroupId === k.cgroupId && r.side === k.side && r.comm === k.comm && r.saddr === k.saddr && (k.peerKind !== 0 || r.daddr === k.daddr);
}

/** The first slot of the pair `k` maps to: its integer fields mixed (murmur3's finalizer). */
function slotOf(k: Pick<RecentKey, 'pid' | 'port' | 'netns' | 'peerKind'>): number {
	let h = Math.imul(k.pid ^ Math.imul(k.port | (k.peerKind << 16), 0x9e3779b1) ^ k.netns, 0x85ebca6b);
	h ^= h >>> 13;
	h = Math.imul(h, 0xc2b2ae35);
	h ^= h >>> 16;
	return h & (SLOTS - 2);
}
