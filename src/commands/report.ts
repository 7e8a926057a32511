/**
 * `twtrace report [FILE]`: a churn report from a capture (replayed through the model `top` runs),
 * or live for --duration, printed as a table, JSON or Markdown (each starts with the one-line summary).
 */
import { Option, type Command } from 'commander';
import { GROUPINGS } from '../model/snapshot.js';
import { addAgentOptions, addFilterOptions, modelFilters, parseCount, parseDuration, parseInterval, verboseLog, type FilterOptions } from './options.js';
import { captureDrops, CaptureError } from '../capture/format.js';
import { parseCapture, readCaptureFile } from '../capture/reader.js';
import { agentLabel, chooseAgent, formatSpan, tracingFilters, type AgentChoiceOptions } from './agent-choice.js';
import { Run } from './run.js';
import type { Grouping } from '../model/snapshot.js';
import { ReportBuilder, type Report } from '../report/report.js';
import { describeFilters, replayCapture } from '../report/replay.js';
import { TwtraceError, usageError } from '../errors.js';
import { CgroupPaths, epochOffsetUs } from '../tracer/host.js';
import { monotonicUs } from '../pipeline/live.js';
import { LivePipeline } from '../pipeline/pipeline.js';
import { defaultObjectPath, preflight } from '../tracer/preflight.js';
import { reportMarkdown, reportTable } from '../views/report-text.js';
import { resolveFilters, summaryLine, type Io } from './trace.js';
import os from 'node:os';

export const REPORT_FORMATS = ['table', 'json', 'markdown'] as const;

export interface ReportOptions extends FilterOptions, AgentChoiceOptions {
	duration?: number;
	/** From the agent's flight recorder: this much of the past, ms. */
	last?: number;
	format: (typeof REPORT_FORMATS)[number];
	top: number;
	by: Grouping;
	partial?: boolean;
	walkInterval: number;
}

export function renderReport(report: Report, format: ReportOptions['format']): string {
	if (format === 'json') return JSON.stringify(report, null, 2) + '\n';
	return format === 'markdown' ? reportMarkdown(report) : reportTable(report);
}

export async function reportCommand(file: string | undefined, opts: ReportOptions, io: Io): Promise<void> {
	if (file !== undefined && opts.last !== undefined) throw usageError('--last reads the agent\'s flight recorder, not a FILE', 'twtrace report --last 10m');
	if (opts.last !== undefined && opts.duration !== undefined) throw usageError('--last (the past) or --duration (from now), not both');
	const report = file !== undefined ? fromCapture(file, opts) : (await fromAgent(opts, io)) ?? await liveReport(opts, io);
	io.stdout.write(renderReport(report, opts.format));
	if (!report.complete) io.stderr.write(`twtrace: the capture is incomplete (${report.incomplete}); the report covers what it holds.\n`);
}

/**
 * From the running agent's flight recorder: --last of the past, all it holds by default, or, with
 * --duration, the next --duration (waited for here, recorded by the agent). Undefined without an agent.
 */
async function fromAgent(opts: ReportOptions, io: Io): Promise<Report | undefined> {
	const filters = tracingFilters(opts);
	if (opts.last !== undefined && filters.length) {
		throw usageError(`${filters[0]} does not apply to --last: the agent recorded with its own filters`, `Watch live with it: sudo twtrace report ${filters[0]} … --duration 60s`);
	}
	const agent = await chooseAgent('report', opts, io);
	if (!agent) {
		if (opts.last !== undefined) {
			throw new TwtraceError('--last reads the flight recorder of a running agent, and none answers',
				`Start one (sudo twtrace serve, or systemctl start twtrace) so that the past is there next time; now, watch live: sudo twtrace report --duration 60s`);
		}
		return undefined;
	}
	if (opts.partial) throw usageError('--partial applies to a capture FILE');
	let lastMs = opts.last;
	if (opts.duration !== undefined) {
		io.stderr.write(`twtrace: the agent records; reporting in ${opts.duration / 1000} s. Ctrl-C to report early.\n`);
		const startedMs = Date.now();
		const run = new Run(io, { durationMs: opts.duration });
		await run.finished;
		run.dispose();
		lastMs = Date.now() - startedMs;
	}
	const bytes = await agent.client.capture(lastMs);
	const label = `${agentLabel(agent.info)}: ${lastMs === undefined ? 'all its flight recorder holds' : `the last ${formatSpan(lastMs)}`}`;
	io.stderr.write(`twtrace: report from the ${label}\n`);
	try {
		const capture = parseCapture(bytes);
		const cgroups = new CgroupPaths();
		return replayCapture(capture, { by: opts.by, top: opts.top, file: label, fromAgent: true, cgroupPath: (id) => cgroups.lookup(id) });
	} catch (error) {
		if (error instanceof CaptureError) throw new TwtraceError(`the agent's flight recorder: ${error.message}`, 'Report it: the agent served a capture this twtrace cannot read');
		throw error;
	}
}

