/**
 * A report from whichever source a command opened: a capture file played to its end, the agent's
 * flight recorder over the span asked for (waited for when it is to come), or a live run here that
 * fed a ReportBuilder as it went. Every one goes through the same model and the same builder.
 */
import os from 'node:os';
import { captureDrops } from '../capture/format.js';
import type { Io } from '../io.js';
import { describeFilters } from '../model/view-filter.js';
import { monotonicUs } from '../tracer/host.js';
import { ReportBuilder } from '../report/builder.js';
import { replayCapture } from '../report/from-capture.js';
import type { Report } from '../report/report.js';
import type { Grouping } from '../model/groups.js';
import type { Run } from '../run.js';
import { CgroupPaths, epochOffsetUs } from '../tracer/host.js';
import { formatDuration } from '../views/duration.js';
import { sessionSummaryLine } from '../views/session-text.js';
import { AgentSource } from './agent-source.js';
import type { FilterOptions } from './filters.js';
import { LiveSource, type LiveSourceOptions } from './live-source.js';
import { ReplaySource } from './replay-source.js';
import type { Source } from './source.js';

export interface ReportRequest {
	by: Grouping;
	top: number;
	/** From the agent: this much of the past (all its recorder holds when undefined, and no run). */
	lastMs?: number;
	/** Waits for this run first (--duration, Ctrl-C): the agent records it, a live source traces it. */
	run?: Run;
	/** The run's length, for the note on stderr. */
	durationMs?: number;
}

/**
 * What a live report follows: a ReportBuilder made when the pipeline starts (LiveSourceOptions.follow).
 * Give `follow` to openSource's live options; reportFrom() builds from it.
 */
export class LiveReport {
	builder: ReportBuilder | undefined;
	readonly startedAt = new Date().toISOString();
	readonly #by: Grouping;

	constructor(by: Grouping) {
		this.#by = by;
	}

	readonly follow: NonNullable<LiveSourceOptions['follow']> = (pipeline) => {
		const builder = (this.builder = new ReportBuilder(pipeline.model, this.#by, (id) => pipeline.cgroups.lookup(id)));
		return {
			onEvents: (events) => builder.afterEvents(events),
			onWalk: (walk) => builder.afterWalk(walk.netns, walk.settings, walk.takenAtUs),
		};
	};
}

/** The report of `source` (see the module's comment); progress notes on stderr. */
export async function reportFrom(source: Source, request: ReportRequest, opts: Partial<FilterOptions>, io: Io, live?: LiveReport): Promise<Report> {
	const cgroups = new CgroupPaths();
	if (source instanceof ReplaySource) {
		return replayCapture(source.capture, { by: request.by, top: request.top, file: source.file, cgroupPath: (id) => cgroups.lookup(id) });
	}
	if (source instanceof AgentSource) {
		let lastMs = request.lastMs;
		if (request.run) {
			io.stderr.write(`twtrace: the agent records; reporting in ${formatDuration((request.durationMs ?? 0) / 1000)}. Ctrl-C to report early.\n`);
			const startedMs = Date.now();
			await request.run.finished;
			lastMs = Date.now() - startedMs;
		}
		const label = `${source.label()}: ${lastMs === undefined ? 'all its flight recorder holds' : `the last ${formatDuration(lastMs / 1000)}`}`;
		io.stderr.write(`twtrace: report from the ${label}\n`);
		const capture = await source.capture(lastMs);
		// A window shorter than asked is said so, on stderr and in the report's header: a report of
		// "the last 10 min" that covers 4 must not be read as a quiet first 6.
		const short = await source.shortfall(lastMs);
		if (short) io.stderr.write(`twtrace: ${short.message}.\n`);
		const file = short ? `${source.label()}: the last ${formatDuration(short.heldSeconds)} (of ${formatDuration(short.askedSeconds)} asked for: ${short.because})` : label;
		return replayCapture(capture, { by: request.by, top: request.top, file, fromAgent: true, cgroupPath: (id) => cgroups.lookup(id) });
	}
	if (!(source instanceof LiveSource) || !live?.builder) throw new Error('a live report needs its builder (LiveReport.follow)');
	await request.run?.finished;
	const summary = await source.stop({ last: true }); // exact TIME_WAIT held at the end
	io.stderr.write(sessionSummaryLine(summary) + '\n');
	const pipeline = source.pipeline;
	return live.builder.build({
		endUs: monotonicUs(),
		epochOffsetUs: epochOffsetUs(),
		top: request.top,
		source: { kind: 'live', host: os.hostname(), kernel: os.release(), startedAt: live.startedAt, seconds: 0, filters: describeFilters({ netns: source.filters.netns, pid: opts.pid, comm: opts.comm, port: opts.port, family: source.filters.family }) || 'none' },
		complete: true,
		losses: { ...captureDrops(summary), unreadable: [] },
		cgroupPath: (id) => pipeline.cgroups.lookup(id),
	});
}
