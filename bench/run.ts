/**
 * `npm run bench`: the measured cost of tracing at maximum connection churn, twtrace side by side with
 * bpftrace, and the cost of the seed method (netstat | grep | wc, ss) at 10k–250k TIME_WAIT sockets.
 * Prints the tables and writes them, with the machine and the exact commands, to bench/RESULTS.md.
 *
 *   sudo npm run bench [-- --rounds 3 --duration 8 --threads 2 --ports 16 --out bench/RESULTS.md]
 *                      [--steady 90] [--cost 30] [--profile 20] [--pieces 6] [--soak 1800 --soak-rate 15000] [--only MODE,MODE]
 *   sudo npm run bench:soak        the soak alone: rewrites the soak section of bench/RESULTS.md
 *
 * --steady S: top --json for S s at maximum churn holding over a million TIME_WAIT sockets (0: skip).
 * --cost S: serve as deployed beside node_exporter, both scraped every second, at 10, 1,000 and full
 *   churn: CPU over S s from 90 s after serve's start (steady; the targets) and over S s after a 15 s
 *   warm-up (serve's start), each load once a round, and serve's RSS by kind at the end (0: skip).
 * --profile S: serve as deployed, top --json and trace --json, each at full churn under V8's CPU profiler
 *   for S s, and serve at 1,000 connections/s from 90 s after its start (the cost table's steady window):
 *   where their time goes (bench/profile.ts; 0: skip).
 * --pieces S: each piece of twtrace's primary BPF program alone on the tracepoint, kernel-timed, S s a
 *   run at 20,000 connections/s, --rounds rounds (bench/bpf-pieces.ts; 0: skip).
 * --soak S: serve as deployed scraped every 2 s for S s at --soak-rate connections/s (0: keep the soak
 *   section the --out file has, made by an earlier run, which says when and at which commit).
 * --only: some modes only (the baseline always runs), for a quick look; not for RESULTS.md.
 *
 * Each measurement gets a fresh pair of network namespaces joined by veth (the client at 10.200.0.1,
 * the server at 10.200.0.2), so TIME_WAIT sockets from one run never weigh on the next, and nothing
 * leaves them. Modes are interleaved round by round, after waiting for the machine to be quiet.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createPair, type NetnsPair } from '../testbed/netns.js';
import { churnBin, runChurnClient, startChurnServer, stopChurnServer } from '../testbed/churn.js';
import { cpuSeconds, machineInfo, peakRssMiB, timeWaitSockets, waitQuiet } from './proc.js';
import { MODES, root, type Mode, type TracerOutcome } from './tracers.js';
import { programRuns, runsBetween, runTimeStats, type ProgramRuns } from './bpf-stats.js';
import { median, unaccountedTimeWait } from './stats.js';
import { measurePieces, pieceRows, type PiecesResult } from './bpf-pieces.js';
import { measureSoak, measureSteady, SLOW_SCRAPE_MS, type SoakResult, type SoakSample, type SteadyResult, type SteadySample } from './steady.js';
import { COLUMN_BYTES_PER_SLOT } from '../src/model/time-wait.js';
import { SOCK_SIZE } from '../src/event/layout.generated.js';
import { measureProfile, PER_EVENT_AREA, PROFILED, profileTables, type ProfileResult, type ProfiledCommand } from './profile.js';
import { AGENT_LOADS, measureAgentCost, measureBaseline, runSeconds, type AgentCostRun, type AgentCostTiming, type BaselineRun } from './agent-cost.js';
import { exitOnSignals } from '../testbed/children.js';

const { values: opts } = parseArgs({
	options: {
		rounds: { type: 'string', default: '3' },
		duration: { type: 'string', default: '8' },
		threads: { type: 'string', default: '2' },
		ports: { type: 'string', default: '16' },
		sizes: { type: 'string', default: '10000,100000,250000' },
		only: { type: 'string' },
		steady: { type: 'string', default: '90' },
		soak: { type: 'string', default: '1800' },
		'soak-only': { type: 'boolean', default: false },
		cost: { type: 'string', default: '30' },
		profile: { type: 'string', default: '20' },
		pieces: { type: 'string', default: '6' },
		'soak-rate': { type: 'string', default: '15000' },
		out: { type: 'string', default: 'bench/RESULTS.md' },
		help: { type: 'boolean', short: 'h', default: false },
	},
});
if (opts.help) {
	console.log(fs.readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*?|^ \* ?/gm, ''));
	process.exit(0);
}
const rounds = positiveInt('rounds', 1); // RESULTS.md is published from 3 or more (the default)
const durationS = positiveInt('duration', 1);
const threads = positiveInt('threads', 1);
const ports = positiveInt('ports', 1);
const sizes = opts.sizes.split(',').map(Number);
const steadyS = Number(opts.steady);
const soakS = Number(opts.soak);
const costS = Number(opts.cost);
const profileS = Number(opts.profile);
const piecesS = Number(opts.pieces);
/** Before each agent-cost run: the load runs this long before serve's CPU is measured. */
const COST_WARM_S = 15;
/** The agent's steady window starts this long after serve (bench/agent-cost.ts: its first minute is serve's start). */
const COST_STEADY_AT_S = 90;
const soakRate = Number(opts['soak-rate']);
if (![steadyS, soakS, costS, profileS, piecesS].every((n) => Number.isInteger(n) && n >= 0 && n <= 7200)) fail('--steady, --soak, --cost, --profile, --pieces: whole seconds, 0 to 7200');
if (!Number.isInteger(soakRate) || soakRate < 1 || soakRate > 1_000_000) fail('--soak-rate: connections per second, 1 to 1,000,000');
if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 1_000_000)) fail('--sizes: whole numbers of sockets, 1 to 1,000,000');

const MODE_ARG = 'client-close'; // TIME_WAIT on the client: the ephemeral-port exhaustion case
const SERVER_PORT = 8000;
/** The load of the churn table and the seed method (ports and threads from the options). */
const LOAD = { port: SERVER_PORT, ports, threads, mode: MODE_ARG };

function fail(message: string): never {
	console.error(`bench: ${message}`);
	process.exit(2);
}

function positiveInt(name: 'rounds' | 'duration' | 'threads' | 'ports', min: number): number {
	const n = Number(opts[name]);
	if (!Number.isInteger(n) || n < min || n > 3600) fail(`--${name}: a whole number from ${min}`);
	return n;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


function preparePair(): NetnsPair {
	const pair = createPair();
	try {
		// A wide port range and room for every TIME_WAIT socket (a new namespace allows 131072, and
		// silently skips the rest): the workload must not run out of ports within a run.
		pair.sysctl(pair.client, 'net.ipv4.ip_local_port_range', '1024 65535');
		for (const ns of [pair.client, pair.server]) pair.sysctl(ns, 'net.ipv4.tcp_max_tw_buckets', '2000000');
	} catch (error) {
		pair.remove();
		throw error;
	}
	return pair;
}

interface Measurement {
	mode: string;
	round: number;
	connPerSec: number;
	tracerCpuPct?: number;
	consumerCpuPct?: number;
	eventsPerSec?: number;
	lost?: number;
	rssMiB?: number;
	timeWait: number;
	/** TIME_WAIT entries the tracer reported, ÷ timewait sockets in the client namespace (sockstat). */
	seen?: number;
	/** TIME_WAIT entries the tracer attributed to the churn client's pid, ÷ the same. */
	accuracy?: number;
	/** Ground truth: connections the churn client completed (client closes first: one TIME_WAIT each). */
	completed: number;
	/** TIME_WAIT entries the tracer delivered (events, or entries counted). */
	delivered?: number;
	/** What the tracer missed without saying so, or counted beyond the truth (unaccountedTimeWait). */
	unaccounted?: number;
	idleBefore: number;
	errors: Record<string, number>;
	note?: string;
	/** Run-timed modes: what each BPF program of the tracer ran during the churn (bench/bpf-stats.ts). */
	programRuns?: ProgramRuns[];
}

async function measure(mode: Mode, round: number): Promise<Measurement> {
	const pair = preparePair();
	let statsOff: (() => void) | undefined;
	try {
		const idleBefore = await waitQuiet();
		statsOff = mode.runTimed ? runTimeStats() : undefined;
		const tracer = mode.start ? await mode.start(pair) : undefined;
		const server = await startChurnServer(pair, LOAD, durationS + 30);
		const cpu0 = tracer && cpuSeconds(tracer.pid);
		const consumer0 = tracer?.consumerPid && cpuSeconds(tracer.consumerPid);
		const runs0 = statsOff && tracer && programRuns(tracer.pid);
		const churn = await runChurnClient(pair, LOAD, durationS);
		const runs1 = statsOff && tracer && programRuns(tracer.pid);
		const cpu1 = tracer && cpuSeconds(tracer.pid);
		const consumer1 = tracer?.consumerPid && cpuSeconds(tracer.consumerPid);
		const rssMiB = tracer && peakRssMiB(tracer.pid);
		await stopChurnServer(server);
		await sleep(300); // the last FIN/ACKs, and one more drain by the tracer
		const timeWait = timeWaitSockets(pair.client);
		const outcome: TracerOutcome = tracer ? await tracer.stop() : {};
		const pct = (a?: number | '' | 0, b?: number | '' | 0) => (typeof a === 'number' && typeof b === 'number' ? (100 * (b - a)) / churn.seconds : undefined);
		return {
			mode: mode.name,
			round,
			connPerSec: churn.perSecond,
			tracerCpuPct: pct(cpu0, cpu1),
			consumerCpuPct: pct(consumer0, consumer1),
			eventsPerSec: outcome.events === undefined ? undefined : outcome.events / churn.seconds,
			lost: outcome.lost,
			rssMiB,
			timeWait,
			...attribution(outcome, churn.pid, timeWait),
			completed: churn.connections,
			delivered: outcome.timeWaitDelivered,
			unaccounted: outcome.timeWaitDelivered === undefined ? undefined : unaccountedTimeWait(churn.connections, outcome.timeWaitDelivered, outcome.lost ?? 0),
			idleBefore,
			errors: churn.errors,
			note: outcome.note,
			programRuns: runs0 && runs1 ? runsBetween(runs0, runs1) : undefined,
		};
	} finally {
		statsOff?.();
		pair.remove();
	}
}

/** What a tracer said about the TIME_WAIT sockets, relative to what the kernel holds. */
function attribution(outcome: TracerOutcome, churnPid: number, timeWait: number): { seen?: number; accuracy?: number } {
	// By pid, or by comm for serve: client and server are both bench/churn, and only the client holds TIME_WAIT here.
	const [by, key] = outcome.timeWaitByComm ? [outcome.timeWaitByComm, 'churn'] : [outcome.timeWaitByPid, String(churnPid)];
	if (!by || timeWait === 0) return {};
	const seen = Object.values(by).reduce((a, b) => a + b, 0);
	return { seen: seen / timeWait, accuracy: (by[key] ?? 0) / timeWait };
}

interface SeedMeasurement {
	sockets: number;
	timeWait: number;
	tools: { name: string; command: string; wallMs: number[]; cpuMs: number[]; answer: string }[];
	twtraceCpuMs?: number;
	twtrace: { seen?: number; accuracy?: number };
	twtraceLost?: number;
}

/** Wall and CPU time of a shell pipeline run inside a namespace (bash's `time`, children included). */
function timeShell(netns: string, pipeline: string): { wallMs: number; cpuMs: number; answer: string } {
	const r = spawnSync('ip', ['netns', 'exec', netns, 'bash', '-c', `TIMEFORMAT='%3R %3U %3S'; time (${pipeline})`], { encoding: 'utf8' });
	const [wall, user, sys] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number) as [number, number, number];
	return { wallMs: wall * 1000, cpuMs: (user + sys) * 1000, answer: r.stdout.trim() };
}

