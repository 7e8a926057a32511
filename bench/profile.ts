/**
 * Where a command's time goes: `twtrace serve` as deployed (bench/agent-cost.ts), scraped every
 * second, or `top --json` or `trace --json` as in the churn table (bench/tracers.ts), with V8's
 * CPU profiler sampling its main thread every 1 ms (bench/inspect-hook.mjs) for --seconds while the
 * churn client runs as fast as it can (or at --rate connections/s), after a warm-up. The samples are
 * grouped by what the pipeline does (the areas below, each the share of samples with such a frame
 * on the stack, or running for an area of its own time; a sample counts once per area, and the areas
 * overlap only where one calls the other), then the functions with the most samples of their own.
 *
 *   sudo npm run bench:profile [-- --seconds 20 --warm 10 --command serve|top|trace --rate 10]
 *
 * A sample taken while the thread is inside a system call (a ring read, a walk's iterator read)
 * belongs to the function that made it, so kernel time spent for serve's main thread counts too.
 * `npm run bench` runs it once for each command and puts the tables into bench/RESULTS.md.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { scrapeEverySecond, startServe, stopChild } from './agent-cost.js';
import { waitQuiet } from './proc.js';
import { INSPECT_HOOK, startTwtrace } from './tracers.js';
import { pairWithRoom, startLoad, type LoadOptions } from './steady.js';
import { exitOnSignals } from '../testbed/children.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The areas that grow with the event rate together, each sample once: what counting in the kernel would leave out. */
export const PER_EVENT_AREA = 'per-event work, all of it (the four areas above, a sample once)';

/**
 * What the pipeline does, each recognised by a function (and its file) somewhere on the stack, or
 * (`of`) the union of other areas listed before it.
 */
