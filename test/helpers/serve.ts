/** `twtrace serve` as a child process of a test, on a free port; stopped by SIGTERM. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { cli } from './env.js';
import { track, waitForLine } from './children.js';

export interface Serve {
	child: ChildProcess;
	/** http://127.0.0.1:PORT */
	url: string;
	stderr(): string;
	/** SIGTERM, and the exit code. */
	stop(): Promise<number | null>;
}

export async function startServe(args: string[], wrap: string[] = []): Promise<Serve> {
	// Tests run side by side: no agent API unless a test asks for its own socket.
	const agent = args.some((a) => a.startsWith('--agent-socket')) ? [] : ['--no-agent-socket'];
	const argv = [...wrap, process.execPath, cli, 'serve', '--listen', '127.0.0.1:0', ...agent, ...args];
	const child = track(spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] }));
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