async function measureSeed(sockets: number): Promise<SeedMeasurement> {
	const pair = preparePair();
	try {
		await waitQuiet();
		const twtraceMode = MODES.find((m) => m.name === 'twtrace trace --kind time_wait')!;
		const tracer = await twtraceMode.start!(pair);
		const server = await startChurnServer(pair, LOAD, 120);
		const cpu0 = cpuSeconds(tracer.pid);
		const churn = await runChurnClient(pair, LOAD, 60, sockets);
		await stopChurnServer(server);
		await sleep(300);
		const cpu1 = cpuSeconds(tracer.pid);
		const outcome = await tracer.stop();
		const timeWait = timeWaitSockets(pair.client);
		const tools = [
			{ name: 'netstat', command: 'netstat -n | grep TIME_WAIT | wc -l', wallMs: [] as number[], cpuMs: [] as number[], answer: '' },
			{ name: 'ss', command: 'ss -tan state time-wait | wc -l', wallMs: [] as number[], cpuMs: [] as number[], answer: '' },
		];
		for (let i = 0; i < 3; i++) {
			for (const tool of tools) {
				const t = timeShell(pair.client, tool.command);
				tool.wallMs.push(t.wallMs);
				tool.cpuMs.push(t.cpuMs);
				tool.answer = t.answer;
			}
		}
		return {
			sockets,
			timeWait,
			tools,
			twtraceCpuMs: cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - cpu0) * 1000 : undefined,
			twtrace: attribution(outcome, churn.pid, timeWait),
			twtraceLost: outcome.lost,
		};
	} finally {
		pair.remove();
	}
}

function decoderBench(): string {
	return execFileSync(process.execPath, ['--import', 'tsx', 'bench/decode.ts'], { cwd: root, encoding: 'utf8' }).trim();
}

// ---- report ----

const fmt = (x: number | undefined, digits = 1) => (x === undefined || Number.isNaN(x) ? '–' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));
const fmtInt = (x: number | undefined) => (x === undefined ? '–' : Math.round(x).toLocaleString('en-US'));
const pctOf = (x: number | undefined) => (x === undefined ? '–' : `${(100 * x).toFixed(1)} %`);

interface ModeSummary {
	mode: Mode;
	runs: Measurement[];
	/** Per round: 1 - conn/s ÷ that round's baseline conn/s. */
	slowdowns: number[];
}

function summarise(all: Measurement[]): ModeSummary[] {
	const baseline = new Map(all.filter((m) => m.mode === MODES[0]!.name).map((m) => [m.round, m.connPerSec]));
	return MODES.map((mode) => {
		const runs = all.filter((m) => m.mode === mode.name);
		return { mode, runs, slowdowns: runs.map((m) => 1 - m.connPerSec / baseline.get(m.round)!) };
	});
}

function churnTable(summaries: ModeSummary[]): string {
	const values = (runs: Measurement[], key: keyof Measurement) => runs.map((m) => m[key]).filter((v): v is number => typeof v === 'number');
	const minMed = (xs: number[], f: (x: number) => string) => (xs.length ? `${f(Math.min(...xs))} / ${f(median(xs))}` : '–');
	const rows = summaries.map(({ mode, runs, slowdowns }) => {
		const lost = values(runs, 'lost');
		return [
			mode.name,
			minMed(values(runs, 'connPerSec'), fmtInt),
			mode.start ? `${(100 * median(slowdowns)).toFixed(1)} %` : '–',
			minMed(values(runs, 'tracerCpuPct'), (x) => fmt(x)),
			minMed(values(runs, 'consumerCpuPct'), (x) => fmt(x)),
			minMed(values(runs, 'eventsPerSec'), fmtInt),
			lost.length ? `${fmtInt(Math.max(...lost))} (${fmtInt(lost.reduce((a, b) => a + b, 0))})` : '–',
			values(runs, 'rssMiB').length ? fmtInt(Math.max(...values(runs, 'rssMiB'))) : '–',
			`${minMed(values(runs, 'seen'), pctOf)}; ${minMed(values(runs, 'accuracy'), pctOf)}`,
			groundTruth(runs),
		];
	});
	const header = ['mode', 'conn/s min / median', 'slowdown (median)', 'tracer CPU % of a core, min / median', 'consumer CPU %', 'events/s delivered', 'lost: worst run (all runs)', 'peak RSS MiB', 'TIME_WAIT seen; blamed on the churn client (÷ sockstat, min / median)', 'ground truth, each run: TIME_WAIT delivered + reported lost / connections completed (unaccounted)'];
	return markdownTable(header, rows);
}

/** Per run: delivered + lost / completed, and what neither covers (the generator is the witness). */
function groundTruth(runs: Measurement[]): string {
	const counted = runs.filter((m) => m.delivered !== undefined);
	if (counted.length === 0) return '–';
	return counted.map((m) => `${fmtInt(m.delivered! + (m.lost ?? 0))}/${fmtInt(m.completed)} (${fmtInt(m.unaccounted)})`).join('; ');
}

function markdownTable(header: string[], rows: string[][]): string {
	const cell = (text: string) => text.replaceAll('|', '\\|');
	return [`| ${header.map(cell).join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}

/** A run-timed mode's BPF program time per connection, medians over its runs, and each program's share. */
function programTimes(s: ModeSummary | undefined): { nsPerConnection: number; programs: string; byName: Map<string, { nsPerRun: number; runsPerConnection: number }> } | undefined {
	const runs = s?.runs.filter((m) => m.programRuns?.length && m.completed > 0) ?? [];
	if (!runs.length) return undefined;
	const names = [...new Set(runs.flatMap((m) => m.programRuns!.map((p) => p.name)))];
	const perRun = (name: string, f: (p: ProgramRuns, m: Measurement) => number) =>
		median(runs.map((m) => m.programRuns!.find((p) => p.name === name)).map((p, i) => (p ? f(p, runs[i]!) : 0)));
	const programs = names.map((name) => ({
		name,
		nsPerRun: perRun(name, (p) => p.ns / p.runs),
		runsPerConnection: perRun(name, (p, m) => p.runs / m.completed),
	})).sort((a, b) => b.nsPerRun * b.runsPerConnection - a.nsPerRun * a.runsPerConnection);
	return {
		nsPerConnection: median(runs.map((m) => m.programRuns!.reduce((sum, p) => sum + p.ns, 0) / m.completed)),
		programs: programs.map((p) => `\`${p.name}\` ${fmtInt(p.nsPerRun)} ns a run × ${p.runsPerConnection.toFixed(1)} runs a connection`).join('; '),
		byName: new Map(programs.map((p) => [p.name, p])),
	};
}

function targets(summaries: ModeSummary[], profiles: ProfileResult[], pieces: PiecesResult | undefined, cores: number): string {
	const lines: string[] = [];
	const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
	const med = (s: ModeSummary, key: keyof Measurement) => median(s.runs.map((m) => m[key]).filter((v): v is number => typeof v === 'number'));
	const floor = summaries.find((s) => s.mode.name.startsWith('floor'));
	const goals: Record<string, { slowdown: number; cpu?: number }> = {
		'twtrace trace --json': { slowdown: 0.10 },
		'twtrace top --json': { slowdown: 0.05, cpu: 5 },
		'twtrace serve (1 s scrapes)': { slowdown: 0.05, cpu: 5 },
	};
	for (const s of summaries.filter((x) => x.mode.name.startsWith('twtrace') && x.runs.length)) {
		const goal = goals[s.mode.name];
		const slowdown = median(s.slowdowns);
		const cpu = med(s, 'tracerCpuPct');
		const unaccounted = s.runs.map((m) => m.unaccounted).filter((v): v is number => v !== undefined);
		const parts = [`slowdown ${(100 * slowdown).toFixed(1)} %${goal ? ` (target ≤ ${100 * goal.slowdown} %: ${verdict(slowdown <= goal.slowdown)})` : ''}`];
		if (s.mode.name === 'twtrace, BPF side only' && floor?.runs.length) {
			const above = slowdown - median(floor.slowdowns);
			parts.push(`the floor (${floor.mode.name}) costs ${(100 * median(floor.slowdowns)).toFixed(1)} %, so twtrace's own BPF work is ${(100 * above).toFixed(1)} points above it (target ≤ 2 points: ${verdict(above <= 0.02)})`);
			const timed = programTimes(summaries.find((x) => x.mode.name === 'run-timed: twtrace, BPF side only'));
			const timedFloor = programTimes(summaries.find((x) => x.mode.name === 'run-timed: floor'));
			if (pieces) parts.push(`where the time goes and what would close it: "Where the BPF side's time goes, piece by piece" below`);
			if (timed && timedFloor) parts.push(`timed by the kernel (the run-timed rows, medians): twtrace's programs run ${fmtInt(timed.nsPerConnection)} ns per connection (${timed.programs}), the floor's ${fmtInt(timedFloor.nsPerConnection)} ns (${timedFloor.programs})`);
		}
		const bpfSide = summaries.find((x) => x.mode.name === 'twtrace, BPF side only');
		// The agent's BPF side: the witness on (BPF side only has it off), then counting on top of it.
		const witnessing = summaries.find((x) => x.mode.name === 'twtrace, BPF side witnessing');
		const under = s.mode.name === 'twtrace, BPF side witnessing' ? bpfSide : s.mode.name === 'twtrace, BPF side counting' ? witnessing : undefined;
		if (under?.slowdowns.length) {
			const what = under === bpfSide ? 'the witness of active closes (the `closing` map) adds' : 'counting in the kernel (docs/counting-in-the-kernel.md, step 1) adds';
			parts.push(`${what} ${(100 * (slowdown - median(under.slowdowns))).toFixed(1)} points to the slowdown of \`${under.mode.name}\``);
			const timed = programTimes(summaries.find((x) => x.mode.name === `run-timed: ${s.mode.name}`));
			const timedUnder = programTimes(summaries.find((x) => x.mode.name === `run-timed: ${under.mode.name}`));
			if (timed && timedUnder) parts.push(`timed by the kernel: ${fmtInt(timed.nsPerConnection)} ns per connection against ${fmtInt(timedUnder.nsPerConnection)}`);
		}
		if (goal?.cpu !== undefined) parts.push(`CPU ${cpu.toFixed(1)} % of a core (target ≤ ${goal.cpu} %: ${verdict(cpu <= goal.cpu)})`);
		const profile = profiles.find((p) => PROFILED_MODE[p.command] === s.mode.name);
		if (profile) parts.push(busiest(profile));
		if (s.mode.name === 'twtrace trace --json') {
			const events = med(s, 'eventsPerSec');
			if (events > 0) parts.push(`${fmt((cpu * 10_000) / events, 2)} µs of trace's CPU an event (${fmt(cpu)} % of a core over ${fmtInt(events)} events/s)`);
		}
		if (profile && bpfSide?.slowdowns.length && s !== bpfSide) {
			parts.push(`its slowdown above the BPF side alone ${(100 * (slowdown - median(bpfSide.slowdowns))).toFixed(1)} points, beside its CPU as a share of the machine's ${cores} cores ${fmt(cpu / cores)} %`);
		}
		if (unaccounted.length) parts.push(`TIME_WAIT missing by ground truth, neither delivered nor reported lost: ${unaccounted.join(', ')} (target 0 in every run: ${verdict(unaccounted.every((u) => u === 0))})`);
		lines.push(`- \`${s.mode.name}\`: ${parts.join('; ')}`);
	}
	return lines.join('\n');
}

