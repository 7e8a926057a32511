/**
 * `twtrace doctor`: the check for playbooks and monitoring. Asks the running agent, or (standalone)
 * walks the namespaces' socket tables (iter/tcp), samples events for --sample to measure rates and
 * catch failures, walks again; prints one status line (Nagios style, with performance data) and
 * the details, or JSON.
 * Returns the exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
 */
import type { Command } from 'commander';
import { DEFAULT_AGENT_SOCKET } from '../agent/wire.js';
import { evaluate, inputFromSnapshot, type DoctorInput, type Thresholds } from '../doctor/check.js';
import { TwtraceError, usageError } from '../errors.js';
import { COMMAND_KINDS } from '../event/kinds.js';
import type { Io } from '../io.js';
import { VICTIM_WINDOW_US } from '../model/port-rows.js';
import { Run } from '../run.js';
import type { AgentChoiceOptions } from '../source/agent-choice.js';
import { AgentSource } from '../source/agent-source.js';
import { LiveSource } from '../source/live-source.js';
import { openSource } from '../source/open.js';
import type { Source } from '../source/source.js';
import { formatDuration } from '../views/duration.js';
import { parseCount, parseDuration, parsePercent, parseRingSize, verboseLog, type FilterOptions } from './options.js';

export interface DoctorOptions extends Pick<FilterOptions, 'netns' | 'ringSize' | 'verbose'>, AgentChoiceOptions {
	warn: number;
	crit: number;
	warnHeadroom: number;
	critHeadroom: number;
	sample: number;
	json?: boolean;
}

export const UNKNOWN_EXIT = 3;

/** What the snapshot of the doctor asks for. */
const QUERY = { by: 'process', sort: 'timeWait', maxRows: 5, maxDestinations: 50, maxVictims: 100 } as const;

export async function doctorCommand(opts: DoctorOptions, io: Io): Promise<number> {
	if (opts.warn > opts.crit) throw usageError(`--warn ${opts.warn} is above --crit ${opts.crit}`);
	if (opts.warnHeadroom < opts.critHeadroom) throw usageError(`--warn-headroom ${opts.warnHeadroom} % is below --crit-headroom ${opts.critHeadroom} %`);
	const thresholds: Thresholds = { warnTimeWait: opts.warn, critTimeWait: opts.crit, warnHeadroom: opts.warnHeadroom / 100, critHeadroom: opts.critHeadroom / 100 };
	const source = await openSource('doctor', opts, io, {
		narrows: true,
		live: { kinds: COMMAND_KINDS.doctor, model: { closesFromTimeWait: true }, likelyOwners: true, log: verboseLog(opts, io) },
	});
	let input: DoctorInput;
	try {
		input = await inputFrom(source, opts, io);
	} finally {
		await source.close();
	}
	const label = source.kind === 'live' ? `standalone, ${formatDuration(opts.sample / 1000)} sample` : source.label();
	const verdict = evaluate(input, thresholds);
	if (opts.json) {
		io.stdout.write(JSON.stringify({ status: verdict.status, exitCode: verdict.exitCode, line: verdict.line, findings: verdict.findings, source: label, ...input, thresholds }, null, 2) + '\n');
	} else {
		const details = verdict.findings.map((f) => `  [${f.status}] ${f.message}`);
		const holders = input.holders.map((h) => `  ${h.label}: ${h.timeWait.toLocaleString('en-US')} TIME_WAIT held (${h.side})`);
		io.stdout.write([verdict.line, ...details, ...(holders.length ? ['Holding the most TIME_WAIT:', ...holders] : []),
			`Source: ${label}`,
			...(verdict.exitCode ? ['Next: twtrace top (who, live), then twtrace report --last 15m (evidence and advice); see docs/playbook.md'] : [])].join('\n') + '\n');
	}
	return verdict.exitCode;
}

/**
 * The doctor's input from `source`: the agent's model at once (rates over its last 10 s, victims of
 * its last minute); traced here, --sample of events between two walks (the second makes the counts exact).
 */
async function inputFrom(source: Source, opts: DoctorOptions, io: Io): Promise<DoctorInput> {
	const isLive = source.kind === 'live';
	if (isLive) {
		const run = new Run(io, { durationMs: opts.sample });
		await run.finished;
		run.dispose();
		await source.settle();
	}
	const reply = await source.reply({ ...QUERY, windowMs: isLive ? Math.max(opts.sample, 1) : 10_000 });
	const asked = source instanceof AgentSource ? source.view?.netns ?? [] : source instanceof LiveSource ? source.filters.netns : [];
	const sampleSeconds = Math.round(opts.sample / 100) / 10;
	return inputFromSnapshot(reply.snapshot, {
		asked: new Set(asked),
		unwalked: reply.unwalked,
		sampleSeconds: isLive ? sampleSeconds : VICTIM_WINDOW_US / 1_000_000,
		watchedSeconds: isLive ? sampleSeconds : Math.round(reply.agent?.uptimeSeconds ?? 0),
	});
}

/** For errors before any verdict: the Nagios UNKNOWN line on stdout, the error on stderr, exit 3. */
export function unknownLine(error: TwtraceError | Error): string {
	return `TWTRACE UNKNOWN - ${error.message}`;
}

const DOCTOR_HELP = `
With a running agent, answers at once from its model: each namespace's TIME_WAIT now (exact at each
socket walk, kept by every TIME_WAIT entry and expiry in between), the headroom of the destinations,
and who failed for want of a port in the last minute. --netns narrows the agent's model to those
namespaces when the agent covers them; otherwise doctor checks here and says why. Without an agent (or
with --standalone) it walks each namespace's socket table (BPF iter/tcp), watches for --sample to
measure connection rates and catch connect()/bind() failing for want of a port, and walks again.
It reviews the sysctls. The first line is the status, Nagios style, with performance data after "|".

Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (no privileges, no BTF, bad usage): the Nagios
plugin convention, so it drops into Nagios, Icinga, Sensu or a playbook's "until" loop as it is.

Examples:
  sudo twtrace doctor
  sudo twtrace doctor --warn 20000 --crit 30000 --netns /run/netns/app
  sudo twtrace doctor --json | jq .findings`;


/** Adds `doctor` and its options to the program (program.command() copies output, exit and help settings). */
export function registerDoctor(program: Command, io: Io, setExitCode: (code: number) => void): void {
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
}
