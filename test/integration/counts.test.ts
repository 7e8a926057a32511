/**
 * Counting in the kernel (docs/counting-in-the-kernel.md) against two witnesses on a real run:
 *
 * - the records the ring delivered in the same run, folded by src/model/fold.ts: the kernel's
 *   counters must equal the fold key by key, counter by counter, across generation flips (one
 *   semantics for live counts and for replayed captures);
 * - the truth: the generator's completed connections and `ss`'s TIME-WAIT sockets, per namespace.
 *
 * Every kind flows: client and server TIME_WAIT (churn client-close, server-close), resets (linger0),
 * connection refused, IPv6, with both ends in namespaces of the test's own. The run is bounded: about 4 s
 * of churn, 26,000 connections at most.
 */
import type { ExecutionContext } from 'ava';
import { TraceSession } from '../../src/tracer/session.js';
import { NamespaceWalker } from '../../src/tracer/namespaces.js';
import { SuspectChecker } from '../../src/pipeline/suspect-check.js';
import { COUNT_COLUMN, CountTable, decodeCountKey } from '../../src/event/counts.js';
import { foldRecords } from '../../src/model/fold.js';
import { EVENT_FIELDS as E, EVENT_SIZE, EventFlag, EventKind } from '../../src/event/layout.generated.js';
import { HOST_LITTLE_ENDIAN } from '../../src/event/host-order.js';
import type { WheelClock } from '../../src/event/clock.js';
import { endsOddBucket } from '../helpers/wheel.js';
import { bpfObject, bpfTest } from '../helpers/env.js';
import { runClient, startServer } from '../helpers/processes.js';
import { runChurnClient, startChurnServer, stopChurnServer, type ChurnLoad } from '../../testbed/churn.js';
import { createPair, type NetnsPair } from '../../testbed/netns.js';

const C = COUNT_COLUMN;
const IPV6_CONNECTIONS = 50;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A live session counting in the kernel and delivering every kind, its records folded as they come.
 * `buckets`: of the substate TIME_WAIT records, how many carry the odd-bucket flag the bucket their own
 * fire time names (time, 60 s and slack: a bucket's end, which expiry.test.ts holds to the timer a walk
 * reads) says they should, and how many do not.
 */
function countingSession(t: ExecutionContext, pair: NetnsPair, kinds: 'all' | 'time_wait') {
	const folded = new CountTable();
	const buckets = { agree: 0, disagree: 0 };
	const session: TraceSession = new TraceSession(
		{ objectPath: bpfObject, filters: { netns: [pair.clientInode, pair.serverInode], kinds: kinds === 'all' ? [] : ['time_wait'] }, ringBytes: 16 << 20, keepRaw: true, counting: true, witness: true },
		{
			onEvents: (_events, raw) => {
				if (!raw) return;
				foldRecords(raw, folded);
				const clock = session.tracer.counts?.wheel;
				if (clock) checkBuckets(raw, clock, buckets);
			},
		},
	);
	t.teardown(() => void session.stop());
	return { session, folded, buckets, counts: session.tracer.counts! };
}

/** Each substate TIME_WAIT record's flag against the parity of the bucket its fire time ends (wheel.ts's numbering). */
function checkBuckets(raw: Uint8Array, clock: WheelClock, buckets: { agree: number; disagree: number }): void {
	const b = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
	for (let at = 0; at + EVENT_SIZE <= b.length; at += EVENT_SIZE) {
		if (b[at + E.kind.offset] !== EventKind.TIME_WAIT || b[at + E.substate.offset] !== 6) continue;
		const tsUs = Number(HOST_LITTLE_ENDIAN ? b.readBigUInt64LE(at + E.ts_us.offset) : b.readBigUInt64BE(at + E.ts_us.offset));
		const slackMs = HOST_LITTLE_ENDIAN ? b.readUInt16LE(at + E.tw_slack_ms.offset) : b.readUInt16BE(at + E.tw_slack_ms.offset);
		const odd = endsOddBucket(clock, tsUs + 60_000_000 + slackMs * 1000);
		if (odd === ((b[at + E.flags.offset]! & EventFlag.ODD_BUCKET) !== 0)) buckets.agree++;
		else buckets.disagree++;
	}
}

