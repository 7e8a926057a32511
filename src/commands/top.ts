/**
 * `twtrace top`: who churns connections, how many ports each holds in TIME_WAIT, who fails for want
 * of a port, and how long until connect() fails. Wiring only: a snapshot each --interval, from the
 * running agent (exact owners of sockets born hours ago, nothing loaded here) or from a pipeline of
 * its own (--standalone, or no agent) → the full-screen view, text, or JSON lines.
 */
import { COMMAND_KINDS } from '../event/kinds.js';
import type { ReadStream, WriteStream } from 'node:tty';
import type { SnapshotQuery, SnapshotReply } from '../agent/wire.js';
import { TwtraceError } from '../errors.js';
import type { Grouping, SortKey } from '../model/snapshot.js';
import { isWriteEndOrphaned } from '../tracer/host.js';
import { defaultObjectPath, holdersObjectPath, preflight } from '../tracer/preflight.js';
import { LivePipeline } from '../pipeline/pipeline.js';
import { agentLabel, chooseAgent, type AgentChoiceOptions } from './agent-choice.js';
import { Terminal } from '../views/terminal.js';
import { topJsonLine, type TopContext } from '../views/top-json.js';
import { handleKey, screenLines, type ScreenState } from '../views/top-screen.js';
import { ANSI, headerLines, PLAIN, tableLines, victimLines } from '../views/top-text.js';
import type { FilterOptions } from './options.js';
import { resolveFilters, summaryLine, type Io } from './trace.js';

export interface TopOptions extends FilterOptions, AgentChoiceOptions {
	by: Grouping;
	sort: SortKey;
	interval: number;
	walkInterval: number;
	once?: boolean;
	iterations?: number;
	json?: boolean;
}

/** Where top's snapshots come from: this process's own pipeline, or the agent. */
interface Source {
	reply(query: SnapshotQuery): Promise<SnapshotReply>;
	/** Starts a walk when one is due (standalone only: the agent walks on its own schedule). */
	maybeWalk(): void;
	/** The closing line for stderr, if any. */
	stop(): Promise<string | undefined>;
}

async function openSource(opts: TopOptions, io: Io): Promise<Source> {
	const agent = await chooseAgent('top', opts, io);
	if (agent) {
		return {
			reply: (q) => agent.client.snapshot(q),
			maybeWalk: () => {},
			stop: async () => undefined,
		};
	}
	const filters = resolveFilters({ ...opts, kind: [...COMMAND_KINDS.top] });
	const objectPath = defaultObjectPath();
	preflight('top', objectPath);
	const log = opts.verbose ? (line: string) => io.stderr.write(`${line}\n`) : undefined;
	// Walks at once: sockets that predate twtrace, and the namespaces' settings, before the first screen.
	const pipeline = new LivePipeline({
		objectPath, holdersObjectPath: holdersObjectPath(objectPath), filters, ringBytes: opts.ringSize, log, walkIntervalMs: opts.walkInterval, perEvent: true,
		model: { comm: opts.comm, pid: opts.pid, port: opts.port, closesFromTimeWait: true },
	});
	return {
		reply: async (q) => pipeline.snapshotReply(q),
		// A namespace first seen in events is walked at once: its settings and older sockets count now.
		maybeWalk: () => pipeline.feed.maybeWalk(),
		stop: async () => summaryLine(await pipeline.stop()),
	};
}

/** The context the views take, from a reply. */
export function topContext(r: SnapshotReply, intervalMs: number): TopContext {
	return {
		epochOffsetUs: r.epochOffsetUs, cgroupPath: (id) => r.cgroupNames.get(id), intervalMs,
		drops: r.drops, unwalked: r.unwalked, walks: r.walks, ...(r.agent ? { source: agentLabel(r.agent) } : {}),
	};
}

