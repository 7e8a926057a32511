/**
 * serve's counters from the kernel's counts (step 2 of docs/counting-in-the-kernel.md): the reader
 * across generation flips (src/pipeline/count-reader.ts), and ChurnMetrics.observeCounts against
 * ChurnMetrics.observeOne over the same records. With test/integration/counts.test.ts (the kernel's
 * counts equal the fold of the records it delivered) this holds the exported counters to what the
 * per-event path exported.
 */
import test from 'ava';
import { COUNT_COLUMN as C, CountTable, decodeCountKey } from '../../src/event/counts.js';
import { Decoder, isDecodeFailure, type TwtEvent } from '../../src/event/decode.js';
import { EVENT_SIZE, EventKind, OwnerSource, Side } from '../../src/event/layout.generated.js';
import { HOST_LITTLE_ENDIAN } from '../../src/event/host-order.js';
import { TCP_ESTABLISHED, TCP_SYN_RECV, TCP_SYN_SENT } from '../../src/event/sock.js';
import { blame } from '../../src/model/attribution.js';
import { ChurnMetrics, SLOT, type GroupSample } from '../../src/model/churn-metrics.js';
import { ChurnModel } from '../../src/model/churn-model.js';
import { foldRecords } from '../../src/model/fold.js';
import { CountReader, type CountSource } from '../../src/pipeline/count-reader.js';
import { recordsBuffer, type RawRecord, type RawTask } from '../../testbed/records.js';

const S = 1_000_000;

/** Two generations and the slot, as the kernel keeps them (bpf/twtrace.bpf.c `counts`). */
class FakeCounts implements CountSource {
	readonly generations: [CountTable, CountTable] = [new CountTable(), new CountTable()];
	current: 0 | 1 = 0;
	flips = 0;

	/** What the programs count: `n` into column `column` of `key`, in the generation the slot names. */
	count(key: string, column: number, n = 1): void {
		this.generations[this.current].row(key)[column]! += n;
	}

	flip(): void {
		this.current = this.current === 0 ? 1 : 0;
		this.flips++;
	}

	read(which: 'current' | 'retired', into = new CountTable(), clear = false): CountTable {
		const g = this.generations[which === 'current' ? this.current : 1 - this.current]!;
		into.addTable(g);
		if (clear) g.rows.clear();
		return into;
	}
}

test('the reader hands on every count once, across flips; the retired generation is cleared for its next turn', (t) => {
	const kernel = new FakeCounts();
	const reader = new CountReader(kernel, 10);
	const delivered = new CountTable();
	const read = (second: number) => {
		reader.take(second);
		reader.deliver((key, delta) => delivered.row(key).forEach((_, c, row) => (row[c]! += delta[c]!)));
	};
	let counted = 0;
	for (let second = 100; second < 135; second++) {
		kernel.count('aa', C.timeWait, 2);
		kernel.count(second % 2 ? 'bb' : 'aa', C.connections);
		counted += 3;
		read(second);
		kernel.count('aa', C.resets); // after the reading: the next one, or the flip's final read, hands it on
		counted++;
	}
	t.is(kernel.flips, 3, 'flipped at 110, 120 and 130');
	const sum = (table: CountTable) => [...table.rows.values()].reduce((a, row) => a + row.reduce((x, y) => x + y, 0), 0);
	t.is(sum(delivered) + 1, counted, 'all but the last second\'s late reset, which no reading has seen yet');
	t.is(delivered.row('aa')[C.timeWait], 70);
	t.is(sum(kernel.generations[1 - kernel.current]!), 0, 'the retired generation is empty');
	t.is(reader.keys, 2);
	reader.deliver(() => t.fail('delivered twice'));
});

