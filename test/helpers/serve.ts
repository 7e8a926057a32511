/** `twtrace serve` as a child process of a test, on a free port; stopped by SIGTERM. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { cli } from './env.js';
import { track, waitForLine } from '../../testbed/children.js';
import { parseExposition, type Sample } from './exposition.js';

export interface Serve {
	child: ChildProcess;
	/** http://127.0.0.1:PORT */
	url: string;
	stderr(): string;
	/** SIGTERM, and the exit code. */
	stop(): Promise<number | null>;
}

export interface ServeOptions {
	/** A command that runs the rest, as `setpriv …` does. */
	wrap?: string[];
	/** The twtrace to run (default: the checkout's dist/src/cli.js under this Node.js). */
	twtrace?: string[];
	env?: NodeJS.ProcessEnv;
}

export async function startServe(args: string[], { wrap = [], twtrace = [process.execPath, cli], env = process.env }: ServeOptions = {}): Promise<Serve> {
	// Tests run side by side: no agent API unless a test asks for its own socket.
	const agent = args.some((a) => a.startsWith('--agent-socket')) ? [] : ['--no-agent-socket'];
	const argv = [...wrap, ...twtrace, 'serve', '--listen', '127.0.0.1:0', ...agent, ...args];
	const child = track(spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env }));
	let stderr = '';
	child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
	const line = await waitForLine(child, 'stderr', /serving metrics on (http:\/\/\S+)\/metrics/, 20_000);
	return {
		child,
		url: /serving metrics on (http:\/\/\S+)\/metrics/.exec(line)![1]!,
		stderr: () => stderr,
		async stop() {
			child.kill('SIGTERM');
			const [code] = (await once(child, 'close')) as [number | null];
			return code;
		},
	};
}

/** One scrape of serve's /metrics, parsed. */
export async function scrape(url: string): Promise<{ text: string; samples: Sample[] }> {
	const text = await (await fetch(`${url}/metrics`)).text();
	return { text, samples: parseExposition(text) };
}

/** Polls `probe` every 250 ms until it returns a value; fails naming `what` after `timeoutMs`. */
export async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
	const deadline = Date.now() + timeoutMs;
	let last: unknown;
	while (Date.now() < deadline) {
		try {
			const value = await probe();
			if (value !== undefined) return value;
		} catch (error) {
			last = error;
		}
		await new Promise((r) => setTimeout(r, 250));
	}
	throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** A TCP port free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const s = net.createServer().listen(0, '127.0.0.1', () => {
			const { port } = s.address() as net.AddressInfo;
			s.close(() => resolve(port));
		}).on('error', reject);
	});
}