async function churn(pair: NetnsPair, load: ChurnLoad, seconds: number, max: number): Promise<number> {
	const server = await startChurnServer(pair, load, seconds + 3);
	try {
		return (await runChurnClient(pair, load, seconds, max)).connections;
	} finally {
		await stopChurnServer(server);
	}
}

/** Sums columns over the keys of one namespace. */
function inNetns(table: CountTable, netns: number, ...columns: number[]): number {
	let sum = 0;
	for (const [key, row] of table.rows) if (decodeCountKey(key).netns === netns) for (const c of columns) sum += row[c]!;
	return sum;
}

/**
 * TIME_WAIT entries of either substate: an orphaned socket that gets the ACK of its FIN enters
 * TIME_WAIT at once with substate FIN_WAIT2 (tcp_rcv_state_process), which ss shows as TIME-WAIT too.
 */
const ENTRIES = [C.timeWait, C.finWait2];

const sorted = (table: CountTable) => [...table.rows].map(([k, r]) => [k, [...r]] as const).sort((a, b) => (a[0] < b[0] ? -1 : 1));

bpfTest('the kernel\'s counters equal the fold of the records the ring delivered, key by key, across generation flips, and the truth (churn, ss)', async (t) => {
	const pair = createPair();
	t.teardown(() => pair.remove());
	for (const ns of [pair.client, pair.server]) {
		pair.sysctl(ns, 'net.ipv4.ip_local_port_range', '10000 65000');
		pair.sysctl(ns, 'net.ipv4.tcp_max_tw_buckets', '1000000');
	}
	const { session, folded, buckets, counts } = countingSession(t, pair, 'all');
	// A flip every 100 ms or so as the load runs. The retired generation is read twice, 50 ms apart, before
	// it is read whole and cleared: the flip returned after the grace period, so nothing may still
	// count into it (docs/kernel-facts.md §10).
	const kernel = new CountTable();
	let changedAfterFlip = 0;
	const flipMs: number[] = [];
	let loading = true;
	const flipper = (async () => {
		while (loading) {
			await sleep(100);
			const flipStart = process.hrtime.bigint();
			counts.flip();
			flipMs.push(Number(process.hrtime.bigint() - flipStart) / 1e6);
			const first = sorted(counts.read('retired'));
			await sleep(50);
			if (JSON.stringify(sorted(counts.read('retired'))) !== JSON.stringify(first)) changedAfterFlip++;
			counts.read('retired', kernel, true);
		}
	})();
	t.teardown(() => void (loading = false));

	const clientClose = await churn(pair, { port: 7700, ports: 8, threads: 2 }, 1.5, 15_000);
	const serverClose = await churn(pair, { port: 7720, ports: 8, threads: 2, mode: 'server-close' }, 1, 8_000);
	const linger0 = await churn(pair, { port: 7740, ports: 8, threads: 2, mode: 'linger0' }, 0.5, 3_000);
	const refused = await runClient(pair.client, pair.serverAddr, 7760, 'refused', 5);
	// IPv6 keys: 16-byte addresses in the key, as in the records.
	const server6 = await startServer(pair.server, '::', 7770, 'wait-close', IPV6_CONNECTIONS);
	const ipv6 = await runClient(pair.client, pair.serverAddr6, 7770, 'close-first', IPV6_CONNECTIONS);
	await server6.done;
	loading = false;
	await flipper;

	// Entries the kernel reported to no program (kernel-facts §8) are recovered as the live feed does.
	await sleep(1600);
	const walker = new NamespaceWalker(session.tracer, () => 0);
	walker.discover();
	new SuspectChecker(session.tracer, walker).check(process.hrtime.bigint(), 1_500_000_000n, () => [], 10_000);
	session.drainNow();
	counts.read('current', kernel);
	const drops = session.tracer.drops();
	const clientTw = pair.timeWaitCount(pair.client);
	const serverTw = pair.timeWaitCount(pair.server);
	session.stop();

	const label = `${clientClose} client-close, ${serverClose} server-close, ${linger0} linger0 connections; ${counts.flips} flips (each returned after ${Math.min(...flipMs).toFixed(1)}-${Math.max(...flipMs).toFixed(1)} ms: the grace period); ${kernel.rows.size} keys`;
	t.log(label);
	t.true(clientClose > 1000 && serverClose > 1000 && linger0 > 100, `${label}: too little load to mean anything`);
	t.true(counts.flips >= 4, `${label}: the generations were flipped while counting`);
	t.is(changedAfterFlip, 0, 'no retired generation changed after its flip returned');
	t.deepEqual({ ringFull: drops.ringFull, mapFull: drops.mapFull }, { ringFull: 0, mapFull: 0 }, 'nothing lost on the way: the comparison below would not mean anything otherwise');

	t.deepEqual(sorted(kernel), sorted(folded), 'the kernel\'s counters equal the fold of the delivered records');
	// Which bucket each entry went into (time_wait_odd, equal to the fold of the flags just above): the one its fire time names.
	t.log(`${kernel.total(C.timeWaitOdd)} of ${kernel.total(C.timeWait)} substate TIME_WAIT entries counted into odd buckets`);
	t.true(buckets.agree > 1000, `${buckets.agree} records checked: too few to mean anything`);
	t.is(buckets.disagree, 0, `of ${buckets.agree + buckets.disagree} substate TIME_WAIT records, the odd-bucket flag against the bucket their fire time ends`);

	t.is(inNetns(kernel, pair.clientInode, ...ENTRIES), clientTw, 'client TIME_WAIT entries: as many as ss holds');
	t.is(clientTw, clientClose + ipv6.ok, 'the truth: one TIME_WAIT per client-close connection, IPv4 and IPv6');
	const ipv6Keys = [...kernel.rows.keys()].map(decodeCountKey).filter((k) => k.family === 6);
	t.true(ipv6Keys.length > 0 && ipv6Keys.every((k) => k.daddr === pair.serverAddr6 || k.saddr === pair.serverAddr6), 'IPv6 keys carry the IPv6 addresses');
	t.is(ipv6.ok, IPV6_CONNECTIONS);
	t.is(inNetns(kernel, pair.serverInode, ...ENTRIES), serverTw, 'server TIME_WAIT entries: as many as ss holds');
	t.is(serverTw, serverClose, 'the truth: one TIME_WAIT per server-close connection');
	t.is(inNetns(kernel, pair.clientInode, C.connections), clientClose + serverClose + linger0 + ipv6.ok + refused.failed, 'connections started by the client: the generators\', and the refused ones');
	t.is(inNetns(kernel, pair.serverInode, C.connections), clientClose + serverClose + linger0 + ipv6.ok, 'connections accepted by the server');
	t.is(inNetns(kernel, pair.clientInode, C.resets), linger0, 'one reset sent per linger0 connection');
	t.is(inNetns(kernel, pair.clientInode, C.connectFails), refused.failed, 'one failure per refused connect');
	t.is(kernel.total(C.lifetimeCount), kernel.total(C.timeWait) + kernel.total(C.finWait2) + kernel.total(C.resets), 'every TIME_WAIT and reset has a lifetime: each start was seen');
});

