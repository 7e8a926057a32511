/**
 * Child processes for integration tests: twtrace itself, and tcp-scenario clients and servers run
 * inside a namespace. Every child is killed by pid if a test ends early.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPair, type NetnsPair } from '../../testbed/netns.js';
import { cli, scenarioBin } from './env.js';
import { runCommand, track, waitForLine, type CommandResult } from '../../testbed/children.js';

/**
 * The checkout's `twtrace ARGS`, run to its end (30 s at most): its exit code and output. `wrap`: a
 * command that runs it, as `setpriv …` does.
 */
export function runTwtrace(args: string[], wrap: string[] = []): Promise<CommandResult> {
	const argv = [...wrap, process.execPath, cli, ...args];
	return runCommand(argv[0]!, argv.slice(1), { timeoutMs: 30_000 });
}

/** A copy of tcp-scenario named `comm` in `dir`: a process's comm is its executable's name. */
export function scenarioNamed(dir: string, comm: string): string {
	const bin = path.join(dir, comm);
	fs.copyFileSync(scenarioBin, bin);
	fs.chmodSync(bin, 0o755);
	return bin;
}


export interface TraceRun {
	/** Stops twtrace with SIGINT and returns its output. */
	stop(): Promise<{ code: number | null; events: Record<string, unknown>[]; stderr: string }>;
}

