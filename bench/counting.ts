/**
 * twtrace's BPF side counting in the kernel (docs/counting-in-the-kernel.md, step 1), for bench/run.ts's
 * churn table: the programs as `trace` loads them, with counting on and no event asked for but
 * connect failures (none in the churn workload), so that nothing but task records reaches user space.
 * As the agent does, it reads the counters once a second with src/pipeline/count-reader.ts (into
 * per-second bins, generations flipped once a minute), and looks up the closes that wait too
 * long once a second (the TIME_WAIT entries the kernel reports to no program are counted when found,
 * kernel-facts §8). Prints "counting: attached"; on SIGINT or SIGTERM it makes a last suspect check,
 * then prints as JSON the TIME_WAIT held now per blamed pid from the bins (what an agent would
 * show), the entries counted in all, what was lost, and exits.
 *
 * With --no-counting it runs the same programs and reader with counting off: the BPF side as an agent
 * runs it (the witness of active closes on, which `trace --kind connect_fail` leaves off), so that the
 * two rows split what counting costs from what the witness costs.
 *
 *   node --import tsx bench/counting.ts [--no-counting] /run/netns/CLIENT /run/netns/SERVER
 */
import fs from 'node:fs';
import path from 'node:path';
import { TraceSession } from '../src/tracer/session.js';
import { NamespaceWalker } from '../src/tracer/namespaces.js';
import { STALE_CLOSE_NS, SuspectChecker } from '../src/pipeline/suspect-check.js';
import { COUNT_COLUMN, CountTable, decodeCountKey } from '../src/event/counts.js';
import { CountReader } from '../src/pipeline/count-reader.js';
import { root } from './tracers.js';

const READ_MS = 1000;
/** 60 s and the timer wheel's slack at HZ 250 (kernel-facts §9); Linux's default tcp_fin_timeout. */
const LENGTHS = { timeWaitS: 62, finWait2S: 60 };
const nowSecond = () => Number(process.hrtime.bigint() / 1_000_000_000n);

const args = process.argv.slice(2);
const counting = !args.includes('--no-counting');
const netns = args.filter((a) => !a.startsWith('--')).map((p) => fs.statSync(p).ino);
// Owners are task ids: the session's decoder keeps the task records the ring carries (sent whatever the kinds asked for).
const session = new TraceSession(
	{ objectPath: path.join(root, 'build/twtrace.bpf.o'), filters: { netns, kinds: ['connect_fail'] }, ringBytes: 8 << 20, counting, witness: true },
	{ onEvents: () => undefined },
);
const counts = session.tracer.counts;
// As the agent reads them (src/pipeline/count-reader.ts): once a second, a flip once a minute.
const reader = counts ? new CountReader(counts) : undefined;
const delivered = new CountTable();
const read = () => {
	reader?.take(nowSecond());
	session.drainNow(); // the task records the keys name
	reader?.deliver((key, delta) => delivered.row(key).forEach((_, c, row) => (row[c]! += delta[c]!)));
};
const walker = new NamespaceWalker(session.tracer, () => 0);
walker.discover();
const suspects = new SuspectChecker(session.tracer, walker);
const ticker = setInterval(() => {
	read();
	suspects.check(process.hrtime.bigint(), STALE_CLOSE_NS, () => []);
}, READ_MS);
console.error('counting: attached');

async function stop(): Promise<void> {
	clearInterval(ticker);
	// The closes of the last second wait STALE_CLOSE_NS before a check may take them for missed.
	await new Promise((r) => setTimeout(r, Number(STALE_CLOSE_NS / 1_000_000n) + 200));
	suspects.check(process.hrtime.bigint(), STALE_CLOSE_NS, () => [], Infinity);
	read();
	const drops = session.stop();
	if (!counts || !reader) {
		console.log(JSON.stringify({ lost: drops.ringFull + drops.mapFull, keys: 0, flips: 0 }));
		process.exit(0);
	}
	const timeWaitByPid: Record<string, number> = {};
	reader.bins.forEachHeld(nowSecond(), LENGTHS, (key, held) => {
		const pid = String(session.task(decodeCountKey(key).blamed).pid);
		if (held) timeWaitByPid[pid] = (timeWaitByPid[pid] ?? 0) + held;
	});
	const timeWaitDelivered = delivered.total(COUNT_COLUMN.timeWait) + delivered.total(COUNT_COLUMN.finWait2);
	console.log(JSON.stringify({ timeWaitByPid, timeWaitDelivered, lost: drops.ringFull + drops.mapFull, keys: reader.keys, flips: counts.flips }));
	process.exit(0);
}
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
