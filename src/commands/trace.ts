/**
 * `twtrace trace`: one line per event, or NDJSON with --json. Wiring only: filters → session →
 * views → stdout; losses and the summary → stderr.
 */
import type { Command } from 'commander';
import { addFilterOptions, formatBytes, parseCount, parseDuration, verboseLog, type FilterOptions } from './options.js';
import type { Writable } from 'node:stream';
import { dropHint, usageError } from '../errors.js';
import type { TwtEvent } from '../event/decode.js';
import { CgroupPaths, epochOffsetUs, netnsInode } from '../tracer/host.js';
import { Run } from './run.js';
import { defaultObjectPath, preflight } from '../tracer/preflight.js';
import { TraceSession, type SessionSummary } from '../tracer/session.js';
import { MAX_WALKED_NAMESPACES, monotonicUs } from '../pipeline/live.js';
import { isWitnessDue, NamespaceWalker } from '../tracer/namespaces.js';
import type { Filters } from '../tracer/tracer.js';
import { eventsLost } from '../model/losses.js';
import { blame } from '../model/attribution.js';
import { workloadOf } from '../model/workload.js';
import { eventJsonLine, type EventContext } from '../views/event-json.js';
import { eventText, TEXT_HEADER } from '../views/event-text.js';

/** How often trace walks sockets to find time_wait events the kernel missed (and once at the end). */
const WITNESS_WALK_MS = 30_000;

export interface TraceOptions extends FilterOptions {
	json?: boolean;
	/** Witness walks: how often (ms). */
	walkInterval?: number;
	duration?: number;
	count?: number;
	header: boolean;
}

export interface Io {
	stdout: Writable;
	stderr: Writable;
	/** Resolves when the user asks to stop (SIGINT, SIGTERM). */
	interrupted: Promise<string>;
	/** Keys for full-screen views; absent or not a TTY: no interaction. */
	stdin?: NodeJS.ReadableStream;
}

/** Turns flag values into kernel filters; a bad --netns is a usage error (exit 2). */
export function resolveFilters(opts: FilterOptions): Filters {
	const netns: number[] = [];
	for (const arg of opts.netns ?? []) {
		try {
			netns.push(netnsInode(arg));
		} catch (error) {
			throw usageError(`--netns ${(error as Error).message}`, 'List namespaces with: ip netns list, or lsns -t net');
		}
	}
	if (netns.length > 8) throw usageError(`--netns: at most 8 network namespaces (got ${netns.length})`);
	return {
		netns,
		pid: opts.pid,
		port: opts.port,
		kinds: opts.kind ?? [],
		family: opts.family === '4' ? 4 : opts.family === '6' ? 6 : undefined,
	};
}

