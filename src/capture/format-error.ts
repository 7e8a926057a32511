/**
 * A capture that cannot be read or written, and why. The CLI prints it (cli.ts: the one place where
 * it becomes a message and an exit status), prefixed with `source`.
 */
export class CaptureError extends Error {
	readonly offset: number | undefined;
	/** What the capture is: a file's path, "the flight recorder of the agent pid …". */
	readonly source: string | undefined;
	/** What to do about it, for the user. */
	readonly hint: string;
	/** The file exists but cannot be read whole (no end frame): --partial reads what it holds. */
	readonly isIncomplete: boolean;

	constructor(message: string, where: number | { offset?: number; source?: string; hint?: string } = {}) {
		super(message);
		this.name = 'CaptureError';
		const w = typeof where === 'number' ? { offset: where } : where;
		this.offset = w.offset;
		this.source = w.source;
		this.hint = w.hint ?? '';
		this.isIncomplete = message.startsWith('incomplete');
	}

	/** The same error, said of `source`, with what to do about it. */
	of(source: string, hint: string): CaptureError {
		return new CaptureError(this.message, { offset: this.offset, source, hint: this.isIncomplete ? '' : hint });
	}
}
