/**
 * How closely `twtrace top` agrees with `ss` on TIME_WAIT held, at full churn:
 *
 *   npm run bench:top        (as root, after scripts/setup)
 *
 * For each scenario a fresh namespace pair, `top --json` on it, then bench/churn as fast as it goes
 * (client closes first). When the churn has stopped, TIME_WAIT sockets stay for 60 s, so ss and top
 * can be compared at leisure: once from the model alone (a snapshot before the next walk), once after
 * a walk. The overflow scenario lowers tcp_max_tw_buckets in the client namespace: the kernel then
 * closes sockets without TIME_WAIT, and no tracepoint says so (kernel-facts §1.3); only the walk can.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createPair } from '../testbed/netns.js';
import { track, waitForLine } from '../testbed/children.js';
import { parseTwtraceSummary, root } from './tracers.js';

const cli = path.join(root, 'dist/src/cli.js');
const churn = path.join(root, 'build/churn');
const PORT = 7700;

type Snapshot = { time: string; rows: { pid: number; timeWait: number }[]; namespaces: { netns: number; timeWait: number; walkedAgoMs: number | null; timeWaitOverflow: number | null }[] };

interface Scenario { name: string; maxTwBuckets: number; connections: number }

const SCENARIOS: Scenario[] = [
	{ name: 'full churn', maxTwBuckets: 2_000_000, connections: 120_000 },
	{ name: 'tcp_max_tw_buckets 5000', maxTwBuckets: 5000, connections: 20_000 },
];

async function run(s: Scenario): Promise<string[]> {
	const pair = createPair();
	try {
		pair.sysctl(pair.client, 'net.ipv4.ip_local_port_range', '1024 65535');
		pair.sysctl(pair.client, 'net.ipv4.tcp_max_tw_buckets', String(s.maxTwBuckets));
		const top = track(spawn(process.execPath, [cli, 'top', '--json', '--netns', pair.client, '--netns', pair.server, '--interval', '500ms', '--walk-interval', '4s'], { stdio: ['ignore', 'pipe', 'pipe'] }));
		const snapshots: Snapshot[] = [];
		let partial = '';
		top.stdout!.on('data', (d: Buffer) => {
			const lines = (partial + d.toString()).split('\n');
			partial = lines.pop()!;
			for (const l of lines) if (l) snapshots.push(JSON.parse(l) as Snapshot);
		});
		let stderr = '';
		top.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
		await waitForLine(top, 'stderr', /Ctrl-C to stop/, 30_000);
		const server = track(spawn('ip', ['netns', 'exec', pair.server, churn, 'server', pair.serverAddr, String(PORT), '16', 'client-close', '2', '60'], { stdio: ['ignore', 'pipe', 'inherit'] }));
		await waitForLine(server, 'stdout', /"ready":true/, 10_000);
		const client = track(spawn('ip', ['netns', 'exec', pair.client, churn, 'client', pair.serverAddr, String(PORT), '16', 'client-close', '2', '20', String(s.connections)], { stdio: ['ignore', 'pipe', 'inherit'] }));
		let out = '';
		client.stdout!.on('data', (d: Buffer) => (out += d.toString()));
		await once(client, 'close');
		const result = JSON.parse(out.trim().split('\n').pop()!) as { pid: number; connections: number; perSecond: number };
		server.kill('SIGTERM');
		await once(server, 'close');
		const endMs = Date.now();
		await new Promise((r) => setTimeout(r, 300));
		const ss = Number(pair.exec(pair.client, ['sh', '-c', 'ss -tanH state time-wait | wc -l']).trim());

		const at = (snap: Snapshot) => Date.parse(snap.time);
		const ns = (snap: Snapshot) => snap.namespaces.find((n) => n.netns === pair.clientInode)!;
		const wait = async (test: (snap: Snapshot) => boolean) => {
			for (let i = 0; i < 200; i++) {
				const hit = snapshots.find(test);
				if (hit) return hit;
				await new Promise((r) => setTimeout(r, 100));
			}
			throw new Error('no such snapshot');
		};
		// Modelled: after the end, while the last walk is still one from before it.
		const modelled = await wait((x) => at(x) > endMs + 300 && ns(x).walkedAgoMs! > at(x) - endMs).catch(() => undefined);
		const walked = await wait((x) => at(x) - ns(x).walkedAgoMs! > endMs + 300);
		top.kill('SIGINT');
		await once(top, 'close');
		const lost = parseTwtraceSummary(stderr).lost;
		const row = (snap: Snapshot | undefined) => snap?.rows.find((r) => r.pid === result.pid)?.timeWait;
		const pct = (n: number | undefined) => (n === undefined ? '–' : `${n.toLocaleString('en-US')} (${(((n - ss) / ss) * 100).toFixed(2)} %)`);
		return [s.name, result.connections.toLocaleString('en-US'), Math.round(result.perSecond).toLocaleString('en-US'), ss.toLocaleString('en-US'),
			pct(row(modelled)), pct(row(walked)), pct(ns(walked).timeWait), String(ns(walked).timeWaitOverflow ?? '–'), String(lost ?? '–')];
	} finally {
		pair.remove();
	}
}

const header = ['scenario', 'connections', 'conn/s', 'ss TIME-WAIT', 'top: churn row, modelled', 'top: churn row, after a walk', 'top: namespace, after a walk', 'TCPTimeWaitOverflow', 'events lost'];
const rows: string[][] = [];
for (const s of SCENARIOS) rows.push(await run(s));
console.log(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|\n${rows.map((r) => `| ${r.join(' | ')} |`).join('\n')}`);