/** What the steady state's targets are judged holding (issue 21: "holding 1.5M TIME_WAIT"). */
const STEADY_HOLD = 1_500_000;

/**
 * The steady state, run again (once) when the churn fell short of holding STEADY_HOLD: a timewait
 * socket lasts 60 s, so what top holds is about 60 s of the rate, which this VM's noise sometimes
 * keeps under it (19,938 connections/s at 9cf5c4d held 1.24M). The run that held more is kept.
 */
async function steadyHolding(seconds: number, load: Parameters<typeof measureSteady>[1]): Promise<SteadyResult> {
	const held = (r: SteadyResult) => Math.max(0, ...r.samples.map((x) => x.timeWaitKernel));
	const first = await measureSteady(seconds, load);
	if (held(first) >= STEADY_HOLD) return first;
	console.error(`  steady: held ${fmtInt(held(first))} TIME_WAIT at ${fmtInt(first.connPerSec)} conn/s, under ${fmtInt(STEADY_HOLD)}: once more`);
	const second = await measureSteady(seconds, load);
	return held(second) > held(first) ? second : first;
}

function steadySection(r: SteadyResult): string {
	const split = (x: SteadySample) => (x.walkSplit ? `${fmtInt(x.walkSplit.readMs)} / ${fmtInt(x.walkSplit.drainMs)} / ${fmtInt(x.walkSplit.handleMs)}` : '–');
	const rows = r.samples.map((x) => [String(x.atS), fmtInt(x.rssMiB), x.memory ? `${fmtInt(x.memory.heapUsedMiB)} / ${fmtInt(x.memory.arrayBuffersMiB)}` : '–',
		fmtInt(x.timeWaitKernel), fmtInt(x.timeWaitTop), x.walkMs === null ? '–' : `${fmtInt(x.walkMs)}${x.walkKind ? ` (${x.walkKind})` : ''}`, split(x), String(x.walks)]);
	const peakHeld = Math.max(0, ...r.samples.map((x) => x.timeWaitKernel));
	const diff = r.final.top - r.final.kernel;
	const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
	const walks = r.samples.map((x) => x.walkMs).filter((v): v is number => v !== null);
	const worstWalk = walks.length ? Math.max(...walks) : undefined;
	const worstKind = r.samples.find((x) => x.walkMs === worstWalk)?.walkKind;
	const kinds = new Set(r.samples.map((x) => x.walkKind).filter((k) => k));
	return `## Steady state: \`top --json\` holding ${fmtInt(peakHeld)} TIME_WAIT sockets

\`twtrace top --json --interval 1s --walk-interval 5s --netns CLIENT --netns SERVER\` (top's default interval) while the churn client runs ${r.seconds} s
at maximum rate (${fmtInt(r.connPerSec)} connections/s) to 64 destination ports, \`tcp_max_tw_buckets\` 4,000,000 in both namespaces. Every 5 s: top's
RSS, the TIME_WAIT sockets of the client namespace by the kernel (/proc/net/sockstat \`tw\`) and by top's latest snapshot,
how long top's last walk of the namespaces took (the event loop keeps running between its chunks), of which kind (walks of their tables,
or open-socket walks: the sockets processes hold and the closes in flight, no timewait socket visited, src/pipeline/open-walks.ts; top --json's
\`walks.lastOpenOnly\`, \`lastTable\`) and what that time went to
(top --json's \`walks.lastReadMs\`, \`lastDrainMs\`, \`lastHandleMs\`), and V8's heap in use and array buffers by
\`process.memoryUsage()\` (written each second by bench/inspect-hook.mjs, loaded into top with \`--import\`).

${markdownTable(['s', 'top RSS MiB', 'V8 heap used / array buffers MiB', 'TIME_WAIT (kernel)', 'TIME_WAIT (top)', 'last walk ms', 'of which reading the kernel / draining the ring / handling its sockets, ms', 'walks'], rows)}

- After the load: top's count in the first snapshot after ${r.final.afterWalk ? 'a walk' : '**no walk** (none was read in time)'}, ${r.final.secondsAfterLoad} s after the load ended, ${fmtInt(r.final.top)}, against the kernel's at that moment,
  ${fmtInt(r.final.kernel)} (${diff >= 0 ? '+' : ''}${fmtInt(diff)}, ${(100 * Math.abs(diff) / Math.max(1, r.final.kernel)).toFixed(2)} %); expiry in between follows the kernel's timer wheel.
- The count after a walk equals the kernel's (target: ${r.final.afterWalk ? verdict(diff === 0) : '**missed**: no walk to judge'}; the kernel ends its entries a timer-wheel bucket at a time, thousands at once, so a bucket's end
  between top's snapshot and the sockstat read after it would put them that many apart).
  top's model holds what entered since it started as the kernel's counts (docs/counting-in-the-kernel.md, step 4), each ending in the timer wheel's
  bucket its timer goes into (\`src/model/wheel.ts\`: the jiffies, CLOCK_MONOTONIC and CONFIG_HZ read once, kernel-facts §9), the kernel counting how many
  of a reading's entries went into odd buckets (a reading's second spans two at most).${diff === 0 ? '' : ` What is left: a FIN_WAIT2-substate entry is counted into the bucket
  of a 60 s timer armed at its entry, and the peer's FIN re-arms it for 60 s when it comes, with no tracepoint, a bucket later where the FIN
  comes after a bucket's edge; a recovered entry (the closing line's) is dated when found; within half a tick of a bucket's end the model may
  hold a bucket the kernel just ran; and a walk cannot correct counted entries (they have no cookies): step 6 (walks aggregated in the kernel) would.`}
- Peak RSS ${fmtInt(r.peakRssMiB)} MiB (target ≤ 128 MiB holding 1.5M: ${peakHeld >= STEADY_HOLD ? verdict(r.peakRssMiB <= 128) : `not judged: ${fmtInt(peakHeld)} held, under 1.5M; ${verdict(r.peakRssMiB <= 128)} at what it held`}); slowest walk ${worstWalk === undefined ? '–' : `${fmtInt(worstWalk)} ms${worstKind ? ` (${worstKind})` : ''}`}${kinds.size ? `; walks read: ${[...kinds].join(', ')}` : ''} (target ≤ 1,000 ms holding 1.5M: ${worstWalk === undefined ? '–' : peakHeld >= STEADY_HOLD ? verdict(worstWalk <= 1000) : `not judged: ${fmtInt(peakHeld)} held; ${verdict(worstWalk <= 1000)} at what it held`}).
- top's closing line: ${r.lost}
${steadyWhy(r, worstWalk)}
`;
}

