/**
 * The always-on measurements of `npm run bench`: twtrace holding a large TIME_WAIT population for a
 * while, rather than the few seconds of the churn table.
 *
 * - steady: `top --json` for N s at maximum churn, with `tcp_max_tw_buckets` raised in the
 *   namespace, so that it holds well over a million TIME_WAIT sockets: its RSS over time, how long a
 *   walk of that table takes, and its TIME_WAIT count against the kernel's (sockstat) at the same moment.
 * - soak: `serve` scraped every 2 s for N s at a steady rate: RSS, peak RSS, CPU every 10 s, scrapes
 *   that failed or were slow.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPair, type NetnsPair } from '../testbed/netns.js';
import { track, waitForLine } from '../testbed/children.js';
import { runChurnClient, startChurnServer, stopChurnServer } from '../testbed/churn.js';
import { cpuSeconds, peakRssMiB, rssMiB, timeWaitSockets, timeWaitSocketsAsync } from './proc.js';
import { INSPECT_HOOK, root } from './tracers.js';
import { FORCE_WALK_EVERY } from '../src/pipeline/walk-plan.js';
import { WalkFloor, type FloorWalk } from './walk-floor.js';
import { AgentClient } from '../src/agent/client.js';

/** The steady-state run's --walk-interval (top's default): walks forced every FORCE_WALK_EVERY of them. */
const WALK_INTERVAL_S = 5;

const cli = path.join(root, 'dist/src/cli.js');
const PORT = 8100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface LoadOptions { threads: number; ports: number }

/** A namespace pair with room for millions of TIME_WAIT sockets (sysctls set inside it only). */
export function pairWithRoom(): NetnsPair {
	const pair = createPair();
	pair.sysctl(pair.client, 'net.ipv4.ip_local_port_range', '1024 65535');
	for (const ns of [pair.client, pair.server]) pair.sysctl(ns, 'net.ipv4.tcp_max_tw_buckets', '4000000');
	return pair;
}

/**
 * A churn server and client; the client runs `seconds` at `rate` connections/s (0: as fast as it
 * can). `running()` is true until the client has ended; `result()` stops the server and gives the count.
 */
export async function startLoad(pair: NetnsPair, load: LoadOptions, seconds: number, rate: number) {
	const server = await startChurnServer(pair, { port: PORT, ...load }, seconds + 60);
	let isRunning = true;
	const client = runChurnClient(pair, { port: PORT, ...load }, seconds, 0, rate).finally(() => (isRunning = false));
	return {
		running: () => isRunning,
		result: async () => {
			const churn = await client;
			await stopChurnServer(server);
			return churn;
		},
	};
}

/** The latest process.memoryUsage() the hook wrote, in MiB; null before the first. */
function readMemory(file: string): MemorySplit | null {
	try {
		const m = JSON.parse(fs.readFileSync(file, 'utf8')) as NodeJS.MemoryUsage;
		const mib = (bytes: number) => bytes / 2 ** 20;
		return { heapUsedMiB: mib(m.heapUsed), heapTotalMiB: mib(m.heapTotal), arrayBuffersMiB: mib(m.arrayBuffers), externalMiB: mib(m.external) };
	} catch {
		return null;
	}
}

async function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
	if (child.exitCode !== null || child.signalCode !== null) return;
	const closed = once(child, 'close');
	child.kill(signal);
	const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
	await closed;
	clearTimeout(timer);
}

/** What a walk's wall time went to (top --json's walks.last…Ms): the rest is other work between its chunks. */
export interface WalkSplit { readMs: number; drainMs: number; handleMs: number }

/** process.memoryUsage() of top at the sample (bench/inspect-hook.mjs), MiB. */
export interface MemorySplit { heapUsedMiB: number; heapTotalMiB: number; arrayBuffersMiB: number; externalMiB: number }

/**
 * What top's last pass read of its namespaces (top --json's walks.lastOpenOnly, lastTable): walks of
 * their tables, open-socket walks (src/pipeline/open-walks.ts: no timewait socket visited), or both.
 */
export type WalkKind = 'table' | 'open sockets' | 'both';

