/**
 * Likely owners without an agent: a churner has taken every port of a 100-port range before `top`
 * starts, and keeps trying. `top` cannot know who made the TIME_WAIT sockets it finds (they predate
 * it), and must not pretend to: it counts them as "(before start)", and names the churner as their
 * likely owner, with the evidence, from its first refresh.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { bpfTest } from '../helpers/env.js';
import { track } from '../../testbed/children.js';
import { churnBin, startChurnServer, stopChurnServer } from '../../testbed/churn.js';
import { createPair } from '../../testbed/netns.js';
import { runTwtrace, startTop } from '../helpers/processes.js';

bpfTest('top without an agent names the churner as the likely owner of TIME_WAIT older than itself, from its first refresh', async (t) => {
	const pair = createPair();
	t.teardown(() => pair.remove());
	pair.sysctl(pair.client, 'net.ipv4.ip_local_port_range', '40000 40099');
	pair.sysctl(pair.client, 'net.ipv4.tcp_tw_reuse', '0');
	const load = { port: 7900, ports: 1, threads: 1 };
	const server = await startChurnServer(pair, load, 30);
	t.teardown(() => stopChurnServer(server));
	// 100 connections/s for 15 s: the range is gone after one second, then connect() fails.
	const churner = track(spawn('ip', ['netns', 'exec', pair.client, churnBin, 'client', pair.serverAddr, '7900', '1', 'client-close', '1', '15', '0', '100'], { stdio: ['ignore', 'pipe', 'inherit'] }));
	const churnerDone = once(churner, 'close');
	await new Promise((resolve) => setTimeout(resolve, 3000));
	const inSs = pair.timeWaitCount(pair.client);
	t.true(inSs >= 95, `ss shows ${inSs} TIME-WAIT`);

	const top = await startTop(['--netns', String(pair.clientInode), '--interval', '1s']);
	const first = top.snapshots[0]!;
	await top.stop();
	t.is(first.source, 'standalone');
	const unknown = first.rows.find((r: { comm: string }) => r.comm === '(before start)');
	t.truthy(unknown, JSON.stringify(first.rows));
	t.true(unknown.timeWait >= 90, `${unknown.timeWait} TIME_WAIT of unknown process`);
	t.is(unknown.likely?.length, 1, JSON.stringify(unknown));
	t.like(unknown.likely[0], { pid: churner.pid, comm: 'churn', timeWait: unknown.timeWait, inferred: true });
	t.regex(unknown.likely[0].evidence, new RegExp(`^only process connecting to ${pair.serverAddr.replace(/\./g, '\\.')}:7900 \\(`));
	// Never mixed into exact counts: the churner's own row holds only what it was seen to close since.
	const own = first.rows.find((r: { pid: number }) => r.pid === churner.pid);
	t.true((own?.timeWait ?? 0) + unknown.timeWait <= inSs + 5);
	// It is its own victim now: the panel names it, and the holders with their likely owner.
	const v = first.victims.find((x: { pid: number }) => x.pid === churner.pid);
	t.truthy(v, JSON.stringify(first.victims));
	t.like(v.holders[0], { comm: '(before start)', likely: { pid: churner.pid, comm: 'churn' } });

	// doctor without an agent names it the same way, as likely, in its holder list and for the victim.
	const doc = await runTwtrace(['doctor', '--netns', String(pair.clientInode)]);
	t.is(doc.code, 2, doc.stdout);
	t.regex(doc.stdout, new RegExp(`\\(before start\\) — likely churn \\(pid ${churner.pid}\\): \\d+, only process connecting to ${pair.serverAddr.replace(/\./g, '\\.')}:7900`));
	t.regex(doc.stdout, new RegExp(`churn \\(pid ${churner.pid}\\) failed [\\d,]+× with EADDRNOTAVAIL .*the ports are held by \\(before start\\) \\(likely churn, pid ${churner.pid}\\)`));

	churner.kill('SIGTERM');
	await churnerDone;
});
