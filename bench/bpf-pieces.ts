/**
 * `sudo npm run bench:bpf-pieces`: what each piece of twtrace's primary program costs a run on
 * tp_btf/inet_sock_set_state, timed by the kernel (bench/bpf-stats.ts): nothing, the socket's
 * namespace, the owner in its storage (as twtrace keeps it) and in a hash keyed by its address
 * (measured against it), its cookie, the clock, counting in a hash map as counting in the kernel
 * does, and the witness of active closes in a hash (as twtrace keeps it) and in a ring (proposed)
 * (bench/pieces.bpf.c). The BPF-side row of bench/RESULTS.md says what the whole program costs a
 * run; this says where that goes.
 *
 *   sudo npm run bench:bpf-pieces [-- --seconds 6 --rounds 3 --rate 20000]
 *
 * A fresh namespace pair for each run, and for each round each piece alone attached (in a rotated order) while
 * bench/churn makes --rate connections/s for --seconds. Prints ns a run, min and median over the
 * rounds, and above the empty program. About a minute and a half with the defaults. `npm run bench`
 * runs it too (--pieces) and puts the table into bench/RESULTS.md.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as bpf from '../native/libbpf.js';
import { programRuns, runsBetween, runTimeStats } from './bpf-stats.js';
import { median } from './stats.js';
import { root } from './tracers.js';
import { pairWithRoom, startLoad } from './steady.js';

/** Each piece of bench/pieces.bpf.c, the empty program first: the others are read above it. */
export const PIECES = ['piece_empty', 'piece_netns', 'piece_owner', 'piece_storage', 'piece_cookie', 'piece_clock', 'piece_count', 'piece_count_percpu', 'piece_closing', 'piece_closing_ring'] as const;
/** The width of the pieces' names in the printed tables. */
const NAME_WIDTH = Math.max(...PIECES.map((p) => p.length));

export interface PiecesResult {
	seconds: number;
	rounds: number;
	rate: number;
	/** Per piece, ns a run in each round. */
	nsPerRun: Map<string, number[]>;
	/** Per piece, its runs a second in each round: the load it was timed under. */
	runsPerSecond: Map<string, number[]>;
}

/** Each piece alone on the tracepoint, `rounds` interleaved rounds of `seconds` at `rate` connections/s. */
export async function measurePieces(seconds: number, rounds: number, rate: number, log = (line: string) => console.error(line)): Promise<PiecesResult> {
	const object = bpf.objectOpen(path.join(root, 'build/pieces.bpf.o'));
	bpf.objectLoad(object);
	const statsOff = runTimeStats();
	const nsPerRun = new Map<string, number[]>(PIECES.map((p) => [p, []]));
	const runsPerSecond = new Map<string, number[]>(PIECES.map((p) => [p, []]));
	try {
		for (let round = 0; round < rounds; round++) {
			for (let k = 0; k < PIECES.length; k++) {
				const piece = PIECES[(k + round) % PIECES.length]!;
				// A fresh pair per run: the TIME_WAIT sockets of the runs before would fill the 4-tuples, and
				// connect() searching for a free port slows the load (and the runs) down.
				const pair = pairWithRoom();
				const link = bpf.programAttach(bpf.findProgram(object, piece), 'tp_btf/inet_sock_set_state');
				try {
					const before = programRuns(process.pid);
					const load = await startLoad(pair, { threads: 2, ports: 16 }, seconds, rate);
					await load.result();
					const ran = runsBetween(before, programRuns(process.pid)).find((r) => r.name === piece);
					if (!ran) throw new Error(`${piece} did not run: is the load reaching the namespaces?`);
					nsPerRun.get(piece)!.push(ran.ns / ran.runs);
					runsPerSecond.get(piece)!.push(ran.runs / seconds);
					log(`  round ${round + 1}  ${piece.padEnd(NAME_WIDTH)} ${(ran.ns / ran.runs).toFixed(0).padStart(5)} ns a run × ${ran.runs.toLocaleString('en-US')} runs`);
				} finally {
					bpf.linkDestroy(link);
					pair.remove();
				}
			}
		}
	} finally {
		statsOff();
		bpf.objectClose(object);
	}
	return { seconds, rounds, rate, nsPerRun, runsPerSecond };
}

/** Per piece: ns a run, min and median over the rounds, and the median above the empty program's. */
export function pieceRows(r: PiecesResult): { piece: string; minNs: number; medianNs: number; aboveEmptyNs: number | undefined; minRunsPerSecond: number }[] {
	const empty = median(r.nsPerRun.get('piece_empty')!);
	return [...r.nsPerRun].map(([piece, xs]) => ({
		piece, minNs: Math.min(...xs), medianNs: median(xs), aboveEmptyNs: piece === 'piece_empty' ? undefined : median(xs) - empty,
		minRunsPerSecond: Math.min(...r.runsPerSecond.get(piece)!),
	}));
}

function fail(message: string): never {
	console.error(`bench:bpf-pieces: ${message}`);
	process.exit(2);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
	const { values: opts } = parseArgs({
		options: { seconds: { type: 'string', default: '6' }, rounds: { type: 'string', default: '3' }, rate: { type: 'string', default: '20000' } },
	});
	const seconds = Number(opts.seconds);
	const rounds = Number(opts.rounds);
	const rate = Number(opts.rate);
	if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) fail('--seconds: whole seconds, 1 to 600');
	if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) fail('--rounds: 1 to 20');
	if (!Number.isInteger(rate) || rate < 1 || rate > 1_000_000) fail('--rate: connections per second, 1 to 1,000,000');
	if (process.getuid?.() !== 0) {
		console.error('bench:bpf-pieces: needs root (BPF and network namespaces): sudo npm run bench:bpf-pieces');
		process.exit(1);
	}
	const r = await measurePieces(seconds, rounds, rate);
	console.log(`${rounds} rounds × ${seconds} s at ${rate.toLocaleString('en-US')} connections/s, each piece alone on tp_btf/inet_sock_set_state (bench/pieces.bpf.c)`);
	console.log(`${'piece'.padEnd(NAME_WIDTH)} ${'ns a run min'.padStart(13)} ${'median'.padStart(7)} ${'above empty'.padStart(12)}`);
	for (const p of pieceRows(r)) {
		console.log(`${p.piece.padEnd(NAME_WIDTH)} ${p.minNs.toFixed(0).padStart(13)} ${p.medianNs.toFixed(0).padStart(7)} ${(p.aboveEmptyNs === undefined ? '–' : p.aboveEmptyNs.toFixed(0)).padStart(12)}`);
	}
}
