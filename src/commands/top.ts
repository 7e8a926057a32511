/**
 * `twtrace top`: who churns connections, how many ports each holds in TIME_WAIT, and how long until
 * connect() fails. Wiring only: session → model (events, and socket walks every --walk-interval) →
 * snapshot each --interval → the full-screen view, text, or JSON lines.
 */
import type { ReadStream, WriteStream } from 'node:tty';
import type { TwtEvent } from '../event/decode.js';
import { ChurnModel } from '../model/aggregate.js';
import { snapshot, type Grouping, type Snapshot, type SortKey } from '../model/snapshot.js';
import { NamespaceWalker } from '../tracer/namespaces.js';
import { CgroupPaths, epochOffsetUs, isWriteEndOrphaned } from '../tracer/host.js';
import { defaultObjectPath, preflight } from '../tracer/preflight.js';
import { TraceSession } from '../tracer/session.js';
import type { DropCounts } from '../tracer/tracer.js';
import { Terminal } from '../views/terminal.js';
import { topJsonLine, type TopContext } from '../views/top-json.js';
import { handleKey, screenLines, type ScreenState } from '../views/top-screen.js';
import { ANSI, headerLines, PLAIN, tableLines } from '../views/top-text.js';
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

/** At most this many namespaces walked per pass: each costs a setns and a walk. */
const MAX_WALKED_NAMESPACES = 16;

const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

export async function topCommand(opts: TopOptions, io: Io): Promise<void> {
	const filters = resolveFilters({ ...opts, kind: undefined });
	const objectPath = defaultObjectPath();
	preflight('top', objectPath);

	const model = new ChurnModel(monotonicUs(), { comm: opts.comm, pid: opts.pid, port: opts.port });
	let drops: DropCounts & { decodeErrors: number } = { ringFull: 0, mapFull: 0, missedRuns: 0, nestedRecovered: 0, ownerMissing: 0, decodeErrors: 0 };
	const log = opts.verbose ? (line: string) => io.stderr.write(`${line}\n`) : undefined;
	const session = new TraceSession({ objectPath, filters, ringBytes: opts.ringSize, log, socketWalks: true }, {
		onEvents: (events: TwtEvent[]) => model.ingest(events),
		onDrops: (_delta, total) => (drops = total),
	});

	const walker = new NamespaceWalker(session.tracer, monotonicUs, () => session.drainNow());
	const unwalked = new Map<number, string>();
	let lastWalkUs = 0;
	const walkAll = () => {
		session.drainNow(); // events from before the walk must reach the model before it
		const discovered = walker.discover();
		for (const netns of namespacesToWalk(model, filters.netns, walker.home, discovered)) {
			const outcome = walker.walk(netns, pidsIn(model, netns));
			if ('error' in outcome) {
				unwalked.set(netns, outcome.error);
				model.addNamespace(netns); // shown, with the reason it was not walked
			}
			else {
				unwalked.delete(netns);
				model.reconcile(outcome);
			}
		}
		lastWalkUs = monotonicUs();
	};

	const cgroups = new CgroupPaths();
	const ctx = (): TopContext => ({ epochOffsetUs: epochOffsetUs(), cgroupPath: (id) => cgroups.lookup(id), intervalMs: opts.interval, drops, unwalked });
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
		if (terminal && last) terminal.draw(screenLines(state, last, ctx(), process.env.NO_COLOR ? PLAIN : ANSI, terminal, walker.home));
	};
	const refresh = () => {
		session.drainNow();
		// A namespace first seen in events is walked at once: its settings and older sockets count now.
		const isNewNamespace = [...model.namespaces.values()].some((ns) => ns.netns !== 0 && !ns.settings && !unwalked.has(ns.netns));
		if (isNewNamespace || monotonicUs() - lastWalkUs >= opts.walkInterval * 1000) walkAll();
		const s = take();
		if (terminal) {
			if (!state.paused) last = s;
			draw();
			return;
		}
		const c = ctx();
		const out = opts.json
			? topJsonLine(s, c) + '\n'
			: [...headerLines(s, c, { home: walker.home }, PLAIN), '', ...tableLines(s, c, PLAIN), '', ''].join('\n');
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
		walkAll(); // sockets that predate twtrace, and the namespaces' settings, before the first screen
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
		const summary = session.stop();
		io.stderr.write(summaryLine(summary) + '\n');
	}
}

/**
 * The namespaces asked for; else this one, those seen in events (the busiest first), then the
 * others in use on the host, which may hold TIME_WAIT sockets from before start.
 */
function namespacesToWalk(model: ChurnModel, asked: readonly number[], home: number, discovered: readonly number[]): number[] {
	if (asked.length) return [...asked];
	const seen = [...model.namespaces.keys()].filter((n) => n !== home && n !== 0)
		.sort((a, b) => model.timeWait.countIn(b) - model.timeWait.countIn(a));
	return [...new Set([home, ...seen, ...discovered])].slice(0, MAX_WALKED_NAMESPACES);
}

/** Processes seen in a namespace, the most recent first: their /proc/PID/ns/net is a way in. */
function pidsIn(model: ChurnModel, netns: number): number[] {
	return [...model.owners.values()].filter((o) => o.netns === netns && o.pid > 0)
		.sort((a, b) => b.lastEventUs - a.lastEventUs).slice(0, 8).map((o) => o.pid);
}
