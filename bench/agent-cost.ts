/**
 * What the always-on agent costs, side by side with the agent a fleet already runs everywhere:
 * `twtrace serve` as deployed (the agent API and the flight recorder on, no filters) and Debian's
 * prometheus-node-exporter, both scraped every second, while a client closing first churns across
 * veth between two namespaces at 10, 1,000 and as many connections/s as it can. CPU is user +
 * system time over two windows of the same run: the first after a short warm-up (serve's start, while
 * V8 still compiles its hot functions: at 10 connections/s they run in the baseline tier for the first
 * minute, bench/profile.ts --rate 10), and a steady one later (an always-on agent's cost, which the
 * targets judge; at full churn also the first with a whole TIME_WAIT length of sockets held). RSS is
 * the peak (VmHWM); at full churn the
 * workload's slowdown is against a run without serve in the same round. Loads and runs are
 * interleaved round by round; the table reports min and median.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { track, waitForLine } from '../testbed/children.js';
import type { NetnsPair } from '../testbed/netns.js';
import { AgentClient } from '../src/agent/client.js';
import { cpuSeconds, peakRssMiB, rssSplitMiB, waitQuiet, type RssSplit } from './proc.js';
import { pairWithRoom, startLoad, type LoadOptions } from './steady.js';
import { root } from './tracers.js';

const cli = path.join(root, 'dist/src/cli.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Connections per second of each load; 0: as fast as the client can. */
export const AGENT_LOADS = [10, 1000, 0] as const;

export interface AgentCostRun {
	/** Asked for (0: full). */
	rate: number;
	round: number;
	connPerSec: number;
	/** CPU % of a core over the steady window (AgentCostTiming.steadyAtS), or the first one without it. */
	serveCpuPct: number;
	servePeakRssMiB: number;
	exporterCpuPct: number;
	/** With a steady window: CPU over the first window, after the warm-up (serve's start). */
	first?: { serveCpuPct: number; exporterCpuPct: number };
	exporterPeakRssMiB: number;
	/** The slowest of serve's scrapes after the warm-up, ms. */
	slowestScrapeMs: number;
	/** serve's closing line: what it lost. */
	lost: string;
	/** serve's RSS at the end of the run by kind, and what its flight recorder held then. */
	rssAtEnd?: ServeRss;
}

/** serve's RSS by kind (bench/proc.ts), with its flight recorder's bytes and bound (its /v1/info). */
export type ServeRss = RssSplit & { recorderMiB: number; recorderMaxMiB: number; recorderKeeps: 'counts' | 'records' };

export interface BaselineRun { round: number; connPerSec: number }

/** When a run's CPU is measured, seconds from its start. */
export interface AgentCostTiming {
	/** The first window starts after this. */
	warmS: number;
	windowS: number;
	/** The steady window starts this long after the start (≥ warmS + windowS); none without it. */
	steadyAtS?: number;
}

/** How long a run's load lasts: to the end of its last window, and a little. */
export function runSeconds(t: AgentCostTiming): number {
	return (t.steadyAtS ?? t.warmS) + t.windowS + 2;
}

/** A process scraped every second until stopped: the slowest scrape it answered, ms. */
export function scrapeEverySecond(url: string): { stop(): void; slowestMs(): number; resetSlowest(): void } {
	let slowest = 0;
	const timer = setInterval(() => {
		const started = Date.now();
		void fetch(url, { signal: AbortSignal.timeout(10_000) }).then((r) => r.text()).then(() => (slowest = Math.max(slowest, Date.now() - started)), () => undefined);
	}, 1000);
	return { stop: () => clearInterval(timer), slowestMs: () => slowest, resetSlowest: () => (slowest = 0) };
}

export async function stopChild(child: ChildProcess): Promise<void> {
	if (child.exitCode !== null || child.signalCode !== null) return;
	const closed = once(child, 'close');
	child.kill('SIGTERM');
	const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
	await closed;
	clearTimeout(timer);
}

