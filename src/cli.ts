#!/usr/bin/env node
/**
 * The command-line program. The only module that reads argv, prints errors and sets the exit code:
 * a TwtraceError prints its message and hint; anything else is a bug and prints its stack.
 */
import { Command, CommanderError } from 'commander';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ExitCode, TwtraceError } from './errors.js';
import { addFilterOptions, parseCount, parseDuration } from './commands/options.js';
import { traceCommand, type Io, type TraceOptions } from './commands/trace.js';
import { libbpfLog, NativeError } from '../native/libbpf.js';

const EXAMPLES = `
Examples:
  sudo twtrace trace --kind time_wait            who puts sockets into TIME_WAIT, live
  sudo twtrace trace --json --duration 30s > tw.ndjson
  sudo twtrace trace --netns /run/netns/app --port 5432
  sudo twtrace trace --kind connect_fail,bind_fail   who hits EADDRNOTAVAIL / EADDRINUSE

Exit status: 0 success, 1 failure (privileges, kernel support), 2 bad usage.`;

export function buildProgram(io: Io): Command {
	const program = new Command('twtrace')
		.description('Attribute TCP TIME_WAIT churn and ephemeral-port exhaustion to the process that caused it (eBPF).')
		.version(process.env.npm_package_version ?? '0.1.0')
		.showHelpAfterError('(run with --help for usage)')
		.configureOutput({
			writeOut: (s) => io.stdout.write(s),
			writeErr: (s) => io.stderr.write(s),
		})
		.exitOverride();

	// program.command() copies the output, exit and help-after-error settings to the subcommand.
	const trace = program.command('trace')
		.description('Print TCP connection events with the process to blame: connect, accept, active_close, time_wait, reset, connect_fail, bind_fail.')
		.option('--json', 'one JSON object per line (NDJSON); see README "Event schema"')
		.option('--duration <time>', 'stop after this long (500ms, 10s, 5m)', parseDuration)
		.option('--count <n>', 'stop after n events', parseCount)
		.option('--no-header', 'omit the column header line (text output)');
	addFilterOptions(trace)
		.addHelpText('after', EXAMPLES)
		.action(async (opts: TraceOptions) => traceCommand(opts, io));
	program.addHelpText('after', EXAMPLES);
	return program;
}

/** Runs the program on `argv` (without node and script) and returns the exit code. Never throws. */
export async function run(argv: string[], io: Io): Promise<number> {
	const program = buildProgram(io);
	try {
		await program.parseAsync(argv, { from: 'user' });
		return ExitCode.ok;
	} catch (error) {
		return report(error, io);
	}
}

function report(error: unknown, io: Io): number {
	if (error instanceof CommanderError) {
		// Help and version exit 0; commander has already printed the usage error itself.
		return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
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

function interruptedBySignal(): Promise<string> {
	return new Promise((resolve) => {
		for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, () => resolve(signal));
	});
}

const isMain = process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
	const io: Io = { stdout: process.stdout, stderr: process.stderr, interrupted: interruptedBySignal() };
	process.exitCode = await run(process.argv.slice(2), io);
}