export interface SteadySample {
	atS: number; rssMiB: number; timeWaitKernel: number; timeWaitTop: number; walkMs: number | null; walks: number;
	walkSplit: WalkSplit | null; memory: MemorySplit | null;
	/** Of the last pass; null before any, or from a top that does not say. */
	walkKind?: WalkKind | null;
}

export interface SteadyResult {
	seconds: number;
	connPerSec: number;
	samples: SteadySample[];
	peakRssMiB: number;
	/** After the load: top's count in the snapshot that followed a completed walk, and the kernel's (sockstat) at that moment. */
	final: { top: number; kernel: number; walkMs: number | null; afterWalk: boolean; secondsAfterLoad: number };
	lost: string;
	/**
	 * The floor of a walk under the same load: right after the sample (atS) that first saw a walk of
	 * top's during the load (past its first; that walk's time is the sample's walkMs), the fastest of
	 * FLOOR_WALKS empty walks of the same namespaces (bench/walk-floor.ts); null when top read no walk
	 * during the load.
	 */
	floorWalk?: (FloorWalk & { atS: number }) | null;
}

/** The kind of top's last pass, from top --json's walks. */
function walkKindOf(walks: { lastOpenOnly?: number; lastTable?: number } | undefined): WalkKind | null {
	if (typeof walks?.lastOpenOnly !== 'number' || typeof walks.lastTable !== 'number') return null;
	return walks.lastOpenOnly === 0 ? 'table' : walks.lastTable === 0 ? 'open sockets' : 'both';
}

/** Empty walks timed, back to back, for the floor under load: the fastest is taken (the VM is noisy). */
const FLOOR_WALKS = 3;

/**
 * `top --json --walk-interval 5s` (its default) on a namespace pair at maximum churn for `seconds`.
 * A due walk is read only when the counts disagree, and at least every FORCE_WALK_EVERY intervals
 * (src/pipeline/walk-plan.ts): 50 s, so that one comes while the load's TIME_WAIT is still held.
 */
export async function measureSteady(seconds: number, load: LoadOptions): Promise<SteadyResult> {
	const pair = pairWithRoom();
	const memoryDir = fs.mkdtempSync(path.join(os.tmpdir(), 'twtrace-steady-'));
	const memoryFile = path.join(memoryDir, 'memory.json');
	try {
		const top = track(spawn(process.execPath, ['--import', INSPECT_HOOK, cli, 'top', '--json', '--interval', '1s', '--walk-interval', `${WALK_INTERVAL_S}s`, '--netns', `/run/netns/${pair.client}`, '--netns', `/run/netns/${pair.server}`], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BENCH_MEMORY: memoryFile } }));
		let last: Record<string, any> | undefined;
		let partial = '';
		let stderr = '';
		top.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
		top.stdout!.on('data', (d: Buffer) => {
			const lines = (partial + d.toString()).split('\n');
			partial = lines.pop()!;
			if (lines.length) last = JSON.parse(lines[lines.length - 1]!) as Record<string, any>;
		});
		await waitForLine(top, 'stderr', /Ctrl-C to stop/, 30_000);
		const clientNetns = pair.clientInode;
		const topCount = () => (last?.namespaces as { netns: number; timeWait: number }[] | undefined)?.find((n) => n.netns === clientNetns)?.timeWait ?? 0;
		const loadRun = await startLoad(pair, load, seconds, 0);
		const samples: SteadySample[] = [];
		const t0 = Date.now();
		let floorWalk: SteadyResult['floorWalk'] = null;
		while (loadRun.running() && Date.now() - t0 < (seconds + 30) * 1000) {
			await sleep(5000);
			samples.push({
				atS: Math.round((Date.now() - t0) / 1000),
				rssMiB: rssMiB(top.pid!) ?? 0,
				timeWaitKernel: timeWaitSockets(pair.client),
				timeWaitTop: topCount(),
				walkMs: last?.walks?.lastMs ?? null,
				walks: last?.walks?.completed ?? 0,
				walkSplit: typeof last?.walks?.lastReadMs === 'number' ? { readMs: last.walks.lastReadMs, drainMs: last.walks.lastDrainMs, handleMs: last.walks.lastHandleMs } : null,
				walkKind: walkKindOf(last?.walks),
				memory: readMemory(memoryFile),
			});
			const sample = samples[samples.length - 1]!;
			if (!floorWalk && sample.walks > 1 && sample.walkMs !== null && loadRun.running()) floorWalk = { ...timeFloorWalks(pair), atS: sample.atS };
		}
		const churn = await loadRun.result();
		// The next walk after the load, then the first snapshot after it, against the kernel right then.
		const loadEnded = Date.now();
		const walksBefore = last?.walks?.completed ?? 0;
		const deadline = loadEnded + (FORCE_WALK_EVERY * WALK_INTERVAL_S + 15) * 1000;
		while ((last?.walks?.completed ?? 0) <= walksBefore && Date.now() < deadline) await sleep(100);
		const afterWalk = (last?.walks?.completed ?? 0) > walksBefore;
		const snapshotAfter = last;
		while (last === snapshotAfter && Date.now() < deadline + 5000) await sleep(20);
		const final = { top: topCount(), kernel: timeWaitSockets(pair.client), walkMs: last?.walks?.lastMs ?? null, afterWalk, secondsAfterLoad: Math.round((Date.now() - loadEnded) / 1000) };
		const peak = peakRssMiB(top.pid!) ?? 0;
		await stop(top, 'SIGINT');
		return { seconds, connPerSec: churn.perSecond, samples, peakRssMiB: peak, final, floorWalk, lost: stderr.split('\n').find((l) => / lost \(/.test(l))?.replace(/^twtrace: /, '') ?? stderr.slice(-200) };
	} finally {
		pair.remove();
		fs.rmSync(memoryDir, { recursive: true, force: true });
	}
}

