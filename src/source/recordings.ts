/**
 * Captures from a source: the agent's flight recorder saved to a file (record --last), or a live
 * run here written to one as it goes (record).
 */
import fs from 'node:fs';
import { TwtraceError } from '../errors.js';
import type { SessionSummary } from '../facts/losses.js';
import { CaptureSink } from '../pipeline/capture-sink.js';
import { monotonicUs } from '../tracer/host.js';
import { epochOffsetUs } from '../tracer/host.js';
import type { AgentSource } from './agent-source.js';
import { captureFilters, type FilterOptions } from './filters.js';
import type { LiveSource, LiveSourceOptions } from './live-source.js';

/** Saves the agent's flight recorder of the last `lastMs` to `file` (never over one that exists without `force`); its size. */
export async function saveAgentCapture(source: AgentSource, file: string, lastMs: number | undefined, force: boolean): Promise<number> {
	const bytes = await source.captureBytes(lastMs);
	try {
		fs.writeFileSync(file, bytes, { flag: force ? 'w' : 'wx', mode: 0o640 });
	} catch (error) {
		throw new TwtraceError(`cannot write ${file}: ${(error as Error).message}`, 'Choose another file with -o');
	}
	return bytes.length;
}

export interface LiveRecordingOptions {
	file: string;
	maxBytes: number;
	force?: boolean;
	walkIntervalMs: number;
	/** Called once when the file cannot take more ('max-size', or 'write error: …'). */
	onFull: (reason: string) => void;
}

/**
 * A capture written as a live source runs: give `follow` to openSource's live options, then open()
 * the file once the source is there, and finish() it when the run ends.
 */
export class LiveRecording {
	readonly #sink: CaptureSink;

	constructor(o: LiveRecordingOptions, opts: Pick<FilterOptions, 'comm'>) {
		this.#sink = new CaptureSink({
			file: o.file, maxBytes: o.maxBytes, overwrite: o.force, walkIntervalMs: o.walkIntervalMs, onFull: o.onFull, comm: opts.comm,
			clock: { startUs: monotonicUs(), epochOffsetUs: epochOffsetUs() }, startedAt: new Date().toISOString(),
		});
	}

	readonly follow: NonNullable<LiveSourceOptions['follow']> = (pipeline) => this.#sink.handlers((id) => pipeline.cgroups.lookup(id));

	/** Creates the file, its header naming the source's filters (CaptureError when it cannot be). */
	open(source: LiveSource, opts: Pick<FilterOptions, 'pid' | 'comm' | 'port'>): void {
		this.#sink.open(captureFilters(source.filters, opts));
	}

	/**
	 * Stops the source with a last walk (the capture ends exact), ends the file with its trailer,
	 * and says what was written. Throws TwtraceError when a write failed (what was written is kept).
	 */
	async finish(source: LiveSource, reason: string): Promise<{ summary: SessionSummary; written: { events: number; walks: number; bytes: number } | undefined }> {
		const summary = await source.stop({ last: true }); // delivers what is left in the ring (and the missed entries the last look recovers) to the file
		const written = this.#sink.close(summary, monotonicUs(), reason || 'error');
		return { summary, written };
	}

	/** The write that failed, if one did. */
	get writeError(): Error | undefined {
		return this.#sink.writeError;
	}
}
