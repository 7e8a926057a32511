/**
 * `twtrace report [FILE]`: a churn report from a capture (replayed through the model `top` runs),
 * or live for --duration, printed as a table, JSON or Markdown (each starts with the one-line summary).
 */
import { captureDrops, CaptureError } from '../capture/format.js';
import { readCaptureFile } from '../capture/reader.js';
import { ChurnModel } from '../model/aggregate.js';
import type { Grouping } from '../model/snapshot.js';
import { ReportBuilder, type Report } from '../report/report.js';
import { describeFilters, replayCapture } from '../report/replay.js';
import { TwtraceError, usageError } from '../errors.js';
import { CgroupPaths, epochOffsetUs } from '../tracer/host.js';
import { LiveFeed, monotonicUs } from '../pipeline/live.js';
import { defaultObjectPath, preflight } from '../tracer/preflight.js';
import { reportMarkdown, reportTable } from '../views/report-text.js';
import type { FilterOptions } from './options.js';
import { resolveFilters, summaryLine, type Io } from './trace.js';
import os from 'node:os';

export const REPORT_FORMATS = ['table', 'json', 'markdown'] as const;

export interface ReportOptions extends FilterOptions {
	duration?: number;
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
	const report = file === undefined ? await liveReport(opts, io) : fromCapture(file, opts);
	io.stdout.write(renderReport(report, opts.format));
	if (!report.complete) io.stderr.write(`twtrace: the capture is incomplete (${report.incomplete}); the report covers what it holds.\n`);
}

function fromCapture(file: string, opts: ReportOptions): Report {
	const given = (['pid', 'comm', 'netns', 'port', 'family'] as const).filter((k) => opts[k] !== undefined);
	if (given.length) throw usageError(`--${given[0]} applies to a live report; a capture's filters were set when it was recorded`, `Record with it: twtrace record --${given[0]} … -o FILE`);
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
	if (opts.duration === undefined) throw usageError('give a capture FILE, or --duration for a live report', 'Examples: twtrace report churn.twtcap · sudo twtrace report --duration 60s');
	if (opts.partial) throw usageError('--partial applies to a capture FILE');
	const filters = resolveFilters({ ...opts, kind: undefined });
	const objectPath = defaultObjectPath();
	preflight('report', objectPath);
	const model = new ChurnModel(monotonicUs(), { comm: opts.comm, pid: opts.pid, port: opts.port, keepIdle: true });
	const builder = new ReportBuilder(model, opts.by);
	const log = opts.verbose ? (line: string) => io.stderr.write(`${line}\n`) : undefined;
	const startedAt = new Date().toISOString();
	const feed = new LiveFeed(model, { objectPath, filters, ringBytes: opts.ringSize, log, walkIntervalMs: opts.walkInterval }, {
		onEvents: (events) => builder.afterEvents(events),
		onWalk: (walk) => builder.afterWalk(walk.netns, walk.settings, walk.takenAtUs),
	});
	let finish!: (reason: string) => void;
	const finished = new Promise<string>((resolve) => (finish = resolve));
	void io.interrupted.then(finish);
	io.stderr.write(`twtrace: watching for ${opts.duration / 1000} s, then reporting. Ctrl-C to report early.\n`);
	const timer = setInterval(() => feed.maybeWalk(), Math.min(500, opts.walkInterval));
	const deadline = setTimeout(() => finish('duration'), opts.duration);
	try {
		await finished;
	} finally {
		clearInterval(timer);
		clearTimeout(deadline);
	}
	const summary = await feed.stop({ lastWalk: true }); // exact TIME_WAIT held at the end
	io.stderr.write(summaryLine(summary) + '\n');
	const cgroups = new CgroupPaths();
	return builder.build({
		endUs: monotonicUs(),
		epochOffsetUs: epochOffsetUs(),
		top: opts.top,
		source: { kind: 'live', host: os.hostname(), kernel: os.release(), startedAt, seconds: 0, filters: describeFilters({ ...opts, netns: filters.netns, family: filters.family }) },
		complete: true,
		losses: { ...captureDrops(summary), unreadable: [] },
		cgroupPath: (id) => cgroups.lookup(id),
	});
}
