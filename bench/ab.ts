/**
 * `sudo npm run bench:ab -- --base DIR`: what a change does to the agent's cost, this checkout's
 * `serve` against another checkout's build (DIR, built with scripts/setup or make), side by side in
 * one run, each run as `npm run bench` measures the agent (bench/agent-cost.ts: as deployed, beside
 * node_exporter, both scraped every second) at each --loads rate (connections/s, 0: full).
 * Builds and loads alternate, the order reversed each round; prints CPU (% of a core, user + system
 * over --window s after --warm s) and peak RSS, min and median of each, and the ratio of medians.
 * The default warm-up measures serve's first minute, while V8 still compiles its hot functions; the
 * targets in RESULTS.md judge the steady window from 90 s (--warm 90 compares that).
 *
 *   sudo npm run bench:ab -- --base ../twtrace-main [--loads 10,1000] [--rounds 3] [--warm 15] [--window 30]
 *
 * A quick look at one change between full `npm run bench` runs: RESULTS.md comes only from that.
 */
import { parseArgs } from 'node:util';
import { measureAgentCost, type AgentCostRun } from './agent-cost.js';
import { checkouts, fail } from './checkouts.js';
import { median } from './stats.js';
import { exitOnSignals } from '../testbed/children.js';

const USAGE = 'usage: sudo npm run bench:ab -- --base DIR [--loads 10,1000] [--rounds 3] [--warm 15] [--window 30]';

const opts = (() => {
	try {
		return parseArgs({
			options: { base: { type: 'string' }, loads: { type: 'string', default: '10,1000' }, rounds: { type: 'string', default: '3' }, warm: { type: 'string', default: '15' }, window: { type: 'string', default: '30' } },
		}).values;
	} catch (error) {
		return fail(`bench:ab: ${(error as Error).message}\n${USAGE}`, 2);
	}
})();
const loads = opts.loads.split(',').map(Number);
const [rounds, warmS, windowS] = [Number(opts.rounds), Number(opts.warm), Number(opts.window)];
if (!opts.base) fail(`bench:ab: --base names the other checkout\n${USAGE}`, 2);
if (!loads.every((n) => Number.isInteger(n) && n >= 0 && n <= 100_000) || !(rounds >= 1 && rounds <= 20) || !(warmS >= 0 && warmS <= 300) || !(windowS >= 5 && windowS <= 600)) {
	fail(`bench:ab: --loads whole connections/s 0 (full) to 100000, --rounds 1 to 20, --warm 0 to 300, --window 5 to 600\n${USAGE}`, 2);
}
if (process.getuid?.() !== 0) fail('bench:ab: needs root (BPF, network namespaces): sudo npm run bench:ab -- --base DIR', 1);

const builds = checkouts('bench:ab', opts.base!);

exitOnSignals();
const runs = new Map<string, AgentCostRun[]>();
console.error(`bench:ab: ${rounds} rounds × ${loads.length} loads × 2 builds × ${warmS + windowS} s`);
for (let round = 1; round <= rounds; round++) {
	for (const rate of loads) {
		for (const build of round % 2 ? builds : [...builds].reverse()) {
			const r = await measureAgentCost(rate, round, { threads: 2, ports: 64 }, { warmS, windowS }, build.cli);
			const key = `${rate} ${build.name}`;
			runs.set(key, [...(runs.get(key) ?? []), r]);
			console.error(`  round ${round} ${loadName(rate).padStart(7)} ${build.name.padEnd(13)} ${r.serveCpuPct.toFixed(2)} % of a core, peak RSS ${r.servePeakRssMiB.toFixed(0)} MiB, ${Math.round(r.connPerSec)} conn/s; node_exporter ${r.exporterCpuPct.toFixed(2)} %`);
		}
	}
}
console.log(`serve as deployed, scraped every second: this checkout (${builds[0]!.commit}) against ${builds[1]!.dir} (${builds[1]!.commit}), ${rounds} rounds\n`);
console.log('| load | build | serve CPU % of a core, min / median | serve peak RSS MiB, median | serve CPU, this ÷ base (medians) | node_exporter CPU %, median |');
console.log('|---|---|---|---|---|---|');
for (const rate of loads) {
	const [mine, base] = builds.map((b) => runs.get(`${rate} ${b.name}`)!);
	for (const [b, rs] of [[builds[0]!, mine!], [builds[1]!, base!]] as const) {
		const cpu = rs.map((r) => r.serveCpuPct);
		const ratio = b === builds[0] ? `${(median(cpu) / median(base!.map((r) => r.serveCpuPct))).toFixed(2)}×` : '';
		console.log(`| ${loadName(rate)} | ${b.name} | ${Math.min(...cpu).toFixed(2)} / ${median(cpu).toFixed(2)} | ${median(rs.map((r) => r.servePeakRssMiB)).toFixed(0)} | ${ratio} | ${median(rs.map((r) => r.exporterCpuPct)).toFixed(2)} |`);
	}
}
process.exit(0);

function loadName(rate: number): string {
	return rate === 0 ? 'full' : `${rate.toLocaleString('en')}/s`;
}
