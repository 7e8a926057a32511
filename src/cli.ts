#!/usr/bin/env node
/**
 * The command-line program. The only module that reads argv, prints errors and sets the exit code:
 * a TwtraceError prints its message and hint; anything else is a bug and prints its stack.
 */
import { Command, CommanderError, Option } from 'commander';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ExitCode, TwtraceError } from './errors.js';
import { InvalidArgumentError } from 'commander';
import { addFilterOptions, parseCount, parseDuration } from './commands/options.js';
import { traceCommand, type Io, type TraceOptions } from './commands/trace.js';
import { topCommand, type TopOptions } from './commands/top.js';
import { GROUPINGS, SORT_KEYS } from './model/snapshot.js';
import { libbpfLog, NativeError } from '../native/libbpf.js';

const EXAMPLES = `
Examples:
  sudo twtrace top                               who holds ports in TIME_WAIT, and how long until connect() fails
  sudo twtrace top --by comm --once              one snapshot, short-lived processes merged by name
  sudo twtrace trace --kind time_wait            who puts sockets into TIME_WAIT, live
  sudo twtrace trace --json --duration 30s > tw.ndjson
  sudo twtrace trace --netns /run/netns/app --port 5432
  sudo twtrace trace --kind connect_fail,bind_fail   who hits EADDRNOTAVAIL / EADDRINUSE

Exit status: 0 success, 1 failure (privileges, kernel support), 2 bad usage.`;

const TOP_HELP = `
Keys (full screen, on a terminal): q quit · s next sort · g next grouping · p pause · / filter · ? help
Without a terminal, or with --once, --iterations or --json, snapshots are printed as text or JSON lines.

Rows: TW-HELD is TIME_WAIT sockets held now by the group; SIDE is the end that closes first, which is the
end that holds the TIME_WAIT; "(before start)" holds sockets already in TIME_WAIT when twtrace started.
The header shows each network namespace's TIME_WAIT against tcp_max_tw_buckets, its port range, and for
the worst destination the headroom: one destination sustains (usable ports / 60 s) new connections per second.

Examples:
  sudo twtrace top
  sudo twtrace top --by comm --netns /run/netns/app
  sudo twtrace top --json --iterations 10 --interval 2s > top.ndjson`;

function parseInterval(value: string): number {
	const ms = parseDuration(value);
	if (ms < 100) throw new InvalidArgumentError(`${value} is too short: at least 100ms.`);
	return ms;
}

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

	const top = program.command('top')
		.description('Live view of TCP churn per process: TIME_WAIT held now (exact: socket tables are walked), rates, connection lifetimes, ' +
			'and for the worst destination the ports in use, the sustainable rate (usable ports / 60 s) and the time until connect() fails.')
		.addOption(new Option('--by <grouping>', 'group rows by').choices(GROUPINGS).default('process'))
		.addOption(new Option('--sort <key>', 'sort rows by').choices(SORT_KEYS).default('timeWait'))
		.option('--interval <time>', 'refresh every (rates are over the same window)', parseInterval, 1000)
		.option('--walk-interval <time>', 'walk the socket tables (exact TIME_WAIT counts, timers, sockets from before start) at least this often', parseInterval, 5000)
		.option('--once', 'print one snapshot after one interval and exit (same as --iterations 1)')
		.option('--iterations <n>', 'print n snapshots, one per interval, and exit', parseCount)
		.option('--json', 'one JSON object per snapshot, one per line; see README "top --json"');
	// top stops draining while it walks socket tables: a larger ring absorbs the pause at full churn.
	addFilterOptions(top, { kinds: false, ringBytes: 32 * 1024 * 1024 })
		.addHelpText('after', TOP_HELP)
		.action(async (opts: TopOptions) => topCommand(opts, io));

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
	const io: Io = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, interrupted: interruptedBySignal() };
	process.exitCode = await run(process.argv.slice(2), io);
}
