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
import { addFilterOptions, DEFAULT_METRICS_PORT, DEFAULT_RING_BYTES, parseCount, parseDuration, parseFileSize, parseListen, parseRingSize } from './commands/options.js';
import { traceCommand, type Io, type TraceOptions } from './commands/trace.js';
import { topCommand, type TopOptions } from './commands/top.js';
import { recordCommand, type RecordOptions } from './commands/record.js';
import { REPORT_FORMATS, reportCommand, type ReportOptions } from './commands/report.js';
import { doctorCommand, UNKNOWN_EXIT, unknownLine, type DoctorOptions } from './commands/doctor.js';
import { serveCommand, type ServeOptions } from './commands/serve.js';
import { GROUPINGS, SORT_KEYS } from './model/snapshot.js';
import { packageVersion } from './tracer/preflight.js';
import { AGENT_GROUP, DEFAULT_AGENT_SOCKET } from './agent/wire.js';
import { libbpfLog, NativeError } from '../native/libbpf.js';

const EXAMPLES = `
Examples:
  sudo twtrace top                               who holds ports in TIME_WAIT, and how long until connect() fails
  sudo twtrace top --by comm --once              one snapshot, short-lived processes merged by name
  sudo twtrace record -o churn.twtcap            record for a report (Ctrl-C to stop)
  twtrace report churn.twtcap --format markdown  offenders, victims and remediation advice
  sudo twtrace doctor                            OK / WARNING / CRITICAL for monitoring (exit 0/1/2/3)
  sudo twtrace serve                             Prometheus metrics on 127.0.0.1:${DEFAULT_METRICS_PORT}/metrics
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

const RECORD_HELP = `
The capture holds the raw events, every socket walk (exact TIME_WAIT sets and timers) and each network
namespace's sysctls, so a report made from it later, elsewhere, is the one a live run would give.
It is written as it is recorded; Ctrl-C or SIGTERM ends it properly. A killed recording keeps what
was written: report on it with --partial.

Examples:
  sudo twtrace record -o churn.twtcap --duration 5m
  sudo twtrace record -o app.twtcap --netns /run/netns/app --max-size 200M
  twtrace report churn.twtcap`;

const REPORT_HELP = `
Offenders are ranked by TIME_WAIT entered; PEAK HELD is the most held at once. Victims are processes whose
connect() failed with EADDRNOTAVAIL or whose bind() failed with EADDRINUSE, with who held the ports then.
Advice follows the order that fixes exhaustion for good first: fix the application (reuse connections),
widen ip_local_port_range, (TIME_WAIT is fixed at 60 s on Linux), tcp_tw_reuse, more source addresses.

Exit status: 0 report printed, 1 unreadable or corrupt capture, or no privileges for a live report, 2 bad usage.

Examples:
  twtrace report churn.twtcap
  twtrace report churn.twtcap --format markdown > incident.md
  twtrace report churn.twtcap --format json --by comm --top 5
  sudo twtrace report --duration 60s`;

function parseInterval(value: string): number {
	const ms = parseDuration(value);
	if (ms < 100) throw new InvalidArgumentError(`${value} is too short: at least 100ms.`);
	return ms;
}

const DOCTOR_HELP = `
Counts TIME_WAIT in each network namespace by walking its socket table (BPF iter/tcp), watches for
--sample to measure connection rates and catch connect()/bind() failing for want of a port, and
reviews the sysctls. The first line is the status, Nagios style, with performance data after "|".

Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (no privileges, no BTF, bad usage): the Nagios
plugin convention, so it drops into Nagios, Icinga, Sensu or a playbook's "until" loop as it is.

Examples:
  sudo twtrace doctor
  sudo twtrace doctor --warn 20000 --crit 30000 --netns /run/netns/app
  sudo twtrace doctor --json | jq .findings`;

const SERVE_HELP = `
Metrics (base units, twtrace_ prefix), per (comm, cgroup) group: connections_total{side},
timewait_entries_total, timewait_sockets (held now), resets_total, connect_failures_total{errno},
bind_failures_total{errno}, connection_lifetime_seconds; per victim and target: port_failures_total{comm,call,errno,netns,addr,port}; per worst destination {netns,saddr,daddr,dport}:
port_headroom_ratio, seconds_to_exhaustion (+Inf while sustainable), ports_in_use, ports_usable; per
namespace: namespace_timewait_sockets; and events_dropped_total{reason}. See README "twtrace serve".