/** FLOOR_WALKS empty walks of the pair's namespaces (top walks both), the fastest; blocks the event loop meanwhile. */
function timeFloorWalks(pair: NetnsPair): FloorWalk {
	const floor = new WalkFloor();
	try {
		const walks = Array.from({ length: FLOOR_WALKS }, () => floor.walk([`/run/netns/${pair.client}`, `/run/netns/${pair.server}`]));
		return walks.reduce((a, b) => (b.ms < a.ms ? b : a));
	} finally {
		floor.close();
	}
}

/**
 * Every 10 s of the soak; heapMiB: V8's committed heap from serve's latest scrape (nodejs_heap_size_total_bytes);
 * recorderMiB: what its flight recorder holds (its /v1/info; null when it did not answer); oldSpaceUsedMiB and
 * oldSpaceMiB: V8's old space in use and committed (nodejs_heap_space_size_*_bytes{space="old_space"});
 * walksRead/walksSkipped: serve's twtrace_socket_walks_total and _skipped_total in the latest scrape (null before one).
 */
export interface SoakSample { atS: number; rssMiB: number; heapMiB: number | null; recorderMiB?: number | null; oldSpaceUsedMiB?: number | null; oldSpaceMiB?: number | null; cpuPct: number; timeWaitKernel: number; walksRead: number | null; walksSkipped: number | null }

export interface SoakResult {
	seconds: number;
	rate: number;
	connPerSec: number;
	samples: SoakSample[];
	peakRssMiB: number;
	cpuPctMean: number;
	scrapes: number;
	scrapeFailures: number;
	slowestScrapeMs: number;
	/**
	 * Scrapes over SLOW_SCRAPE_MS: when (s into the load), how long, whether serve read a walk since the
	 * scrape before, and how long it took inside serve (twtrace_scrape_duration_seconds of the scrape after it).
	 */
	slowScrapes: { atS: number; ms: number; walkRead: boolean; insideMs?: number | null }[];
	lost: string;
	/** ISO time it started, and the commit it measured. */
	at: string;
	commit: string;
}

/** The soak's target for a scrape, ms: those slower are listed. */
export const SLOW_SCRAPE_MS = 50;