export async function topCommand(opts: TopOptions, io: Io): Promise<void> {
	const source = await openSource(opts, io);
	const state: ScreenState = { by: opts.by, sort: opts.sort, paused: false, filter: '', editing: undefined, help: false };
	const query = (): SnapshotQuery => ({ by: state.by, sort: state.sort, windowMs: Math.max(opts.interval, 1000), filter: state.filter });

	let finish!: (reason: string) => void;
	const finished = new Promise<string>((resolve) => (finish = resolve));
	void io.interrupted.then(finish);

	const stdin = io.stdin as ReadStream | undefined;
	const stdout = io.stdout as WriteStream;
	const interactive = !opts.json && !opts.once && opts.iterations === undefined && stdout.isTTY === true && stdin?.isTTY === true;
	const iterations = opts.once ? 1 : opts.iterations;
	let shown = 0;
	let last: SnapshotReply | undefined;

	let terminal: Terminal | undefined;
	const draw = () => {
		if (terminal && last) terminal.draw(screenLines(state, last.snapshot, topContext(last, opts.interval), process.env.NO_COLOR ? PLAIN : ANSI, terminal, last.home));
	};
	/** A fresh reply drawn; a failed one (the agent stopped) ends top with the reason. */
	const take = async (): Promise<SnapshotReply | undefined> => {
		try {
			return await source.reply(query());
		} catch (error) {
			finish(`snapshot failed: ${(error as Error).message}`);
			return undefined;
		}
	};
	let refreshing = false;
	const refresh = async () => {
		if (refreshing) return; // a slow agent: skip a beat rather than queue requests
		refreshing = true;
		try {
			source.maybeWalk();
			const r = await take();
			if (!r) return;
			if (terminal) {
				if (!state.paused) last = r;
				draw();
				return;
			}
			const c = topContext(r, opts.interval);
			const s = r.snapshot;
			const out = opts.json
				? topJsonLine(s, c) + '\n'
				: [...headerLines(s, c, { home: r.home }, PLAIN), ...victimLines(s, PLAIN), '', ...tableLines(s, c, PLAIN), '', ''].join('\n');
			io.stdout.write(out);
			if (iterations !== undefined && ++shown >= iterations) finish('iterations');
		} finally {
			refreshing = false;
		}
	};

	io.stdout.on('error', (error: NodeJS.ErrnoException) => finish(error.code === 'EPIPE' ? 'stdout closed' : `stdout: ${error.message}`));
	const stdoutFd = (io.stdout as { fd?: number }).fd;
	const pipeWatch = stdoutFd === undefined || interactive ? undefined : setInterval(() => {
		if (isWriteEndOrphaned(stdoutFd)) finish('stdout closed');
	}, 250);
	let timer: NodeJS.Timeout | undefined;
	const onResize = () => draw();
	let reason = '';
	try {
		if (interactive) {
			terminal = new Terminal(stdin!, stdout, (key) => {
				const action = handleKey(state, key);
				if (action === 'quit') finish('quit');
				else if (action === 'refresh') void take().then((r) => ((last = r ?? last), draw()));
				else if (action === 'redraw') draw();
			});
			terminal.open();
			stdout.on('resize', onResize);
			last = await take();
			draw();
		} else {
			io.stderr.write(`twtrace: top${opts.json ? ' --json' : ''}: a snapshot every ${opts.interval / 1000} s${iterations ? `, ${iterations} in all` : ''}. Ctrl-C to stop.\n`);
		}
		timer = setInterval(() => void refresh(), opts.interval);
		reason = await finished;
	} finally {
		clearInterval(timer);
		clearInterval(pipeWatch);
		stdout.removeListener('resize', onResize);
		terminal?.close();
		const summary = await source.stop();
		if (summary) io.stderr.write(summary + '\n');
	}
	if (reason.startsWith('snapshot failed')) throw new TwtraceError(`top: ${reason}`, 'Is the agent still running? systemctl status twtrace; or run twtrace top --standalone');
}
