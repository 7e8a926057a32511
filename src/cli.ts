#!/usr/bin/env node
/**
 * The command-line program. The only module that reads argv, prints errors and sets the exit code:
 * a TwtraceError prints its message and hint; anything else is a bug and prints its stack.
 */
import { Command, CommanderError } from 'commander';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CaptureError } from './capture/format.js';
import { ExitCode, TwtraceError } from './errors.js';
import { DEFAULT_METRICS_PORT } from './commands/options.js';
import type { Io } from './io.js';
import { registerTrace } from './commands/trace.js';
import { registerTop } from './commands/top.js';
import { registerRecord } from './commands/record.js';
import { registerReport } from './commands/report.js';
import { registerDoctor, UNKNOWN_EXIT, unknownLine } from './commands/doctor.js';
import { registerServe } from './commands/serve.js';
import { packageVersion } from './tracer/preflight.js';
import { libbpfLog, NativeError } from '../native/libbpf.js';

const EXAMPLES = `
Agent first: a running agent (twtrace serve, e.g. deploy/systemd/twtrace.service) has watched since
it started, so top, doctor and report answer at once, with exact owners for sockets born hours ago,
for root and members of the twtrace group. Without one they trace by themselves (root).

Examples:
  sudo twtrace serve                             the agent: Prometheus metrics on 127.0.0.1:${DEFAULT_METRICS_PORT}/metrics, the local API, the flight recorder
  twtrace top                                    who holds ports in TIME_WAIT, who fails for want of one, how long until connect() fails
  twtrace doctor                                 OK / WARNING / CRITICAL for monitoring (exit 0/1/2/3)
  twtrace report --last 15m --format markdown    the minutes before the alert: offenders, victims and remediation advice
  twtrace record --last 15m -o incident.twtcap   keep them for later
  sudo twtrace top --standalone --by comm --once without the agent: one snapshot, processes merged by name
  sudo twtrace record -o churn.twtcap            record from now (Ctrl-C to stop); twtrace report churn.twtcap
  sudo twtrace trace --kind time_wait            who puts sockets into TIME_WAIT, live
  sudo twtrace trace --kind connect_fail,bind_fail   who hits EADDRNOTAVAIL / EADDRINUSE

Exit status: 0 success, 1 failure (privileges, kernel support), 2 bad usage.`;

export function buildProgram(io: Io, setExitCode: (code: number) => void = () => {}): Command {
	const program = new Command('twtrace')
		.description('Attribute TCP TIME_WAIT churn and ephemeral-port exhaustion to the process that caused it (eBPF).')
		.version(packageVersion())
		.showHelpAfterError('(run with --help for usage)')
		.configureOutput({
			writeOut: (s) => io.stdout.write(s),
			writeErr: (s) => io.stderr.write(s),
		})
		.exitOverride();

	registerTrace(program, io);
	registerTop(program, io);
	registerRecord(program, io);
	registerReport(program, io);
	registerDoctor(program, io, setExitCode);
	registerServe(program, io);
	program.addHelpText('after', EXAMPLES);
	return program;
}

/** Runs the program on `argv` (without node and script) and returns the exit code. Never throws. */
export async function run(argv: string[], io: Io): Promise<number> {
	let code: number = ExitCode.ok;
	const program = buildProgram(io, (c) => (code = c));
	try {
		await program.parseAsync(argv, { from: 'user' });
		return code;
	} catch (error) {
		const failed = report(error, io);
		if (argv[0] !== 'doctor' || failed === ExitCode.ok) return failed;
		// doctor speaks the Nagios convention: anything that kept it from a verdict is UNKNOWN (3).
		const message = error instanceof Error && !(error instanceof CommanderError) ? error.message : 'bad usage (see twtrace doctor --help)';
		io.stdout.write(`${unknownLine(new Error(message))}\n`);
		return UNKNOWN_EXIT;
	}
}

function report(error: unknown, io: Io): number {
	if (error instanceof CommanderError) {
		// Help and version exit 0; commander has already printed the usage error itself.
		return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
	}
	if (error instanceof CaptureError) {
		// Every capture a command reads or writes (a file, the agent's flight recorder) fails here alike.
		io.stderr.write(`twtrace: ${error.source ? `${error.source}: ` : ''}${error.message}\n${error.hint ? `  ${error.hint}\n` : ''}`);
		return ExitCode.failure;
	}
	if (error instanceof TwtraceError) {
		io.stderr.write(`twtrace: ${error.message}\n${error.hint ? `  ${error.hint}\n` : ''}`);
		return error.exitCode;
	}
	if (error instanceof NativeError) {
		// Load/attach failures: accurate but without a remedy; preflight has ruled out the common causes.
		const tail = libbpfLog().slice(-5).map((line) => `  | ${line}\n`).join('');
		io.stderr.write(`twtrace: ${error.message}\n${tail}  Run with --verbose for libbpf's whole log, and report it if the cause is unclear.\n`);
		return ExitCode.failure;
	}
	io.stderr.write(`twtrace: internal error, please report it:\n${(error as Error)?.stack ?? String(error)}\n`);
	return ExitCode.failure;
}

/**
 * The first SIGINT, SIGTERM or SIGHUP. The handlers stay installed: a second Ctrl-C while the command
 * stops (it drains, detaches and prints its summary within a second) must not kill it half-way with
 * the default action, losing the summary and leaving the terminal raw.
 */
function interruptedBySignal(): Promise<string> {
	return new Promise((resolve) => {
		for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => resolve(signal));
	});
}

const isMain = process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
	// `twtrace --help | head -1`: the reader is gone before the help is written; that is not an error.
	// Commands that stream output watch stdout themselves (commands/run.ts) and stop.
	process.stdout.on('error', (error: NodeJS.ErrnoException) => {
		if (error.code !== 'EPIPE') throw error;
	});
	const io: Io = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, interrupted: interruptedBySignal() };
	const code = await run(process.argv.slice(2), io);
	// Writes to a pipe are asynchronous in Node (write() returns false and buffers): process.exit()
	// would cut what a slow reader has not taken yet (`twtrace trace | slow-consumer` lost a ring's
	// worth of lines at its end). Wait until stdout has handed everything to the kernel; a further
	// SIGINT/SIGTERM gives up on a reader that never reads.
	await Promise.race([
		new Promise<void>((resolve) => (process.stdout.writableLength === 0 ? resolve() : process.stdout.write('', () => resolve()))),
		new Promise<void>((resolve) => {
			for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve());
		}),
	]);
	// Exit now, not when the event loop has drained: until the very end a late Ctrl-C finds the
	// handlers above; during Node's own teardown it would kill the process with 130 instead of `code`.
	process.exit(code);
}
