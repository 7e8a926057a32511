/** Child processes shared by the tests and bench/ (no test-runner imports): tracking, waiting for a line, running a command to its end. */
import { execFile, type ChildProcess } from 'node:child_process';

const running = new Set<ChildProcess>();
process.on('exit', () => {
	for (const child of running) child.kill('SIGKILL');
});

/** Kills `child` by its pid if this process exits first (a failed test, an interrupted bench). */
export function track(child: ChildProcess): ChildProcess {
	running.add(child);
	child.on('exit', () => running.delete(child));
	return child;
}

/** Resolves with the first line of `stream` that matches, or rejects after `timeoutMs`. */
export function waitForLine(child: ChildProcess, stream: 'stdout' | 'stderr', match: RegExp, timeoutMs: number): Promise<string> {
	return new Promise((resolve, reject) => {
		let buf = '';
		const timer = setTimeout(() => reject(new Error(`timed out waiting for ${match} on ${stream}; got: ${buf}`)), timeoutMs);
		const onData = (d: Buffer) => {
			buf += d.toString();
			const line = buf.split('\n').find((l) => match.test(l));
			if (line !== undefined) {
				clearTimeout(timer);
				child[stream]!.off('data', onData);
				resolve(line);
			}
		};
		child[stream]!.on('data', onData);
		child.once('exit', (code) => {
			clearTimeout(timer);
			reject(new Error(`exited with ${code} before ${match}; ${stream}: ${buf}`));
		});
	});
}

export interface CommandResult {
	code: number;
	stdout: string;
	stderr: string;
}

/** Runs a command to its end and gives its exit code and output, never rejecting: tests assert on them. */
export function runCommand(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CommandResult> {
	return new Promise((resolve) => execFile(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 << 20 },
		(error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr })));
}

/**
 * A bench's entry point: SIGINT and SIGTERM exit through 'exit', so the children tracked here are
 * killed and the namespaces made are removed (testbed/netns.ts), instead of left running.
 */
export function exitOnSignals(): void {
	process.once('SIGINT', () => process.exit(130));
	process.once('SIGTERM', () => process.exit(143));
}
