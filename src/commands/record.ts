/**
 * `twtrace record -o FILE`: the live feed `top` runs (events and socket walks), written to a
 * capture as it arrives. Stops on --duration, --max-size, Ctrl-C or SIGTERM, and always ends the
 * file properly: the ring is drained, the trailer written, the file fsynced.
 */
import type { Command } from 'commander';
import { addAgentOptions, addFilterOptions, captureFilters, formatBytes, modelFilters, parseDuration, parseFileSize, parseInterval, verboseLog, type FilterOptions } from './options.js';
import fs from 'node:fs';
import path from 'node:path';
import { captureDrops, CaptureError, captureHeader, settingsToJson } from '../capture/format.js';
import { CaptureWriter } from '../capture/writer.js';
import { EVENT_FIELDS, EVENT_SIZE, EventKind } from '../event/layout.generated.js';
import type { TwtEvent } from '../event/decode.js';
import { blame } from '../model/attribution.js';
import type { WalkRecord } from '../model/walk.js';
import { TwtraceError, usageError } from '../errors.js';
import { CgroupPaths, epochOffsetUs } from '../tracer/host.js';
import { monotonicUs } from '../pipeline/live.js';
import { LivePipeline } from '../pipeline/pipeline.js';
import { defaultObjectPath, preflight } from '../tracer/preflight.js';
import { agentLabel, chooseAgent, formatSpan, tracingFilters, type AgentChoiceOptions } from './agent-choice.js';
import { Run } from './run.js';
import { resolveFilters, summaryLine, type Io } from './trace.js';

export interface RecordOptions extends FilterOptions, AgentChoiceOptions {
	output: string;
	duration?: number;
	/** Save this much of the past from the agent's flight recorder, ms, instead of recording from now. */
	last?: number;
	maxSize: number;
	force?: boolean;
	walkInterval: number;
}

type Pending = { raw: Buffer; count: number } | { walk: WalkRecord };

const MAX_CGROUPS = 10_000;