/** `serve` as deployed (no filters), scraped every 2 s, at `rate` connections/s for `seconds`. */
export async function measureSoak(seconds: number, rate: number, load: LoadOptions, commit: string): Promise<SoakResult> {
	const at = new Date().toISOString();
	const pair = pairWithRoom();
	// The agent as deployed (API, flight recorder), on a socket of its own: a real agent may run.
	const socketDir = fs.mkdtempSync(path.join(os.tmpdir(), 'twtrace-soak-'));
	try {
		const agentSocket = path.join(socketDir, 'agent.sock');
		const serve = track(spawn(process.execPath, [cli, 'serve', '--listen', '127.0.0.1:0', '--agent-socket', agentSocket], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] }));
		let stderr = '';
		serve.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
		const ready = await waitForLine(serve, 'stderr', /serving metrics on (\S+)\/metrics/, 30_000);
		const url = /serving metrics on (\S+)\/metrics/.exec(ready)![1]!;
		let scrapes = 0;
		let failures = 0;
		let slowestMs = 0;
		const slowScrapes: SoakResult['slowScrapes'] = [];
		let awaitingInside: SoakResult['slowScrapes'][number] | undefined;
		let lastScrape = '';
		let t0 = Date.now();
		/** The value of `series` (a name, with its labels as exposed) in the latest scrape. */
		const counter = (series: string) => {
			const m = new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(lastScrape);
			return m ? Number(m[1]) : null;
		};
		const oldSpaceMiB = (which: 'used' | 'total') => {
			const bytes = counter(`nodejs_heap_space_size_${which}_bytes{space="old_space"}`);
			return bytes === null ? null : bytes / 2 ** 20;
		};
		const scraper = setInterval(() => {
			const started = Date.now();
			scrapes++;
			void fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.text()).then((text) => {
				const ms = Date.now() - started;
				const walks = (s: string) => /^twtrace_socket_walks_total (\S+)$/m.exec(s)?.[1];
				// Each scrape says how long the one before took inside serve: the slow one's, if it was the one before.
				const inside = /^twtrace_scrape_duration_seconds (\S+)$/m.exec(text)?.[1];
				if (awaitingInside) awaitingInside.insideMs = inside === undefined ? null : Number(inside) * 1000;
				awaitingInside = undefined;
				if (ms > SLOW_SCRAPE_MS) slowScrapes.push(awaitingInside = { atS: Math.round((started - t0) / 1000), ms, walkRead: walks(text) !== walks(lastScrape), insideMs: null });
				lastScrape = text;
				slowestMs = Math.max(slowestMs, ms);
			}, () => failures++);
		}, 2000);
		const loadRun = await startLoad(pair, load, seconds, rate);
		const samples: SoakSample[] = [];
		t0 = Date.now();
		let cpuPrev = cpuSeconds(serve.pid!) ?? 0;
		let atPrev = t0;
		while (loadRun.running() && Date.now() - t0 < (seconds + 30) * 1000) {
			await sleep(10_000);
			const cpu = cpuSeconds(serve.pid!) ?? cpuPrev;
			const now = Date.now();
			const heap = counter('nodejs_heap_size_total_bytes');
			const agent = await AgentClient.find(agentSocket).catch(() => undefined);
			samples.push({ atS: Math.round((now - t0) / 1000), rssMiB: rssMiB(serve.pid!) ?? 0, heapMiB: heap === null ? null : heap / 2 ** 20,
				recorderMiB: agent?.client ? agent.info.recorder.bytes / 2 ** 20 : null,
				oldSpaceUsedMiB: oldSpaceMiB('used'), oldSpaceMiB: oldSpaceMiB('total'),
				cpuPct: (100 * (cpu - cpuPrev)) / ((now - atPrev) / 1000), timeWaitKernel: await timeWaitSocketsAsync(pair.client),
				walksRead: counter('twtrace_socket_walks_total'), walksSkipped: counter('twtrace_socket_walks_skipped_total') });
			[cpuPrev, atPrev] = [cpu, now];
		}
		clearInterval(scraper);
		const churn = await loadRun.result();
		const peak = peakRssMiB(serve.pid!) ?? 0;
		await stop(serve, 'SIGTERM');
		const busy = samples.filter((s) => s.atS <= seconds);
		return {
			seconds, rate, connPerSec: churn.perSecond, samples, peakRssMiB: peak,
			cpuPctMean: busy.reduce((a, s) => a + s.cpuPct, 0) / Math.max(1, busy.length),
			scrapes, scrapeFailures: failures, slowestScrapeMs: slowestMs, slowScrapes, at, commit,
			lost: stderr.split('\n').find((l) => / lost \(/.test(l))?.replace(/^twtrace: /, '') ?? stderr.slice(-200),
		};
	} finally {
		pair.remove();
		fs.rmSync(socketDir, { recursive: true, force: true });
	}
}
