/**
 * A capture as a source: its model played on the capture's own clock (pipeline/capture-replay.ts),
 * which the caller moves: at --speed while watching, by whole intervals when printing, or to the
 * end for a report. Deterministic: the same file gives the same answers.
 */
import path from 'node:path';
import type { SnapshotQuery, SnapshotReply } from '../agent/wire.js';
import { readCaptureFile, type Capture } from '../capture/reader.js';
import { CaptureReplay, type ReplayOptions } from '../pipeline/capture-replay.js';
import { formatDuration } from '../views/duration.js';
import type { Source } from './source.js';

export class ReplaySource implements Source {
	readonly kind = 'replay';
	readonly file: string;
	readonly capture: Capture;
	readonly replay: CaptureReplay;
	/** Capture seconds per second while watching (top's + and - change it). */
	speed = 1;

	constructor(file: string, capture: Capture, options: ReplayOptions = {}) {
		this.file = file;
		this.capture = capture;
		this.replay = new CaptureReplay(capture, options);
	}

	/** Reads the file (CaptureError when it is not a capture); a cut one is read up to its last whole frame when `partial`. */
	static open(file: string, options: { partial?: boolean } = {}): ReplaySource {
		return new ReplaySource(file, readCaptureFile(file, { allowPartial: options.partial }));
	}

	/** Why the capture is incomplete, when it is. */
	get incomplete(): string | undefined {
		return this.capture.incomplete;
	}

	get ended(): boolean {
		return this.replay.ended;
	}

	/** Moves the capture's clock `us` forward (never past its end). */
	advance(us: number): void {
		this.replay.advanceTo(this.replay.nowUs + us);
	}

	label(): string {
		const r = this.replay;
		return `replay ${path.basename(this.file)} ×${this.speed}, ${formatDuration((r.nowUs - r.startUs) / 1e6)} of ${formatDuration((r.endUs - r.startUs) / 1e6)}${r.ended ? ', ended' : ''}`;
	}

	async reply(query: SnapshotQuery): Promise<SnapshotReply> {
		return this.replay.reply(query);
	}

	/** A capture's walks are what they were: nothing to do. */
	async settle(): Promise<void> {}

	async close(): Promise<undefined> {
		return undefined;
	}
}
