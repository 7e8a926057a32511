/**
 * A capture → a Report, by feeding the model exactly what the live run fed it: each events frame
 * (one drain's batch) and each walk, in file order. Deterministic: no clock but the capture's.
 */
import { Decoder, isDecodeFailure, type TwtEvent } from '../event/decode.js';
import { TaskTable } from '../event/tasks.js';
import { EVENT_SIZE } from '../event/layout.generated.js';
import { ChurnModel } from '../model/aggregate.js';
import type { Grouping } from '../model/snapshot.js';
import { walkFromRecord } from '../model/walk.js';
import type { Capture } from '../capture/reader.js';
import { readDrops, settingsFromJson } from '../capture/format.js';
import { ReportBuilder, type Report } from './report.js';

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
	// The recording's filters apply to walked sockets as they did live (the kernel filtered the events).
	const f = header.filters;
	const model = new ChurnModel(header.clock.startUs, { keepIdle: true, comm: f.comm, pid: f.pid, port: f.port, family: f.family });
	const cgroups = trailer?.cgroups ?? {};
	const cgroupPath = (id: number) => cgroups[String(id)] ?? options.cgroupPath?.(id);
	const builder = new ReportBuilder(model, options.by, cgroupPath);
	// The settings at the start (port ranges decide the pools): a window from the agent may hold no walk.
	for (const ns of header.namespaces) model.setSettings(ns.netns, settingsFromJson(ns.settings));
	let lastUs = header.clock.startUs;
	let decodeErrors = 0;
	// Every frame is a view into the capture's one buffer: one decoder reads them all, in place.
	let decoder: Decoder | undefined;
	let decoderBuffer: ArrayBuffer | undefined;
	const tasks = new TaskTable(); // one for the whole capture: events refer to earlier frames' tasks
	for (const item of capture.items) {
		if (item.type === 'walk') {
			model.reconcile(walkFromRecord(item.walk));
			builder.afterWalk(item.walk.netns, item.walk.settings, item.walk.takenAtUs);
			lastUs = Math.max(lastUs, item.walk.takenAtUs);
			continue;
		}
		const buffer = item.records.buffer as ArrayBuffer;
		if (!decoder || decoderBuffer !== buffer) [decoder, decoderBuffer] = [new Decoder(buffer, tasks), buffer];
		const events: TwtEvent[] = [];
		for (let i = 0; i < item.count; i++) {
			const e = decoder.decode(item.records.byteOffset + i * EVENT_SIZE, EVENT_SIZE);
			if (e === undefined) continue; // a task record, now in `tasks`
			if (isDecodeFailure(e)) decodeErrors++;
			else events.push(e);
		}
		model.ingest(events);
		builder.afterEvents(events);
		if (events.length) lastUs = Math.max(lastUs, events[events.length - 1]!.tsUs);
	}
	const { drops, unreadable } = trailer ? readDrops(trailer.drops) : { drops: readDrops({}).drops, unreadable: [] };
	return builder.build({
		endUs: trailer?.endUs ?? lastUs,
		epochOffsetUs: header.clock.epochOffsetUs,
		top: options.top,
		source: {
			kind: options.fromAgent ? 'agent' : 'capture', file: options.file, host: header.host.hostname, kernel: header.host.kernel, startedAt: header.startedAt, seconds: 0,
			filters: describeFilters(header.filters),
		},
		complete: capture.incomplete === undefined,
		...(capture.incomplete ? { incomplete: capture.incomplete } : {}),
		losses: { ...drops, decodeErrors: drops.decodeErrors + decodeErrors, unreadable },
		cgroupPath,
	});
}

export function describeFilters(f: Capture['header']['filters']): string {
	const parts: string[] = [];
	if (f.pid !== undefined) parts.push(`--pid ${f.pid}`);
	if (f.comm !== undefined) parts.push(`--comm ${f.comm}`);
	if (f.port !== undefined) parts.push(`--port ${f.port}`);
	for (const n of f.netns) parts.push(`--netns ${n}`);
	if (f.family !== undefined) parts.push(`--family ${f.family}`);
	return parts.length ? parts.join(' ') : 'none';
}