Cardinality: at most --max-series groups have series of their own; the rest are summed into
comm="other". A group idle for 5 minutes (its processes gone, no TIME_WAIT held) loses its series, and
a group in "other" twice as busy as the quietest series takes its place. Each group has 20 series, plus one per errno seen.

Listening beyond this host is a choice you write out: --listen 0.0.0.0:${DEFAULT_METRICS_PORT}. Behind it,
firewall the port or put a TLS-terminating proxy in front: the metrics name processes and peers.

Deployment: deploy/systemd/twtrace.service, deploy/kubernetes/daemonset.yaml, and alert rules in
deploy/prometheus/twtrace-alerts.yml (TIME_WAIT above 30000, headroom under 10 %, exhaustion within 5 min).

Examples:
  sudo twtrace serve
  sudo twtrace serve --listen 0.0.0.0:${DEFAULT_METRICS_PORT} --max-series 200
  sudo twtrace serve --netns /run/netns/app --listen 127.0.0.1:0     (port 0: any free one, printed at start)
  curl -s 127.0.0.1:${DEFAULT_METRICS_PORT}/metrics | grep twtrace_timewait_sockets`;

/** --standalone and --agent-socket, for the commands that can answer from the agent. */
function addAgentOptions(cmd: Command): Command {
	return cmd
		.option('--standalone', 'trace here even when an agent runs (loads the BPF programs; needs root)')
		.option('--agent-socket <path>', `the agent's socket (default ${DEFAULT_AGENT_SOCKET}, or $TWTRACE_AGENT_SOCKET)`);
}