function fromCapture(file: string, opts: ReportOptions): Report {
	const given = tracingFilters(opts);
	if (given.length) throw usageError(`${given[0]} applies to a live report; a capture's filters were set when it was recorded`, `Record with it: twtrace record ${given[0]} … -o FILE`);
	if (opts.duration !== undefined) throw usageError('--duration is for a live report (without FILE)', 'To cover less of a capture, record less: twtrace record --duration');
	try {
		const capture = readCaptureFile(file, { allowPartial: opts.partial });
		const cgroups = new CgroupPaths();
		return replayCapture(capture, { by: opts.by, top: opts.top, file, cgroupPath: (id) => cgroups.lookup(id) });
	} catch (error) {
		if (error instanceof CaptureError) throw new TwtraceError(`${file}: ${error.message}`, error.message.startsWith('incomplete') ? '' : 'The file is not usable as a capture; nothing was reported.');
		throw error;
	}
}

async function liveReport(opts: ReportOptions, io: Io): Promise<Report> {
	if (opts.duration === undefined) {
		throw usageError('give a capture FILE, --last with a running agent, or --duration for a live report',
			'Examples: twtrace report churn.twtcap · twtrace report --last 10m · sudo twtrace report --duration 60s');
	}
	if (opts.partial) throw usageError('--partial applies to a capture FILE');
	const filters = resolveFilters({ ...opts, kind: undefined });
	const objectPath = defaultObjectPath();
	preflight('report', objectPath);
	const log = verboseLog(opts, io);
	const startedAt = new Date().toISOString();
	let builder!: ReportBuilder;
	const pipeline = new LivePipeline({ objectPath, filters, ringBytes: opts.ringSize, log, walkIntervalMs: opts.walkInterval, model: { ...modelFilters(opts, filters), keepIdle: true } }, (model) => {
		builder = new ReportBuilder(model, opts.by, (id) => pipeline.cgroups.lookup(id));
		return {
			onEvents: (events) => builder.afterEvents(events),
			onWalk: (walk) => builder.afterWalk(walk.netns, walk.settings, walk.takenAtUs),
		};
	});
	const feed = pipeline.feed;
	const run = new Run(io, { durationMs: opts.duration });
	io.stderr.write(`twtrace: watching for ${opts.duration / 1000} s, then reporting. Ctrl-C to report early.\n`);
	const timer = setInterval(() => feed.maybeWalk(), Math.min(500, opts.walkInterval));
	try {
		await run.finished;
	} finally {
		clearInterval(timer);
		run.dispose();
	}
	const summary = await pipeline.stop({ lastWalk: true }); // exact TIME_WAIT held at the end
	io.stderr.write(summaryLine(summary) + '\n');
	return builder.build({
		endUs: monotonicUs(),
		epochOffsetUs: epochOffsetUs(),
		top: opts.top,
		source: { kind: 'live', host: os.hostname(), kernel: os.release(), startedAt, seconds: 0, filters: describeFilters({ ...opts, netns: filters.netns, family: filters.family }) },
		complete: true,
		losses: { ...captureDrops(summary), unreadable: [] },
		cgroupPath: (id) => pipeline.cgroups.lookup(id),
	});
}

const REPORT_HELP = `
Offenders are ranked by TIME_WAIT entered; PEAK HELD is the most held at once. Victims are processes whose
connect() failed with EADDRNOTAVAIL or whose bind() failed with EADDRINUSE, with who held the ports then.
Advice follows the order that fixes exhaustion for good first: fix the application (reuse connections),
widen ip_local_port_range, (TIME_WAIT is fixed at 60 s on Linux), tcp_tw_reuse, more source addresses.

Exit status: 0 report printed, 1 unreadable or corrupt capture, or no privileges for a live report, 2 bad usage.

Examples:
  twtrace report --last 10m                      the agent's flight recorder: the 10 minutes before now
  twtrace report churn.twtcap
  twtrace report churn.twtcap --format markdown > incident.md
  twtrace report churn.twtcap --format json --by comm --top 5
  sudo twtrace report --standalone --duration 60s`;


/** Adds `report` and its options to the program (program.command() copies output, exit and help settings). */
export function registerReport(program: Command, io: Io): void {
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
}