/** Where the steady state's RSS and walk time go, from its own samples, and what would close the gaps. */
function steadyWhy(r: SteadyResult, worstWalkMs: number | undefined): string {
	const lines: string[] = [];
	const peak = r.samples.reduce<SteadySample | undefined>((a, x) => (x.memory && (!a || x.rssMiB > a.rssMiB) ? x : a), undefined);
	const first = r.samples.find((x) => x.memory && x.timeWaitTop > 0);
	if (peak?.memory && first && peak.timeWaitTop > 2 * first.timeWaitTop) {
		const m = peak.memory;
		// What a socket held costs in RSS: the rise from the first sample to the peak over the sockets added.
		const perSocketBytes = ((peak.rssMiB - first.rssMiB) * 2 ** 20) / (peak.timeWaitTop - first.timeWaitTop);
		const fixedMiB = peak.rssMiB - (peak.timeWaitTop * perSocketBytes) / 2 ** 20;
		const at1500k = fixedMiB + (1_500_000 * perSocketBytes) / 2 ** 20;
		const f = first.memory!;
		lines.push(`- Where the RSS goes: from ${fmtInt(first.rssMiB)} MiB holding ${fmtInt(first.timeWaitTop)} TIME_WAIT (at ${first.atS} s) to ${fmtInt(peak.rssMiB)} MiB holding ${fmtInt(peak.timeWaitTop)} (at ${peak.atS} s):
  ${fmtInt(perSocketBytes)} bytes of RSS a socket held. Over that rise V8's heap in use went from ${fmtInt(f.heapUsedMiB)} to ${fmtInt(m.heapUsedMiB)} MiB and array buffers from
  ${fmtInt(f.arrayBuffersMiB)} to ${fmtInt(m.arrayBuffersMiB)} MiB (reserved ahead, committed as touched). top's model holds what the kernel counted as a slot per key and
  reading of the counters, not per socket (docs/counting-in-the-kernel.md, step 4); only the sockets older than top, which walks find, take a
  slot each (${COLUMN_BYTES_PER_SLOT} bytes and its index). About ${fmtInt(fixedMiB)} MiB would remain holding none: V8's heap, Node and its libraries, libbpf and the
  kernel's BTF, the ring buffer's pages. At 1.5M sockets that is about ${fmtInt(at1500k)} MiB${at1500k <= 128 ? '.' : `: what would close it is finding what grows
  with the sockets held outside the model (a heap snapshot at two sizes: npm run bench:heap).`}`);
	}
	const worst = r.samples.filter((x) => x.walkSplit && x.walkMs === worstWalkMs)[0];
	if (worst?.walkSplit && worstWalkMs !== undefined) {
		const w = worst.walkSplit;
		const other = worstWalkMs - w.readMs - w.drainMs - w.handleMs;
		const reading = worst.walkKind === 'open sockets'
			? `reading the sockets every process holds (iter/task_file over every file of the host, dump_open_tcp) and the closes in flight (the closing map), none of the timewait sockets visited`
			: `reading the kernel's iterator (dump_tcp visiting every socket of both namespaces, and copying, ${SOCK_SIZE} bytes each, those the counts do not stand for: the timewait sockets armed before top started, open connections and listeners)`;
		lines.push(`- Where the slowest walk's ${fmtInt(worstWalkMs)} ms went (at ${worst.atS} s): ${fmtInt(w.readMs)} ms ${reading}, ${fmtInt(w.drainMs)} ms draining the ring before each chunk (its records, and the counters read, as they come),
  ${fmtInt(w.handleMs)} ms reconciling its sockets with the model in JavaScript, ${fmtInt(other)} ms the rest (opening each namespace's iterator, and other work between chunks: snapshots, upkeep).${worstWalkMs <= 1000 ? '' : `
  What would close it: the iterator still visits every socket, O(sockets held), to find the few it hands over (bpf_iter_tcp takes
  each hash bucket's sockets in a batch, holding each, and runs dump_tcp on each); a due walk is read only when the counts disagree,
  or every 10th (walk-plan.ts), so fewer full walks at that size would. Another table would not: timewait sockets live in the
  established table, and sock_diag's dump visits them as the iterator does (\`npm run bench:walks\`).`}`);
	}
	const f = r.floorWalk;
	const at = f && r.samples.find((x) => x.atS === f.atS);
	if (f && f.sockets > 0 && at?.walkMs) {
		const nsA = (ms: number, sockets: number) => fmtInt((ms * 1e6) / sockets);
		const topSockets = at.timeWaitKernel;
		const against = at.walkKind === 'open sockets'
			? `against top's open-socket walk of ${fmtInt(at.walkMs)} ms at that sample, which visited none of the client namespace's ${fmtInt(topSockets)} TIME_WAIT.`
			: `against top's ${nsA(at.walkMs, topSockets)} (its walk over the client namespace's ${fmtInt(topSockets)} TIME_WAIT at the sample).`;
		lines.push(`- The floor of any walk of the table under the same load: ${f.atS} s in, right after the sample that saw top's walk of ${fmtInt(at.walkMs)} ms, an iter/tcp program that
  copies nothing (bench/floor.bpf.c \`floor_walk\`, bench/walk-floor.ts) walked both namespaces in ${fmtInt(f.ms)} ms, ${fmtInt(f.sockets)} sockets visited (the fastest of 3):
  ${nsA(f.ms, f.sockets)} ns a socket, ${against}
  ${f.ms <= 1000 ? 'A walk that visits every socket can meet the target at this size.' : `Even the empty walk of the table takes over 1,000 ms: no walk that visits every socket meets the target at this size under this load${at.walkKind === 'open sockets' ? '; the open-socket walk does not visit them' : `; only
  a walk that does not visit the timewait sockets the counts stand for would (\`npm run bench:walks\` sets the same floor beside twtrace's walks, idle)`}.`}`);
	}
	return lines.length ? `${lines.join('\n')}\n` : '';
}

/** A soak sample with the old space read (an older serve exports no heap by space). */
const hasOldSpace = (x: SoakSample): x is SoakSample & { oldSpaceUsedMiB: number; oldSpaceMiB: number } => typeof x.oldSpaceUsedMiB === 'number' && typeof x.oldSpaceMiB === 'number';

function soakSection(r: SoakResult): string {
	const count = (v: number | null) => (v === null ? '–' : fmtInt(v));
	const orDash = (v: number | null | undefined, f: (v: number) => string) => (v === null || v === undefined ? '–' : f(v));
	const rows = r.samples.map((x) => [String(x.atS), fmtInt(x.rssMiB), orDash(x.heapMiB, fmtInt),
		hasOldSpace(x) ? `${fmt(x.oldSpaceUsedMiB, 1)} / ${fmt(x.oldSpaceMiB, 1)}` : '–',
		orDash(x.recorderMiB, (v) => fmt(v, 1)), fmt(x.cpuPct), fmtInt(x.timeWaitKernel), count(x.walksRead), count(x.walksSkipped)]);
	const firstMinute = r.samples.filter((x) => x.atS <= 60).map((x) => x.rssMiB);
	const after = r.samples.filter((x) => x.atS > 60 && x.atS <= r.seconds).map((x) => x.rssMiB);
	const rise = firstMinute.length && after.length ? Math.max(...after) - Math.max(...firstMinute) : undefined;
	// The same for V8's heap: how much of the rise is the heap's (the model's objects), how much is outside it.
	const heapOf = (xs: SoakSample[]) => xs.flatMap((x) => (x.heapMiB === null ? [] : [x.heapMiB]));
	const [heapFirst, heapAfter] = [heapOf(r.samples.filter((x) => x.atS <= 60)), heapOf(r.samples.filter((x) => x.atS > 60 && x.atS <= r.seconds))];
	const heapRise = rise !== undefined && heapFirst.length && heapAfter.length
		? `; V8's heap (committed) went from ${fmtInt(Math.max(...heapFirst))} MiB at most in the first minute to ${fmtInt(Math.max(...heapAfter))} MiB at most after it`
		: '';
	const recorderAt = (xs: SoakSample[]) => xs.flatMap((x) => (x.recorderMiB === null || x.recorderMiB === undefined ? [] : [x.recorderMiB])).at(-1);
	const [recorderFirst, recorderLast] = [recorderAt(r.samples.filter((x) => x.atS <= 60)), recorderAt(r.samples.filter((x) => x.atS <= r.seconds))];
	const recorderRise = recorderFirst !== undefined && recorderLast !== undefined
		? `; the flight recorder held ${fmt(recorderFirst, 1)} MiB after the first minute and ${fmt(recorderLast, 1)} MiB at the end` : '';
	// The old space between major collections: garbage that outlived the young generation piles up in it, and V8 keeps committed what it grew to.
	const olds = r.samples.filter((x) => x.atS > 60 && x.atS <= r.seconds).filter(hasOldSpace);
	const oldSpace = olds.length
		? `; V8's old space after the first minute held ${fmt(Math.min(...olds.map((x) => x.oldSpaceUsedMiB)), 1)} to ${fmt(Math.max(...olds.map((x) => x.oldSpaceUsedMiB)), 1)} MiB, committed up to ${fmt(Math.max(...olds.map((x) => x.oldSpaceMiB)), 1)} MiB`
		: '';
	const isFlat = rise !== undefined && rise <= 0.05 * Math.max(...firstMinute);
	const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
	return `## Soak: \`serve\` for ${r.seconds / 60} minutes, scraped every 2 s

Made by \`sudo npm run bench:soak\` (or with the rest by \`npm run bench\`) on ${r.at}, twtrace ${r.commit}.
\`twtrace serve --listen 127.0.0.1:0 --agent-socket TMP/agent.sock\` (as deployed: the agent API and the flight recorder on, no
filters), \`/metrics\` fetched every 2 s (10 s timeout), while the churn
client makes ${fmtInt(r.rate)} connections/s to 64 destination ports (reached: ${fmtInt(r.connPerSec)}/s). Every 10 s: serve's RSS, its CPU over those 10 s, and the
TIME_WAIT sockets the kernel holds in the client namespace, from serve's latest scrape its V8 heap (\`nodejs_heap_size_total_bytes\`; the old space's by \`nodejs_heap_space_size_*_bytes\`) and its
socket walks so far: read, and due but not read because the kernel's count agreed with the model's (\`twtrace_socket_walks_total\`, \`…_skipped_total\`),
and from its agent socket (\`/v1/info\`) the bytes its flight recorder holds.

${markdownTable(['s', 'serve RSS MiB', 'V8 heap MiB', 'old space MiB, used / committed', 'flight recorder MiB', 'CPU % of a core', 'TIME_WAIT (kernel)', 'walks read', 'walks skipped'], rows)}

- CPU ${fmt(r.cpuPctMean)} % of a core on average (target ≤ 3 %: ${verdict(r.cpuPctMean <= 3)}); peak RSS ${fmtInt(r.peakRssMiB)} MiB (target ≤ 128 MiB: ${verdict(r.peakRssMiB <= 128)});
  RSS after the first minute ${rise === undefined ? '–' : `${rise >= 0 ? 'rose' : 'fell'} by ${fmtInt(Math.abs(rise))} MiB over the first minute's peak`} (target: flat, within 5 % of it: ${rise === undefined ? '–' : verdict(isFlat)})${heapRise}${oldSpace}${recorderRise}.
- ${fmtInt(r.scrapes)} scrapes, ${r.scrapeFailures} failed or timed out, the slowest took ${fmtInt(r.slowestScrapeMs)} ms (target ≤ 50 ms: ${verdict(r.scrapeFailures === 0 && r.slowestScrapeMs <= 50)})${slowScrapes(r)}.
- serve's closing line: ${r.lost}
- Where the time goes, and what would close the gaps: serve takes what the kernel counts from its counters once a second and
  at each scrape, into its model, its metrics and its flight recorder (docs/counting-in-the-kernel.md, steps 2 to 4), and its ring
  carries task records and failures only: "Where serve's time goes at full churn" above has the profile by area, none of it
  per event. The RSS is node's own pages, the ring buffer's (mapped twice), V8's heap, the flight recorder (a counts frame a
  second and the failures, bounded by --recorder-size) and the model (a slot of the TIME_WAIT population per key and reading,
  not per socket: step 4); "Where serve's RSS goes" above splits it.
  The RSS after the first minute rises while the flight recorder fills its window (\`--recorder\`, 15 minutes: its column)
  and V8 commits heap beside it. At 75d0375 \`npm run bench:heap\` (snapshots 2 and 15 minutes into the same churn) found
  the reachable heap 115.8 and 117.8 MiB, the difference mostly the recorder's buffers: V8's growth is room, not objects.
  It is the old space's (its column): garbage that outlived the young generation piles up there until a major collection,
  and V8 sets the next one's limit at the live size plus a fixed step of about 9 MB, committing the space as it fills
  towards it. Scrapes were most of that feed (each allocated about 0.6 MiB, so a scavenge nearly always interrupted one and
  promoted what it had built); they allocate a third of that since 0e60735 and the old space fills at 0.3 MiB a minute, not 1,
  but a slower feed reaches the same limit later, so the rise is bounded, not gone (docs/counting-in-the-kernel.md, "What fed
  the old space"). Since 218b598 each destination's expiries by second are a ring, not a map rebuilt as seconds come and go:
  the old space then filled at about 0.2 MiB a minute. What would close the rest: a feed nearer nothing (the readings'
  remaining garbage), and a recorder reserving its slabs at start.
  Slow scrapes: \`npm run bench:profile -- --command serve --rate 15000 --warm 2 --seconds 25\` lists the longest stretches
  serve's main thread stayed busy, each with its call path. Earlier soaks' slow scrapes, at a walk and at 18 s, were found
  that way and closed (docs/counting-in-the-kernel.md, "What the soak then showed"). ${(r.slowScrapes ?? []).some((x) => x.atS <= 10)
		? `Left: the load's first
  seconds, when serve's first readings meet every new key with code not yet optimised (33 and 41 ms of its main thread in
  a CPU profile) and the starting churn holds both CPUs.`
		: `The soaks at 218b598 and 926f46e had one more at 2 s
  (166 and 112 ms, 28 of it inside serve): the load's first seconds, when serve's first readings meet every new key with code
  not yet optimised and the starting churn holds both CPUs. This run had none there: that one comes and goes with the start.`}

`;
}

/** The soak's scrapes over its target, when and whether a walk was read meanwhile: what to look at first. */
function slowScrapes(r: SoakResult): string {
	const slow = r.slowScrapes ?? [];
	if (!slow.length) return '';
	const byWalk = slow.filter((x) => x.walkRead).length;
	const worst = [...slow].sort((a, b) => b.ms - a.ms).slice(0, 8).sort((a, b) => a.atS - b.atS);
	const inside = (x: SoakResult['slowScrapes'][number]) => (x.insideMs === undefined || x.insideMs === null ? '' : `, ${fmtInt(x.insideMs)} ms of it inside serve`);
	return `; ${slow.length} over ${SLOW_SCRAPE_MS} ms, ${byWalk} of them with a socket walk read since the scrape before; the slowest at ${worst.map((x) => `${x.atS} s (${fmtInt(x.ms)} ms${inside(x)}${x.walkRead ? ', walk' : ''})`).join(', ')}`;
}

const loadName = (rate: number) => (rate === 0 ? 'full' : `${fmtInt(rate)}/s`);

/** Medians of serve's and node_exporter's CPU over the steady window of `runs` (NaN without runs). */
function steadyMedians(runs: AgentCostRun[]): { serve: number; exporter: number } {
	return runs.length ? { serve: median(runs.map((r) => r.serveCpuPct)), exporter: median(runs.map((r) => r.exporterCpuPct)) } : { serve: NaN, exporter: NaN };
}

/** serve as deployed beside node_exporter at each load; the targets of issue 21. */
function costSection(runs: AgentCostRun[], baselines: BaselineRun[], timing: Required<AgentCostTiming>): string {
	const { warmS, windowS, steadyAtS } = timing;
	const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
	const minMed = (xs: number[]) => `${fmt(Math.min(...xs))} / ${fmt(median(xs))}`;
	const lines: string[] = [];
	const rows = AGENT_LOADS.map((rate) => {
		const rs = runs.filter((r) => r.rate === rate);
		const { serve, exporter } = steadyMedians(rs);
		const peak = Math.max(...rs.map((r) => r.servePeakRssMiB));
		const slowdowns = rs.map((r) => 1 - r.connPerSec / (baselines.find((b) => b.round === r.round)?.connPerSec ?? NaN)).filter((x) => Number.isFinite(x));
		const cpuGoal = rate === 0 ? Math.min(2 * exporter, 3) : exporter;
		// Two decimals where one would show a tie the verdict does not.
		const digits = fmt(serve) === fmt(exporter) ? 2 : 1;
		const parts = [`serve ${fmt(serve, digits)} % of a core (steady) against node_exporter's ${fmt(exporter, digits)} % (target ≤ ${rate === 0 ? `2× node_exporter's, and ≤ 3 %: ${fmt(cpuGoal)} %` : 'node_exporter\'s'}: ${verdict(serve <= cpuGoal)})`,
			`peak RSS ${fmtInt(peak)} MiB (target ≤ 128 MiB: ${verdict(peak <= 128)})`];
		if (rate === 0 && slowdowns.length) parts.push(`the workload's slowdown ${(100 * median(slowdowns)).toFixed(1)} % (target ≤ 5 %: ${verdict(median(slowdowns) <= 0.05)})`);
		lines.push(`- ${loadName(rate)}: ${parts.join('; ')}`);
		const first = rs.flatMap((r) => (r.first ? [r.first] : []));
		return [loadName(rate), fmtInt(median(rs.map((r) => r.connPerSec))), minMed(rs.map((r) => r.serveCpuPct)),
			first.length ? `${minMed(first.map((f) => f.serveCpuPct))} (node_exporter ${fmt(median(first.map((f) => f.exporterCpuPct)))})` : '–',
			fmtInt(peak), minMed(rs.map((r) => r.exporterCpuPct)), fmtInt(Math.max(...rs.map((r) => r.exporterPeakRssMiB))), `${(serve / Math.max(exporter, 0.01)).toFixed(1)}×`, `${fmtInt(Math.max(...rs.map((r) => r.slowestScrapeMs)))} ms`,
			rate === 0 && slowdowns.length ? `${(100 * median(slowdowns)).toFixed(1)} %` : '–'];
	});
	return `## The agent against node_exporter

\`twtrace serve --listen 127.0.0.1:0 --agent-socket TMP/agent.sock\` (as deployed: the agent API and the flight recorder on, no
filters) and Debian's \`prometheus-node-exporter --web.listen-address=127.0.0.1:PORT\` (its default collectors), run together, each
scraped every second, while the churn client closes first across veth at each load (64 destination ports). CPU: user + system
time of each over ${windowS} s from ${steadyAtS} s after serve started (steady: what an always-on agent costs; at full churn a whole
TIME_WAIT length of sockets is held by then), and beside it over ${windowS} s after a ${warmS} s warm-up, serve's start: at low rates V8
runs serve's hot functions in its baseline tier for about the first minute (\`npm run bench:profile -- --rate 10\` shows them so).
RSS: the peak (VmHWM) over the whole run. At full churn the slowdown is against the workload alone in the same round, over as
long a run. ${rounds} rounds, loads interleaved; min / median. The targets are judged on the steady window.

${markdownTable(['load', 'conn/s', 'serve CPU % of a core, steady', `serve CPU at its start (${warmS}–${warmS + windowS} s)`, 'serve peak RSS MiB', 'node_exporter CPU %, steady', 'node_exporter peak RSS MiB', 'serve ÷ node_exporter (CPU, medians)', 'serve\'s slowest scrape', 'slowdown'], rows)}

### Targets (issue 21)

${lines.join('\n')}
${rssSection(runs)}
`;
}

