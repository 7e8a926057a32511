/**
 * `twtrace top`: who churns connections, how many ports each holds in TIME_WAIT, who fails for want
 * of a port, and how long until connect() fails. Wiring only: a snapshot each --interval, from the
 * running agent (exact owners of sockets born hours ago, nothing loaded here) or from a pipeline of
 * its own (--standalone, or no agent) → the full-screen view, text, or JSON lines.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import path from 'node:path';
import type { ReadStream, WriteStream } from 'node:tty';
import type { SnapshotQuery, SnapshotReply } from '../agent/wire.js';
import { CaptureError } from '../capture/format.js';
import { readCaptureFile, type Capture } from '../capture/reader.js';
import { TwtraceError, usageError } from '../errors.js';
import { COMMAND_KINDS } from '../event/kinds.js';
import { GROUPINGS, SORT_KEYS, type Grouping, type SortKey } from '../model/snapshot.js';
import { LivePipeline } from '../pipeline/pipeline.js';
import { CaptureReplay } from '../pipeline/replay.js';
import { defaultObjectPath, holdersObjectPath, preflight } from '../tracer/preflight.js';
import { Terminal } from '../views/terminal.js';
import { topJsonLine, type TopContext } from '../views/top-json.js';
import { handleKey, screenLines, type ScreenState } from '../views/top-screen.js';
import { ANSI, formatDuration, headerLines, PLAIN, tableLines, victimLines } from '../views/top-text.js';
import { agentLabel, chooseAgent, tracingFilters, type AgentChoiceOptions } from './agent-choice.js';
import { addAgentOptions, addFilterOptions, DEFAULT_RING_BYTES, modelFilters, parseCount, parseInterval, verboseLog, type FilterOptions } from './options.js';
import { Run } from './run.js';
import { resolveFilters, summaryLine, type Io } from './trace.js';

export interface TopOptions extends FilterOptions, AgentChoiceOptions {
	by: Grouping;
	sort: SortKey;
	interval: number;
	walkInterval: number;
	once?: boolean;
	iterations?: number;
	json?: boolean;
	/** Replay this capture instead of watching the host. */
	replay?: string;
	/** Capture seconds per second of replay. */
	speed: number;
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
	const agent = await chooseAgent('top', opts, io, { narrows: true });
	if (agent) {
		return {
			reply: (q) => agent.client.snapshot({ ...q, ...(agent.view ? { view: agent.view } : {}) }),
			maybeWalk: () => {},
			stop: async () => undefined,
		};
	}
	const filters = resolveFilters({ ...opts, kind: [...COMMAND_KINDS.top] });
	const objectPath = defaultObjectPath();
	preflight('top', objectPath);
	const log = verboseLog(opts, io);
	// Walks at once: sockets that predate twtrace, and the namespaces' settings, before the first screen.
	const pipeline = new LivePipeline({
		objectPath, holdersObjectPath: holdersObjectPath(objectPath), filters, ringBytes: opts.ringSize, log, walkIntervalMs: opts.walkInterval, perEvent: true,
		model: { ...modelFilters(opts, filters), closesFromTimeWait: true },
	});
	return {
		reply: async (q) => pipeline.snapshotReply(q),
		// A namespace first seen in events is walked at once: its settings and older sockets count now.
		maybeWalk: () => pipeline.feed.maybeWalk(),
		stop: async () => summaryLine(await pipeline.stop()),
	};
}

/** A snapshot as printed (not drawn): a JSON line, or the header, victims and table as text. */
function printed(r: SnapshotReply, c: TopContext, json: boolean | undefined, width: number): string {
	const s = r.snapshot;
	return json ? topJsonLine(s, c) + '\n'
		: [...headerLines(s, c, { home: r.home, width }, PLAIN), ...victimLines(s, PLAIN), '', ...tableLines(s, c, PLAIN, Infinity, width), '', ''].join('\n');
}

/** Full screen: on a terminal, unless a number of snapshots or JSON is asked for. */
function isInteractive(opts: TopOptions, stdin: ReadStream | undefined, stdout: WriteStream): boolean {
	return !opts.json && !opts.once && opts.iterations === undefined && stdout.isTTY === true && stdin?.isTTY === true;
}

/** Printed snapshots fit a terminal's width; into a pipe or a file they are whole. */
function textWidth(stdout: WriteStream): number {
	return stdout.isTTY === true && stdout.columns ? stdout.columns : Infinity;
}

/** The context the views take, from a reply. */
export function topContext(r: SnapshotReply, intervalMs: number): TopContext {
	return {
		epochOffsetUs: r.epochOffsetUs, cgroupPath: (id) => r.cgroupNames.get(id), intervalMs,
		drops: r.drops, unwalked: r.unwalked, walks: r.walks, ...(r.agent ? { source: agentLabel(r.agent, r.view) } : {}),
	};
}

