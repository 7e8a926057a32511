/**
 * `sudo npm run bench:ab-bpf -- --base DIR`: what a change does to the BPF side, this checkout's
 * programs against another checkout's build (DIR, built with scripts/setup or make), side by side in
 * one run. Each build runs `twtrace trace --kind connect_fail` (the BPF side alone, as the churn
 * table's row; --kind names others), or with --counting its own bench/counting.ts (the programs as an
 * agent runs them, counting in the kernel and the witness on: the churn table's counting row), in a
 * fresh namespace pair while bench/churn makes --rate
 * connections/s for --seconds, the kernel timing every program run (bench/bpf-stats.ts). The builds
 * alternate, the order reversed each round, each run after the machine is quiet (the namespace of the
 * run before frees its sockets in the background), at the same fixed rate, so both are timed under the same
 * load: prints nanoseconds of BPF program time per connection completed, min and median, and each
 * program's ns a run.
 *
 *   sudo npm run bench:ab-bpf -- --base ../twtrace-main [--rounds 6] [--seconds 6] [--rate 20000] [--kind connect_fail | --counting]
 *
 * Kernel time only: what a program makes the kernel do outside its run (freeing socket-local storage
 * with the socket, for one) does not show in it. --rate 0 runs the load as fast as it goes, and the
 * workload alone once a round besides: each build's connections/s and its slowdown against that
 * round's, which does show it (the kernel timing the runs costs both builds alike). A quick look
 * between full `npm run bench` runs: RESULTS.md comes only from that.
 */
import { parseArgs } from 'node:util';
import { measureBaseline } from './agent-cost.js';
import { programRuns, runsBetween, runTimeStats } from './bpf-stats.js';
import { checkouts, fail } from './checkouts.js';
import { waitQuiet } from './proc.js';
import { median } from './stats.js';
import { pairWithRoom, startLoad } from './steady.js';
import { startCounting, startTwtrace, stopChild } from './tracers.js';
import { exitOnSignals } from '../testbed/children.js';

const USAGE = 'usage: sudo npm run bench:ab-bpf -- --base DIR [--rounds 6] [--seconds 6] [--rate 20000] [--kind connect_fail | --counting]';

const opts = (() => {
	try {
		return parseArgs({
			options: {
				base: { type: 'string' }, rounds: { type: 'string', default: '6' }, seconds: { type: 'string', default: '6' },
				rate: { type: 'string', default: '20000' }, kind: { type: 'string' }, counting: { type: 'boolean', default: false },
			},
		}).values;
	} catch (error) {
		return fail(`bench:ab-bpf: ${(error as Error).message}\n${USAGE}`, 2);
	}
})();
const [rounds, seconds, rate] = [Number(opts.rounds), Number(opts.seconds), Number(opts.rate)];
if (!opts.base) fail(`bench:ab-bpf: --base names the other checkout\n${USAGE}`, 2);
if (opts.counting && opts.kind) fail(`bench:ab-bpf: --counting runs bench/counting.ts, which asks for no kind: leave out --kind\n${USAGE}`, 2);
const kind = opts.kind ?? 'connect_fail';
/** What each build runs, as the tables name it. */
const what = opts.counting ? 'bench/counting.ts, counting and the witness on' : `trace --kind ${kind}`;
if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 20) || !(Number.isInteger(seconds) && seconds >= 2 && seconds <= 120) || !(Number.isInteger(rate) && (rate === 0 || (rate >= 100 && rate <= 100_000)))) {
	fail(`bench:ab-bpf: --rounds 1 to 20, --seconds 2 to 120, --rate 0 (as fast as it goes) or 100 to 100000 connections/s\n${USAGE}`, 2);
}
if (process.getuid?.() !== 0) fail('bench:ab-bpf: needs root (BPF, network namespaces): sudo npm run bench:ab-bpf -- --base DIR', 1);

const builds = checkouts('bench:ab-bpf', opts.base!);
/** The churn table's load (2 threads, 16 destination ports), for every run of either build and the workload alone. */
const LOAD = { threads: 2, ports: 16 };

interface Timed { nsPerConnection: number; nsPerRun: Map<string, number>; connPerSec: number; slowdown?: number }