bpfTest('with only time_wait sent, the kernel still counts every kind, and its time_wait counts equal the fold of what was sent', async (t) => {
	const pair = createPair();
	t.teardown(() => pair.remove());
	const { session, folded, counts } = countingSession(t, pair, 'time_wait');
	const completed = await churn(pair, { port: 7780, ports: 4, threads: 1 }, 0.5, 2_000);
	await sleep(300);
	session.drainNow();
	const kernel = counts.read('current');
	session.stop();

	t.true(completed > 100, `${completed} connections: too few to mean anything`);
	t.is(folded.total(C.connections), 0, 'no connect or accept record was sent');
	t.is(inNetns(kernel, pair.clientInode, C.connections), completed, 'connections made counted though not sent');
	t.is(inNetns(kernel, pair.serverInode, C.connections), completed, 'connections accepted counted though not sent');
	const timeWaitColumns = (table: CountTable) => sorted(table).map(([k, r]) => [k, r[C.timeWait], r[C.finWait2], ...r.slice(C.lifetimeSumUs)]).filter((row) => row[1] || row[2]);
	t.deepEqual(timeWaitColumns(kernel), timeWaitColumns(folded), 'time_wait counts and lifetimes equal the fold of the records sent');
	t.is(inNetns(kernel, pair.clientInode, ...ENTRIES), completed, 'one TIME_WAIT entry per connection');
});
