/**
 * The tracers the benchmark compares, each started against one network-namespace pair and stopped
 * after the workload: twtrace in its modes, and the peers an engineer would otherwise reach for.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NetnsPair } from '../testbed/netns.js';
import { track, waitForLine } from '../testbed/children.js';
import type { CounterResult } from './line-counter.js';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/src/cli.js');
const counterScript = path.join(root, 'bench/line-counter.ts');

export interface TracerOutcome {
	/** Events the tracer handed to user space (streamed or counted). */
	events?: number;
	/** Events the tracer reports lost. */
	lost?: number;
	/**
	 * TIME_WAIT entries the tracer delivered (time_wait events, or entries counted), for the ground
	 * truth: the churn client's completed connections, one TIME_WAIT each.
	 */
	timeWaitDelivered?: number;
	/** TIME_WAIT entries per pid as the tracer attributed them, when its output can say. */
	timeWaitByPid?: Record<string, number>;
	/** The same per comm, for tracers that aggregate by name (serve's metrics). */
	timeWaitByComm?: Record<string, number>;
	/** The tracer's closing line, or why a figure is missing. */
	note?: string;
}

export interface TracerRun {
	/** The tracer process, and the process reading its output when it streams. */
	pid: number;
	consumerPid?: number;
	stop(): Promise<TracerOutcome>;
}

export interface Mode {
	name: string;
	/** The command it stands for, as a person would type it (for RESULTS.md). */
	command: string;
	/** undefined: no tracer (the baseline). */
	start?: (pair: NetnsPair) => Promise<TracerRun>;
	/** Run with the kernel timing every BPF program (bench/bpf-stats.ts): where the in-kernel time goes. */
	runTimed?: boolean;
}


function collect(stream: NodeJS.ReadableStream | null): () => string {
	let text = '';
	stream?.on('data', (d: Buffer) => (text += d.toString()));
	return () => text;
}

export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
	if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
	const closed = once(child, 'close');
	child.kill(signal);
	const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
	const [code] = (await closed) as [number | null];
	clearTimeout(timer);
	return code;
}

/** After the workload, before top's and serve's final reading: missed TIME_WAIT entries get delivered. */
const RECOVERY_WAIT_MS = 6000;

/** The line counter, reading from a pipe that a tracer will write into. */
function startCounter(): { child: ChildProcess; result: () => Promise<CounterResult> } {
	const child = track(spawn(process.execPath, ['--import', 'tsx', counterScript], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] }));
	const out = collect(child.stdout);
	return {
		child,
		result: async () => {
			await once(child, 'close');
			const last = out().trim().split('\n').pop() ?? '';
			return JSON.parse(last) as CounterResult;
		},
	};
}