/**
 * Where serve's RSS goes at the end of each load's runs (the run with the most, from bench/proc.ts
 * rssSplitMiB and the agent's /v1/info), and the least it would reach once the recorder is full.
 */
function rssSection(runs: AgentCostRun[]): string {
	const ends = AGENT_LOADS.flatMap((rate) => {
		const withSplit = runs.filter((r) => r.rate === rate && r.rssAtEnd);
		if (!withSplit.length) return [];
		const r = withSplit.reduce((a, b) => (b.rssAtEnd!.totalMiB > a.rssAtEnd!.totalMiB ? b : a));
		return [{ rate, ...r.rssAtEnd! }];
	});
	if (!ends.length) return '';
	const rows = ends.map((e) => [loadName(e.rate), fmtInt(e.totalMiB), fmtInt(e.fileMiB), fmtInt(e.bpfMapsMiB), fmtInt(e.anonMiB), fmt(e.recorderMiB, 1),
		fmtInt(e.anonMiB - e.recorderMiB)]);
	const least = ends.map((e) => e.fileMiB + e.bpfMapsMiB + e.recorderMaxMiB);
	const maxMiB = ends[0]!.recorderMaxMiB;
	const keepsCounts = ends.every((e) => e.recorderKeeps === 'counts');
	return `
### Where serve's RSS goes

At the end of each load's run (the one with the most), by kind (/proc/PID/smaps, bench/proc.ts \`rssSplitMiB\`), with the bytes the
flight recorder held then (its \`/v1/info\`, which counts them against \`--recorder-size\`, ${fmtInt(maxMiB)} MiB by default). File pages are
node's own code and its libraries (shared with every node process on the host, yet counted in each one's RSS); the BPF maps
are the ring buffer, whose data pages the kernel maps twice in a row (a record that wraps reads as one) and so count twice.

${markdownTable(['load', 'RSS MiB', 'file pages (node, libraries)', 'BPF maps (the ring, mapped twice)', 'anonymous (V8 heap, buffers)', 'of which the flight recorder', 'anonymous less the recorder'], rows)}

${keepsCounts ? `- The recorder keeps the kernel's counts once a second and only the records they do not stand for (\`serve --recorder-keeps counts\`,
  the default: docs/counting-in-the-kernel.md, step 3): what it holds follows the (process, destination) pairs counted each second
  and the walks' open connections, not the event rate, and stays far below its ${fmtInt(maxMiB)} MiB bound at every load here. The model is
  fed from the same counts (step 4): its TIME_WAIT population holds a slot per key and reading, not per socket held. What is left
  is node's own pages, the ring's (mapped twice) and V8's heap.`
		: `- Once its recorder is full (it fills as fast as records arrive: within the run at full churn, after minutes at lower rates), serve's RSS is at least the
  file pages, the maps and the recorder's ${fmtInt(maxMiB)} MiB: ${least.map((l, i) => `${fmtInt(l)} MiB at ${loadName(ends[i]!.rate)}`).join(', ')}, before
  V8's heap and the model. ${least.every((l) => l > 128)
		? `With the recorder keeping raw records in memory, ≤ 128 MiB at the recorder's default size cannot be met at any load; what
  would close it is a recorder that keeps less than a record per event (\`serve --recorder-keeps counts\`).`
		: `That leaves ${least.map((l) => `${fmtInt(128 - l)} MiB`).join(', ')} of the 128 MiB target for V8's heap and the model.`}`}
`;
}

