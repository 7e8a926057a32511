/**
 * top's one loop, for any source (live, agent, replay): a snapshot each --interval, drawn full
 * screen on a terminal (keys, resize, pause, filter) or printed as text or JSON lines. A replay's
 * clock is the capture's: on screen it runs at --speed, printed it steps one interval per snapshot
 * without waiting, so the same file gives the same lines.
 */
import type { ReadStream, WriteStream } from 'node:tty';
import type { SnapshotQuery, SnapshotReply } from '../agent/wire.js';
import type { Io } from '../io.js';
import type { Grouping } from '../model/groups.js';
import type { SortKey } from '../model/snapshot.js';
import { Run } from '../run.js';
import { ReplaySource } from '../source/replay-source.js';
import type { Source } from '../source/source.js';
import { Terminal } from '../views/terminal.js';
import { topJsonLine, type TopContext } from '../views/top-json.js';
import { handleKey, screenLines, type ScreenState } from '../views/top-screen.js';
import { ANSI, headerLines, PLAIN, tableLines, victimLines } from '../views/top-text.js';

export interface LoopOptions {
	by: Grouping;
	sort: SortKey;
	intervalMs: number;
	once?: boolean;
	iterations?: number;
	json?: boolean;
}

/** The context the views take, from a reply and the source that gave it. */
export function topContext(r: SnapshotReply, intervalMs: number, source: Source): TopContext {
	return {
		epochOffsetUs: r.epochOffsetUs, cgroupPath: (id) => r.cgroupNames.get(id), intervalMs,
		drops: r.drops, unwalked: r.unwalked, walks: r.walks, ...(source.kind === 'live' ? {} : { source: source.label() }),
	};
}

/** A snapshot as printed (not drawn): a JSON line, or the header, victims and table as text. */
function printed(r: SnapshotReply, c: TopContext, json: boolean | undefined, width: number): string {
	const s = r.snapshot;
	return json ? topJsonLine(s, c) + '\n'
		: [...headerLines(s, c, { home: r.home, width }, PLAIN), ...victimLines(s, PLAIN), '', ...tableLines(s, c, PLAIN, Infinity, width), '', ''].join('\n');
}

/**
 * Runs until q, Ctrl-C, SIGTERM, the number of snapshots asked for, or a failed reply (the agent
 * stopped: returned as the reason, "snapshot failed: …"). Restores the terminal on every way out.
 */
export async function runTopLoop(source: Source, opts: LoopOptions, io: Io): Promise<string> {
	const stdin = io.stdin as ReadStream | undefined;
	const stdout = io.stdout as WriteStream;
	const interactive = !opts.json && !opts.once && opts.iterations === undefined && stdout.isTTY === true && stdin?.isTTY === true;
	const replay = source instanceof ReplaySource ? source : undefined;
	const state: ScreenState = { by: opts.by, sort: opts.sort, paused: false, filter: '', editing: undefined, help: false, ...(replay ? { replay: true } : {}) };
	const query = (): SnapshotQuery => ({ by: state.by, sort: state.sort, windowMs: Math.max(opts.intervalMs, 1000), filter: state.filter });
	if (!interactive) return replay ? printReplay(replay, opts, query, io) : printLive(source, opts, query, io);
	return drawScreen(source, replay, state, opts, query, stdin!, stdout, io);
}

/** Printed, from the host or the agent: a snapshot each interval, in real time. */
async function printLive(source: Source, opts: LoopOptions, query: () => SnapshotQuery, io: Io): Promise<string> {
	const stdout = io.stdout as WriteStream;
	const width = stdout.isTTY === true && stdout.columns ? stdout.columns : Infinity;
	const limit = opts.once ? 1 : opts.iterations;
	const run = new Run(io, { watchStdout: true });
	io.stderr.write(`twtrace: top${opts.json ? ' --json' : ''}: a snapshot every ${opts.intervalMs / 1000} s${limit ? `, ${limit} in all` : ''}. Ctrl-C to stop.\n`);
	let shown = 0;
	let busy = false;
	const timer = setInterval(() => {
		if (busy) return; // a slow agent: skip a beat rather than queue requests
		busy = true;
		source.reply(query()).then((r) => {
			io.stdout.write(printed(r, topContext(r, opts.intervalMs, source), opts.json, width));
			if (limit !== undefined && ++shown >= limit) run.finish('iterations');
		}, (error: Error) => run.finish(`snapshot failed: ${error.message}`)).finally(() => (busy = false));
	}, opts.intervalMs);
	try {
		return await run.finished;
	} finally {
		clearInterval(timer);
		run.dispose();
	}
}