/** Tasks, and a client, a pre-forked server and sockets older than twtrace, over three seconds. */
const TASKS: RawTask[] = [{ id: 1, pid: 100, comm: 'cli' }, { id: 2, pid: 200, comm: 'srv-master' }, { id: 3, pid: 201, comm: 'srv-worker' }];
const CLIENT = { cgroupId: 7n, family: 2, saddr: [10, 0, 0, 1], daddr: [10, 0, 0, 2], sport: 40000, dport: 80, netns: 5, owner: 1, side: Side.CLIENT, ownerSource: OwnerSource.CONNECT };
const SERVER = { ...CLIENT, cgroupId: 8n, sport: 80, dport: 40000, owner: 2, side: Side.SERVER, ownerSource: OwnerSource.LISTEN };
const SECONDS: RawRecord[][] = [
	[
		{ ...CLIENT, kind: EventKind.CONNECT, oldState: TCP_SYN_SENT, newState: TCP_ESTABLISHED },
		{ ...CLIENT, kind: EventKind.CONNECT, oldState: TCP_SYN_SENT, newState: TCP_ESTABLISHED, dport: 443 },
		{ ...SERVER, kind: EventKind.ACCEPT, oldState: TCP_SYN_RECV, newState: TCP_ESTABLISHED },
	],
	[
		{ ...CLIENT, kind: EventKind.TIME_WAIT, substate: 6, lifetimeUs: 1_500n, closer: 1 },
		{ ...CLIENT, kind: EventKind.TIME_WAIT, substate: 5, lifetimeUs: 70_000_000n, closer: 1, dport: 443 }, // FIN_WAIT2
		{ ...SERVER, kind: EventKind.TIME_WAIT, substate: 6, lifetimeUs: 20_000n, closer: 3 }, // the worker closed it
		{ ...SERVER, kind: EventKind.RESET, lifetimeUs: 900n, closer: 0 },
	],
	[
		{ ...CLIENT, kind: EventKind.TIME_WAIT, substate: 6, lifetimeUs: 0n, owner: 0, ownerSource: OwnerSource.NONE, closer: 0 }, // before start
		{ ...SERVER, kind: EventKind.TIME_WAIT, substate: 6, lifetimeUs: 0n, owner: 0, ownerSource: OwnerSource.NONE, closer: 0 }, // listener before start
		{ ...CLIENT, kind: EventKind.RESET, lifetimeUs: 4_000_000_000n, closer: 1 }, // past the last bound
	],
];

function exported(metrics: ChurnMetrics): Record<string, number[]> {
	const data = metrics.collect(new ChurnModel(0), { nowUs: 10 * S, rateWindowUs: 10 * S, maxDestinations: 10, maxNamespaces: 10 });
	const label = (g: GroupSample) => `${g.labels.comm} ${g.labels.cgroup}`;
	return Object.fromEntries(data.groups.filter((g) => g.counts.some((n) => n > 0)).map((g) => [label(g), [...g.counts]]));
}

const newMetrics = () => new ChurnMetrics({ maxSeries: 10, idleUs: 300 * S, cgroupLabel: (id) => `/cg${id}` });

test('counted by the kernel, serve exports what it exported counted per event: groups by the task blamed, connections by side, entries, resets, lifetimes', (t) => {
	const byEvents = newMetrics();
	const tasks = new Decoder(new ArrayBuffer(EVENT_SIZE)).tasks;
	const byKernel = newMetrics();
	const kernel = new FakeCounts();
	const reader = new CountReader(kernel);
	SECONDS.forEach((records, second) => {
		const bytes = recordsBuffer([...(second === 0 ? TASKS : []), ...records], HOST_LITTLE_ENDIAN);
		const decoder = new Decoder(bytes, tasks);
		for (let at = 0; at < bytes.byteLength; at += EVENT_SIZE) {
			const e = decoder.decode(at, EVENT_SIZE);
			if (e && !isDecodeFailure(e)) byEvents.observeOne({ ...e } as TwtEvent, blame(e));
		}
		// The kernel's increments for the same records (model/fold.ts, held to the kernel by counts.test.ts).
		const counted = new CountTable();
		foldRecords(new Uint8Array(bytes), counted);
		for (const [key, row] of counted.rows) row.forEach((n, c) => n && kernel.count(key, c, n));
		reader.take(second);
		reader.deliver((key, delta) => {
			const k = decodeCountKey(key);
			byKernel.observeCounts(tasks.get(k.blamed), k, delta, second * S);
		});
	});
	const expected = exported(byEvents);
	t.deepEqual(exported(byKernel), expected);
	// What the groups are: the test's own check that it exercised each rule.
	t.deepEqual(Object.keys(expected).sort(), ['(before start) /cg0', '(listener before start) /cg0', 'cli /cg7', 'srv-master /cg8', 'srv-worker /cg8']);
	t.deepEqual([SLOT.connects, SLOT.timeWaitEntries, SLOT.resets, SLOT.lifetimeCount].map((i) => expected['cli /cg7']![i]), [2, 2, 1, 3]);
	t.is(expected['srv-master /cg8']![SLOT.accepts], 1, 'accepted under the listener\'s owner');
	t.is(expected['srv-worker /cg8']![SLOT.timeWaitEntries], 1, 'its TIME_WAIT under the worker that closed it');
});
