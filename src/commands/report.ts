/**
 * `twtrace report [FILE]`: a churn report from a capture (replayed through the model `top` runs),
 * the agent's flight recorder (--last, or --duration waited for), or a live run here (--duration),
 * printed as a table, JSON or Markdown (each starts with the one-line summary). Options and wiring.
 */
import { Option, type Command } from 'commander';
import { TwtraceError, usageError } from '../errors.js';
import type { Io } from '../io.js';
import { GROUPINGS, type Grouping } from '../model/groups.js';
import type { Report } from '../report/report.js';
import { Run } from '../run.js';
import type { AgentChoiceOptions } from '../source/agent-choice.js';
import { tracingFilters } from '../source/filters.js';
import { LiveReport, reportFrom } from '../source/reports.js';
import { openSource } from '../source/open.js';
import { reportHtml } from '../views/report-html.js';
import { reportMarkdown, reportTable } from '../views/report-text.js';
import { addAgentOptions, addFilterOptions, parseCount, parseDuration, parseInterval, verboseLog, type FilterOptions } from './options.js';

export const REPORT_FORMATS = ['table', 'json', 'markdown', 'html'] as const;

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
	if (format === 'html') return reportHtml(report);
	return format === 'markdown' ? reportMarkdown(report) : reportTable(report);
}

export async function reportCommand(file: string | undefined, opts: ReportOptions, io: Io): Promise<void> {
	checkUsage(file, opts);
	// Checked before anything is recorded: a live report's events are not lost to a refused terminal.
	if (opts.format === 'html' && (io.stdout as NodeJS.WriteStream).isTTY) {
		throw usageError('--format html writes a whole web page: send it to a file', `twtrace report … --format html > incident.html`);
	}
	const live = new LiveReport(opts.by);
	const source = await openSource('report', opts, io, {
		replay: file === undefined ? undefined : { file, partial: opts.partial },
		// Without a file, the past needs the agent's recorder; and without --duration there is nothing to watch here.
		agent: opts.last !== undefined ? { required: NO_AGENT_FOR_LAST } : file === undefined && opts.duration === undefined ? { required: NEEDS_SOMETHING } : 'may',
		live: { kinds: [], model: { keepIdle: true }, walkIntervalMs: opts.walkInterval, log: verboseLog(opts, io), follow: live.follow },
	});
	let report: Report;
	try {
		if (source.kind === 'live') io.stderr.write(`twtrace: watching for ${opts.duration! / 1000} s, then reporting. Ctrl-C to report early.\n`);
		const run = opts.duration === undefined ? undefined : new Run(io, { durationMs: opts.duration });
		try {
			report = await reportFrom(source, { by: opts.by, top: opts.top, lastMs: opts.last, run, durationMs: opts.duration }, opts, io, live);
		} finally {
			run?.dispose();
		}
	} finally {
		await source.close();
	}
	io.stdout.write(renderReport(report, opts.format));
	if (!report.complete) io.stderr.write(`twtrace: the capture is incomplete (${report.incomplete}); the report covers what it holds.\n`);
}

const NO_AGENT_FOR_LAST = new TwtraceError('--last reads the flight recorder of a running agent, and none answers',
	'Start one (sudo twtrace serve, or systemctl start twtrace) so that the past is there next time; now, watch live: sudo twtrace report --duration 60s');
const NEEDS_SOMETHING = usageError('give a capture FILE, --last with a running agent, or --duration for a live report',
	'Examples: twtrace report churn.twtcap · twtrace report --last 10m · sudo twtrace report --duration 60s');

/** What does not go together, before anything is opened. */
function checkUsage(file: string | undefined, opts: ReportOptions): void {
	const given = tracingFilters(opts);
	if (file !== undefined) {
		if (opts.last !== undefined) throw usageError('--last reads the agent\'s flight recorder, not a FILE', 'twtrace report --last 10m');
		if (given.length) throw usageError(`${given[0]} applies to a live report; a capture's filters were set when it was recorded`, `Record with it: twtrace record ${given[0]} … -o FILE`);
		if (opts.duration !== undefined) throw usageError('--duration is for a live report (without FILE)', 'To cover less of a capture, record less: twtrace record --duration');
		return;
	}
	if (opts.last !== undefined && opts.duration !== undefined) throw usageError('--last (the past) or --duration (from now), not both');
	if (opts.last !== undefined && given.length) {
		throw usageError(`${given[0]} does not apply to --last: the agent recorded with its own filters`, `Watch live with it: sudo twtrace report ${given[0]} … --duration 60s`);
	}
	if (opts.last !== undefined && opts.standalone) throw usageError('--last reads the agent\'s flight recorder: not with --standalone');
	if (opts.partial) throw usageError('--partial applies to a capture FILE');
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
  twtrace report churn.twtcap --format html > incident.html   one page with plots, for the ticket
  twtrace report --last 15m --format html > incident.html        the same, from the agent's recorder
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
		.option('--walk-interval <time>', 'live: check TIME_WAIT counts against the kernel\'s this often; walk the socket tables when they differ, and every 10 intervals', parseInterval, 5000)
		.option('--last <time>', 'without FILE: the past from the running agent\'s flight recorder (10m); default with an agent: all it holds', parseDuration);
	addAgentOptions(reportCmd);
	addFilterOptions(reportCmd, { kinds: false, ringBytes: 32 * 1024 * 1024 })
		.addHelpText('after', REPORT_HELP)
		.action(async (file: string | undefined, opts: ReportOptions) => reportCommand(file, opts, io));
}