/** The load at which serve is profiled steady, as in the agent-cost table. */
const STEADY_PROFILE_RATE = 1000;

/**
 * Where serve's time goes at STEADY_PROFILE_RATE once steady, and what share of it grows with the
 * event rate: the part that counting in the kernel would leave out, against the gap to node_exporter.
 */
function steadyServeSection(r: ProfileResult, runs: AgentCostRun[]): string {
	const rs = runs.filter((x) => x.rate === STEADY_PROFILE_RATE);
	const share = (name: string) => r.areas.find((a) => a.name === name)?.pctOfBusy ?? NaN;
	const perEvent = share(PER_EVENT_AREA);
	const { serve, exporter } = steadyMedians(rs);
	const gap = 100 * (1 - exporter / serve); // the share of serve's CPU to remove to cost what node_exporter costs
	const closing = !rs.length ? '' : serve <= exporter
		? `serve's steady CPU at this load (${fmt(serve)} % of a core, median of the agent-cost runs) is within node_exporter's (${fmt(exporter)} %).`
		: `To cost what node_exporter costs at this load, serve must shed ${fmt(gap)} % of its CPU (${fmt(serve)} % of a core against
${fmt(exporter)} %, medians of the agent-cost runs above). Per-event work is ${fmt(perEvent)} % of its busy main thread: ${perEvent >= gap
		? `the gap alone is ${fmt((100 * gap) / perEvent)} % of it (taking the main thread's shares for the whole process's)`
		: 'even without any of it serve would cost more than node_exporter: the scrapes and the rest of the table must shrink too'}.
serve's model, metrics and flight recorder take what the kernel counts from its counters (docs/counting-in-the-kernel.md, steps 2 to 4),
so only task records and failures reach JavaScript one by one.`;
	return `## Where \`serve\`'s time goes at ${fmtInt(STEADY_PROFILE_RATE)} connections/s, steady

\`${PROFILED.serve}\` at ${fmtInt(r.connPerSec)} connections/s, its main thread sampled by V8's CPU profiler every 1 ms for ${fmt(r.seconds)} s
from ${COST_STEADY_AT_S} s after its start, the agent-cost table's steady window (\`sudo npm run bench:profile -- --command serve --rate ${STEADY_PROFILE_RATE} --warm ${COST_STEADY_AT_S}\`).
The main thread was busy in ${fmt(r.busyPctOfCore)} % of the samples; the process's CPU over the window was
${r.processCpuPct === undefined ? '–' : fmt(r.processCpuPct)} % of a core, the profiler's own sampling included${rs.length && r.processCpuPct !== undefined ? ` (the agent-cost runs, unprofiled: ${fmt(serve)} %)` : ''}: at
this load the sampling is a large part of it, so read the shares of the busy main thread, not the % of a core.

${profileTables(r)}

${closing}

`;
}

/** The load of the BPF pieces' runs: the workload's full rate would vary with the piece. */
const PIECES_RATE = 20_000;

const PIECE_DOES: Record<string, string> = {
	piece_empty: 'returns at once (the floor\'s program)',
	piece_netns: 'reads the socket\'s network namespace, twtrace\'s first filter (sock_netns)',
	piece_owner: 'keeps the owner in a hash keyed by the socket\'s address instead (measured against piece_storage, not used): written at a connection\'s start on each end, looked up at its closes, deleted at its end',
	piece_storage: 'keeps the owner in socket-local storage, as twtrace does: created at a connection\'s start on each end (bpf_sk_storage_get, F_CREATE), looked up at its closes, freed with the socket',
	piece_cookie: 'reads the socket\'s cookie (bpf_get_socket_cookie), twtrace\'s key for a socket',
	piece_clock: 'reads the clock (bpf_ktime_get_ns; kvm-clock in a VM), for every event\'s time and lifetimes',
	piece_count: 'counts into a hash map through an array-of-maps slot, the key made on first use, an atomic add (counting in the kernel: count_event)',
	piece_count_percpu: 'the same into a per-CPU hash, with a plain add: what atomics and a cache line shared between CPUs cost piece_count',
	piece_closing: 'piece_storage, and the witness of active closes as twtrace keeps it (`closing`, on in an agent): a 112-byte record inserted into a preallocated hash by cookie at the active close, looked up, claimed and deleted at the end',
	piece_closing_ring: 'piece_storage, and the witness as the ring proposed in its place: the record written into the next slot of one array (an atomic add on its head), its slot kept in the storage and claimed at the end',
};

/** The pieces whose time above the empty program fits in `ns`, in words. */
function fitting(rows: ReturnType<typeof pieceRows>, ns: number): string {
	const fit = rows.filter((p) => p.aboveEmptyNs !== undefined && p.aboveEmptyNs <= ns).map((p) => `\`${p.piece}\``);
	return fit.length ? `${fit.join(', ')} ${fit.length === 1 ? 'fits' : 'fit'}` : 'no piece fits';
}

/** Each piece of the primary program alone, kernel-timed (bench/bpf-pieces.ts), against the whole program. */
function piecesSection(r: PiecesResult, summaries: ModeSummary[]): string {
	const timedTwtrace = programTimes(summaries.find((x) => x.mode.name === 'run-timed: twtrace, BPF side only'));
	const timedFloor = programTimes(summaries.find((x) => x.mode.name === 'run-timed: floor'));
	const whole = timedTwtrace?.byName;
	const slowdownOf = (prefix: string) => {
		const m = summaries.find((x) => x.mode.name.startsWith(prefix));
		return m?.slowdowns.length ? median(m.slowdowns) : undefined;
	};
	const [floorSlowdown, bpfSlowdown] = [slowdownOf('floor'), slowdownOf('twtrace, BPF side only')];
	const above = floorSlowdown !== undefined && bpfSlowdown !== undefined ? bpfSlowdown - floorSlowdown : undefined;
	const runs = whole?.get('handle_inet_sock_set_state')?.runsPerConnection;
	// If the slowdown above the floor grows with the programs' time above the floor's (a line through
	// the two points measured): the time a connection that 2 points above the floor allow.
	const budgetNs = timedFloor && timedTwtrace && above !== undefined && above > 0.02 && runs
		? timedFloor.nsPerConnection + (0.02 / above) * (timedTwtrace.nsPerConnection - timedFloor.nsPerConnection) : undefined;
	const rows = pieceRows(r);
	// The counting pieces are what counting in the kernel adds (with counting on), and piece_owner an alternative to
	// piece_storage, for comparison: not pieces of today's primary program.
	// The witness pieces (piece_closing…) are piece_storage and the witness, which an agent runs and the BPF side alone does not.
	const sum = rows.reduce((a, p) => a + (p.piece.startsWith('piece_count') || p.piece.startsWith('piece_closing') || p.piece === 'piece_owner' ? 0 : p.aboveEmptyNs ?? 0), 0);
	const empty = rows.find((p) => p.piece === 'piece_empty')!.medianNs;
	const primary = whole?.get('handle_inet_sock_set_state');
	const by = (name: string) => rows.find((p) => p.piece === name)?.aboveEmptyNs ?? 0;
	return `## Where the BPF side's time goes, piece by piece

Each piece of twtrace's primary program (\`handle_inet_sock_set_state\`) alone on tp_btf/inet_sock_set_state, the kernel timing
its runs (\`bpf_enable_stats(BPF_STATS_RUN_TIME)\`, bench/bpf-stats.ts): ${r.rounds} interleaved rounds of ${r.seconds} s at ${fmtInt(r.rate)}
connections/s (\`sudo npm run bench:bpf-pieces\`, bench/bpf-pieces.ts and bench/pieces.bpf.c).

${markdownTable(['piece', 'what it does', 'ns a run, min / median', 'above the empty program (medians)', 'runs a second, fewest in a round'],
		rows.map((p) => [`\`${p.piece}\``, PIECE_DOES[p.piece] ?? '', `${fmtInt(p.minNs)} / ${fmtInt(p.medianNs)}`, p.aboveEmptyNs === undefined ? '–' : `${fmtInt(p.aboveEmptyNs)} ns`, fmtInt(p.minRunsPerSecond)]))}