export async function topCommand(opts: TopOptions, io: Io): Promise<void> {
	if (opts.replay !== undefined) return replayTop(opts.replay, opts, io);
	const source = await openSource(opts, io);
	const state: ScreenState = { by: opts.by, sort: opts.sort, paused: false, filter: '', editing: undefined, help: false };
	const query = (): SnapshotQuery => ({ by: state.by, sort: state.sort, windowMs: Math.max(opts.interval, 1000), filter: state.filter });

	const stdin = io.stdin as ReadStream | undefined;
	const stdout = io.stdout as WriteStream;
	const interactive = isInteractive(opts, stdin, stdout);
	const run = new Run(io, { watchStdout: !interactive });
	const finish = (reason: string) => run.finish(reason);
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
			io.stdout.write(printed(r, topContext(r, opts.interval), opts.json, textWidth(stdout)));
			if (iterations !== undefined && ++shown >= iterations) finish('iterations');
		} finally {
			refreshing = false;
		}
	};

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
		reason = await run.finished;
	} finally {
		clearInterval(timer);
		run.dispose();
		stdout.removeListener('resize', onResize);
		terminal?.close();
		const summary = await source.stop();
		if (summary) io.stderr.write(summary + '\n');
	}
	if (reason.startsWith('snapshot failed')) throw new TwtraceError(`top: ${reason}`, 'Is the agent still running? systemctl status twtrace; or run twtrace top --standalone');
}

const TOP_HELP = `
Source: the running agent when there is one (its header says "[agent pid N, up …]"): it has watched
since it started, so owners are exact for sockets born hours ago, nothing is loaded here, and members of
the twtrace group need no root. --standalone traces here instead.

Filters (--netns, --pid, --comm, --port, --family): with an agent, its model is narrowed to them (the
header adds them: "[agent pid N, up …; --netns …]"), as long as the agent's own filters cover them (an
agent started without filters covers all). If they do not (the agent watches --netns A, you ask for B),
top traces here with them and says why in one line. --pid and --comm keep the sockets blamed on that
process; --port, outgoing connections to that port and accepted ones on it. Without an agent the
kernel applies them as for twtrace trace.

Keys (full screen, on a terminal): q quit · s next sort · g next grouping · p pause · / filter · ? help
Without a terminal, or with --once, --iterations or --json, snapshots are printed as text or JSON lines.

Rows: TW-HELD is TIME_WAIT sockets held now by the group; SIDE is the end that closes first, which is the
end that holds the TIME_WAIT. "(before start)" holds sockets already in TIME_WAIT when twtrace started
(on a port whose listen() twtrace saw, the listener owns them), "(events lost)" sockets that entered it
since but whose events a full ring lost; under them, "↳ likely" names who probably made them, with the
evidence (who connects to the same destination now; for a server's, who holds the listening socket of
its port): inferred, never added to anyone's count. VICTIMS lists who failed for want of a port in the last minute, and who
holds that pool's ports. The header shows each network namespace's TIME_WAIT against tcp_max_tw_buckets,
its port range, and for the worst destination the headroom: one destination sustains (usable ports / 60 s)
new connections per second.

Examples:
  twtrace top
  twtrace top --by workload
  twtrace top --replay incident.twtcap --speed 4
  twtrace top --replay incident.twtcap --json > snapshots.ndjson
  twtrace top --by comm
  twtrace top --netns /run/netns/app                      (from the agent, narrowed to that namespace)
  sudo twtrace top --standalone --netns /run/netns/app
  twtrace top --json --iterations 10 --interval 2s > top.ndjson`;

/** Adds `top` and its options to the program (program.command() copies output, exit and help settings). */
export function registerTop(program: Command, io: Io): void {
	const top = program.command('top')
		.description('Live view of TCP churn per process: TIME_WAIT held now (exact: socket tables are walked), rates, connection lifetimes, ' +
			'and for the worst destination the ports in use, the sustainable rate (usable ports / 60 s) and the time until connect() fails.')
		.addOption(new Option('--by <grouping>', 'group rows by').choices(GROUPINGS).default('process'))
		.addOption(new Option('--sort <key>', 'sort rows by').choices(SORT_KEYS).default('timeWait'))
		.option('--interval <time>', 'refresh every (rates are over the same window)', parseInterval, 1000)
		.option('--walk-interval <time>', 'walk the socket tables (exact TIME_WAIT counts, timers, sockets from before start) at least this often', parseInterval, 5000)
		.option('--once', 'print one snapshot after one interval and exit (same as --iterations 1)')
		.option('--iterations <n>', 'print n snapshots, one per interval, and exit', parseCount)
		.option('--json', 'one JSON object per snapshot, one per line; see README "top --json"')
		.option('--replay <file>', 'draw the screen from a capture (twtrace record) on its own clock instead of this host; with --json, --once or --iterations: its snapshots, one per interval of capture time, at once')
		.option('--speed <n>', 'replay: capture seconds per second (0.25, 2, 10); + and - change it', parseSpeed, 1);
	addAgentOptions(top);
	// top stops draining while it walks socket tables: a larger ring absorbs the pause at full churn.
	addFilterOptions(top, { kinds: false, ringBytes: DEFAULT_RING_BYTES })
		.addHelpText('after', TOP_HELP)
		.action(async (opts: TopOptions) => topCommand(opts, io));
}


