/**
 * `twtrace trace`: one line per event, or NDJSON with --json. Options and wiring: filters → the
 * live feed (no model: it looks up the closes whose TIME_WAIT entry the kernel never reported) →
 * views → stdout; losses and the summary → stderr.
 */
import type { Command } from 'commander';
import { dropHint } from '../errors.js';
import type { TwtEvent } from '../event/decode.js';
import type { Io } from '../io.js';
import { blame } from '../model/attribution.js';
import { describeFilters } from '../model/view-filter.js';
import { Run } from '../run.js';
import { hostNames, openTraceFeed } from '../source/live-source.js';
import { eventJsonLine, type EventContext } from '../views/event-json.js';
import { eventText, TEXT_HEADER } from '../views/event-text.js';
import { LineBatch } from '../views/line-batch.js';
import { sessionSummaryLine } from '../views/session-text.js';
import { addFilterOptions, parseCount, parseDuration, verboseLog, type FilterOptions } from './options.js';
import { formatBytes } from '../views/bytes.js';

export interface TraceOptions extends FilterOptions {
	json?: boolean;
	duration?: number;
	count?: number;
	header: boolean;
}

export async function traceCommand(opts: TraceOptions, io: Io): Promise<void> {
	let printed = 0;
	const run = new Run(io, { watchStdout: true, durationMs: opts.duration });
	const finish = (why: string) => run.finish(why);
	let reason = '';
	const lines = new LineBatch();
	const ctx: EventContext = hostNames();
	const format = opts.json ? (e: TwtEvent) => eventJsonLine(e, ctx) : (e: TwtEvent) => eventText(e, ctx);
	const { feed, filters } = openTraceFeed(opts, { log: verboseLog(opts, io) }, {
		onEvents: (events) => {
			for (const e of events) {
				if (opts.comm !== undefined && blame(e).comm !== opts.comm) continue;
				if (opts.count !== undefined && printed >= opts.count) break;
				lines.add(format(e));
				printed++;
			}
			const out = lines.take();
			if (out && !io.stdout.write(out) && !feed.paused) {
				// A slow reader: stop draining until stdout catches up; the ring absorbs, then counts drops.
				// One wait at a time: a batch handed over while paused (the last drain of stop) adds no listener.
				feed.pause();
				io.stdout.once('drain', () => feed.resume());
			}
			if (opts.count !== undefined && printed >= opts.count) finish('count');
		},
		onDrops: (delta, total) => {
			if (delta.ringFull) {
				io.stderr.write(`twtrace: dropped ${delta.ringFull.toLocaleString('en-US')} events: ring buffer full (total ${total.ringFull.toLocaleString('en-US')}, --ring-size ${formatBytes(feed.ringBytes)}). ${dropHint}\n`);
			}
			if (delta.missedRuns) io.stderr.write(`twtrace: the kernel skipped ${delta.missedRuns} runs of the bind() program (nested on one CPU): those bind failures were not seen\n`);
			if (delta.mapFull) io.stderr.write(`twtrace: ${delta.mapFull} sockets left unattributed: socket storage or listener map full\n`);
			if (delta.walkMissed) io.stderr.write(`twtrace: ${delta.walkMissed} sockets entered TIME_WAIT with no tracepoint call; found later, their time_wait events follow, marked recovered\n`);
			if (delta.unwitnessed) io.stderr.write(`twtrace: ${delta.unwitnessed} active closes could not be remembered (closing map full): a missed time_wait among them would go unseen\n`);
			if (delta.decodeErrors) io.stderr.write(`twtrace: ${delta.decodeErrors} records could not be decoded (BPF object and twtrace out of step? rebuild: scripts/setup)\n`);
		},
	});
	try {
		const described = describeFilters({ netns: filters.netns, pid: filters.pid, comm: opts.comm, port: filters.port, family: filters.family, kinds: filters.kinds });
		io.stderr.write(`twtrace: tracing TCP connections${described ? ` (${described})` : ''}. Ctrl-C to stop.\n`);
		if (!opts.json && opts.header) io.stdout.write(TEXT_HEADER + '\n');
		reason = await run.finished;
	} finally {
		run.dispose();
		// After detaching no time_wait event is on its way: every close still waiting is looked up once.
		const summary = await feed.stop({ last: true });
		io.stderr.write(sessionSummaryLine(summary, printed, reason === 'stdout closed') + '\n');
	}
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