export async function traceCommand(opts: TraceOptions, io: Io): Promise<void> {
	const filters = resolveFilters(opts);
	const objectPath = defaultObjectPath();
	preflight('trace', objectPath);

	const cgroups = new CgroupPaths();
	const ctx: EventContext = { epochOffsetUs: epochOffsetUs(), cgroupPath: (id) => cgroups.lookup(id), workload: workloadCache(cgroups) };
	const format = opts.json ? (e: TwtEvent) => eventJsonLine(e, ctx) : (e: TwtEvent) => eventText(e, ctx);
	const log = verboseLog(opts, io);

	let printed = 0;
	const run = new Run(io, { watchStdout: true, durationMs: opts.duration });
	const finish = (why: string) => run.finish(why);
	let reason = '';

	// Socket walks are the witness of time_wait events the kernel never reports (bpf/twtrace.bpf.c,
	// dump_tcp): only worth their cost when time_wait events are wanted.
	const witness = filters.kinds.length === 0 || filters.kinds.includes('time_wait');
	const seenNetns = new Map<number, number>(); // netns → a pid seen in it (a way in)
	const session = new TraceSession({ objectPath, filters, ringBytes: opts.ringSize, log, socketWalks: witness }, {
		onEvents: (events) => {
			let out = '';
			for (const e of events) {
				if (witness && e.netns && !seenNetns.has(e.netns) && seenNetns.size < MAX_WALKED_NAMESPACES) seenNetns.set(e.netns, e.pid || e.closerPid);
				if (opts.comm !== undefined && blame(e).comm !== opts.comm) continue;
				if (opts.count !== undefined && printed >= opts.count) break;
				out += format(e) + '\n';
				printed++;
			}
			if (out && !io.stdout.write(out)) {
				// A slow reader: stop draining until stdout catches up; the ring absorbs, then counts drops.
				session.pause();
				io.stdout.once('drain', () => session.resume());
			}
			if (opts.count !== undefined && printed >= opts.count) finish('count');
		},
		onDrops: (delta, total) => {
			if (delta.ringFull) {
				io.stderr.write(`twtrace: dropped ${delta.ringFull.toLocaleString('en-US')} events: ring buffer full (total ${total.ringFull.toLocaleString('en-US')}, --ring-size ${formatBytes(session.ringBytes)}). ${dropHint}\n`);
			}
			if (delta.missedRuns) io.stderr.write(`twtrace: the kernel skipped ${delta.missedRuns} runs of the bind() program (nested on one CPU): those bind failures were not seen\n`);
			if (delta.mapFull) io.stderr.write(`twtrace: ${delta.mapFull} sockets left unattributed: socket storage or listener map full\n`);
			if (delta.walkMissed) io.stderr.write(`twtrace: ${delta.walkMissed} sockets entered TIME_WAIT with no tracepoint call; a socket walk found them and their time_wait events follow, marked recovered\n`);
			if (delta.unwitnessed) io.stderr.write(`twtrace: ${delta.unwitnessed} active closes could not be remembered (closing map full): a missed time_wait among them would go unseen\n`);
			if (delta.decodeErrors) io.stderr.write(`twtrace: ${delta.decodeErrors} records could not be decoded (BPF object and twtrace out of step? rebuild: scripts/setup)\n`);
		},
	});

	const walker = witness ? new NamespaceWalker(session.tracer, monotonicUs, () => session.drainNow()) : undefined;
	let lastWalkUs = monotonicUs();
	let lastWalkMs = 0;
	let walking: Promise<void> | undefined;
	const witnessWalk = async (w: NamespaceWalker): Promise<void> => {
		const startNs = process.hrtime.bigint();
		const startedUs = monotonicUs();
		w.discover();
		const namespaces = new Set(filters.netns.length ? filters.netns : [w.home, ...seenNetns.keys()]);
		const walked = await w.witness(namespaces, (netns) => [seenNetns.get(netns) ?? 0]);
		session.tracer.sweepClosing(process.hrtime.bigint(), { startNs, netns: walked });
		lastWalkUs = monotonicUs();
		lastWalkMs = (lastWalkUs - startedUs) / 1000;
	};
	// Every interval, and within seconds of a close that waits too long for its end (kernel-facts §8).
	const walkTimer = walker ? setInterval(() => {
		if (walking) return;
		const sinceUs = monotonicUs() - lastWalkUs;
		if (sinceUs >= (opts.walkInterval ?? WITNESS_WALK_MS) * 1000 || isWitnessDue(session.tracer, sinceUs, lastWalkMs)) {
			walking = witnessWalk(walker).finally(() => (walking = undefined));
		}
	}, 1000) : undefined;

	try {
		io.stderr.write(`twtrace: tracing TCP connections${describeFilters(filters, opts)}. Ctrl-C to stop.\n`);
		if (!opts.json && opts.header) io.stdout.write(TEXT_HEADER + '\n');
		reason = await run.finished;
	} finally {
		run.dispose();
		clearInterval(walkTimer);
		await walking;
		if (walker) {
			// After detaching no time_wait event is on its way: the last walk claims every missed one.
			session.detachTracepoints();
			await witnessWalk(walker);
		}
		const summary = session.stop();
		io.stderr.write(summaryLine(summary, printed, reason === 'stdout closed') + '\n');
	}
}

