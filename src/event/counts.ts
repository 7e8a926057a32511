/**
 * The kernel's counters (counting in the kernel, docs/counting-in-the-kernel.md): keys and values
 * of the `counts` maps (struct twt_count_key, struct twt_count in bpf/twtrace.h), as a table that
 * both a read of the kernel's maps and a fold of delivered records (src/model/fold.ts) fill, so that
 * the two can be compared key by key.
 */
import { COUNT_FIELDS, COUNT_KEY_FIELDS, COUNT_KEY_SIZE, COUNT_SIZE, LifetimeBoundMs } from './layout.generated.js';
import { HOST_LITTLE_ENDIAN } from './host-order.js';
import { formatAddress, readU64 } from './decode.js';
import { AF_INET6, SIDE_NAMES, type SideName } from './kinds.js';

/**
 * Upper bounds of the lifetime histogram's buckets, 1 ms to 1 h (churn lives at the low end, pools at
 * the high end): enum twt_lifetime_bound_ms, which the kernel's counters use too.
 */
export const LIFETIME_BOUNDS_US: readonly number[] = Object.values(LifetimeBoundMs).map((ms) => ms * 1000);

/** Where each counter sits in a row: struct twt_count's u64s in order. */
export const COUNT_COLUMN = {
	connections: COUNT_FIELDS.connections.offset / 8,
	timeWait: COUNT_FIELDS.time_wait.offset / 8,
	finWait2: COUNT_FIELDS.fin_wait2.offset / 8,
	resets: COUNT_FIELDS.resets.offset / 8,
	connectFails: COUNT_FIELDS.connect_fails.offset / 8,
	addrNotAvail: COUNT_FIELDS.addr_not_avail.offset / 8,
	lifetimeSumUs: COUNT_FIELDS.lifetime_sum_us.offset / 8,
	lifetimeCount: COUNT_FIELDS.lifetime_count.offset / 8,
	lifetime: COUNT_FIELDS.lifetime.offset / 8,
	timeWaitOdd: COUNT_FIELDS.time_wait_odd.offset / 8,
	finWait2Odd: COUNT_FIELDS.fin_wait2_odd.offset / 8,
} as const;
export const COUNT_COLUMNS = COUNT_SIZE / 8;

/** A key, decoded: for messages and views (the table itself keys by the raw bytes). */
export interface CountKey {
	netns: number;
	/** twt_task.id of the task blamed (attribution.ts blame()), 0: none known. */
	blamed: number;
	cgroupId: number;
	family: 4 | 6;
	saddr: string;
	daddr: string;
	/** The service's port: local for an accepted socket, remote otherwise. */
	port: number;
	side: SideName;
}

/**
 * Counters per key: the key is the hex of struct twt_count_key's bytes, a row the counters in
 * COUNT_COLUMN order, as numbers (exact below 2^53). Adding rows sums them: generations, or the
 * fold of many records.
 */
export class CountTable {
	readonly rows = new Map<string, Float64Array>();

	/** The row of `key`, created empty. */
	row(key: string): Float64Array {
		let row = this.rows.get(key);
		if (!row) this.rows.set(key, (row = new Float64Array(COUNT_COLUMNS)));
		return row;
	}

	/**
	 * Adds `n` packed keys and values, as the kernel hands them over (host byte order). Each u64 is
	 * read as two u32 halves: a BigInt per counter per reading (20 a key then, every second and every
	 * scrape) was a fifth of an idle agent's work and most of its garbage (bench:profile --rate 10).
	 */
	addPacked(keys: Buffer, values: Buffer, n: number): void {
		const view = new DataView(values.buffer, values.byteOffset, values.byteLength);
		for (let i = 0; i < n; i++) {
			const row = this.row(keys.toString('hex', i * COUNT_KEY_SIZE, (i + 1) * COUNT_KEY_SIZE));
			const at = i * COUNT_SIZE;
			for (let c = 0; c < COUNT_COLUMNS; c++) row[c]! += readU64(view, at + 8 * c, HOST_LITTLE_ENDIAN);
		}
	}

	/** Adds every row of `other`. */
	addTable(other: CountTable): this {
		for (const [key, values] of other.rows) {
			const row = this.row(key);
			for (let c = 0; c < COUNT_COLUMNS; c++) row[c]! += values[c]!;
		}
		return this;
	}

	/** The sum of one column over every key. */
	total(column: number): number {
		let sum = 0;
		for (const row of this.rows.values()) sum += row[column]!;
		return sum;
	}
}

/** Decodes a table key (the hex of struct twt_count_key). */
export function decodeCountKey(hex: string): CountKey {
	const b = Buffer.from(hex, 'hex');
	if (b.length !== COUNT_KEY_SIZE) throw new RangeError(`a count key is ${COUNT_KEY_SIZE} bytes, not ${b.length}`);
	return decodeCountKeyAt(b, 0);
}

/**
 * Keys decoded once each: an agent reads the same keys every second and at every scrape, and
 * decoding one (its addresses as text) was the largest source of its garbage (bench:heap --allocations).
 * Two generations of at most `size` keys: a key comes over from the older when named again, the
 * older is dropped whole when the newer fills, so it stays bounded whatever the churn of keys.
 * The keys handed out are shared: read them, never change them.
 */
export class CountKeyCache {
	#now = new Map<string, Readonly<CountKey>>();
	#before = new Map<string, Readonly<CountKey>>();
	readonly #size: number;

	constructor(size = 16_384) {
		this.#size = size;
	}

	/** The key whose hex is `hex`, decoded. */
	get(hex: string): Readonly<CountKey> {
		const known = this.#now.get(hex);
		if (known) return known;
		const key = this.#before.get(hex) ?? decodeCountKey(hex);
		if (this.#now.size >= this.#size) [this.#before, this.#now] = [this.#now, new Map()];
		this.#now.set(hex, key);
		return key;
	}
}

/** Decodes the struct twt_count_key at `at` of `b` (host byte order: a counts frame's keys). */
export function decodeCountKeyAt(b: Buffer, at: number): CountKey {
	const K = COUNT_KEY_FIELDS;
	const le = HOST_LITTLE_ENDIAN;
	const v = new DataView(b.buffer, b.byteOffset + at, COUNT_KEY_SIZE);
	const family = v.getUint16(K.family.offset, le) === AF_INET6 ? 6 : 4;
	return {
		netns: v.getUint32(K.netns.offset, le),
		blamed: v.getUint32(K.blamed.offset, le),
		cgroupId: Number(v.getBigUint64(K.cgroup_id.offset, le)),
		family,
		saddr: formatAddress(b, at + K.saddr.offset, family),
		daddr: formatAddress(b, at + K.daddr.offset, family),
		port: v.getUint16(K.port.offset, le),
		side: SIDE_NAMES[v.getUint8(K.side.offset)] ?? 'unknown',
	};
}