/** "twtrace: 1,234 events shown, 1,234 received in 6.7 s; 0 lost (…" → numbers. */
export function parseTwtraceSummary(stderr: string): TracerOutcome {
	const line = stderr.split('\n').find((l) => / received in .* lost \(/.test(l));
	const m = line && /([\d,]+) (?:events )?received in [\d.]+ s; ([\d,]+) lost/.exec(line);
	if (!m) return { note: `no summary line; stderr: ${stderr.slice(-300)}` };
	const n = (s: string) => Number(s.replaceAll(',', ''));
	return { events: n(m[1]!), lost: n(m[2]!), note: line!.replace(/^twtrace: /, '') };
}

/** Loaded into a twtrace command with `--import` by the bench's profiles and memory samples (BENCH_… variables). */
export const INSPECT_HOOK = path.join(path.dirname(fileURLToPath(import.meta.url)), 'inspect-hook.mjs');

/**
 * Starts `twtrace COMMAND ARGS --netns CLIENT --netns SERVER` and waits for the stderr line that says
 * it is attached. Returns the child, its stderr so far, and that line. `node` adds Node's own options
 * and environment (INSPECT_HOOK); `twtraceCli`, another build's (bench:ab-bpf).
 */
export async function startTwtrace(pair: NetnsPair, command: string, args: string[], stdout: 'pipe' | 'ignore' | number | NodeJS.WritableStream, ready: RegExp,
	node: { args: string[]; env: NodeJS.ProcessEnv } = { args: [], env: process.env }, twtraceCli = cli) {
	const netns = [pair.client, pair.server].flatMap((ns) => ['--netns', `/run/netns/${ns}`]);
	const child = track(spawn(process.execPath, [...node.args, twtraceCli, command, ...args, ...netns], { cwd: root, env: node.env, stdio: ['ignore', stdout as 'pipe', 'pipe'] }));
	const stderr = collect(child.stderr);
	const readyLine = await waitForLine(child, 'stderr', ready, 30_000);
	return { child, stderr, readyLine };
}

/**
 * `twtrace trace ARGS`, its output to: nowhere (the BPF side alone), a file on tmpfs (as cheap to
 * write as /dev/null, and counted afterwards with grep), or the line counter (a consumer process).
 */
function twtrace(name: string, args: string[], stdoutTo: 'null' | 'file' | 'counter'): Mode {
	const sink = { null: '> /dev/null', file: '> /dev/shm/FILE (time_wait lines counted afterwards)', counter: '| node bench/line-counter.ts' }[stdoutTo];
	const command = `twtrace trace ${args.join(' ')} --netns CLIENT --netns SERVER ${sink}`;
	return {
		name,
		command,
		async start(pair) {
			const counter = stdoutTo === 'counter' ? startCounter() : undefined;
			const file = stdoutTo === 'file' ? `/dev/shm/twtrace-bench-${process.pid}-${Date.now()}.ndjson` : undefined;
			const fd = stdoutTo === 'null' ? fs.openSync('/dev/null', 'w') : file ? fs.openSync(file, 'w') : undefined;
			const started = startTwtrace(pair, 'trace', args, counter ? counter.child.stdin! : fd!, /Ctrl-C to stop/);
			if (fd !== undefined) fs.closeSync(fd);
			counter?.child.stdin!.destroy(); // the tracer holds the write end now: EOF when it exits
			const { child, stderr } = await started;
			return {
				pid: child.pid!,
				consumerPid: counter?.child.pid,
				async stop() {
					await stopChild(child);
					const outcome = parseTwtraceSummary(stderr());
					if (counter) {
						outcome.timeWaitByPid = (await counter.result()).timeWaitByPid;
						outcome.timeWaitDelivered = Object.values(outcome.timeWaitByPid).reduce((a, b) => a + b, 0);
					}
					if (file) {
						outcome.timeWaitDelivered = grepCount('"kind":"time_wait"', file);
						fs.rmSync(file, { force: true });
					}
					return outcome;
				},
			};
		},
	};
}

function grepCount(text: string, file: string): number {
	const r = spawnSync('grep', ['-cF', text, file], { encoding: 'utf8' });
	return Number(r.stdout.trim() || 0);
}

/** `twtrace top --json`: aggregates in user space; blame is read from its last snapshot's rows. */
const twtraceTop: Mode = {
	name: 'twtrace top --json',
	command: 'twtrace top --json --netns CLIENT --netns SERVER > top.ndjson',
	async start(pair) {
		const { child, stderr } = await startTwtrace(pair, 'top', ['--json'], 'pipe', /Ctrl-C to stop/);
		const stdout = collect(child.stdout);
		return {
			pid: child.pid!,
			async stop() {
				// Let the snapshots include the end of the workload and the TIME_WAIT entries the kernel did
				// not report, which a walk delivers within about 5 s (a close waits 1.5 s, then a walk).
				await new Promise((r) => setTimeout(r, RECOVERY_WAIT_MS));
				await stopChild(child);
				const outcome = parseTwtraceSummary(stderr());
				const last = stdout().trim().split('\n').pop();
				if (last) {
					outcome.timeWaitByPid = {};
					for (const row of (JSON.parse(last) as { rows: { pid: number; timeWait: number }[] }).rows) outcome.timeWaitByPid[String(row.pid)] = row.timeWait;
					// Held at the end of an 8 s run is every entry: none has reached its 60 s yet.
					outcome.timeWaitDelivered = Object.values(outcome.timeWaitByPid).reduce((a, b) => a + b, 0);
				}
				return outcome;
			},
		};
	},
};

/**
 * `twtrace serve`, scraped every second (a fast Prometheus: each scrape's cost is in serve's CPU).
 * Its TIME_WAIT per comm is read from a last scrape after the workload.
 */
function twtraceServe(name: string, extra: string[]): Mode {
	return {
	name,
	command: `twtrace serve --listen 127.0.0.1:0 --agent-socket TMP/agent.sock ${extra.length ? `${extra.join(' ')} ` : ''}--netns CLIENT --netns SERVER, curl /metrics every 1 s`,
	async start(pair) {
		const ready = /serving metrics on (\S+)\/metrics/;
		// The agent as deployed (API, flight recorder), on a socket of its own: a real agent may run.
		const socket = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'twtrace-bench-')), 'agent.sock');
		const { child, stderr, readyLine } = await startTwtrace(pair, 'serve', ['--listen', '127.0.0.1:0', '--agent-socket', socket, ...extra], 'ignore', ready);
		const url = ready.exec(readyLine)![1]!;
		const scrape = async () => (await fetch(`${url}/metrics`)).text();
		const scraper = setInterval(() => void scrape().catch(() => undefined), 1000);
		return {
			pid: child.pid!,
			async stop() {
				clearInterval(scraper);
				await new Promise((r) => setTimeout(r, RECOVERY_WAIT_MS)); // as for top
				const text = await scrape();
				await stopChild(child, 'SIGTERM');
				const outcome = parseTwtraceSummary(stderr());
				outcome.timeWaitByComm = {};
				for (const m of text.matchAll(/^twtrace_timewait_sockets\{comm="([^"]*)",[^}]*\} (\d+)$/gm)) {
					outcome.timeWaitByComm[m[1]!] = (outcome.timeWaitByComm[m[1]!] ?? 0) + Number(m[2]);
				}
				outcome.timeWaitDelivered = [...text.matchAll(/^twtrace_timewait_entries_total\{[^}]*\} (\d+)$/gm)].reduce((s, m) => s + Number(m[1]), 0);
				fs.rmSync(path.dirname(socket), { recursive: true, force: true });
				return outcome;
			},
		};
	},
	};
}