function parsePercent(value: string): number {
	const n = Number(value.replace(/\s*%$/, ''));
	if (!/^\d+(\.\d+)?\s*%?$/.test(value) || n > 100) throw new InvalidArgumentError(`${value} is not a percentage (0-100).`);
	return n;
}

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
	addAgentOptions(top);
	// top stops draining while it walks socket tables: a larger ring absorbs the pause at full churn.
	addFilterOptions(top, { kinds: false, ringBytes: DEFAULT_RING_BYTES })
		.addHelpText('after', TOP_HELP)
		.action(async (opts: TopOptions) => topCommand(opts, io));

	const record = program.command('record')
		.description('Record TCP churn to a capture file (events and socket walks, with the host\'s sysctls) for `twtrace report`.')
		.requiredOption('-o, --output <file>', 'the capture file to write')
		.option('--duration <time>', 'stop after this long (default: until Ctrl-C or SIGTERM)', parseDuration)
		.option('--max-size <bytes>', 'stop before the file passes this size (K, M, G)', parseFileSize, 1024 ** 3)
		.option('--force', 'overwrite the file if it exists')
		.option('--walk-interval <time>', 'walk the socket tables this often (exact TIME_WAIT counts in the report)', parseInterval, 5000)
		.option('--last <time>', 'save this much of the past from the running agent\'s flight recorder (10m), instead of recording from now', parseDuration);
	addAgentOptions(record);
	addFilterOptions(record, { kinds: false, ringBytes: 32 * 1024 * 1024 })
		.addHelpText('after', RECORD_HELP)
		.action(async (opts: RecordOptions) => recordCommand(opts, io));

	const reportCmd = program.command('report')
		.description('Churn report: offenders ranked by TIME_WAIT created, the victims of port exhaustion, and remediation advice; from a capture, or live.')
		.argument('[file]', 'a capture made by twtrace record')
		.option('--duration <time>', 'without FILE: watch live this long, then report', parseDuration)
		.addOption(new Option('--format <format>', 'output format').choices(REPORT_FORMATS).default('table'))
		.option('--top <n>', 'offenders listed', parseCount, 10)
		.addOption(new Option('--by <grouping>', 'group offenders by').choices(GROUPINGS).default('process'))
		.option('--partial', 'report on a capture that was cut short (killed, disk full): what it holds, marked incomplete')
		.option('--walk-interval <time>', 'live: walk the socket tables this often', parseInterval, 5000)
		.option('--last <time>', 'without FILE: the past from the running agent\'s flight recorder (10m); default with an agent: all it holds', parseDuration);
	addAgentOptions(reportCmd);
	addFilterOptions(reportCmd, { kinds: false, ringBytes: 32 * 1024 * 1024 })
		.addHelpText('after', REPORT_HELP)
		.action(async (file: string | undefined, opts: ReportOptions) => reportCommand(file, opts, io));

	const doctor = program.command('doctor')
		.description('Check TIME_WAIT, port headroom and sysctls, for playbooks and monitoring: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.')
		.option('--warn <n>', 'TIME_WAIT sockets in a namespace that warn', parseCount, 20_000)
		.option('--crit <n>', 'TIME_WAIT sockets in a namespace that are critical', parseCount, 30_000)
		.option('--warn-headroom <percent>', 'free ports of the worst destination below which it warns', parsePercent, 20)
		.option('--crit-headroom <percent>', 'free ports of the worst destination below which it is critical', parsePercent, 10)
		.option('--sample <time>', 'watch this long for rates and failures', parseDuration, 1000)
		.option('--netns <inode|path>', 'only this network namespace (repeatable); default: this one and those in use', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
		.option('--json', 'the verdict, findings, namespaces and destinations as JSON')
		.option('--ring-size <bytes>', 'BPF ring buffer size', parseRingSize, 8 * 1024 * 1024)
		.option('-v, --verbose', 'print libbpf and verifier messages')
		.option('--standalone', 'trace here even when an agent runs (loads the BPF programs; needs root)')
		.option('--agent-socket <path>', `the agent's socket (default ${DEFAULT_AGENT_SOCKET}, or $TWTRACE_AGENT_SOCKET)`)
		.addHelpText('after', DOCTOR_HELP)
		.action(async (opts: DoctorOptions) => setExitCode(await doctorCommand(opts, io)));
	void doctor;

	const serve = program.command('serve')
		.description('Export TIME_WAIT churn and port headroom per process as Prometheus metrics (/metrics, /healthz) until stopped.')
		.addOption(new Option('--listen <host:port>', 'address to serve on; 0.0.0.0:PORT to expose beyond this host')
			.argParser(parseListen).default({ host: '127.0.0.1', port: DEFAULT_METRICS_PORT }, `127.0.0.1:${DEFAULT_METRICS_PORT}`))
		.option('--max-series <n>', 'groups (comm, cgroup) with series of their own; the rest are summed as comm="other"', parseCount, 100)
		.option('--max-destinations <n>', 'destinations exported, the least headroom first', parseCount, 10)
		.addOption(new Option('--walk-interval <time>', 'walk the socket tables this often: sockets from before start, settings, and what no tracepoint shows (expiry between walks follows the kernel timers)')
			.argParser(parseInterval).default(60_000, '60s'))
		.option('--agent-socket <path>', `serve the agent API (top, doctor, report and record use it) on this Unix socket, root:${AGENT_GROUP} 0660 (default ${DEFAULT_AGENT_SOCKET}, or $TWTRACE_AGENT_SOCKET)`)
		.option('--no-agent-socket', 'no agent API: metrics only')
		.addOption(new Option('--recorder <time>', 'the flight recorder keeps this much of the past for report --last and record --last (bounded by --recorder-size too)')
			.argParser(parseDuration).default(15 * 60_000, '15m'))
		.option('--no-recorder', 'no flight recorder')
		.option('--recorder-size <bytes>', 'the flight recorder keeps at most this much memory (K, M, G)', parseFileSize, 64 * 1024 * 1024);
	addFilterOptions(serve, { kinds: false, ringBytes: DEFAULT_RING_BYTES })
		.addHelpText('after', SERVE_HELP)
		.action(async (opts: ServeOptions) => serveCommand(opts, io));

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
