/**
 * `twtrace record -o FILE`: the live feed `top` runs (events and socket walks), written to a
 * capture as it arrives; or, with --last, the agent's flight recorder saved. Stops on --duration,
 * --max-size, Ctrl-C or SIGTERM, and always ends the file properly: the ring is drained, the
 * trailer written, the file fsynced. Options and wiring.
 */
import type { Command } from 'commander';
import fs from 'node:fs';
import path from 'node:path';
import { TwtraceError, usageError } from '../errors.js';
import type { Io } from '../io.js';
import { Run } from '../run.js';
import type { AgentChoiceOptions } from '../source/agent-choice.js';
import { AgentSource } from '../source/agent-source.js';
import { tracingFilters } from '../source/filters.js';
import { LiveSource } from '../source/live-source.js';
import { LiveRecording, saveAgentCapture } from '../source/recordings.js';
import { openSource } from '../source/open.js';
import { formatDuration } from '../views/duration.js';
import { sessionSummaryLine } from '../views/session-text.js';
import { addAgentOptions, addFilterOptions, parseDuration, parseFileSize, parseInterval, verboseLog, type FilterOptions } from './options.js';
import { formatBytes } from '../views/bytes.js';

export interface RecordOptions extends FilterOptions, AgentChoiceOptions {
	output: string;
	duration?: number;
	/** Save this much of the past from the agent's flight recorder, ms, instead of recording from now. */
	last?: number;
	maxSize: number;
	force?: boolean;
	walkInterval: number;
}

export async function recordCommand(opts: RecordOptions, io: Io): Promise<void> {
	// Checked before loading BPF, for a prompt usage error; the writer's O_EXCL create is what guarantees it.
	if (fs.existsSync(opts.output) && !opts.force) throw usageError(`${opts.output} exists; use --force to overwrite it`, 'Or choose another file with -o');
	checkOutputDirectory(opts.output);
	if (opts.last !== undefined) return saveFromAgent(opts, io);

	const run = new Run(io, { durationMs: opts.duration, durationReason: '--duration reached', signalReason: (signal) => (signal === 'SIGINT' ? 'interrupted (Ctrl-C)' : `stopped by ${signal}`) });
	const recording = new LiveRecording({
		file: opts.output, maxBytes: opts.maxSize, force: opts.force, walkIntervalMs: opts.walkInterval,
		onFull: (why) => run.finish(why === 'max-size' ? `--max-size ${formatBytes(opts.maxSize)} reached` : why),
	}, opts);
	// From now, here: a recording is meant to keep all of it, which the agent's bounded recorder may not.
	const source = await openSource('record', opts, io, {
		agent: 'never',
		live: { kinds: [], keepRaw: true, walkIntervalMs: opts.walkInterval, log: verboseLog(opts, io), follow: recording.follow },
	}) as LiveSource;
	let reason = '';
	try {
		recording.open(source, opts);
		io.stderr.write(`twtrace: recording to ${opts.output} (at most ${formatBytes(opts.maxSize)}${opts.duration ? `, for ${opts.duration / 1000} s` : ''}). Ctrl-C to stop.\n`);
		reason = await run.finished;
	} finally {
		run.dispose();
		const { summary, written } = await recording.finish(source, reason);
		if (written) {
			io.stderr.write(`twtrace: ${written.events.toLocaleString('en-US')} events and ${written.walks} socket walks written to ${opts.output} ` +
				`(${formatBytes(written.bytes)}); ${reason || 'stopped'}.\n`);
		}
		io.stderr.write(sessionSummaryLine(summary) + '\n');
	}
	if (recording.writeError) {
		throw new TwtraceError(`writing ${opts.output} failed: ${recording.writeError.message}`, `What was written before is kept: twtrace report --partial ${opts.output}`);
	}
	io.stderr.write(`twtrace: report with: twtrace report ${opts.output}\n`);
}

/** record --last: the agent's flight recorder of the last --last, saved as a capture file. */
async function saveFromAgent(opts: RecordOptions, io: Io): Promise<void> {
	if (opts.duration !== undefined) throw usageError('--last (the past) or --duration (from now), not both');
	if (opts.standalone) throw usageError('--last reads the agent\'s flight recorder: not with --standalone');
	const filters = tracingFilters(opts);
	if (filters.length) throw usageError(`${filters[0]} does not apply to --last: the agent recorded with its own filters`, 'Without --last, record from now with them: sudo twtrace record ' + filters[0] + ' … -o FILE');
	const source = await openSource('record', opts, io, {
		agent: {
			required: new TwtraceError('--last reads the flight recorder of a running agent, and none answers',
				'Start one (sudo twtrace serve, or systemctl start twtrace) so that the past is there next time; now, record from now: sudo twtrace record -o FILE'),
		},
	}) as AgentSource;
	const bytes = await saveAgentCapture(source, opts.output, opts.last, opts.force === true);
	const short = await source.shortfall(opts.last);
	io.stderr.write(`twtrace: the last ${formatDuration(opts.last! / 1000)} from the ${source.label()} written to ${opts.output} (${formatBytes(bytes)}).\n` +
		(short ? `twtrace: ${short.message}.\n` : '') +
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
		.option('--walk-interval <time>', 'check TIME_WAIT counts against the kernel\'s this often; walk the socket tables when they differ, and every 10 intervals (exact counts in the report)', parseInterval, 5000)
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