/** Starts `twtrace trace --json ARGS` and waits until it is attached. */
export async function startTrace(args: string[]): Promise<TraceRun> {
	const child = track(spawn(process.execPath, [cli, 'trace', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
	// Listened for from the start: a trace that exits early must fail the test, not leave stop() waiting
	// for a 'close' that has already been emitted.
	const closed = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
	let stdout = '';
	let stderr = '';
	child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
	child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
	await waitForLine(child, 'stderr', /Ctrl-C to stop/, 15_000);
	return {
		async stop() {
			// Let the 10 ms drain pick up the last records before stopping (stop drains once more anyway).
			await new Promise((r) => setTimeout(r, 100));
			if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
			const [code] = await closed;
			const events = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
			return { code, events, stderr };
		},
	};
}

export interface ScenarioResult {
	pid: number;
	ok: number;
	failed: number;
	errno: number;
	children: number[];
}

/**
 * Runs a tcp-scenario client to completion inside `ns` and returns its JSON result. `bin`: a copy of
 * tcp-scenario under another name, to give the process another comm.
 */
export async function runClient(ns: string, addr: string, port: number, mode: string, n: number, bin = scenarioBin, cgroupDir?: string): Promise<ScenarioResult> {
	const argv = ['netns', 'exec', ns, bin, 'client', addr, String(port), mode, String(n)];
	// In a cgroup of the test's own: the shell moves itself there, then execs (the pid stays the same).
	const child = track(cgroupDir === undefined
		? spawn('ip', argv, { stdio: ['ignore', 'pipe', 'inherit'] })
		: spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec ip "$@"', cgroupDir, ...argv], { stdio: ['ignore', 'pipe', 'inherit'] }));
	let out = '';
	child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
	// 'close', not 'exit': only then has all of stdout been read.
	const [code] = (await once(child, 'close')) as [number | null];
	if (code !== 0) throw new Error(`tcp-scenario client ${mode} exited with ${code}: ${out}`);
	const result = JSON.parse(out.trim().split('\n').pop()!) as ScenarioResult;
	// `ip netns exec` execs the program, so the pid we spawned is the pid that made the syscalls.
	if (result.pid !== child.pid) throw new Error(`expected pid ${child.pid}, helper reported ${result.pid}`);
	return result;
}

export interface Server {
	pid: number;
	/** Resolves when the server has handled its N connections and exited. */
	done: Promise<void>;
}

/** Starts a tcp-scenario server (or a copy, `bin`) inside `ns` and waits until it listens. */
export async function startServer(ns: string, addr: string, port: number, mode: string, n: number, bin = scenarioBin): Promise<Server> {
	const child = track(spawn('ip', ['netns', 'exec', ns, bin, 'server', addr, String(port), mode, String(n)], { stdio: ['ignore', 'pipe', 'inherit'] }));
	const exited = once(child, 'exit');
	await waitForLine(child, 'stdout', /"ready":true/, 10_000);
	return {
		pid: child.pid!,
		done: exited.then(([code]) => {
			if (code !== 0) throw new Error(`tcp-scenario server ${mode} exited with ${String(code)}`);
		}),
	};
}

export interface TopRun {
	/** Snapshots received so far, oldest first. */
	snapshots: Record<string, any>[];
	/** Resolves with the first snapshot (received from now on) that satisfies `test`. */
	waitFor(test: (s: Record<string, any>) => boolean, timeoutMs: number): Promise<Record<string, any>>;
	stop(): Promise<{ code: number | null; stderr: string }>;
}

/** Starts `twtrace top --json ARGS` and waits for its first snapshot. */
export async function startTop(args: string[]): Promise<TopRun> {
	const child = track(spawn(process.execPath, [cli, 'top', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
	const snapshots: Record<string, any>[] = [];
	let partial = '';
	let stderr = '';
	const waiters: (() => void)[] = [];
	child.stdout!.on('data', (d: Buffer) => {
		const lines = (partial + d.toString()).split('\n');
		partial = lines.pop()!;
		for (const line of lines) if (line) snapshots.push(JSON.parse(line) as Record<string, any>);
		for (const w of waiters.splice(0)) w();
	});
	child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
	const run: TopRun = {
		snapshots,
		waitFor(test, timeoutMs) {
			const from = snapshots.length;
			return new Promise((resolve, reject) => {
				const timer = setTimeout(() => reject(new Error(`no matching top snapshot in ${timeoutMs} ms; last: ${JSON.stringify(snapshots.at(-1))}\n${stderr}`)), timeoutMs);
				const check = () => {
					const hit = snapshots.slice(from).find(test);
					if (hit) {
						clearTimeout(timer);
						resolve(hit);
					} else waiters.push(check);
				};
				check();
			});
		},
		async stop() {
			child.kill('SIGINT');
			const [code] = (await once(child, 'close')) as [number | null];
			return { code, stderr };
		},
	};
	await run.waitFor(() => true, 15_000);
	return run;
}

/**
 * What an agent test starts from: a temporary directory (its agent's socket in it) and a namespace
 * pair whose client has `ports` ephemeral ports from 40000 and tcp_tw_reuse off, so that the range
 * runs out; both removed after the test.
 */
export function agentTestBed(t: ExecutionContext, ports: number): { dir: string; socket: string; pair: NetnsPair } {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-agent-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	const pair = createPair();
	t.teardown(() => pair.remove());
	pair.sysctl(pair.client, 'net.ipv4.ip_local_port_range', `40000 ${40000 + ports - 1}`);
	pair.sysctl(pair.client, 'net.ipv4.tcp_tw_reuse', '0');
	return { dir, socket: path.join(dir, 'run', 'agent.sock'), pair };
}

/**
 * A process named `churner` takes every one of the client's `ports` towards the server's port 7800
 * (closing first: the TIME_WAIT is the client's), then one named `victim` fails to connect with
 * EADDRNOTAVAIL. The truth to compare with: what `ss` shows in TIME-WAIT afterwards.
 */
export async function exhaustRange(t: ExecutionContext, bed: { dir: string; pair: NetnsPair }, ports: number): Promise<{ churner: ScenarioResult; victim: ScenarioResult; startedAtMs: number; inSs: number }> {
	const { dir, pair } = bed;
	const server = await startServer(pair.server, '0.0.0.0', 7800, 'wait-close', ports);
	const startedAtMs = Date.now();
	const churner = await runClient(pair.client, pair.serverAddr, 7800, 'close-first', ports, scenarioNamed(dir, 'churner'));
	t.is(churner.ok, ports);
	const victim = await runClient(pair.client, pair.serverAddr, 7800, 'exhaust', 1, scenarioNamed(dir, 'victim'));
	t.like(victim, { ok: 0, errno: 99 });
	await server.done;
	// The last closes may still be in FIN_WAIT2 (waiting for the server's FIN) when the runs return:
	// the witness is read once they have all reached TIME_WAIT, or after 2 s, whichever comes first.
	let inSs = pair.timeWaitCount(pair.client);
	for (const until = Date.now() + 2000; inSs < ports && Date.now() < until; inSs = pair.timeWaitCount(pair.client)) await new Promise((r) => setTimeout(r, 50));
	t.true(inSs >= ports - 5, `ss shows ${inSs} TIME-WAIT sockets`); // rfc1337 on: all of them normally
	return { churner, victim, startedAtMs, inSs };
}