export async function recordCommand(opts: RecordOptions, io: Io): Promise<void> {
	const filters = resolveFilters({ ...opts, kind: undefined });
	// Checked before loading BPF, for a prompt usage error; the writer's O_EXCL create is what guarantees it.
	if (fs.existsSync(opts.output) && !opts.force) throw usageError(`${opts.output} exists; use --force to overwrite it`, 'Or choose another file with -o');
	checkOutputDirectory(opts.output);
	if (opts.last !== undefined) return saveFromAgent(opts, io);
	const objectPath = defaultObjectPath();
	preflight('record', objectPath);

	const run = new Run(io, { durationMs: opts.duration, durationReason: '--duration reached', signalReason: (signal) => (signal === 'SIGINT' ? 'interrupted (Ctrl-C)' : `stopped by ${signal}`) });
	const finish = (reason: string) => run.finish(reason);

	let writer: CaptureWriter | undefined;
	let writeError: Error | undefined;
	const pending: Pending[] = [];
	// cgroup id → path, resolved when the id is first seen (the cgroup may be gone by the end).
	const cgroupPaths = new Map<number, string | undefined>();
	const guard = (write: () => boolean) => {
		if (writeError) return;
		try {
			if (!write()) finish(`--max-size ${formatBytes(opts.maxSize)} reached`);
		} catch (error) {
			writeError = error as Error;
			finish(`write error: ${writeError.message}`);
		}
	};
	const log = verboseLog(opts, io);
	const startUs = monotonicUs();
	const startedAt = new Date().toISOString();
	const pipeline = new LivePipeline({ objectPath, filters, ringBytes: opts.ringSize, log, walkIntervalMs: opts.walkInterval, keepRaw: true, model: modelFilters(opts, filters) }, () => ({
		onEvents: (events, raw) => {
			if (!raw) return;
			for (const e of events) {
				if (e.cgroupId && !cgroupPaths.has(e.cgroupId) && cgroupPaths.size < MAX_CGROUPS) cgroupPaths.set(e.cgroupId, pipeline.cgroups.lookup(e.cgroupId));
			}
			// --comm is applied by the model, not the kernel: the capture keeps only matching owners' records.
			const kept = opts.comm === undefined ? { raw, count: raw.length / EVENT_SIZE } : onlyComm(events, raw, opts.comm);
			if (writer) guard(() => writer!.writeEvents(kept.raw, kept.count));
			else pending.push(kept);
		},
		onWalk: (walk) => {
			if (writer) guard(() => writer!.writeWalk(walk));
			else pending.push({ walk });
		},
	}));
	const feed = pipeline.feed;

	const header = captureHeader({
		startedAt,
		clock: { startUs, epochOffsetUs: epochOffsetUs() },
		filters: captureFilters(filters, opts),
		walkIntervalMs: opts.walkInterval,
		namespaces: pending.flatMap((p) => ('walk' in p ? [{ netns: p.walk.netns, settings: settingsToJson(p.walk.settings) }] : [])),
	});
	let timer: NodeJS.Timeout | undefined;
	let reason = '';
	try {
		try {
			writer = new CaptureWriter(opts.output, header, { maxBytes: opts.maxSize, overwrite: opts.force });
		} catch (error) {
			throw error instanceof CaptureError ? new TwtraceError(error.message) : error;
		}
		for (const p of pending.splice(0)) guard(() => ('walk' in p ? writer!.writeWalk(p.walk) : writer!.writeEvents(p.raw, p.count)));
		io.stderr.write(`twtrace: recording to ${opts.output} (at most ${formatBytes(opts.maxSize)}${opts.duration ? `, for ${opts.duration / 1000} s` : ''}). Ctrl-C to stop.\n`);
		timer = setInterval(() => feed.maybeWalk(), Math.min(500, opts.walkInterval));
		reason = await run.finished;
	} finally {
		clearInterval(timer);
		run.dispose();
		const summary = await pipeline.stop({ lastWalk: true }); // delivers what is left in the ring (and what the last walk recovers) to the file
		if (writer) {
			try {
				writer.close({
					endUs: monotonicUs(),
					reason: reason || 'error',
					drops: captureDrops(summary),
					cgroups: resolved(cgroupPaths, pipeline.cgroups),
				});
			} catch (error) {
				writeError ??= error as Error;
			}
			io.stderr.write(`twtrace: ${writer.events.toLocaleString('en-US')} events and ${writer.walks} socket walks written to ${opts.output} ` +
				`(${formatBytes(writer.bytes)}); ${reason || 'stopped'}.\n`);
		}
		io.stderr.write(summaryLine(summary) + '\n');
	}
	if (writeError) {
		throw new TwtraceError(`writing ${opts.output} failed: ${writeError.message}`, `What was written before is kept: twtrace report --partial ${opts.output}`);
	}
	io.stderr.write(`twtrace: report with: twtrace report ${opts.output}\n`);
}

/** The paths known, retrying the ids not found when first seen (a lookup rescans at most every 2 s). */
function resolved(paths: ReadonlyMap<number, string | undefined>, cgroups: CgroupPaths): Record<string, string> {
	const out: Record<string, string> = {};
	for (const [id, known] of paths) {
		const p = known ?? cgroups.lookup(id);
		if (p !== undefined) out[id] = p;
	}
	return out;
}

/**
 * The records blamed (as the model blames them) on a process with this comm, and every task record
 * (cheap, and a later event may need it). `raw` holds the events in order, task records among them.
 */
function onlyComm(events: readonly TwtEvent[], raw: Buffer, comm: string): { raw: Buffer; count: number } {
	const parts: Buffer[] = [];
	let next = 0;
	for (let at = 0; at < raw.length; at += EVENT_SIZE) {
		const record = raw.subarray(at, at + EVENT_SIZE);
		if (record[EVENT_FIELDS.kind.offset] === EventKind.TASK) parts.push(record);
		else if (blame(events[next++]!).comm === comm) parts.push(record);
	}
	return { raw: Buffer.concat(parts), count: parts.length };
}