function describeFilters(f: Filters, opts: FilterOptions): string {
	const parts: string[] = [];
	if (f.netns.length) parts.push(`netns ${f.netns.join(',')}`);
	if (f.pid) parts.push(`pid ${f.pid}`);
	if (opts.comm) parts.push(`comm ${opts.comm}`);
	if (f.port) parts.push(`port ${f.port}`);
	if (f.family) parts.push(`IPv${f.family}`);
	if (f.kinds.length) parts.push(`kinds ${f.kinds.join(',')}`);
	return parts.length ? ` (${parts.join('; ')})` : '';
}

/**
 * The closing line: what was seen and everything that was lost, always, even when zero. `printed`:
 * events written to stdout; `readerLeft`: stdout's reader went away (`| head`), so how many of them
 * it read is not known here, and the line does not claim they were shown.
 */
export function summaryLine(s: SessionSummary, printed?: number, readerLeft = false): string {
	const lost = eventsLost(s);
	const written = printed === undefined ? '' : readerLeft
		? `${printed.toLocaleString('en-US')} events written before stdout's reader left, `
		: `${printed.toLocaleString('en-US')} events shown, `;
	const seen = `${written}${s.events.toLocaleString('en-US')} ${printed === undefined ? 'events ' : ''}received`;
	return `twtrace: ${seen} in ${s.seconds.toFixed(1)} s; ` +
		`${lost.toLocaleString('en-US')} lost (ring full ${s.ringFull}, skipped runs ${s.missedRuns}, undecodable ${s.decodeErrors}); ` +
		`${s.mapFull} unattributed (map full), ${s.ownerMissing} without a known owner (opened before twtrace started)` +
		(s.walkMissed ? `; ${s.walkMissed} time_wait missed by the kernel's tracepoint, recovered from socket walks` : '') +
		(s.unwitnessed ? `; ${s.unwitnessed} active closes unwitnessed (closing map full)` : '') +
		(s.nestedRecovered ? `; ${s.nestedRecovered} nested transitions recovered by the fallback program` : '');
}

const TRACE_HELP = `
Examples:
  sudo twtrace trace --kind time_wait            who puts sockets into TIME_WAIT, live
  sudo twtrace trace --json --duration 30s > tw.ndjson
  sudo twtrace trace --netns /run/netns/app --port 5432
  sudo twtrace trace --kind connect_fail,bind_fail   who hits EADDRNOTAVAIL / EADDRINUSE

Exit status: 0 success, 1 failure (privileges, kernel support), 2 bad usage.`;

/** Adds `trace` and its options to the program (program.command() copies output, exit and help settings). */
export function registerTrace(program: Command, io: Io): void {
		const trace = program.command('trace')
		.description('Print TCP connection events with the process to blame: connect, accept, active_close, time_wait, reset, connect_fail, bind_fail.')
		.option('--json', 'one JSON object per line (NDJSON); see README "Event schema"')
		.option('--duration <time>', 'stop after this long (500ms, 10s, 5m)', parseDuration)
		.option('--count <n>', 'stop after n events', parseCount)
		.option('--no-header', 'omit the column header line (text output)');
	addFilterOptions(trace)
		.addHelpText('after', TRACE_HELP)
		.action(async (opts: TraceOptions) => traceCommand(opts, io));
}

/** cgroup id → workload name, remembered once the cgroup's path is known (events come by the thousand per cgroup). */
function workloadCache(cgroups: CgroupPaths): (id: number) => string | undefined {
	const known = new Map<number, string | undefined>();
	return (id) => {
		if (known.has(id)) return known.get(id);
		const path = cgroups.lookup(id);
		if (path === undefined) return undefined; // not found yet: asked again later
		const w = workloadOf(path);
		const name = w && w.name !== '/' ? w.name : undefined;
		known.set(id, name);
		return name;
	};
}