/** One build's programs on the tracepoint for one load: kernel ns per connection completed, ns a run per program. */
async function timeBuild(build: { cli: string; dir: string }): Promise<Timed> {
	// The namespace the run before removed goes on freeing its TIME_WAIT sockets in the background.
	await waitQuiet();
	const pair = pairWithRoom();
	try {
		// With --counting, the build's own bench/counting.ts: its programs and its reader.
		const { child } = opts.counting ? await startCounting(pair, [], build.dir) : await startTwtrace(pair, 'trace', ['--kind', kind], 'ignore', /Ctrl-C to stop/, undefined, build.cli);
		try {
			const before = programRuns(child.pid!);
			const churn = await (await startLoad(pair, LOAD, seconds, rate)).result();
			const ran = runsBetween(before, programRuns(child.pid!)).filter((r) => r.name.startsWith('handle_inet_sock_set_state'));
			if (!ran.length || !churn.connections) throw new Error('no program runs or no connections: is the load reaching the namespaces?');
			return { nsPerConnection: ran.reduce((a, r) => a + r.ns, 0) / churn.connections, nsPerRun: new Map(ran.map((r) => [r.name, r.ns / r.runs])), connPerSec: churn.perSecond };
		} finally {
			await stopChild(child);
		}
	} finally {
		pair.remove();
	}
}

exitOnSignals();
const statsOff = runTimeStats();
const timed = new Map<string, Timed[]>(builds.map((b) => [b.name, []]));
const rateName = rate === 0 ? 'full churn' : `${rate.toLocaleString('en-US')} connections/s`;
console.error(`bench:ab-bpf: ${rounds} rounds × 2 builds × ${seconds} s at ${rateName}`);
try {
	for (let round = 1; round <= rounds; round++) {
		// The load alone, as fast as it goes: the round's baseline for --rate 0.
		const alone = rate === 0 ? (await measureBaseline(round, LOAD, seconds)).connPerSec : undefined;
		if (alone !== undefined) console.error(`  round ${round} workload alone ${Math.round(alone).toLocaleString('en-US')} connections/s`);
		for (const build of round % 2 ? builds : [...builds].reverse()) {
			const t = await timeBuild(build);
			if (alone !== undefined) t.slowdown = 1 - t.connPerSec / alone;
			timed.get(build.name)!.push(t);
			console.error(`  round ${round} ${build.name.padEnd(13)} ${t.nsPerConnection.toFixed(0).padStart(5)} ns a connection (${[...t.nsPerRun].map(([n, ns]) => `${n} ${ns.toFixed(0)} ns a run`).join(', ')}), ${Math.round(t.connPerSec).toLocaleString('en-US')} connections/s`);
		}
	}
} finally {
	statsOff();
}
const [mine, base] = builds.map((b) => timed.get(b.name)!.map((t) => t.nsPerConnection));
console.log(`BPF side (${what}), kernel-timed: this checkout (${builds[0]!.commit}) against ${builds[1]!.dir} (${builds[1]!.commit}), ${rounds} rounds × ${seconds} s at ${rateName}\n`);
const full = rate === 0;
console.log(`| build | BPF ns a connection, min / median | this ÷ base (medians) | ns a run per program, medians |${full ? ' connections/s, min / median | slowdown against the round\'s workload alone, median |' : ''}`);
console.log(`|---|---|---|---|${full ? '---|---|' : ''}`);
for (const b of builds) {
	const xs = timed.get(b.name)!;
	const ns = xs.map((t) => t.nsPerConnection);
	const names = [...new Set(xs.flatMap((t) => [...t.nsPerRun.keys()]))];
	const perRun = names.map((n) => `\`${n}\` ${median(xs.map((t) => t.nsPerRun.get(n) ?? 0)).toFixed(0)}`).join(', ');
	const ratio = b.name === 'base' ? '' : `${(median(mine!) / median(base!)).toFixed(2)}×`;
	const conn = xs.map((t) => t.connPerSec);
	const churn = full ? ` ${Math.round(Math.min(...conn)).toLocaleString('en-US')} / ${Math.round(median(conn)).toLocaleString('en-US')} | ${(100 * median(xs.map((t) => t.slowdown!))).toFixed(1)} % |` : '';
	console.log(`| ${b.name} (${b.commit}) | ${Math.min(...ns).toFixed(0)} / ${median(ns).toFixed(0)} | ${ratio} | ${perRun} |${churn}`);
}
process.exit(0);
