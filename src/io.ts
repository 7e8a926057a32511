/**
 * What a command talks to: its output streams, the user's request to stop, and keys for full-screen
 * views. cli.ts makes the real one from the process; tests pass their own.
 */
import type { Writable } from 'node:stream';

export interface Io {
	stdout: Writable;
	stderr: Writable;
	/** Resolves when the user asks to stop (SIGINT, SIGTERM, SIGHUP), with the signal's name. */
	interrupted: Promise<string>;
	/** Keys for full-screen views; absent or not a TTY: no interaction. */
	stdin?: NodeJS.ReadableStream;
}