- Counting in the kernel (\`piece_count\`: docs/counting-in-the-kernel.md, off unless asked for) costs ${fmtInt(by('piece_count'))} ns a run above the
  empty program (per-CPU, \`piece_count_percpu\`: ${fmtInt(by('piece_count_percpu'))} ns, ${by('piece_count_percpu') >= 0.8 * by('piece_count')
		? 'so the hash lookup is the cost, not the atomic add' : `so atomics and sharing cost ${fmtInt(by('piece_count') - by('piece_count_percpu'))} ns of it`}); with
  counting on it runs at a connection's start on each end and at its TIME_WAIT entry or reset, not at every transition.
- The other pieces add up to ${fmtInt(empty + sum)} ns a run (the empty program's ${fmtInt(empty)} and ${fmtInt(sum)} above it)${primary ? `; the whole primary program ran
  ${fmtInt(primary.nsPerRun)} ns a run, ${primary.runsPerConnection.toFixed(1)} runs a connection, in the run-timed row at full churn` : ''}. The socket's storage
  (${fmtInt(by('piece_storage'))} ns) and the clock (${fmtInt(by('piece_clock'))} ns) are ${fmt((100 * (by('piece_storage') + by('piece_clock'))) / Math.max(sum, 1), 0)} % of the pieces' work above the empty program.
  Creating the storage takes two allocations and a lock at each socket's start. Kept in a hash keyed by the socket's address instead, the
  owner cost ${fmtInt(by('piece_owner'))} ns a run (\`piece_owner\`) at this rate, but more than the storage at full churn unless the hash is preallocated
  (docs/counting-in-the-kernel.md, "The owner's home, measured").${rows.some((p) => p.piece === 'piece_closing_ring') ? `
- The witness of active closes, which an agent runs (\`closing\`: the churn table's witnessing row), costs ${fmtInt(by('piece_closing') - by('piece_storage'))} ns a run above
  \`piece_storage\` as twtrace keeps it (\`piece_closing\`), ${fmtInt(by('piece_closing_ring') - by('piece_storage'))} as the ring proposed in its place (\`piece_closing_ring\`;
  docs/counting-in-the-kernel.md, "What is left of step 5"), averaged over every run as the other pieces are.` : ''}
- What would close it: the program runs at every transition of both ends of each connection. The transitions it acts on
  (bpf/twtrace.bpf.c, relevant(): connect, accept, the active and passive closes, the final close) each need the socket's
  storage, where the owner lives, and all but the server's final close need the clock, for an event's time or a lifetime:
  reading less at each of them saves little. What the budget below allows is about the empty program and the namespace
  read at every run; meeting it means acting on fewer transitions: the owner set where it is current (connect, accept,
  the active close), the TIME_WAIT entry counted at the final close, and the other transitions (established, the passive close)
  left alone unless a consumer asked for their events or rates.
${budgetNs && runs && above !== undefined ? `  If the slowdown above the floor grows with the programs' time above the floor's (${(100 * above).toFixed(1)} points for ${fmtInt(timedTwtrace!.nsPerConnection - timedFloor!.nsPerConnection)} ns a
  connection, the rows above), 2 points allow about ${fmtInt(budgetNs)} ns a connection in all: ${fmtInt(budgetNs / runs)} ns a run over ${runs.toFixed(1)} runs, against the empty program's ${fmtInt(empty)}.
  Alone beside the empty program at every run, ${fitting(rows, budgetNs / runs - empty)}: the rest must run only where a transition needs it.
` : ''}
`;
}

/** The churn table's mode each profiled command is run as. */
const PROFILED_MODE: Record<ProfiledCommand, string> = { serve: 'twtrace serve (1 s scrapes)', top: 'twtrace top --json', trace: 'twtrace trace --json' };

/** What each profiled command's time would need, beyond what its profile shows (bench/profile.ts). */
const CLOSE_IT: Record<ProfiledCommand, (r: ProfileResult, perConnection: number) => string> = {
	serve: (r) => `Where counting happens (README, design notes, "Where counting happens, and why there"): the BPF programs count
connections, TIME_WAIT entries, resets and lifetimes per (owner, destination) (step 1; the \`twtrace, BPF side counting\` row of the
first table has them read once a second by a reader that streams nothing, against the truth; bpftrace's in-kernel \`count()\` is the
peer), and serve takes their differences once a second and at each scrape into its metrics (step 2), its flight recorder (step 3)
and its model (step 4: \`/v1/snapshot\`, what top and doctor ask). Its ring carries task records and failures only, so at
${fmtInt(r.connPerSec)} connections/s nothing above is per event: what serve costs follows its scrapes, the (owner, destination) keys
and the closes it looks up one by one (suspect checks), and the kernel time of its syscalls, which the main thread's profile does not
see (the process's CPU above is both). What is left to build: fewer transitions acted on in the kernel (step 5, the BPF side's row),
and walks aggregated in the kernel (step 6: held counts after \`tcp_tw_reuse\` takeovers, and top holding millions).`,
	top: (r) => `Where top's time goes: run by itself (here, with no agent running), top takes what the kernel counts from its counters,
as serve does (docs/counting-in-the-kernel.md, step 4): at ${fmtInt(r.connPerSec)} connections/s its ring carries task records and failures
only, and what it does per second is a reading of the counters, a snapshot and its JSON line. Its slowdown is the BPF side's with
counting on (the \`twtrace, BPF side counting\` row): fewer transitions acted on in the kernel (step 5) is what would lower it.
Holding millions of TIME_WAIT, a walk's cost is the table's (the seed rows below): walks aggregated in the kernel (step 6).`,
	trace: (r) => `What would close it: \`trace --json\` exists to print every event, so its cost is per line and cannot follow
a count: decoding the record, building a JSON line, writing it. Its busy share above, over the events it printed (the churn
table's events/s), is what each line costs; its target line above sets the workload's slowdown above the BPF side alone
beside trace's CPU as a share of the machine's cores, which the workload keeps busy. Closing it means fewer cycles a line: writing lines
from a per-kind template straight into one output buffer without an object per event. Where fewer events will do, the
filters already run in the kernel (\`--kind\`, \`--port\`, \`--netns\`): the \`--kind time_wait\` row of the first table shows what that saves.`,
};

/** Where a command's time goes at full churn (bench/profile.ts). */
function profileSection(r: ProfileResult, summaries: ModeSummary[]): string {
	const mode = summaries.find((s) => s.mode.name === PROFILED_MODE[r.command]);
	const ratios = mode?.runs.filter((m) => m.eventsPerSec && m.connPerSec).map((m) => m.eventsPerSec! / m.connPerSec) ?? [];
	const perConnection = ratios.length ? median(ratios) : NaN; // no churn-table run of it: shown as –
	return `## Where \`${r.command}\`'s time goes at full churn

\`${PROFILED[r.command]}\` at full churn (${fmtInt(r.connPerSec)} connections/s), its main thread sampled by V8's CPU profiler
every 1 ms for ${fmt(r.seconds)} s after a ${COST_WARM_S} s warm-up (\`sudo npm run bench:profile -- --command ${r.command}\`, bench/profile.ts).
The main thread was busy (running, or waiting for a CPU the workload held) in ${fmt(r.busyPctOfCore)} % of the samples; the process's CPU
over the window (user + system, every thread) was ${r.processCpuPct === undefined ? '–' : fmt(r.processCpuPct)} % of a core. An area is the share of busy samples with one of its
functions on the stack, and that share of the process's CPU; a sample inside a system call belongs to the function that made it.

${profileTables(r)}

${CLOSE_IT[r.command](r, perConnection)}

`;
}

/** The busiest areas of a command's profile, for its target line. */
function busiest(r: ProfileResult | undefined, n = 3): string {
	if (!r) return '';
	const areas = r.areas.filter((a) => !a.name.startsWith(' ') && a.name !== PER_EVENT_AREA && a.pctOfBusy >= 1).sort((a, b) => b.pctOfBusy - a.pctOfBusy).slice(0, n);
	return `where the time goes ("Where \`${r.command}\`'s time goes at full churn" below): the process's CPU ${r.processCpuPct === undefined ? '–' : `${fmt(r.processCpuPct)} % of a core`}, ${areas.map((a) => `${a.name} ${fmt(a.pctOfBusy)} %`).join(', ')}`;
}

function seedTable(seeds: SeedMeasurement[]): string {
	const rows: string[][] = [];
	for (const s of seeds) {
		for (const t of s.tools) {
			rows.push([fmtInt(s.timeWait), `\`${t.command}\``, `${fmtInt(Math.min(...t.wallMs))} / ${fmtInt(median(t.wallMs))}`, fmtInt(median(t.cpuMs)), `${t.answer} (no owners)`]);
		}
		rows.push([fmtInt(s.timeWait), '`twtrace trace --kind time_wait` while they were created', '0 (answer already streamed)',
			fmtInt(s.twtraceCpuMs), `${pctOf(s.twtrace.seen)} seen, ${pctOf(s.twtrace.accuracy)} blamed on the churn client; ${s.twtraceLost ?? '–'} lost`]);
	}
	return markdownTable(['TIME_WAIT sockets', 'method', 'wall ms min / median', 'CPU ms (median)', 'answer'], rows);
}

async function main(): Promise<void> {
	if (process.getuid?.() !== 0) {
		console.error('bench: needs root (BPF, network namespaces). Try: sudo npm run bench');
		process.exit(1);
	}
	for (const f of [churnBin, path.join(root, 'dist/src/cli.js'), path.join(root, 'build/twtrace.bpf.o')]) {
		if (!fs.existsSync(f)) {
			console.error(`bench: ${path.relative(root, f)} is not built. Run: sudo scripts/setup`);
			process.exit(1);
		}
	}
	const startedAt = new Date();
	const machine = machineInfo();
	const commit = execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
	if (opts['soak-only']) return soakOnly(commit);
	const dirty = execFileSync('git', ['-C', root, 'status', '--porcelain', '--', 'src', 'native', 'bpf', 'bench'], { encoding: 'utf8' }).trim() !== '';
	const argv = process.argv.slice(2).join(' ');
	console.error(`bench: ${rounds} rounds × ${MODES.length} modes × ${durationS} s, then the seed method at ${sizes.join(', ')} TIME_WAIT sockets`);

	const all: Measurement[] = [];
	// --only: a quick look at some modes (the baseline always runs: slowdowns are relative to it).
	const wanted = opts.only ? opts.only.split(',') : undefined;
	const modes = wanted ? MODES.filter((m, i) => i === 0 || wanted.some((w) => m.name.includes(w))) : MODES;
	for (let round = 1; round <= rounds; round++) {
		// Rotate the order each round, so that no mode always runs first or last.
		const order = modes.map((_, i) => modes[(i + round - 1) % modes.length]!);
		for (const mode of order) {
			const m = await measure(mode, round);
			all.push(m);
			console.error(`  round ${round}  ${mode.name.padEnd(32)} ${fmtInt(m.connPerSec).padStart(7)} conn/s  tracer ${fmt(m.tracerCpuPct).padStart(5)} %  lost ${m.lost ?? '–'}  attributed ${pctOf(m.accuracy)}  (idle before: ${(100 * m.idleBefore).toFixed(0)} %)`);
		}
	}
	const seeds: SeedMeasurement[] = [];
	for (const n of sizes) {
		const s = await measureSeed(n);
		seeds.push(s);
		console.error(`  seed method at ${fmtInt(s.timeWait)} TIME_WAIT: ${s.tools.map((t) => `${t.name} ${fmtInt(median(t.wallMs))} ms`).join(', ')}`);
	}
	// 64 destination ports (churn's most): 4.1M 4-tuples, so that holding 1.5M+ TIME_WAIT sockets does
	// not make connect() search for free ports (16 ports run out at about a million).
	const steady = steadyS ? await steadyHolding(steadyS, { threads, ports: 64 }) : undefined;
	if (steady) console.error(`  steady: ${fmtInt(steady.connPerSec)} conn/s for ${steadyS} s, peak RSS ${fmtInt(steady.peakRssMiB)} MiB, top ${fmtInt(steady.final.top)} vs kernel ${fmtInt(steady.final.kernel)} TIME_WAIT`);
	const cost: AgentCostRun[] = [];
	const costTiming = { warmS: COST_WARM_S, windowS: costS, steadyAtS: Math.max(COST_STEADY_AT_S, COST_WARM_S + costS) };
	const baselines: BaselineRun[] = [];
	for (let round = 1; costS && round <= rounds; round++) {
		const loads = [...AGENT_LOADS.slice(round - 1), ...AGENT_LOADS.slice(0, round - 1)];
		for (const rate of loads) {
			const r = await measureAgentCost(rate, round, { threads, ports: 64 }, costTiming);
			cost.push(r);
			console.error(`  agent cost round ${round} ${loadName(rate).padStart(8)}: ${fmtInt(r.connPerSec)} conn/s, serve ${fmt(r.serveCpuPct)} % (${fmtInt(r.servePeakRssMiB)} MiB), node_exporter ${fmt(r.exporterCpuPct)} % (${fmtInt(r.exporterPeakRssMiB)} MiB)`);
		}
		baselines.push(await measureBaseline(round, { threads, ports: 64 }, runSeconds(costTiming)));
	}
	const pieces = piecesS ? await measurePieces(piecesS, rounds, PIECES_RATE) : undefined;
	const profiles: ProfileResult[] = [];
	for (const command of profileS ? (Object.keys(PROFILED) as ProfiledCommand[]) : []) {
		const p = await measureProfile(command, profileS, COST_WARM_S, { threads, ports: 64 });
		profiles.push(p);
		console.error(`  profile: ${command}'s main thread busy ${fmt(p.busyPctOfCore)} % of a core at ${fmtInt(p.connPerSec)} conn/s`);
	}
	// serve at the middle load, steady as the agent-cost table judges it: where an always-on agent's time goes.
	const steadyServe = profileS ? await measureProfile('serve', profileS, COST_STEADY_AT_S, { threads, ports: 64 }, STEADY_PROFILE_RATE) : undefined;
	if (steadyServe) console.error(`  profile: serve's main thread busy ${fmt(steadyServe.busyPctOfCore)} % of a core at ${fmtInt(steadyServe.connPerSec)} conn/s, from ${COST_STEADY_AT_S} s`);
	const soak = soakS ? await measureSoak(soakS, soakRate, { threads, ports: 64 }, commit) : undefined;
	if (soak) console.error(`  soak: ${fmtInt(soak.connPerSec)} conn/s for ${soakS} s, peak RSS ${fmtInt(soak.peakRssMiB)} MiB, CPU ${fmt(soak.cpuPctMean)} %`);
	const decoder = decoderBench();

	const summaries = summarise(all);
	const notQuiet = all.filter((m) => m.idleBefore < 0.9).length;
	const errors = all.filter((m) => Object.keys(m.errors).length > 0);
	const report = `# twtrace benchmark results

Generated by \`sudo npm run bench${argv ? ` -- ${argv}` : ''}\` (bench/run.ts) on ${startedAt.toISOString()}, twtrace ${commit}${dirty ? ' with uncommitted changes' : ''}.
Do not edit by hand: run the command again.

- Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, ${machine.os}, kernel ${machine.kernel}
- Node ${machine.node}, ${machine.bpftrace}
- Workload: \`build/churn\` (bench/churn.c), ${MODE_ARG}, ${threads} client and ${threads} server threads, ${ports} destination ports,
  ${durationS} s per run, client and server in two network namespaces joined by veth, port range 1024–65535,
  \`tcp_max_tw_buckets\` 2,000,000 (both set inside the namespaces only). A fresh namespace pair per run.
- ${rounds} rounds; modes interleaved, in a rotated order each round; before each run the harness waits for the machine
  to be ≥ 90 % idle${notQuiet ? ` (${notQuiet} runs started less idle)` : ''}.${errors.length ? `\n- Workload errors: ${errors.map((m) => `${m.mode} round ${m.round}: ${JSON.stringify(m.errors)}`).join('; ')}` : ''}

## Tracing at maximum churn

${churnTable(summaries)}

- *conn/s*: connections per second the workload completed. *slowdown*: 1 − conn/s ÷ the same round's run without tracer.
- *tracer CPU*: user + system time of the tracer process over the workload, from /proc/PID/stat. BPF programs run in the
  workload's and the network's context, so their cost shows in the slowdown, not here.
- *consumer CPU*: the process reading a tracer's output (bench/line-counter.ts), when it streams into one.
- *lost*: events the tracer itself reports lost (twtrace's closing line: ring buffer full, runs the kernel skipped,
  undecodable; bpftrace's "Lost N events").
- *ground truth*: the churn client counts the connections it completed; the client closes first, so each leaves one
  TIME_WAIT socket. Against it: the TIME_WAIT entries the tracer delivered (\`trace\`: time_wait events, those a socket
  walk recovered included; \`top\`: TIME_WAIT held at the end, none being 60 s old yet; \`serve\`:
  \`twtrace_timewait_entries_total\`; bpftrace: FIN_WAIT2/CLOSING → CLOSE transitions) plus the losses it reported.
  *unaccounted* is what neither covers: a silent loss when positive, a count of something that did not happen when negative
  (TIME_WAIT delivered beyond the connections completed). Reported losses are of every kind of event, so they cover missing
  TIME_WAIT entries up to their number (bench/stats.ts, \`unaccountedTimeWait\`).
- *floor*: two programs that do nothing, on the tracepoint where twtrace attaches its two (bench/floor.bpf.c).
- *run-timed*: the floor and twtrace's BPF side again, the kernel timing every BPF program's runs
  (\`bpf_enable_stats(BPF_STATS_RUN_TIME)\`, read with \`bpftool prog show\`; bench/bpf-stats.ts): nanoseconds a run and runs a
  connection, per program. The timing costs each run two clock reads, so these rows' slowdowns are not the ones judged.
- *TIME_WAIT seen; blamed on the churn client*: TIME_WAIT entries the tracer reported, and those it assigned to the churn
  client's pid, each ÷ the timewait sockets in the client's namespace afterwards (/proc/net/sockstat, \`tw\`). Above
  100 %: a few timewait sockets were killed early by an RST (TIME_WAIT assassination, which no tracepoint shows).
  bpftrace's \`pid\` at FIN_WAIT2/CLOSING → CLOSE is whoever ran the softirq (often the server, which sent the FIN);
  twtrace's is the process that called connect(). \`twtrace trace --json > /dev/null\` keeps no output to check.

Commands:
${MODES.filter((m) => m.start).map((m) => `- ${m.name}: \`${m.command}\``).join('\n')}