/** Debian's node_exporter on a port of its own, with its default collectors. */
async function startNodeExporter(): Promise<{ child: ChildProcess; url: string }> {
	const port = 19100 + Math.floor(Math.random() * 500);
	const child = track(spawn('prometheus-node-exporter', [`--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] }));
	await waitForLine(child, 'stderr', /Listening on|listening/i, 20_000);
	return { child, url: `http://127.0.0.1:${port}/metrics` };
}

/**
 * serve as deployed: no filters, the agent API on a socket of its own, the flight recorder on.
 * `nodeArgs` and `env`: for bench/profile.ts, which loads its profiler hook into serve this way;
 * `cliPath`: for bench/ab.ts, which runs another checkout's build beside this one's.
 */
export async function startServe(nodeArgs: string[] = [], env: NodeJS.ProcessEnv = process.env, cliPath = cli): Promise<{ child: ChildProcess; url: string; stderr: () => string; socketDir: string }> {
	const socketDir = fs.mkdtempSync(path.join(os.tmpdir(), 'twtrace-cost-'));
	const child = track(spawn(process.execPath, [...nodeArgs, cliPath, 'serve', '--listen', '127.0.0.1:0', '--agent-socket', path.join(socketDir, 'agent.sock')], { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] }));
	let stderr = '';
	child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
	const ready = await waitForLine(child, 'stderr', /serving metrics on (\S+)\/metrics/, 30_000);
	return { child, url: `${/serving metrics on (\S+)\/metrics/.exec(ready)![1]!}/metrics`, stderr: () => stderr, socketDir };
}

/** CPU % of a core of `pid` over `ms` from now. */
async function cpuOver(pids: number[], ms: number): Promise<number[]> {
	const before = pids.map((p) => cpuSeconds(p) ?? 0);
	await sleep(ms);
	return pids.map((p, i) => (100 * ((cpuSeconds(p) ?? before[i]!) - before[i]!)) / (ms / 1000));
}

/**
 * One run of serve and node_exporter at `rate` (0: full): `warmS` to settle, then `windowS` measured,
 * and again from `steadyAtS` if given. `cliPath`: another checkout's build (bench/ab.ts).
 */
export async function measureAgentCost(rate: number, round: number, load: LoadOptions, timing: AgentCostTiming, cliPath?: string): Promise<AgentCostRun> {
	const { warmS, windowS, steadyAtS } = timing;
	if (steadyAtS !== undefined && steadyAtS < warmS + windowS) throw new Error(`the steady window (from ${steadyAtS} s) must start after the first (${warmS}–${warmS + windowS} s)`);
	const pair: NetnsPair = pairWithRoom();
	let serve: Awaited<ReturnType<typeof startServe>> | undefined;
	let exporter: Awaited<ReturnType<typeof startNodeExporter>> | undefined;
	try {
		await waitQuiet();
		serve = await startServe([], process.env, cliPath);
		exporter = await startNodeExporter();
		const scrapes = [scrapeEverySecond(serve.url), scrapeEverySecond(exporter.url)];
		const run = await startLoad(pair, load, runSeconds(timing), rate);
		await sleep(warmS * 1000);
		scrapes[0]!.resetSlowest();
		const pids = [serve.child.pid!, exporter.child.pid!];
		const [firstServe, firstExporter] = await cpuOver(pids, windowS * 1000);
		let [serveCpu, exporterCpu] = [firstServe, firstExporter];
		if (steadyAtS !== undefined) {
			await sleep((steadyAtS - warmS - windowS) * 1000);
			[serveCpu, exporterCpu] = await cpuOver(pids, windowS * 1000);
		}
		const slowest = scrapes[0]!.slowestMs();
		const rssAtEnd = await rssAndRecorder(serve.child.pid!, path.join(serve.socketDir, 'agent.sock'));
		for (const s of scrapes) s.stop();
		const churn = await run.result();
		const servePeak = peakRssMiB(serve.child.pid!) ?? 0;
		const exporterPeak = peakRssMiB(exporter.child.pid!) ?? 0;
		await stopChild(serve.child);
		await stopChild(exporter.child);
		return {
			rate, round, connPerSec: churn.perSecond, serveCpuPct: serveCpu!, servePeakRssMiB: servePeak, exporterCpuPct: exporterCpu!, exporterPeakRssMiB: exporterPeak,
			...(steadyAtS !== undefined ? { first: { serveCpuPct: firstServe!, exporterCpuPct: firstExporter! } } : {}),
			...(rssAtEnd ? { rssAtEnd } : {}),
			slowestScrapeMs: slowest, lost: serve.stderr().split('\n').find((l) => / lost \(/.test(l))?.replace(/^twtrace: /, '') ?? '',
		};
	} finally {
		if (serve) {
			await stopChild(serve.child);
			fs.rmSync(serve.socketDir, { recursive: true, force: true });
		}
		if (exporter) await stopChild(exporter.child);
		pair.remove();
	}
}

/** serve's RSS by kind now, and the bytes its flight recorder holds (its /v1/info); undefined if either is not to be had. */
async function rssAndRecorder(pid: number, agentSocket: string): Promise<ServeRss | undefined> {
	const split = rssSplitMiB(pid);
	const agent = await AgentClient.find(agentSocket).catch(() => undefined);
	if (!split || !agent?.client) return undefined;
	const r = agent.info.recorder;
	return { ...split, recorderMiB: r.bytes / 2 ** 20, recorderMaxMiB: r.maxBytes / 2 ** 20, recorderKeeps: r.keeps ?? 'records' };
}

/** The workload alone at full churn, for the slowdown (same duration as a run's window). */
export async function measureBaseline(round: number, load: LoadOptions, windowS: number): Promise<BaselineRun> {
	const pair = pairWithRoom();
	try {
		await waitQuiet();
		const run = await startLoad(pair, load, windowS, 0);
		const churn = await run.result();
		return { round, connPerSec: churn.perSecond };
	} finally {
		pair.remove();
	}
}
