/**
 * The full-screen terminal: alternate screen, hidden cursor, raw keys; and the guarantee that the
 * terminal is given back as it was on every way out (quit, Ctrl-C, SIGTERM, an exception, exit).
 */
import type { ReadStream, WriteStream } from 'node:tty';

const ENTER = '\x1b[?1049h\x1b[H\x1b[2J\x1b[?25l';
const LEAVE = '\x1b[?25h\x1b[?1049l';

export class Terminal {
	readonly #input: ReadStream;
	readonly #output: WriteStream;
	readonly #onKey: (key: string) => void;
	readonly #restoreOnExit = () => this.close();
	#open = false;

	constructor(input: ReadStream, output: WriteStream, onKey: (key: string) => void) {
		this.#input = input;
		this.#output = output;
		this.#onKey = onKey;
	}

	get rows(): number {
		return this.#output.rows || 24;
	}

	get columns(): number {
		return this.#output.columns || 80;
	}

	open(): void {
		if (this.#open) return;
		this.#open = true;
		process.once('exit', this.#restoreOnExit);
		this.#output.write(ENTER);
		if (this.#input.isTTY) this.#input.setRawMode(true);
		this.#input.setEncoding('utf8');
		this.#input.on('data', this.#data);
		this.#input.resume();
	}

	/** Replaces the screen with `lines` (already clipped to the width). */
	draw(lines: readonly string[]): void {
		if (!this.#open) return;
		// Home, then each line followed by clear-to-end-of-line, then clear below: no flicker.
		this.#output.write(`\x1b[H${lines.slice(0, this.rows).join('\x1b[K\r\n')}\x1b[K\x1b[J`);
	}

	/** Restores the terminal. Idempotent; safe from an 'exit' handler (synchronous writes only). */
	close(): void {
		if (!this.#open) return;
		this.#open = false;
		process.removeListener('exit', this.#restoreOnExit);
		this.#input.removeListener('data', this.#data);
		if (this.#input.isTTY) this.#input.setRawMode(false);
		this.#input.pause();
		this.#output.write(LEAVE);
	}

	readonly #data = (chunk: string) => {
		// Keys arrive one per chunk when typed; a paste or escape sequence arrives whole.
		if (chunk.startsWith('\x1b[') || chunk.startsWith('\x1bO')) return this.#onKey(chunk);
		for (const key of chunk) this.#onKey(key);
	};
}
