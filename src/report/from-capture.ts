/**
 * A capture → a Report: the capture played to its end (pipeline/replay.ts feeds the model exactly
 * what the live run fed it), the report builder following each batch and walk.
 */
import type { Grouping } from '../model/groups.js';
import type { Capture } from '../capture/reader.js';
import { readDrops } from '../capture/format.js';
import { CaptureReplay } from '../pipeline/capture-replay.js';
import { describeFilters } from '../model/view-filter.js';
import { ReportBuilder } from './builder.js';
import type { Report } from './report.js';

export interface ReplayOptions {
	by: Grouping;
	top: number;
	file: string;
	/** The capture came from the agent's flight recorder (`file` then names the agent and the span). */
	fromAgent?: boolean;
	cgroupPath?: (id: number) => string | undefined;
}

export function replayCapture(capture: Capture, options: ReplayOptions): Report {
	const { header, trailer } = capture;
	const cgroups = trailer?.cgroups ?? {};
	const cgroupPath = (id: number) => cgroups[String(id)] ?? options.cgroupPath?.(id);
	let builder!: ReportBuilder;
	const replay = new CaptureReplay(capture, {
		keepIdle: true,
		onEvents: (events) => builder.afterEvents(events),
		onWalk: (walk) => builder.afterWalk(walk.netns, walk.settings, walk.takenAtUs),
		onCounts: (atUs) => builder.afterCounts(atUs),
	});
	builder = new ReportBuilder(replay.model, options.by, cgroupPath);
	replay.advanceTo(replay.endUs);
	const { drops, unreadable } = trailer ? readDrops(trailer.drops) : { drops: readDrops({}).drops, unreadable: [] };
	return builder.build({
		endUs: replay.endUs,
		epochOffsetUs: header.clock.epochOffsetUs,
		top: options.top,
		source: {
			kind: options.fromAgent ? 'agent' : 'capture', file: options.file, host: header.host.hostname, kernel: header.host.kernel, startedAt: header.startedAt, seconds: 0,
			filters: describeFilters(header.filters) || 'none',
		},
		complete: capture.incomplete === undefined,
		...(capture.incomplete ? { incomplete: capture.incomplete } : {}),
		losses: { ...drops, decodeErrors: drops.decodeErrors + replay.decodeErrors, unreadable },
		cgroupPath,
	});
}
