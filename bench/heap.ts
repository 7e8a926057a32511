/**
 * `sudo npm run bench:heap`: whether serve's V8 heap grows because it keeps more objects, or because
 * V8 keeps more room for garbage. The soak (`npm run bench:soak`) shows the committed heap
 * (`nodejs_heap_size_total_bytes`) growing after its first minutes; a heap snapshot counts only
 * what is reachable (taking one collects the garbage first), so two snapshots apart in time say
 * which it is.
 *
 *   sudo npm run bench:heap [-- --rate 15000 --first 120 --seconds 900]
 *   sudo npm run bench:heap -- --allocations [--rate 15000 --first 40 --seconds 100]
 *
 * serve as deployed (the agent API, the flight recorder), scraped every 2 s, node's
 * --heapsnapshot-signal: a snapshot --first seconds into a churn of --rate connections/s (64
 * destination ports, as the soak), another at --seconds. Prints the reachable bytes of each, and the
 * kinds of object that grew most between them. Taking a snapshot stops serve's main thread for a
 * moment: the ring may overflow then (serve's closing line says so); the snapshots are the result.
 *
 * With --allocations: what serve allocates, garbage included (V8's sampling heap profiler from
 * --first to --seconds, inspect-hook.mjs BENCH_ALLOCATIONS), by the function that allocated, in MiB
 * a minute. A heap that stays the same size while V8 commits more for it is fed by garbage: this says
 * whose. Functions V8 inlined count in their caller.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startServe, stopChild } from './agent-cost.js';
import { pairWithRoom, startLoad } from './steady.js';
import { INSPECT_HOOK } from './tracers.js';

const { values: opts } = parseArgs({ options: {
	rate: { type: 'string', default: '15000' }, first: { type: 'string' }, seconds: { type: 'string' }, allocations: { type: 'boolean', default: false },
} });
const [rate, firstS, seconds] = [Number(opts.rate), Number(opts.first ?? (opts.allocations ? 40 : 120)), Number(opts.seconds ?? (opts.allocations ? 100 : 900))];
if (!(rate >= 1 && firstS >= 10 && seconds > firstS && seconds <= 7200)) {
	console.error('bench:heap: --rate ≥ 1 connections/s, --first ≥ 10 s, --seconds after --first (at most 7200)');
	process.exit(2);
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

interface HeapSnapshot {
	snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
	nodes: number[];
	strings: string[];
}

/** Reachable bytes by kind of object ("object:Owner", "native:system / JSArrayBufferData", …), and their count. */
function bytesByKind(file: string): Map<string, { bytes: number; count: number }> {
	const h = JSON.parse(fs.readFileSync(file, 'utf8')) as HeapSnapshot;
	const fields = h.snapshot.meta.node_fields;
	const types = h.snapshot.meta.node_types[0];
	const [type, name, size] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number];
	const kinds = new Map<string, { bytes: number; count: number }>();
	for (let i = 0; i < h.nodes.length; i += fields.length) {
		const t = types[h.nodes[i + type]!]!;
		const kind = t.includes('string') ? 'string' : t === 'code' ? 'code' : `${t}:${h.strings[h.nodes[i + name]!]!.slice(0, 60)}`;
		const k = kinds.get(kind) ?? { bytes: 0, count: 0 };
		k.bytes += h.nodes[i + size]!;
		k.count++;
		kinds.set(kind, k);
	}
	return kinds;
}

