/**
 * When a command's run ends, and why: a signal (Ctrl-C, SIGTERM, SIGHUP), its stdout closing (EPIPE
 * on a write, or `twtrace trace | head` whose reader left while nothing was being written), a
 * deadline, or the command itself. One place for what every long-running command needs.
 */
import { isWriteEndOrphaned } from './tracer/host.js';
import type { Io } from './io.js';

export interface RunOptions {
	/** Also end when stdout's reader is gone (commands that write to stdout, unless full-screen). */
	watchStdout?: boolean;
	/** End after this long, with reason `durationReason`. */
	durationMs?: number;
	durationReason?: string;
	/** The reason for a signal ("SIGINT" when not given). */
	signalReason?: (signal: string) => string;
}

/** How often a quiet pipe is checked for a reader that left. */
const PIPE_CHECK_MS = 250;

export class Run {
	readonly finished: Promise<string>;
	#resolve!: (reason: string) => void;
	#timers: NodeJS.Timeout[] = [];
	#onError: ((error: NodeJS.ErrnoException) => void) | undefined;

	constructor(io: Io, options: RunOptions = {}) {
		this.finished = new Promise((resolve) => (this.#resolve = resolve));
		void io.interrupted.then((signal) => this.finish(options.signalReason ? options.signalReason(signal) : signal));
		if (options.durationMs !== undefined) this.#timers.push(setTimeout(() => this.finish(options.durationReason ?? 'duration'), options.durationMs));
		if (options.watchStdout) {
			this.#onError = (error) => this.finish(error.code === 'EPIPE' ? 'stdout closed' : `stdout: ${error.message}`);
			io.stdout.on('error', this.#onError);
			const fd = (io.stdout as { fd?: number }).fd;
			if (fd !== undefined) {
				this.#timers.push(setInterval(() => {
					if (isWriteEndOrphaned(fd)) this.finish('stdout closed');
				}, PIPE_CHECK_MS));
			}
		}
	}

	/** Ends the run (the first reason wins). */
	finish(reason: string): void {
		this.#resolve(reason);
	}

	/** Stops the timers; the stdout error listener stays (a late EPIPE must not crash the exit). */
	dispose(): void {
		for (const t of this.#timers) clearTimeout(t);
		this.#timers = [];
	}
}
