/**
 * `twtrace doctor`: the check for playbooks and monitoring. Walks the namespaces' socket tables
 * (iter/tcp), samples events for --sample to measure rates and catch failures, walks again, and
 * prints one status line (Nagios style, with performance data) and the details, or JSON.
 * Returns the exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
 */
import { COMMAND_KINDS } from '../event/kinds.js';
import { evaluate, inputFromSnapshot, type Thresholds } from '../doctor/check.js';
import { ChurnModel } from '../model/aggregate.js';
import { snapshot } from '../model/snapshot.js';
import { TwtraceError, usageError } from '../errors.js';
import { LiveFeed, monotonicUs } from '../tracer/live.js';
import { defaultObjectPath, preflight } from '../tracer/preflight.js';
import type { FilterOptions } from './options.js';
import { resolveFilters, type Io } from './trace.js';

export interface DoctorOptions extends Pick<FilterOptions, 'netns' | 'ringSize' | 'verbose'> {
	warn: number;
	crit: number;
	warnHeadroom: number;
	critHeadroom: number;
	sample: number;
	json?: boolean;
}

export const UNKNOWN_EXIT = 3;

export async function doctorCommand(opts: DoctorOptions, io: Io): Promise<number> {
	if (opts.warn > opts.crit) throw usageError(`--warn ${opts.warn} is above --crit ${opts.crit}`);
	if (opts.warnHeadroom < opts.critHeadroom) throw usageError(`--warn-headroom ${opts.warnHeadroom} % is below --crit-headroom ${opts.critHeadroom} %`);
	const filters = resolveFilters({ netns: opts.netns, ringSize: opts.ringSize, kind: [...COMMAND_KINDS.doctor] });
	const thresholds: Thresholds = { warnTimeWait: opts.warn, critTimeWait: opts.crit, warnHeadroom: opts.warnHeadroom / 100, critHeadroom: opts.critHeadroom / 100 };
	const objectPath = defaultObjectPath();
	preflight('doctor', objectPath);

	const startUs = monotonicUs();
	const model = new ChurnModel(startUs, { closesFromTimeWait: true });
	const log = opts.verbose ? (line: string) => io.stderr.write(`${line}\n`) : undefined;
	const feed = new LiveFeed(model, { objectPath, filters, ringBytes: opts.ringSize, log });
	try {
		await new Promise<void>((resolve) => {
			const t = setTimeout(resolve, opts.sample);
			void io.interrupted.then(() => (clearTimeout(t), resolve()));
		});
		await feed.walkAll(); // the counts reported are the kernel's, at the end of the sample
	} finally {
		await feed.stop();
	}
	const nowUs = monotonicUs();
	const snap = snapshot(model, { by: 'process', sort: 'timeWait', nowUs, rateWindowUs: Math.max(nowUs - startUs, 1), maxDestinations: 50, maxRows: 5, maxVictims: 100 });
	const input = inputFromSnapshot(snap, {
		asked: new Set(filters.netns),
		unwalked: feed.unwalked,
		sampleSeconds: Math.round(opts.sample / 100) / 10,
	});
	const verdict = evaluate(input, thresholds);
	if (opts.json) {
		io.stdout.write(JSON.stringify({ status: verdict.status, exitCode: verdict.exitCode, line: verdict.line, findings: verdict.findings, ...input, thresholds }, null, 2) + '\n');
	} else {
		const details = verdict.findings.map((f) => `  [${f.status}] ${f.message}`);
		const holders = input.holders.map((h) => `  ${h.label}: ${h.timeWait.toLocaleString('en-US')} TIME_WAIT held (${h.side})`);
		io.stdout.write([verdict.line, ...details, ...(holders.length ? ['Holding the most TIME_WAIT:', ...holders] : []),
			...(verdict.exitCode ? ['Next: sudo twtrace top (who, live), then twtrace report (evidence and advice); see docs/playbook.md'] : [])].join('\n') + '\n');
	}
	return verdict.exitCode;
}

/** For errors before any verdict: the Nagios UNKNOWN line on stdout, the error on stderr, exit 3. */
export function unknownLine(error: TwtraceError | Error): string {
	return `TWTRACE UNKNOWN - ${error.message}`;
}