/** record --last: the agent's flight recorder of the last --last, saved as a capture file. */
async function saveFromAgent(opts: RecordOptions, io: Io): Promise<void> {
	if (opts.duration !== undefined) throw usageError('--last (the past) or --duration (from now), not both');
	if (opts.standalone) throw usageError('--last reads the agent\'s flight recorder: not with --standalone');
	const filters = tracingFilters(opts);
	if (filters.length) throw usageError(`${filters[0]} does not apply to --last: the agent recorded with its own filters`, 'Without --last, record from now with them: sudo twtrace record ' + filters[0] + ' … -o FILE');
	const agent = await chooseAgent('record', opts, io);
	if (!agent) {
		throw new TwtraceError('--last reads the flight recorder of a running agent, and none answers',
			'Start one (sudo twtrace serve, or systemctl start twtrace) so that the past is there next time; now, record from now: sudo twtrace record -o FILE');
	}
	const bytes = await agent.client.capture(opts.last);
	try {
		fs.writeFileSync(opts.output, bytes, { flag: opts.force ? 'w' : 'wx', mode: 0o640 });
	} catch (error) {
		throw new TwtraceError(`cannot write ${opts.output}: ${(error as Error).message}`, 'Choose another file with -o');
	}
	io.stderr.write(`twtrace: the last ${formatSpan(opts.last!)} from the ${agentLabel(agent.info)} written to ${opts.output} (${formatBytes(bytes.length)}).\n` +
		`twtrace: report with: twtrace report ${opts.output}\n`);
}

const RECORD_HELP = `
The capture holds the raw events, every socket walk (exact TIME_WAIT sets and timers) and each network
namespace's sysctls, so a report made from it later, elsewhere, is the one a live run would give.
It is written as it is recorded; Ctrl-C or SIGTERM ends it properly. A killed recording keeps what
was written: report on it with --partial.

Examples:
  sudo twtrace record -o churn.twtcap --duration 5m
  sudo twtrace record -o app.twtcap --netns /run/netns/app --max-size 200M
  twtrace report churn.twtcap`;


/** Adds `record` and its options to the program (program.command() copies output, exit and help settings). */
export function registerRecord(program: Command, io: Io): void {
	const record = program.command('record')
		.description('Record TCP churn to a capture file (events and socket walks, with the host\'s sysctls) for `twtrace report`.')
		.requiredOption('-o, --output <file>', 'the capture file to write')
		.option('--duration <time>', 'stop after this long (default: until Ctrl-C or SIGTERM)', parseDuration)
		.option('--max-size <bytes>', 'stop before the file passes this size (K, M, G)', parseFileSize, 1024 ** 3)
		.option('--force', 'overwrite the file if it exists')
		.option('--walk-interval <time>', 'walk the socket tables this often (exact TIME_WAIT counts in the report)', parseInterval, 5000)
		.option('--last <time>', 'save this much of the past from the running agent\'s flight recorder (10m), instead of recording from now', parseDuration);
	addAgentOptions(record);
	addFilterOptions(record, { kinds: false, ringBytes: 32 * 1024 * 1024 })
		.addHelpText('after', RECORD_HELP)
		.action(async (opts: RecordOptions) => recordCommand(opts, io));
}

/** Before anything is loaded: the file's directory must exist and be writable, or nothing could be kept. */
function checkOutputDirectory(file: string): void {
	const dir = path.dirname(path.resolve(file));
	const st = fs.statSync(dir, { throwIfNoEntry: false });
	if (!st) throw usageError(`cannot write ${file}: ${dir} does not exist`, 'Create it first, or choose another file with -o');
	if (!st.isDirectory()) throw usageError(`cannot write ${file}: ${dir} is not a directory`, 'Choose another file with -o');
	try {
		fs.accessSync(dir, fs.constants.W_OK);
	} catch {
		throw usageError(`cannot write ${file}: ${dir} is not writable`, 'Choose another file with -o');
	}
}
