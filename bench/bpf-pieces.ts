/**
 * `sudo npm run bench:bpf-pieces`: what each piece of twtrace's primary program costs a run on
 * tp_btf/inet_sock_set_state, timed by the kernel (bench/bpf-stats.ts): nothing, the socket's
 * namespace, its storage (created on the socket's first transition, as twtrace's), its cookie, the
 * clock (bench/pieces.bpf.c). The BPF-side row of bench/RESULTS.md says what the whole program costs
 * a run; this says where that goes.
 *
 *   sudo npm run bench:bpf-pieces [-- --seconds 6 --rounds 3 --rate 20000]
 *
 * A namespace pair, and for each round each piece alone attached (in a rotated order) while
 * bench/churn makes --rate connections/s for --seconds. Prints ns a run, min and median over the
 * rounds, and above the empty program. About a minute and a half with the defaults.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as bpf from '../native/libbpf.js';
import { programRuns, runsBetween, runTimeStats } from './bpf-stats.js';
import { median } from './stats.js';
import { root } from './tracers.js';
import { pairWithRoom, startLoad } from './steady.js';

const { values: opts } = parseArgs({
	options: { seconds: { type: 'string', default: '6' }, rounds: { type: 'string', default: '3' }, rate: { type: 'string', default: '20000' } },
});
const seconds = Number(opts.seconds);
const rounds = Number(opts.rounds);
const rate = Number(opts.rate);
if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) fail('--seconds: whole seconds, 1 to 600');
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) fail('--rounds: 1 to 20');
if (!Number.isInteger(rate) || rate < 1 || rate > 1_000_000) fail('--rate: connections per second, 1 to 1,000,000');

function fail(message: string): never {
	console.error(`bench:bpf-pieces: ${message}`);
	process.exit(2);
}

const PIECES = ['piece_empty', 'piece_netns', 'piece_storage', 'piece_cookie', 'piece_clock'] as const;
const object = bpf.objectOpen(path.join(root, 'build/pieces.bpf.o'));
bpf.objectLoad(object);
const pair = pairWithRoom();
const statsOff = runTimeStats();
const nsPerRun = new Map<string, number[]>(PIECES.map((p) => [p, []]));
try {
	for (let round = 0; round < rounds; round++) {
		for (let k = 0; k < PIECES.length; k++) {
			const piece = PIECES[(k + round) % PIECES.length]!;
			const link = bpf.programAttach(bpf.findProgram(object, piece), 'tp_btf/inet_sock_set_state');
			try {
				const before = programRuns(process.pid);
				const load = await startLoad(pair, { threads: 2, ports: 16 }, seconds, rate);
				await load.result();
				const ran = runsBetween(before, programRuns(process.pid)).find((r) => r.name === piece);
				if (!ran) throw new Error(`${piece} did not run: is the load reaching the namespaces?`);
				nsPerRun.get(piece)!.push(ran.ns / ran.runs);
				console.error(`  round ${round + 1}  ${piece.padEnd(14)} ${(ran.ns / ran.runs).toFixed(0).padStart(5)} ns a run × ${ran.runs.toLocaleString('en-US')} runs`);
			} finally {
				bpf.linkDestroy(link);
			}
		}
	}
} finally {
	statsOff();
	pair.remove();
	bpf.objectClose(object);
}

const empty = median(nsPerRun.get('piece_empty')!);
console.log(`${rounds} rounds × ${seconds} s at ${rate.toLocaleString('en-US')} connections/s, each piece alone on tp_btf/inet_sock_set_state (bench/pieces.bpf.c)`);
console.log(`${'piece'.padEnd(14)} ${'ns a run min'.padStart(13)} ${'median'.padStart(7)} ${'above empty'.padStart(12)}`);
for (const [piece, xs] of nsPerRun) {
	const m = median(xs);
	console.log(`${piece.padEnd(14)} ${Math.min(...xs).toFixed(0).padStart(13)} ${m.toFixed(0).padStart(7)} ${(piece === 'piece_empty' ? '–' : (m - empty).toFixed(0)).padStart(12)}`);
}
