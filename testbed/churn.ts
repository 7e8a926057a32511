/**
 * bench/churn (a C client and server making TCP connections as fast as asked) in a namespace pair,
 * for the loss test and bench/ (no test-runner imports): the server waits for the client, the client
 * counts what it completed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { track, waitForLine } from './children.js';
import type { NetnsPair } from './netns.js';

// Not from test/helpers/env.ts: bench/ uses this module too, and env.ts is for ava's processes only.
export const churnBin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../build/churn');

export interface ChurnLoad {
	/** The first destination port; the server listens on `ports` of them from there. */
	port: number;
	ports: number;
	threads: number;
	/** client-close (the default: TIME_WAIT on the client), server-close or linger0. */
	mode?: string;
}

/** What the client prints when it ends. */
export interface ChurnResult {
	pid: number;
	connections: number;
	seconds: number;
	perSecond: number;
	errors: Record<string, number>;
}

/** Starts the server in the pair's server namespace for at most `seconds` and waits until it listens. */
export async function startChurnServer(pair: NetnsPair, load: ChurnLoad, seconds: number): Promise<ChildProcess> {
	const server = track(spawn('ip', ['netns', 'exec', pair.server, churnBin, 'server', pair.serverAddr, String(load.port), String(load.ports), load.mode ?? 'client-close', String(load.threads), String(seconds)],
		{ stdio: ['ignore', 'pipe', 'inherit'] }));
	await waitForLine(server, 'stdout', /"ready":true/, 10_000);
	return server;
}

/**
 * Runs the client in the pair's client namespace for `seconds`, or `maxConnections` (0: no limit),
 * at `ratePerSec` (0: as fast as it can), and returns its count. `ip netns exec` execs churn, so the
 * pid spawned is the pid that connects.
 */
export async function runChurnClient(pair: NetnsPair, load: ChurnLoad, seconds: number, maxConnections = 0, ratePerSec = 0): Promise<ChurnResult> {
	const client = track(spawn('ip', ['netns', 'exec', pair.client, churnBin, 'client', pair.serverAddr, String(load.port), String(load.ports), load.mode ?? 'client-close', String(load.threads), String(seconds), String(maxConnections), String(ratePerSec)],
		{ stdio: ['ignore', 'pipe', 'inherit'] }));
	let out = '';
	client.stdout!.on('data', (d: Buffer) => (out += d.toString()));
	const [code] = (await once(client, 'close')) as [number | null];
	if (code !== 0) throw new Error(`churn client exited with ${code}`);
	return JSON.parse(out.trim().split('\n').pop()!) as ChurnResult;
}

/** Stops the server: it serves until idle for 100 ms, then exits, so no connection is reset. */
export async function stopChurnServer(server: ChildProcess): Promise<void> {
	if (server.exitCode !== null || server.signalCode !== null) return;
	const closed = once(server, 'close');
	server.kill('SIGTERM');
	await closed;
}
