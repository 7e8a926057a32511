/**
 * `twtrace top`: who churns connections, how many ports each holds in TIME_WAIT, and how long until
 * connect() fails. Wiring only: live feed → model (events, and socket walks every --walk-interval) →
 * snapshot each --interval → the full-screen view, text, or JSON lines.
 */
import { COMMAND_KINDS } from '../event/kinds.js';
import type { ReadStream, WriteStream } from 'node:tty';
import { ChurnModel } from '../model/aggregate.js';
import { snapshot, type Grouping, type Snapshot, type SortKey } from '../model/snapshot.js';
import { CgroupPaths, epochOffsetUs, isWriteEndOrphaned } from '../tracer/host.js';
import { defaultObjectPath, preflight } from '../tracer/preflight.js';
import { LiveFeed, monotonicUs } from '../tracer/live.js';
import { Terminal } from '../views/terminal.js';
import { topJsonLine, type TopContext } from '../views/top-json.js';
import { handleKey, screenLines, type ScreenState } from '../views/top-screen.js';
import { ANSI, headerLines, PLAIN, tableLines, victimLines } from '../views/top-text.js';
import type { FilterOptions } from './options.js';
import { resolveFilters, summaryLine, type Io } from './trace.js';

export interface TopOptions extends FilterOptions {
	by: Grouping;
	sort: SortKey;
	interval: number;
	walkInterval: number;
	once?: boolean;
	iterations?: number;
	json?: boolean;
}

export async function topCommand(opts: TopOptions, io: Io): Promise<void> {
	const filters = resolveFilters({ ...opts, kind: [...COMMAND_KINDS.top] });
	const objectPath = defaultObjectPath();
	preflight('top', objectPath);

	const model = new ChurnModel(monotonicUs(), { comm: opts.comm, pid: opts.pid, port: opts.port, closesFromTimeWait: true });
	const log = opts.verbose ? (line: string) => io.stderr.write(`${line}\n`) : undefined;
	// Walks at once: sockets that predate twtrace, and the namespaces' settings, before the first screen.
	const feed = new LiveFeed(model, { objectPath, filters, ringBytes: opts.ringSize, log, walkIntervalMs: opts.walkInterval, perEvent: true });

	const cgroups = new CgroupPaths();
	const ctx = (): TopContext => ({ epochOffsetUs: epochOffsetUs(), cgroupPath: (id) => cgroups.lookup(id), intervalMs: opts.interval, drops: feed.drops, unwalked: feed.unwalked, walks: feed.walks });
	const state: ScreenState = { by: opts.by, sort: opts.sort, paused: false, filter: '', editing: undefined, help: false };
	const take = (): Snapshot => {
		const nowUs = monotonicUs();
		model.tick(nowUs);
		return snapshot(model, {
			by: state.by, sort: state.sort, nowUs, rateWindowUs: Math.max(opts.interval, 1000) * 1000,
			filter: state.filter, cgroupPath: (id) => cgroups.lookup(id),
		});
	};

	let finish!: (reason: string) => void;
	const finished = new Promise<string>((resolve) => (finish = resolve));
	void io.interrupted.then(finish);

	const stdin = io.stdin as ReadStream | undefined;
	const stdout = io.stdout as WriteStream;
	const interactive = !opts.json && !opts.once && opts.iterations === undefined && stdout.isTTY === true && stdin?.isTTY === true;
	const iterations = opts.once ? 1 : opts.iterations;
	let shown = 0;
	let last: Snapshot | undefined;

	let terminal: Terminal | undefined;
	const draw = () => {
		if (terminal && last) terminal.draw(screenLines(state, last, ctx(), process.env.NO_COLOR ? PLAIN : ANSI, terminal, feed.home));
	};
	const refresh = () => {
		// A namespace first seen in events is walked at once: its settings and older sockets count now.
		feed.maybeWalk();
		const s = take();
		if (terminal) {
			if (!state.paused) last = s;
			draw();
			return;
		}
		const c = ctx();
		const out = opts.json
			? topJsonLine(s, c) + '\n'
			: [...headerLines(s, c, { home: feed.home }, PLAIN), ...victimLines(s, PLAIN), '', ...tableLines(s, c, PLAIN), '', ''].join('\n');
		io.stdout.write(out);
		if (iterations !== undefined && ++shown >= iterations) finish('iterations');
	};

	io.stdout.on('error', (error: NodeJS.ErrnoException) => finish(error.code === 'EPIPE' ? 'stdout closed' : `stdout: ${error.message}`));
	const stdoutFd = (io.stdout as { fd?: number }).fd;
	const pipeWatch = stdoutFd === undefined || interactive ? undefined : setInterval(() => {
		if (isWriteEndOrphaned(stdoutFd)) finish('stdout closed');
	}, 250);
	let timer: NodeJS.Timeout | undefined;
	const onResize = () => draw();
	try {
		if (interactive) {
			terminal = new Terminal(stdin!, stdout, (key) => {
				const action = handleKey(state, key);
				if (action === 'quit') finish('quit');
				else if (action === 'refresh') {
					last = take();
					draw();
				} else if (action === 'redraw') draw();
			});
			terminal.open();
			stdout.on('resize', onResize);
			last = take();
			draw();
		} else {
			io.stderr.write(`twtrace: top${opts.json ? ' --json' : ''}: a snapshot every ${opts.interval / 1000} s${iterations ? `, ${iterations} in all` : ''}. Ctrl-C to stop.\n`);
		}
		timer = setInterval(refresh, opts.interval);
		await finished;
	} finally {
		clearInterval(timer);
		clearInterval(pipeWatch);
		stdout.removeListener('resize', onResize);
		terminal?.close();
		const summary = await feed.stop();
		io.stderr.write(summaryLine(summary) + '\n');
	}
}