/**
 * `top --replay FILE`: the same screen, from a capture, on the capture's clock. Printed snapshots
 * (--json, --once, --iterations, or no terminal) come one per interval of capture time, as fast as
 * they are made, to the end of the capture; the full screen plays it at --speed, with pause, step
 * and speed keys.
 */
async function replayTop(file: string, opts: TopOptions, io: Io): Promise<void> {
	// Filters and sources a replay does not take: the capture was filtered when it was recorded.
	const given = [...tracingFilters(opts), ...(opts.standalone ? ['--standalone'] : []), ...(opts.agentSocket !== undefined ? ['--agent-socket'] : [])];
	if (given.length) throw usageError(`${given[0]} does not apply to --replay: a capture's filters were set when it was recorded`);
	let capture: Capture;
	try {
		capture = readCaptureFile(file, { allowPartial: true });
	} catch (error) {
		if (error instanceof CaptureError) throw new TwtraceError(`${file}: ${error.message}`, 'The file is not usable as a capture.');
		throw error;
	}
	const replay = new CaptureReplay(capture);
	const intervalUs = opts.interval * 1000;
	const state: ScreenState = { by: opts.by, sort: opts.sort, paused: false, filter: '', editing: undefined, help: false, replay: true };
	const query = (): SnapshotQuery => ({ by: state.by, sort: state.sort, windowMs: Math.max(opts.interval, 1000), filter: state.filter });
	let speed = opts.speed;
	const label = () => `replay ${path.basename(file)} ×${speed}, ${formatDuration((replay.nowUs - replay.startUs) / 1e6)} of ${formatDuration((replay.endUs - replay.startUs) / 1e6)}${replay.ended ? ', ended' : ''}`;
	const context = (r: SnapshotReply) => ({ ...topContext(r, opts.interval), source: label() });

	const stdin = io.stdin as ReadStream | undefined;
	const stdout = io.stdout as WriteStream;
	const interactive = isInteractive(opts, stdin, stdout);
	if (capture.incomplete) io.stderr.write(`twtrace: ${file} is incomplete (${capture.incomplete}): replaying what it holds\n`);
	if (!interactive) {
		// Offline: every interval of capture time, to the end, without waiting.
		const width = textWidth(stdout);
		const run = new Run(io, { watchStdout: true });
		let stopped = false;
		void run.finished.then(() => (stopped = true));
		let shown = 0;
		const limit = opts.once ? 1 : opts.iterations ?? Infinity;
		while (!stopped && shown < limit) {
			replay.advanceTo(replay.nowUs + intervalUs);
			const r = replay.reply(query());
			const out = printed(r, context(r), opts.json, width);
			// A slow reader: wait for it, or for the end of the run (its reader gone: EPIPE, or a signal).
			if (!io.stdout.write(out)) await Promise.race([new Promise((resolve) => io.stdout.once('drain', resolve)), run.finished]);
			shown++;
			if (replay.ended) break;
			await new Promise((resolve) => setImmediate(resolve)); // signals and EPIPE get their turn
		}
		run.dispose();
		return;
	}
	const run = new Run(io);
	const terminal = new Terminal(stdin!, stdout, (key) => {
		const action = handleKey(state, key);
		if (action === 'quit') run.finish('quit');
		else if (action === 'step') (replay.advanceTo(replay.nowUs + intervalUs), draw());
		else if (action === 'faster') (speed = Math.min(speed * 2, 1024), draw());
		else if (action === 'slower') (speed = Math.max(speed / 2, 1 / 16), draw());
		else if (action === 'refresh' || action === 'redraw') draw();
	});
	const draw = () => {
		const r = replay.reply(query());
		terminal.draw(screenLines(state, r.snapshot, context(r), process.env.NO_COLOR ? PLAIN : ANSI, terminal, undefined));
	};
	const onResize = () => draw();
	let timer: NodeJS.Timeout | undefined;
	try {
		terminal.open();
		stdout.on('resize', onResize);
		draw();
		// The capture's clock runs at --speed while not paused.
		timer = setInterval(() => {
			if (!state.paused && !replay.ended) replay.advanceTo(replay.nowUs + intervalUs * speed);
			draw();
		}, opts.interval);
		await run.finished;
	} finally {
		clearInterval(timer);
		run.dispose();
		stdout.removeListener('resize', onResize);
		terminal.close();
	}
}

function parseSpeed(value: string): number {
	const n = Number(value);
	if (!/^\d+(\.\d+)?$/.test(value) || !(n >= 1 / 16 && n <= 1024)) throw new InvalidArgumentError(`${value} is not a speed (1/16 to 1024: 0.5, 2, 10).`);
	return n;
}