### Targets (issue 21, at maximum churn: the BPF side within 2 points of the floor; \`trace --json\` ≤ 10 %; \`top --json\` and \`serve\` ≤ 5 % and ≤ 5 % of a core; 0 TIME_WAIT missing by ground truth in every run)

${targets(summaries, profiles, pieces, machine.cpus)}

${cost.length ? costSection(cost, baselines, costTiming) : ''}${steadyServe ? steadyServeSection(steadyServe, cost) : ''}${pieces ? piecesSection(pieces, summaries) : ''}${profiles.map((p) => profileSection(p, summaries)).join('')}${steady ? steadySection(steady) : ''}${SOAK_START}
${soak ? soakSection(soak) : keptSoak(path.resolve(root, opts.out))}${SOAK_END}
## The seed method: counting TIME_WAIT with netstat and ss

${seedTable(seeds)}

The sockets are made by \`churn client … ${MODE_ARG} … MAX_CONNECTIONS\` in a fresh namespace pair; netstat and ss run
inside the client namespace, 3 times each, interleaved. netstat and ss walk every socket of the host's hash tables on
every call and can only count; twtrace pays as the sockets are created (its CPU time over the creation) and already
knows whose they are.

## Decoder microbenchmark (\`node --import tsx bench/decode.ts\`)

\`\`\`
${decoder}
\`\`\`
`;
	const out = path.resolve(root, opts.out);
	fs.writeFileSync(out, report);
	console.log(report);
	console.error(`bench: wrote ${path.relative(process.cwd(), out)}`);
}

/** Where the soak's section sits in RESULTS.md: bench:soak rewrites what is between. */
const SOAK_START = '<!-- soak: written by npm run bench:soak -->';
const SOAK_END = '<!-- /soak -->';

/**
 * With --soak 0: the soak section the results file already has (its own line says when and at which
 * commit it was made), so that the rest can be measured again without the 30-minute soak.
 */
function keptSoak(file: string): string {
	const { text, span } = soakSpan(file);
	return span ? text.slice(span.from, span.to) : '';
}

/** The results file's text, and where its soak section lies between the markers (undefined: none). */
function soakSpan(file: string): { text: string; span?: { from: number; to: number } } {
	const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
	const [start, end] = [text.indexOf(SOAK_START), text.indexOf(SOAK_END)];
	return { text, span: start >= 0 && end > start ? { from: start + SOAK_START.length + 1, to: end } : undefined };
}

/** `npm run bench:soak`: the soak alone, its section of RESULTS.md rewritten (the rest stays as it was). */
async function soakOnly(commit: string): Promise<void> {
	const out = path.resolve(root, opts.out);
	const { text, span } = soakSpan(out);
	if (!span) fail(`${path.relative(process.cwd(), out)} has no soak section: run npm run bench first`);
	console.error(`bench: the soak, ${soakS} s at ${fmtInt(soakRate)} connections/s`);
	const soak = await measureSoak(soakS, soakRate, { threads, ports: 64 }, commit);
	console.error(`  soak: ${fmtInt(soak.connPerSec)} conn/s for ${soakS} s, peak RSS ${fmtInt(soak.peakRssMiB)} MiB, CPU ${fmt(soak.cpuPctMean)} %`);
	fs.writeFileSync(out, text.slice(0, span.from) + soakSection(soak) + text.slice(span.to));
	console.error(`bench: wrote the soak into ${path.relative(process.cwd(), out)}`);
}

exitOnSignals();
await main();