// bpftrace 0.17 attaches tracepoints through tracefs, which this host may not mount. It runs in a
// private mount namespace of its own that mounts it, so the host's mounts stay untouched.
function bpftraceChild(script: string, stdout: 'pipe' | NodeJS.WritableStream): ChildProcess {
	const shell = 'mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; exec bpftrace -e "$0"';
	return track(spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', shell, script], {
		stdio: ['ignore', stdout as 'pipe', 'pipe'],
	}));
}

const STREAM_SCRIPT = 'tracepoint:sock:inet_sock_set_state /args->protocol == 6/ ' +
	'{ printf("%d %s %d %d\\n", pid, comm, args->oldstate, args->newstate); }';
// TIME_WAIT entry: FIN_WAIT2 (5) or CLOSING (11) -> CLOSE (7); kernel-facts §1.3.
const COUNT_SCRIPT = 'tracepoint:sock:inet_sock_set_state /args->protocol == 6 && args->newstate == 7 && ' +
	'(args->oldstate == 5 || args->oldstate == 11)/ { @[pid, comm] = count(); }';

/** bpftrace's "Attaching N probes..." comes before the attach itself: give it a moment more. */
const BPFTRACE_ATTACH_MS = 1500;

const bpftraceStream: Mode = {
	name: 'bpftrace printf | node',
	command: `bpftrace -e '${STREAM_SCRIPT}' | node bench/line-counter.ts`,
	async start() {
		const counter = startCounter();
		const child = bpftraceChild(STREAM_SCRIPT, counter.child.stdin!);
		counter.child.stdin!.destroy();
		const stderr = collect(child.stderr);
		await waitForLine(counter.child, 'stdout', /"ready":true/, 30_000);
		await new Promise((r) => setTimeout(r, BPFTRACE_ATTACH_MS));
		return {
			pid: child.pid!,
			consumerPid: counter.child.pid,
			async stop() {
				await stopChild(child);
				const r = await counter.result();
				const lost = r.lost + [...stderr().matchAll(/Lost (\d+) events/g)].reduce((s, m) => s + Number(m[1]), 0);
				return { events: r.lines - 1 /* "Attaching…" */, lost, timeWaitByPid: r.timeWaitByPid, timeWaitDelivered: Object.values(r.timeWaitByPid).reduce((a, b) => a + b, 0) };
			},
		};
	},
};

const bpftraceCount: Mode = {
	name: 'bpftrace @[pid,comm]=count()',
	command: `bpftrace -e '${COUNT_SCRIPT}'`,
	async start() {
		const child = bpftraceChild(COUNT_SCRIPT, 'pipe');
		const stdout = collect(child.stdout);
		await waitForLine(child, 'stdout', /Attaching/, 30_000);
		await new Promise((r) => setTimeout(r, BPFTRACE_ATTACH_MS));
		return {
			pid: child.pid!,
			async stop() {
				await stopChild(child);
				const timeWaitByPid: Record<string, number> = {};
				for (const m of stdout().matchAll(/^@\[(\d+), [^\]]*\]: (\d+)$/gm)) {
					timeWaitByPid[m[1]!] = (timeWaitByPid[m[1]!] ?? 0) + Number(m[2]);
				}
				const lost = [...stdout().matchAll(/Lost (\d+) events/g)].reduce((s, m) => s + Number(m[1]), 0);
				return { lost, timeWaitByPid, timeWaitDelivered: Object.values(timeWaitByPid).reduce((a, b) => a + b, 0), note: 'aggregates in the kernel: streams nothing' };
			},
		};
	},
};