/** Printed, from a capture: one snapshot per interval of capture time, at once, to the end. */
async function printReplay(replay: ReplaySource, opts: LoopOptions, query: () => SnapshotQuery, io: Io): Promise<string> {
	const stdout = io.stdout as WriteStream;
	const width = stdout.isTTY === true && stdout.columns ? stdout.columns : Infinity;
	const run = new Run(io, { watchStdout: true });
	let stopped = false;
	void run.finished.then(() => (stopped = true));
	const limit = opts.once ? 1 : opts.iterations ?? Infinity;
	try {
		for (let shown = 0; !stopped && shown < limit; shown++) {
			replay.advance(opts.intervalMs * 1000);
			const r = await replay.reply(query());
			const out = printed(r, topContext(r, opts.intervalMs, replay), opts.json, width);
			// A slow reader: wait for it, or for the end of the run (its reader gone: EPIPE, or a signal).
			if (!io.stdout.write(out)) await Promise.race([new Promise((resolve) => io.stdout.once('drain', resolve)), run.finished]);
			if (replay.ended) break;
			await new Promise((resolve) => setImmediate(resolve)); // signals and EPIPE get their turn
		}
		return 'ended';
	} finally {
		run.dispose();
	}
}

/** Full screen: keys, resize and a refresh each interval; a replay's clock runs at its speed while not paused. */
async function drawScreen(source: Source, replay: ReplaySource | undefined, state: ScreenState, opts: LoopOptions, query: () => SnapshotQuery,
	stdin: ReadStream, stdout: WriteStream, io: Io): Promise<string> {
	const run = new Run(io);
	let last: SnapshotReply | undefined;
	let terminal: Terminal | undefined;
	const draw = () => {
		if (terminal && last) terminal.draw(screenLines(state, last.snapshot, topContext(last, opts.intervalMs, source), process.env.NO_COLOR ? PLAIN : ANSI, terminal, source.kind === 'replay' ? undefined : last.home));
	};
	let busy = false;
	/** A key asked while a reply was on its way, which answers the query from before the key. */
	let askedMeanwhile = false;
	/**
	 * A fresh reply, drawn; while the live view is paused the last one stays, unless a key asked for
	 * another sort, grouping or filter (`asked`). A failed one ends top with the reason.
	 */
	const refresh = async (asked = false) => {
		if (busy) {
			askedMeanwhile ||= asked;
			return;
		}
		busy = true;
		try {
			const r = await source.reply(query());
			if (!state.paused || replay || asked) last = r;
			draw();
		} catch (error) {
			run.finish(`snapshot failed: ${(error as Error).message}`);
		} finally {
			busy = false;
		}
		if (askedMeanwhile) {
			askedMeanwhile = false;
			await refresh(true);
		}
	};
	const onResize = () => draw();
	let timer: NodeJS.Timeout | undefined;
	try {
		terminal = new Terminal(stdin, stdout, (key) => {
			const action = handleKey(state, key);
			if (action === 'quit') run.finish('quit');
			else if (action === 'step' && replay) (replay.advance(opts.intervalMs * 1000), void refresh(true));
			else if (action === 'faster' && replay) (replay.speed = Math.min(replay.speed * 2, 1024), void refresh(true));
			else if (action === 'slower' && replay) (replay.speed = Math.max(replay.speed / 2, 1 / 16), void refresh(true));
			else if (action === 'refresh' || (action === 'redraw' && replay)) void refresh(true);
			else if (action === 'redraw') draw();
		});
		terminal.open();
		stdout.on('resize', onResize);
		await refresh();
		timer = setInterval(() => {
			if (replay && !state.paused && !replay.ended) replay.advance(opts.intervalMs * 1000 * replay.speed);
			void refresh();
		}, opts.intervalMs);
		return await run.finished;
	} finally {
		clearInterval(timer);
		run.dispose();
		stdout.removeListener('resize', onResize);
		terminal?.close();
	}
}
