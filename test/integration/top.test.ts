/**
 * `twtrace top --json` against ground truth in a fresh pair of network namespaces: three churners
 * (a steady client that closes first, a server that closes first, short-lived processes sharing a
 * name) and TIME_WAIT sockets made before twtrace started; each group's TIME_WAIT held is compared
 * with `ss` in its namespace, filtered by the port that group used.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bpfTest } from '../helpers/env.js';
import { createPair, type NetnsPair } from '../../testbed/netns.js';
import { runClient, scenarioNamed, startServer, startTop } from '../helpers/processes.js';

type Json = Record<string, any>;

function ssCount(pair: NetnsPair, ns: string, filter: string): number {
	return pair.exec(ns, ['ss', '-tanH', 'state', 'time-wait', filter]).split('\n').filter((l) => l.trim()).length;
}

const within1Percent = (a: number, b: number) => Math.abs(a - b) <= Math.max(1, 0.01 * b);

bpfTest('top ranks three churners by TIME_WAIT held, merges short-lived processes by comm, and agrees with ss', async (t) => {
	const pair = createPair();
	t.teardown(() => pair.remove());
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-top-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	const steady = scenarioNamed(dir, 'steady-client');
	const srvclose = scenarioNamed(dir, 'srv-closes');
	const peer = scenarioNamed(dir, 'srv-peer');
	const short = scenarioNamed(dir, 'shortlived');

	// Before twtrace starts: 40 TIME_WAIT sockets in the client namespace (port 7300).
	const early = await startServer(pair.server, '0.0.0.0', 7300, 'wait-close', 40);
	await runClient(pair.client, pair.serverAddr, 7300, 'close-first', 40);
	await early.done;

	const scope = ['--netns', String(pair.clientInode), '--netns', String(pair.serverInode), '--interval', '1s', '--walk-interval', '1s'];
	const byProcess = await startTop(scope);
	const byComm = await startTop([...scope, '--by', 'comm']);
	try {
		const before = await byProcess.waitFor((s) => s.rows.some((r: Json) => r.comm === '(before start)'), 10_000);
		t.is(before.rows.find((r: Json) => r.comm === '(before start)').timeWait, 40, 'sockets from before start are counted');

		// The three churners, run at once.
		const s1 = await startServer(pair.server, '0.0.0.0', 7301, 'wait-close', 600);
		const s2 = await startServer(pair.server, '0.0.0.0', 7302, 'close-first', 300, srvclose);
		const s3 = await startServer(pair.server, '0.0.0.0', 7303, 'wait-close', 100);
		const shortPids: number[] = [];
		const [steadyResult, peerResult] = await Promise.all([
			runClient(pair.client, pair.serverAddr, 7301, 'close-first', 600, steady),
			runClient(pair.client, pair.serverAddr, 7302, 'wait-eof', 300, peer),
			(async () => {
				for (let i = 0; i < 20; i++) shortPids.push((await runClient(pair.client, pair.serverAddr, 7303, 'close-first', 5, short)).pid);
			})(),
		]);
		await Promise.all([s1.done, s2.done, s3.done]);
		t.is(steadyResult.ok + peerResult.ok, 900);

		// The last FINs may still be in flight (softirq): wait until ss sees every TIME_WAIT, then for a
		// snapshot built on a walk that came after that.
		const expected = { steady: 600, server: 300, short: 100, before: 40 };
		const ssNow = () => ({
			steady: ssCount(pair, pair.client, 'dport = :7301'),
			server: ssCount(pair, pair.server, 'sport = :7302'),
			short: ssCount(pair, pair.client, 'dport = :7303'),
			before: ssCount(pair, pair.client, 'dport = :7300'),
		});
		// ss until two readings 300 ms apart agree.
		let truth = ssNow();
		for (let i = 0; i < 30; i++) {
			await new Promise((r) => setTimeout(r, 300));
			const again = ssNow();
			if (JSON.stringify(again) === JSON.stringify(truth)) break;
			truth = again;
		}
		// The workload itself: each connection ends in one TIME_WAIT (createPair sets tcp_rfc1337 so that
		// a stray RST cannot end one early). twtrace is compared with what ss sees, not with these.
		for (const k of Object.keys(expected) as (keyof typeof expected)[]) {
			t.true(truth[k] >= 0.97 * expected[k] && truth[k] <= expected[k], `ss ${k}: ${truth[k]} of ${expected[k]}`);
		}
		const settledAtMs = Date.now();
		const ready = (s: Json) => Date.parse(s.time) - s.namespaces[0].walkedAgoMs > settledAtMs + 100;
		const snap = await byProcess.waitFor(ready, 10_000);
		const comm = await byComm.waitFor(ready, 10_000);

		const rows = snap.rows as Json[];
		t.like(rows[0], { pid: steadyResult.pid, comm: 'steady-client', side: 'client' });
		t.true(within1Percent(rows[0]!.timeWait, truth.steady), `steady row ${rows[0]!.timeWait} vs ss ${truth.steady}`);
		t.like(rows[1], { pid: s2.pid, comm: 'srv-closes', side: 'server' });
		t.true(within1Percent(rows[1]!.timeWait, truth.server), `server row ${rows[1]!.timeWait} vs ss ${truth.server}`);
		const shortRows = rows.filter((r) => r.comm === 'shortlived');
		t.deepEqual(shortRows.map((r) => r.pid).sort(), [...shortPids].sort(), 'by process: one row per short-lived process');
		const shortSum = shortRows.reduce((sum, r) => sum + r.timeWait, 0);
		t.true(within1Percent(shortSum, truth.short), `short-lived rows ${shortSum} vs ss ${truth.short}`);
		t.true(within1Percent(rows.find((r) => r.comm === '(before start)')?.timeWait ?? 0, truth.before));
		t.true(rows.every((r) => r.comm !== 'srv-peer' || r.timeWait === 0), 'the client of a server that closes first holds no TIME_WAIT');
		for (const r of rows.slice(0, 3)) {
			t.true(typeof r.connectsPerSec === 'number' && typeof r.timeWaitPerSec === 'number' && typeof r.topDest === 'string');
			t.true(r.lifetimeP50Ms === null || r.lifetimeP50Ms <= r.lifetimeP99Ms);
		}
		t.is(rows[0]!.topDest, `${pair.serverAddr}:7301`);

		const merged = (comm.rows as Json[]).find((r) => r.comm === 'shortlived');
		t.like(merged, { processes: 20 });
		t.true(within1Percent(merged!.timeWait, truth.short), `short-lived merged ${merged!.timeWait} vs ss ${truth.short}`);
		t.is((comm.rows as Json[]).filter((r) => r.comm === 'shortlived').length, 1);

		const dest = (snap.destinations as Json[]).find((d) => d.dport === 7301);
		t.like(dest, { netns: pair.clientInode, saddr: pair.clientAddr, daddr: pair.serverAddr, portsInUse: truth.steady, portsUsable: 28232 });
		t.true(Math.abs(dest!.sustainableRate - 28232 / 60) < 0.1);
		t.is(snap.drops.lost, 0);
	} finally {
		const a = await byProcess.stop();
		const b = await byComm.stop();
		t.is(a.code, 0, a.stderr);
		t.is(b.code, 0, b.stderr);
	}
});