/** Two empty programs where twtrace attaches its two: what any tracer of this tracepoint pays. */
const floor: Mode = {
	name: 'floor: 2 empty tp_btf programs',
	command: 'node bench/floor.ts (bench/floor.bpf.c: two programs that return 0 on tp_btf/inet_sock_set_state)',
	async start() {
		const child = track(spawn(process.execPath, ['--import', 'tsx', path.join(root, 'bench/floor.ts')], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] }));
		await waitForLine(child, 'stderr', /floor: attached/, 30_000);
		return {
			pid: child.pid!,
			async stop() {
				await stopChild(child);
				return { note: 'attached, does nothing' };
			},
		};
	},
};

// No connect() fails in this workload: every transition runs the BPF programs and owners are
// tracked, but nothing reaches user space. Its slowdown is the in-kernel share of twtrace's cost.
const bpfSideOnly = twtrace('twtrace, BPF side only', ['--kind', 'connect_fail'], 'null');

/**
 * bench/counting.ts of the checkout in `dir` (this one by default) on the pair's namespaces, once it
 * has attached; its output collected (drained, so that it never blocks on a full pipe).
 */
export async function startCounting(pair: NetnsPair, flags: string[] = [], dir = root) {
	const child = track(spawn(process.execPath, ['--import', 'tsx', path.join(dir, 'bench/counting.ts'), ...flags, `/run/netns/${pair.client}`, `/run/netns/${pair.server}`],
		{ cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] }));
	const stdout = collect(child.stdout);
	const stderr = collect(child.stderr);
	await waitForLine(child, 'stderr', /counting: attached/, 30_000);
	return { child, stdout, stderr };
}

/**
 * The BPF side again as an agent runs it (the witness of active closes on, suspect checks once a
 * second), without and with counting in the kernel (docs/counting-in-the-kernel.md, step 1): what the
 * witness adds to the BPF side alone, what counting adds to that, and the counts against the truth.
 * bench/counting.ts reads the counters once a second into per-second bins, as an agent would: the
 * TIME_WAIT held per owner pid from the bins is what it blames (against the kernel's count), the
 * entries counted are what it delivered (against the generator's connections).
 */
function bpfSideAgent(name: string, counting: boolean): Mode {
	const flag = counting ? [] : ['--no-counting'];
	return {
		name,
		command: `node bench/counting.ts ${flag.map((f) => `${f} `).join('')}CLIENT SERVER (the programs that trace --kind connect_fail loads, the witness of active closes on${counting ? ', counting on; reads the counts 1/s' : ', counting off'})`,
		async start(pair) {
			const { child, stdout, stderr } = await startCounting(pair, flag);
			return {
				pid: child.pid!,
				async stop() {
					await stopChild(child, 'SIGTERM');
					const last = stdout().trim().split('\n').pop();
					if (!last) return { note: `no result printed; stderr: ${stderr().slice(-300)}` };
					const r = JSON.parse(last) as { timeWaitByPid?: Record<string, number>; timeWaitDelivered?: number; lost: number; keys: number };
					if (!counting) return { lost: r.lost, note: 'the witness on, counting off: streams nothing' };
					return { timeWaitByPid: r.timeWaitByPid, timeWaitDelivered: r.timeWaitDelivered, lost: r.lost, note: `counts in the kernel, ${r.keys} keys: streams nothing` };
				},
			};
		},
	};
}
// What an agent's BPF side costs without counting (the witness on), and with it.
const bpfSideWitnessing = bpfSideAgent('twtrace, BPF side witnessing', false);
const bpfSideCounting = bpfSideAgent('twtrace, BPF side counting', true);

export const MODES: Mode[] = [
	{ name: 'no tracer', command: '(the workload alone)' },
	floor,
	bpfSideOnly,
	bpfSideWitnessing,
	bpfSideCounting,
	twtrace('twtrace trace --json', ['--json'], 'file'),
	twtrace('twtrace trace --kind time_wait', ['--json', '--kind', 'time_wait'], 'counter'),
	twtraceTop,
	twtraceServe('twtrace serve (1 s scrapes)', []),
	twtraceServe('twtrace serve --no-recorder (1 s scrapes)', ['--no-recorder']),
	bpftraceStream,
	bpftraceCount,
	// The in-kernel share again, the kernel timing each program's runs: what the slowdowns above do not
	// split. Their own rows, since the timing itself costs each run two clock reads.
	{ ...floor, name: 'run-timed: floor', runTimed: true },
	{ ...bpfSideOnly, name: 'run-timed: twtrace, BPF side only', runTimed: true },
	{ ...bpfSideWitnessing, name: 'run-timed: twtrace, BPF side witnessing', runTimed: true },
	{ ...bpfSideCounting, name: 'run-timed: twtrace, BPF side counting', runTimed: true },
];