const AREAS: { name: string; frames: [fn: string | RegExp, file: string][]; self?: boolean; of?: string[] }[] = [
	{ name: 'model: per-event ingest (all of it)', frames: [['#ingestOne', 'churn-model.js']] },
	{ name: '  of which the TIME_WAIT population (insert, index)', frames: [[/^(add|#find|#growIndex|#hold)$/, 'time-wait.js']] },
	{ name: '  of which finding the owner and destination', frames: [['#ownerAndDestination', 'churn-model.js']] },
	{ name: '  of which lifetime histograms (HdrHistogram)', frames: [['recordLifetime', 'owners.js']] },
	{ name: 'metrics counted per event', frames: [['observeOne', 'churn-metrics.js'], ['observe', 'churn-metrics.js']] },
	{ name: 'flight recorder (raw copies, chunks)', frames: [[/./, 'recorder.js'], ['#keepRecord', 'session.js']] },
	{ name: 'ring drain and decode (own time)', frames: [[/./, 'ring-reader.js'], [/./, 'decode.js'], [/./, 'session.js']], self: true },
	{ name: PER_EVENT_AREA, frames: [], of: ['model: per-event ingest (all of it)', 'metrics counted per event', 'flight recorder (raw copies, chunks)', 'ring drain and decode (own time)'] },
	{ name: 'the kernel\'s counts read and taken (counters, model, metrics: once a second and per scrape)', frames: [['readCounts', 'live-pipeline.js'], [/./, 'count-reader.js']] },
	{ name: 'snapshots (top: building and printing them)', frames: [[/./, 'snapshot.js'], [/./, 'top-json.js'], [/./, 'top-loop.js']] },
	{ name: 'event lines (trace: JSON, written to stdout)', frames: [[/./, 'event-json.js'], [/./, 'line-batch.js'], [/./, 'event-text.js']] },
	{ name: 'scrapes and the agent API (HTTP, /metrics)', frames: [[/./, 'prometheus.js'], [/./, 'api.js'], [/./, 'http-server.js'], ['handle', 'http.js']] },
	{ name: 'socket walks (iterator reads, reconciliation)', frames: [[/./, 'walk-reader.js'], [/./, 'namespaces.js'], [/./, 'reconcile.js']] },
	{ name: 'suspect checks (sock_diag lookups)', frames: [[/./, 'suspect-check.js'], [/./, 'sock-diag.js']] },
	{ name: 'garbage collection', frames: [['(garbage collector)', '']] },
];

/** Each union area (`of`) with the indices of its parts, resolved once: a misspelt part is an error here, not a silent 0. */
const UNIONS: [index: number, parts: number[]][] = AREAS.flatMap((a, i) => (a.of ? [[i, a.of.map((name) => {
	const k = AREAS.findIndex((b) => b.name === name);
	if (k < 0 || k >= i) throw new Error(`bench/profile.ts: area "${a.name}" unites "${name}", which is not an area listed before it`);
	return k;
})] as [number, number[]]] : []));

interface CpuProfile {
	nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
	samples: number[];
	/** µs from the sample before (the first: from startTime). */
	timeDeltas?: number[];
	startTime: number;
	endTime: number;
	/** Added by bench/inspect-hook.mjs: the process's user + system CPU over the profiled window, µs. */
	processCpuUs?: number;
}

/** The commands profiled, as run: serve as deployed, top and trace as in the churn table. */
export const PROFILED = {
	serve: 'twtrace serve --listen 127.0.0.1:0 --agent-socket TMP/agent.sock, /metrics fetched every second',
	top: 'twtrace top --json --netns CLIENT --netns SERVER > /dev/null',
	trace: 'twtrace trace --json --netns CLIENT --netns SERVER > /dev/shm/FILE',
} as const;
export type ProfiledCommand = keyof typeof PROFILED;

export interface ProfileResult {
	command: ProfiledCommand;
	seconds: number;
	connPerSec: number;
	/** Share of the main thread's samples not idle: running, or waiting for a CPU, % of the window. */
	busyPctOfCore: number;
	/** The whole process's CPU over the same window (every thread: GC helpers, libuv's pool), % of a core. */
	processCpuPct: number | undefined;
	areas: { name: string; pctOfBusy: number; pctOfCore: number }[];
	/** Functions by their own samples. */
	topSelf: { fn: string; pctOfBusy: number }[];
	/** The longest stretches the main thread was busy without a break (what a scrape arriving then waits for). */
	stretches: BusyStretch[];
}

/**
 * A stretch of samples none of them idle: `atS` from the profile's start; `path`, the deepest of
 * twtrace's functions (dist/src/ files) on the stretch's heaviest call path, each with its share of the
 * stretch's samples, and `pathEnd` where the path ends when that is not twtrace's (a library's, node's);
 * `gcPct`, the share the garbage collector ran.
 */
export interface BusyStretch { atS: number; ms: number; path: { fn: string; pctOfSamples: number }[]; pathEnd?: { fn: string; pctOfSamples: number }; gcPct: number }

/**
 * The `topN` longest runs of consecutive busy samples of at least `minMs`. A run's heaviest path
 * goes down from the root, each step to the callee with the most of its samples, while that callee
 * has at least half of them: the function that held the thread, not only the timer that called it. Pure.
 */
export function busyStretches(profile: CpuProfile & { timeDeltas: number[] }, minMs = 20, topN = 5, pathFrames = 4): BusyStretch[] {
	const { byId, parent } = callTree(profile);
	const root = profile.nodes.find((n) => !parent.has(n.id))!.id;
	const file = (url: string) => url.slice(url.lastIndexOf('/') + 1);
	const found: BusyStretch[] = [];
	let startUs = -1;
	let ids: number[] = [];
	const close = (endUs: number) => {
		const ms = (endUs - startUs) / 1000;
		if (ms < minMs) return;
		const inclusive = new Map<number, number>();
		for (const id of ids) for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) inclusive.set(at, (inclusive.get(at) ?? 0) + 1);
		const path: BusyStretch['path'] = [];
		let pathEnd: BusyStretch['pathEnd'];
		for (let at: number | undefined = root; at !== undefined;) {
			const f = byId.get(at)!.callFrame;
			const step = { fn: `${f.functionName || '(anonymous)'} (${file(f.url) || 'native'})`, pctOfSamples: (100 * inclusive.get(at)!) / ids.length };
			if (f.url.includes('/dist/src/')) path.push(step), (pathEnd = undefined);
			else if (at !== root) pathEnd = step;
			const next: number | undefined = (byId.get(at)!.children ?? []).reduce<number | undefined>((best, c) => ((inclusive.get(c) ?? 0) > (best === undefined ? 0 : inclusive.get(best)!) ? c : best), undefined);
			at = next !== undefined && 2 * inclusive.get(next)! >= ids.length ? next : undefined;
		}
		const gc = ids.filter((id) => byId.get(id)!.callFrame.functionName === '(garbage collector)').length;
		found.push({ atS: (startUs - profile.startTime) / 1e6, ms, path: path.slice(-pathFrames), ...(pathEnd && { pathEnd }), gcPct: (100 * gc) / ids.length });
	};
	let tUs = profile.startTime;
	profile.samples.forEach((id, i) => {
		tUs += profile.timeDeltas[i]!;
		if (byId.get(id)!.callFrame.functionName !== '(idle)') {
			if (startUs < 0) [startUs, ids] = [tUs, []];
			ids.push(id);
		} else if (startUs >= 0) {
			close(tUs);
			startUs = -1;
		}
	});
	if (startUs >= 0) close(tUs);
	return found.sort((x, y) => y.ms - x.ms).slice(0, topN);
}

/** A profile's nodes by id, and each node's caller. */
function callTree(profile: CpuProfile): { byId: Map<number, CpuProfile['nodes'][number]>; parent: Map<number, number> } {
	const byId = new Map(profile.nodes.map((n) => [n.id, n]));
	const parent = new Map<number, number>();
	for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
	return { byId, parent };
}

/** Groups a profile's samples into AREAS and the functions with most self time. Pure. */
export function summariseProfile(profile: CpuProfile, topN = 12): Omit<ProfileResult, 'connPerSec' | 'command' | 'stretches'> {
	const { byId, parent } = callTree(profile);
	const seconds = (profile.endTime - profile.startTime) / 1e6;
	const counts = new Map<number, number>();
	for (const id of profile.samples) counts.set(id, (counts.get(id) ?? 0) + 1);
	const file = (url: string) => url.slice(url.lastIndexOf('/') + 1);
	const matches = (frame: CpuProfile['nodes'][number]['callFrame'], [fn, f]: [string | RegExp, string]) =>
		file(frame.url) === f && (typeof fn === 'string' ? frame.functionName === fn : fn.test(frame.functionName));
	let busy = 0;
	const area = new Array<number>(AREAS.length).fill(0);
	const self = new Map<string, number>();
	for (const [id, n] of counts) {
		const leaf = byId.get(id)!.callFrame;
		if (leaf.functionName === '(idle)') continue;
		busy += n;
		const key = `${leaf.functionName || '(anonymous)'} (${file(leaf.url) || 'native'})`;
		self.set(key, (self.get(key) ?? 0) + n);
		const hit = new Array<boolean>(AREAS.length).fill(false);
		for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
			const frame = byId.get(at)!.callFrame;
			// A self area counts a sample only when one of its functions is the one running.
			AREAS.forEach((a, i) => (hit[i] ||= (!a.self || at === id) && a.frames.some((m) => matches(frame, m))));
		}
		UNIONS.forEach(([i, parts]) => (hit[i] ||= parts.some((k) => hit[k])));
		hit.forEach((h, i) => (area[i]! += h ? n : 0));
	}
	// The sampler sees the main thread's stack whether it runs or waits for a CPU (the workload keeps
	// every core busy): a sample's share is the share of the thread's wall time, not of its CPU. With the
	// process's CPU over the window, an area's CPU is its share of that (as if it were all the main
	// thread's: GC helpers and libuv's pool count with it); without, the share of the window.
	const processCpuPct = profile.processCpuUs === undefined ? undefined : (100 * profile.processCpuUs) / Math.max(profile.endTime - profile.startTime, 1);
	const coreShare = (n: number) => (processCpuPct === undefined ? (100 * n) / Math.max(profile.samples.length, 1) : (processCpuPct * n) / Math.max(busy, 1));
	return {
		seconds,
		busyPctOfCore: (100 * busy) / Math.max(profile.samples.length, 1),
		processCpuPct,
		areas: AREAS.map((a, i) => ({ name: a.name, pctOfBusy: (100 * area[i]!) / Math.max(busy, 1), pctOfCore: coreShare(area[i]!) })),
		topSelf: [...self].sort((x, y) => y[1] - x[1]).slice(0, topN).map(([fn, n]) => ({ fn, pctOfBusy: (100 * n) / Math.max(busy, 1) })),
	};
}

/** `command` (PROFILED) at `rate` connections/s (0: full churn), profiled for `seconds` after `warmS`. */
export async function measureProfile(command: ProfiledCommand, seconds: number, warmS: number, load: LoadOptions, rate = 0): Promise<ProfileResult> {
	const pair = pairWithRoom();
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twtrace-profile-'));
	const out = path.join(dir, `${command}.cpuprofile`);
	const env = { ...process.env, BENCH_CPU_PROFILE: out, BENCH_CPU_PROFILE_AFTER_MS: String(warmS * 1000), BENCH_CPU_PROFILE_MS: String(seconds * 1000) };
	// trace's lines go to tmpfs, as in the churn table: as cheap to write as /dev/null, and real writes.
	const sink = command === 'trace' ? `/dev/shm/twtrace-profile-${process.pid}.ndjson` : '/dev/null';
	let serve: Awaited<ReturnType<typeof startServe>> | undefined;
	let viewer: Awaited<ReturnType<typeof startTwtrace>> | undefined;
	try {
		await waitQuiet();
		let scrapes: ReturnType<typeof scrapeEverySecond> | undefined;
		if (command === 'serve') {
			serve = await startServe(['--import', INSPECT_HOOK], env);
			scrapes = scrapeEverySecond(serve.url);
		} else {
			const fd = fs.openSync(sink, 'w');
			try {
				viewer = await startTwtrace(pair, command, ['--json'], fd, /Ctrl-C to stop/, { args: ['--import', INSPECT_HOOK], env });
			} finally {
				fs.closeSync(fd);
			}
		}
		const child = (serve ?? viewer)!.child;
		const stderr = (serve ?? viewer)!.stderr;
		const run = await startLoad(pair, load, warmS + seconds + 5, rate);
		const deadline = Date.now() + (warmS + seconds + 60) * 1000;
		while (!fs.existsSync(out)) {
			if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no profile from ${command}: ${stderr()}`);
			await sleep(250);
		}
		scrapes?.stop();
		const churn = await run.result();
		const profile = JSON.parse(fs.readFileSync(out, 'utf8')) as CpuProfile & { timeDeltas: number[] };
		return { ...summariseProfile(profile), stretches: busyStretches(profile), command, connPerSec: churn.perSecond };
	} finally {
		if (serve) {
			await stopChild(serve.child);
			fs.rmSync(serve.socketDir, { recursive: true, force: true });
		}
		if (viewer) await stopChild(viewer.child);
		if (command === 'trace') fs.rmSync(sink, { force: true });
		fs.rmSync(dir, { recursive: true, force: true });
		pair.remove();
	}
}

const fmt = (x: number) => x.toFixed(1);

/** The tables, in Markdown. */
export function profileTables(r: ProfileResult): string {
	const areas = [`| area | % of ${r.command}'s busy main thread | % of a core${r.processCpuPct === undefined ? '' : ` (of the process's ${fmt(r.processCpuPct)} %)`} |`, '|---|---|---|',
		...r.areas.map((a) => `| ${a.name.replace(/^ {2}/, '&nbsp;&nbsp;')} | ${fmt(a.pctOfBusy)} | ${fmt(a.pctOfCore)} |`)];
	const self = ['| function (file) | % of busy, own samples |', '|---|---|', ...r.topSelf.map((f) => `| \`${f.fn}\` | ${fmt(f.pctOfBusy)} |`)];
	const stretches = r.stretches.length === 0 ? [] : ['', `The longest stretches the main thread stayed busy (a scrape or a reading arriving then waits; seconds from the profile's start), each with twtrace's functions on its heaviest call path (the deepest four, then where the path ends if elsewhere, each with its share of the stretch) and the garbage collector's share:`, '',
		...r.stretches.map((b) => `- ${fmt(b.ms)} ms at ${fmt(b.atS)} s: ${[...b.path, ...(b.pathEnd ? [b.pathEnd] : [])].map((f) => `\`${f.fn}\` ${Math.round(f.pctOfSamples)} %`).join(' → ') || 'no path through half of it'}; the garbage collector ${Math.round(b.gcPct)} %`)];
	return `${areas.join('\n')}\n\n${self.join('\n')}${stretches.join('\n')}`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
	exitOnSignals();
	const { parseArgs } = await import('node:util');
	const { values } = parseArgs({ options: { seconds: { type: 'string', default: '20' }, warm: { type: 'string', default: '10' }, command: { type: 'string', default: 'serve' }, rate: { type: 'string', default: '0' }, help: { type: 'boolean', short: 'h' } } });
	if (values.help) {
		console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*?|^ \* ?/gm, ''));
		process.exit(0);
	}
	const seconds = Number(values.seconds);
	const warmS = Number(values.warm);
	if (!(Number.isInteger(seconds) && seconds >= 5 && seconds <= 300) || !(Number.isInteger(warmS) && warmS >= 0 && warmS <= 300)) {
		console.error('bench:profile: --seconds 5 to 300, --warm 0 to 300 (whole seconds)');
		process.exit(2);
	}
	const rate = Number(values.rate);
	if (!(Number.isInteger(rate) && rate >= 0 && rate <= 100_000)) {
		console.error('bench:profile: --rate 0 to 100000 connections/s (0: as fast as the client can)');
		process.exit(2);
	}
	const command = values.command as ProfiledCommand;
	if (!Object.hasOwn(PROFILED, command)) {
		console.error(`bench:profile: --command ${Object.keys(PROFILED).join(', ')}`);
		process.exit(2);
	}
	if (process.getuid?.() !== 0) {
		console.error('bench:profile: needs root (BPF and network namespaces): sudo npm run bench:profile');
		process.exit(1);
	}
	const r = await measureProfile(command, seconds, warmS, { threads: 2, ports: 64 }, rate);
	console.log(`${PROFILED[command]} at ${rate ? `${rate} connections/s asked` : 'full churn'} (${Math.round(r.connPerSec)} connections/s), profiled for ${fmt(r.seconds)} s after ${warmS} s: main thread busy ${fmt(r.busyPctOfCore)} % of the window, the process's CPU ${r.processCpuPct === undefined ? '–' : fmt(r.processCpuPct)} % of a core\n`);
	console.log(profileTables(r));
}
