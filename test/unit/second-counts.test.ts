/**
 * SecondCounts (src/model/second-counts.ts) against a plain Map, the reference: the same counts by
 * second whatever the order, and the ring alone while the seconds move as TIME_WAIT's do.
 */
import test from 'ava';
import { RING_SECONDS, SecondCounts } from '../../src/model/second-counts.js';

/** The reference: a map of the seconds whose count is not 0. */
function addTo(ref: Map<number, number>, second: number, delta: number): void {
	const n = (ref.get(second) ?? 0) + delta;
	if (n === 0) ref.delete(second);
	else ref.set(second, n);
}

const sorted = (ref: Map<number, number>) => [...ref].sort((a, b) => a[0] - b[0]);

test('TIME_WAIT\'s pattern, entries 60 to 68 s ahead removed when they expire, stays in the ring for an hour', (t) => {
	const counts = new SecondCounts();
	const ref = new Map<number, number>();
	const pending: [expires: number, n: number][] = [];
	for (let now = 1_000_000; now < 1_000_000 + 3600; now++) {
		for (const [second, n] of pending.filter(([s]) => s <= now)) counts.add(second, -n), addTo(ref, second, -n);
		pending.splice(0, pending.length, ...pending.filter(([s]) => s > now));
		for (const ahead of [60, 61, 62, 68]) {
			const n = 1 + ((now + ahead) % 7);
			counts.add(now + ahead, n), addTo(ref, now + ahead, n), pending.push([now + ahead, n]);
		}
		if (now % 600 === 0) t.deepEqual(counts.entries(), sorted(ref), `at ${now}`);
	}
	t.deepEqual(counts.entries(), sorted(ref));
	t.is(counts.size, ref.size);
	t.is(counts.outside, 0, 'no second went to the map');
});

test('any order: far ahead, left behind, back and forth, the counts are the map\'s', (t) => {
	let seed = 7;
	const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
	const counts = new SecondCounts();
	const ref = new Map<number, number>();
	const held: number[] = [];
	let base = 5000;
	for (let i = 0; i < 20_000; i++) {
		base += random() < 0.05 ? Math.floor(random() * 50) : 0;
		if (held.length && random() < 0.45) {
			// Remove one held second's count, whole or in part.
			const second = held[Math.floor(random() * held.length)]!;
			const n = ref.get(second) ?? 0;
			if (n) counts.add(second, -n), addTo(ref, second, -n);
			continue;
		}
		// Mostly near the base, sometimes far ahead (beyond the ring) or well behind it.
		const r = random();
		const second = r < 0.8 ? base + Math.floor(random() * 70) : r < 0.9 ? base + RING_SECONDS + Math.floor(random() * 400) : base - Math.floor(random() * 300);
		const n = 1 + Math.floor(random() * 3);
		counts.add(second, n), addTo(ref, second, n);
		held.push(second);
		if (i % 1000 === 0) {
			t.deepEqual(counts.entries(), sorted(ref), `after ${i}`);
			for (const s of held.slice(-20)) t.is(counts.get(s), ref.get(s) ?? 0);
		}
	}
	t.deepEqual(counts.entries(), sorted(ref));
	const visited: [number, number][] = [];
	counts.forEach((n, s) => visited.push([s, n]));
	t.deepEqual(visited.sort((a, b) => a[0] - b[0]), sorted(ref), 'forEach visits what entries lists');
});
