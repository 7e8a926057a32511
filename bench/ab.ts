/**
 * `sudo npm run bench:ab -- --base DIR`: what a change does to the agent's cost, this checkout's
 * `serve` against another checkout's build (DIR, built with scripts/setup or make), side by side in
 * one run: as deployed (the agent API and the flight recorder on, no filters), scraped every
 * second, at each --loads rate (connections/s, 0: full), the client closing first across veth.
 * Builds and loads alternate, the order reversed each round; prints CPU (% of a core, user + system
 * over --window s after --warm s) and peak RSS, min and median of each, and the ratio of medians.
 *
 *   sudo npm run bench:ab -- --base ../twtrace-main [--loads 10,1000] [--rounds 3] [--warm 15] [--window 30]
 *
 * A quick look at one change between full `npm run bench` runs: RESULTS.md comes only from that.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { scrapeEverySecond, startServe, stopChild } from './agent-cost.js';
import { cpuSeconds, peakRssMiB, waitQuiet } from './proc.js';
import { median } from './stats.js';
import { pairWithRoom, startLoad } from './steady.js';
import { root } from './tracers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
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

const builds = [{ name: 'this checkout', dir: root }, { name: 'base', dir: path.resolve(opts.base!) }].map((b) => {
	const cli = path.join(b.dir, 'dist/src/cli.js');
	if (!fs.existsSync(cli)) fail(`bench:ab: ${cli} is not built. Run scripts/setup (or make) in ${b.dir}`, 1);
	return { ...b, cli, commit: commitOf(b.dir) };
});

type Run = { cpuPct: number; peakRssMiB: number; connPerSec: number };
const runs = new Map<string, Run[]>();
console.error(`bench:ab: ${rounds} rounds × ${loads.length} loads × 2 builds × ${warmS + windowS} s`);
for (let round = 1; round <= rounds; round++) {
	for (const rate of loads) {
		for (const build of round % 2 ? builds : [...builds].reverse()) {
			const r = await measure(build.cli, rate);
			const key = `${rate} ${build.name}`;
			runs.set(key, [...(runs.get(key) ?? []), r]);
			console.error(`  round ${round} ${loadName(rate).padStart(7)} ${build.name.padEnd(13)} ${r.cpuPct.toFixed(2)} % of a core, peak RSS ${r.peakRssMiB.toFixed(0)} MiB, ${Math.round(r.connPerSec)} conn/s`);
		}
	}
}
console.log(`serve as deployed, scraped every second: this checkout (${builds[0]!.commit}) against ${builds[1]!.dir} (${builds[1]!.commit}), ${rounds} rounds\n`);
console.log('| load | build | CPU % of a core, min / median | peak RSS MiB, median | CPU, this ÷ base (medians) |');
console.log('|---|---|---|---|---|');
for (const rate of loads) {
	const [mine, base] = builds.map((b) => runs.get(`${rate} ${b.name}`)!);
	for (const [b, rs] of [[builds[0]!, mine!], [builds[1]!, base!]] as const) {
		const cpu = rs.map((r) => r.cpuPct);
		const ratio = b === builds[0] ? `${(median(cpu) / median(base!.map((r) => r.cpuPct))).toFixed(2)}×` : '';
		console.log(`| ${loadName(rate)} | ${b.name} | ${Math.min(...cpu).toFixed(2)} / ${median(cpu).toFixed(2)} | ${median(rs.map((r) => r.peakRssMiB)).toFixed(0)} | ${ratio} |`);
	}
}
process.exit(0);

async function measure(cli: string, rate: number): Promise<Run> {
	const pair = pairWithRoom();
	let serve: Awaited<ReturnType<typeof startServe>> | undefined;
	try {
		await waitQuiet();
		serve = await startServe([], process.env, cli);
		const scrapes = scrapeEverySecond(serve.url);
		const load = await startLoad(pair, { threads: 2, ports: 64 }, warmS + windowS + 2, rate);
		await sleep(warmS * 1000);
		const before = cpuSeconds(serve.child.pid!)!;
		await sleep(windowS * 1000);
		const cpuPct = (100 * (cpuSeconds(serve.child.pid!)! - before)) / windowS;
		const peak = peakRssMiB(serve.child.pid!) ?? 0;
		scrapes.stop();
		const churn = await load.result();
		return { cpuPct, peakRssMiB: peak, connPerSec: churn.perSecond };
	} finally {
		if (serve) {
			await stopChild(serve.child);
			fs.rmSync(serve.socketDir, { recursive: true, force: true });
		}
		pair.remove();
	}
}

function loadName(rate: number): string {
	return rate === 0 ? 'full' : `${rate.toLocaleString('en')}/s`;
}

function commitOf(dir: string): string {
	try {
		return execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
	} catch {
		return 'not a git checkout';
	}
}

function fail(message: string, code: number): never {
	console.error(message);
	process.exit(code);
}
