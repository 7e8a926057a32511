/**
 * Decoder microbenchmark: records/s that the TypeScript ring drain + decode sustains on a full ring,
 * in memory (no kernel), so it isolates the user-space cost per event.
 *
 *   node --import tsx bench/decode.ts [--rounds 7] [--ring-size 8M]
 *
 * Each round fills an 8 MiB ring (≈ 55k records of 144 bytes, a realistic mix of kinds) and drains it
 * three times over: the drain only (framing), drain + decode, and drain + decode + the JSON line of
 * `twtrace trace --json`. Reports min and median.
 */
import { parseArgs } from 'node:util';
import { Decoder, isDecodeFailure } from '../src/event/decode.js';
import { EVENT_SIZE, EventKind } from '../src/event/layout.generated.js';
import { RingReader } from '../src/tracer/ring-reader.js';
import { eventJsonLine } from '../src/views/event-json.js';
import { writeRecord, writeTask } from '../testbed/records.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' }, 'ring-size': { type: 'string', default: '8388608' } } });
const rounds = Number(values.rounds);
const dataBytes = Number(values['ring-size']);
const PAGE = 4096;
const RECORD_BYTES = EVENT_SIZE + 8;

function filledRing() {
	const memory = new ArrayBuffer(PAGE + 2 * dataBytes);
	const view = new DataView(memory);
	const kinds = [EventKind.CONNECT, EventKind.ACCEPT, EventKind.ACTIVE_CLOSE, EventKind.TIME_WAIT];
	// The churn client's task record first, as the BPF program sends it, then its events.
	view.setUint32(PAGE, EVENT_SIZE, true);
	writeTask(view, PAGE + 8, { id: 1, pid: 4242, comm: 'churn-client' });
	let pos = RECORD_BYTES;
	for (let i = 0; pos + RECORD_BYTES <= dataBytes; i++, pos += RECORD_BYTES) {
		view.setUint32(PAGE + pos, EVENT_SIZE, true);
		writeRecord(view, PAGE + pos + 8, {
			kind: kinds[i % kinds.length]!, tsUs: BigInt(1e12 + i), cookie: BigInt(1000 + i), family: i % 10 === 0 ? 10 : 2,
			saddr: [10, 200, 0, 1], daddr: [10, 200, 0, 2], sport: 32768 + (i % 28000), dport: 7101, netns: 4026532387,
			owner: 1, closer: 1, side: 1, ownerSource: 1, substate: 6,
		});
	}
	const producerPos = new BigInt64Array(memory, 0, 1);
	producerPos[0] = BigInt(pos);
	return { memory, records: pos / RECORD_BYTES, views: { consumerPos: new BigInt64Array(1), producerPos, memory, dataOffset: PAGE, dataBytes } };
}

type Stage = 'drain' | 'drain+decode' | 'drain+decode+json';
const STAGES: Stage[] = ['drain', 'drain+decode', 'drain+decode+json'];
const jsonContext = { epochOffsetUs: 1.7e15, cgroupPath: () => undefined };

function measure(stage: Stage): { recordsPerSec: number; records: number } {
	const ring = filledRing();
	const decoder = new Decoder(ring.memory);
	let sink = 0;
	const reader = new RingReader(ring.views, stage === 'drain'
		? (offset) => { sink += offset; }
		: (offset, length) => {
			const e = decoder.decode(offset, length);
			if (e === undefined || isDecodeFailure(e)) return;
			sink += stage === 'drain+decode' ? e.sport : eventJsonLine(e, jsonContext).length;
		}, () => {});
	const t0 = process.hrtime.bigint();
	const n = reader.drain();
	const ns = Number(process.hrtime.bigint() - t0);
	if (n !== ring.records || sink === 0) throw new Error(`drained ${n} of ${ring.records}`);
	return { recordsPerSec: n / (ns / 1e9), records: n };
}

const results = Object.fromEntries(STAGES.map((stage) => [stage, [] as number[]])) as Record<Stage, number[]>;
for (const stage of STAGES) measure(stage); // warm-up: JIT
for (let r = 0; r < rounds; r++) {
	// Interleave the stages so that machine noise hits all alike.
	for (const stage of STAGES) results[stage].push(measure(stage).recordsPerSec);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (x: number) => `${(x / 1e6).toFixed(2)}M`;
console.log(`ring ${dataBytes / 2 ** 20} MiB, ${Math.floor(dataBytes / RECORD_BYTES)} records of ${EVENT_SIZE} bytes, ${rounds} rounds, node ${process.version}`);
console.log('stage               records/s min   median   µs/record (median)');
for (const [stage, xs] of Object.entries(results)) console.log(`${stage.padEnd(19)} ${fmt(Math.min(...xs)).padStart(13)} ${fmt(median(xs)).padStart(8)} ${(1e6 / median(xs)).toFixed(3).padStart(11)}`);