const total = (kinds: Map<string, { bytes: number }>) => [...kinds.values()].reduce((s, k) => s + k.bytes, 0);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twtrace-heap-'));
if (opts.allocations) {
	await allocations();
	process.exit(0);
}
const pair = pairWithRoom();
const serve = await startServe(['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`]);
try {
	const scrapes = setInterval(() => void fetch(serve.url).then((r) => r.text()).catch(() => undefined), 2000);
	const load = await startLoad(pair, { threads: 2, ports: 64 }, seconds + 30, rate);
	const snapshot = async (atS: number): Promise<string> => {
		const before = new Set(fs.readdirSync(dir));
		serve.child.kill('SIGUSR2');
		for (let i = 0; i < 600; i++) {
			await sleep(500);
			const file = fs.readdirSync(dir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
			// Written whole when its size stops changing (node writes it in one go, then carries on).
			if (file) {
				const size = fs.statSync(path.join(dir, file)).size;
				await sleep(1000);
				if (fs.statSync(path.join(dir, file)).size === size && size > 0) return path.join(dir, file);
			}
		}
		throw new Error(`no heap snapshot from serve ${atS} s in`);
	};
	const started = Date.now();
	await sleep(firstS * 1000);
	const first = bytesByKind(await snapshot(firstS));
	await sleep(Math.max(0, seconds * 1000 - (Date.now() - started)));
	const last = bytesByKind(await snapshot(seconds));
	clearInterval(scrapes);
	console.log(`serve at ${rate.toLocaleString('en-US')} connections/s: reachable heap ${MiB(total(first))} MiB at ${firstS} s, ${MiB(total(last))} MiB at ${seconds} s`);
	const grown = [...new Set([...first.keys(), ...last.keys()])]
		.map((kind) => ({ kind, from: first.get(kind) ?? { bytes: 0, count: 0 }, to: last.get(kind) ?? { bytes: 0, count: 0 } }))
		.sort((a, b) => b.to.bytes - b.from.bytes - (a.to.bytes - a.from.bytes)).slice(0, 10);
	console.log('| kind | MiB then | MiB now | count then | count now |\n|---|---|---|---|---|');
	for (const g of grown) console.log(`| ${g.kind} | ${MiB(g.from.bytes)} | ${MiB(g.to.bytes)} | ${g.from.count} | ${g.to.count} |`);
	await load.result();
} finally {
	await stopChild(serve.child);
	fs.rmSync(serve.socketDir, { recursive: true, force: true });
	fs.rmSync(dir, { recursive: true, force: true });
	pair.remove();
}

interface SamplingNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: SamplingNode[] }

/** --allocations: serve under load, V8's sampling heap profiler over (--first, --seconds], bytes by allocating function. */
async function allocations(): Promise<void> {
	const file = path.join(dir, 'allocations.json');
	const pair = pairWithRoom();
	const serve = await startServe(['--import', INSPECT_HOOK], {
		...process.env, BENCH_ALLOCATIONS: file, BENCH_ALLOCATIONS_AFTER_MS: String(firstS * 1000), BENCH_ALLOCATIONS_MS: String((seconds - firstS) * 1000),
	});
	try {
		const scrapes = setInterval(() => void fetch(serve.url).then((r) => r.text()).catch(() => undefined), 2000);
		const load = await startLoad(pair, { threads: 2, ports: 64 }, seconds + 5, rate);
		for (let i = 0; i < seconds + 60 && !fs.existsSync(file); i++) await sleep(1000);
		clearInterval(scrapes);
		await load.result();
		if (!fs.existsSync(file)) throw new Error('serve wrote no allocation profile');
		const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as { head: SamplingNode; sampledMs: number };
		const bySite = new Map<string, number>();
		let total = 0;
		const visit = (n: SamplingNode) => {
			const { functionName, url, lineNumber } = n.callFrame;
			const site = `${functionName || '(anonymous)'} ${url ? `${url.replace(/^.*\/dist\//, '')}:${lineNumber + 1}` : '(V8 builtin)'}`;
			if (n.selfSize) bySite.set(site, (bySite.get(site) ?? 0) + n.selfSize), (total += n.selfSize);
			n.children.forEach(visit);
		};
		visit(profile.head);
		const perMinute = (bytes: number) => MiB((bytes * 60_000) / profile.sampledMs);
		console.log(`serve at ${rate.toLocaleString('en-US')} connections/s, seconds ${firstS} to ${seconds}: ${perMinute(total)} MiB allocated a minute (sampled, garbage included)`);
		console.log('| allocated by | MiB a minute |\n|---|---|');
		for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`| ${site} | ${perMinute(bytes)} |`);
	} finally {
		await stopChild(serve.child);
		fs.rmSync(serve.socketDir, { recursive: true, force: true });
		fs.rmSync(dir, { recursive: true, force: true });
		pair.remove();
	}
}
