/**
 * What the on-call reads is true at that moment:
 * - the agent walks every 60 s, yet `doctor` and `top` started mid-incident give the namespace's
 *   TIME_WAIT now (equal to `ss`), not the count of a walk made before the churn;
 * - `top --netns` / `--pid` with the agent running are answered from the agent's model (its source
 *   says so, its counts equal `ss`), not by a tracer started now that finds only "(before start)";
 *   an agent whose own filters leave the question out is not used, and top says why in one line;
 * - TIME_WAIT older than twtrace on a port a process is seen listening on since (a restarted server
 *   with a 15-character name) is counted against it after the next walk; on a port whose listen()
 *   was not seen, the holder of the listening socket is named as the likely owner.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bpfTest } from '../helpers/env.js';
import { createPair } from '../../testbed/netns.js';
import { agentTestBed, exhaustRange, runClient, runTwtrace, scenarioNamed, startServer, startTop } from '../helpers/processes.js';
import { startServe, until } from '../helpers/serve.js';

type Json = Record<string, any>;

const escaped = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

bpfTest('agent started before the churn: doctor and top --netns/--pid give the count now (= ss), answered by the agent, not its minute-old walk', async (t) => {
	const bed = agentTestBed(t, 300);
	const { dir, socket, pair } = bed;
	const ns = String(pair.clientInode);

	// As deployed: no filters (it covers every question), a walk every 60 s.
	const serve = await startServe(['--agent-socket', socket]);
	t.teardown(() => void serve.stop());
	const agentTop = async (args: string[]) => {
		const r = await runTwtrace(['top', '--json', '--once', '--agent-socket', socket, ...args]);
		t.is(r.code, 0, r.stderr);
		t.notRegex(r.stderr, /tracing here/, 'answered by the agent');
		return JSON.parse(r.stdout.trim()) as Json;
	};
	// The agent's walk at its start covers the namespace, empty: the next full walk is a minute away.
	const before = await until('the agent\'s first walk of the client namespace', 15_000, async () => {
		const s = await agentTop(['--netns', ns]);
		return s.namespaces[0]?.walkedAgoMs !== null && s.namespaces[0] ? s : undefined;
	});
	t.like(before.namespaces[0], { netns: pair.clientInode, timeWait: 0, walkedTimeWait: 0 });

	const { churner, victim, inSs } = await exhaustRange(t, bed, 300);

	// doctor --netns, answered by the agent: the thresholds fire on the count now, and the perfdata carries it.
	const doc = await runTwtrace(['doctor', '--netns', ns, '--warn', '200', '--crit', '250', '--agent-socket', socket]);
	t.is(doc.code, 2, doc.stdout + doc.stderr);
	t.notRegex(doc.stderr, /tracing here/);
	const said = `ss: ${inSs}; doctor said:\n${doc.stdout}`;
	t.regex(doc.stdout, new RegExp(`^TWTRACE CRITICAL - netns ${ns} \\(${pair.client}\\): ${inSs} TIME_WAIT \\(warn 200, crit 250`), said);
	t.regex(doc.stdout, new RegExp(`'time_wait_${ns}'=${inSs};200;250;0;`), said);
	t.regex(doc.stdout, new RegExp(`\\nSource: agent pid ${serve.child.pid}, up [\\d.]+ s; --netns ${ns}\\n`), said);
	t.regex(doc.stdout, new RegExp(`victim \\(pid ${victim.pid}\\) failed 1× with EADDRNOTAVAIL .* held by churner \\(pid ${churner.pid}\\) \\(${inSs} TIME_WAIT\\)`), said);

	// top --netns, answered by the agent's model narrowed to that namespace: exact owner, = ss.
	const snap = await agentTop(['--netns', ns]);
	t.regex(snap.source, new RegExp(`^agent pid ${serve.child.pid}, up [\\d.]+ s; --netns ${ns}$`));
	t.deepEqual(snap.namespaces.map((n: Json) => n.netns), [pair.clientInode], 'only the namespace asked for');
	t.like(snap.namespaces[0], { timeWait: inSs, timeWaitFrom: 'model', walkedTimeWait: 0 }, 'the count now; the walk was before the churn');
	t.like(snap.rows.find((r: Json) => r.pid === churner.pid), { comm: 'churner', timeWait: inSs });
	t.falsy(snap.rows.find((r: Json) => r.comm === '(before start)'));
	t.like(snap.victims.find((v: Json) => v.pid === victim.pid), { comm: 'victim', errno: 'EADDRNOTAVAIL' });

	// top --pid: that process only, and the destination it used, whole.
	const byPid = await agentTop(['--pid', String(churner.pid)]);
	t.deepEqual(byPid.rows.map((r: Json) => r.pid), [churner.pid]);
	t.like(byPid.rows[0], { timeWait: inSs });
	t.like(byPid.destinations[0], { daddr: pair.serverAddr, dport: 7800, portsInUse: inSs, portsUsable: 300 });

	// An agent that traces only the server's namespace cannot answer for the client's: top says why and traces here.
	const narrow = await startServe(['--agent-socket', path.join(dir, 'narrow', 'agent.sock'), '--netns', String(pair.serverInode)]);
	t.teardown(() => void narrow.stop());
	const other = await runTwtrace(['top', '--json', '--once', '--netns', ns, '--agent-socket', path.join(dir, 'narrow', 'agent.sock')]);
	t.is(other.code, 0, other.stderr);
	t.regex(other.stderr, new RegExp(`twtrace: top: the agent traces only --netns ${pair.serverInode}; --netns ${ns} is outside them: tracing here`));
	t.is(JSON.parse(other.stdout.trim()).source, 'standalone');
	t.is(await narrow.stop(), 0);
	t.is(await serve.stop(), 0);
});

bpfTest('TIME_WAIT older than twtrace: a restarted server with a 15-character name owns it after a walk; an older listener is named its likely owner', async (t) => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-listener-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	const pair = createPair();
	t.teardown(() => pair.remove());
	const serverName = 'restarted-serve';
	t.is(serverName.length, 15, 'the most of a command name the kernel keeps');
	const serverBin = scenarioNamed(dir, serverName);

	// A server that closes first leaves 100 TIME_WAIT on :7600, and exits.
	const first = await startServer(pair.server, '0.0.0.0', 7600, 'close-first', 100, serverBin);
	await runClient(pair.client, pair.serverAddr, 7600, 'wait-eof', 100);
	await first.done;
	// Another leaves 50 on :7601 and keeps listening (it waits for one more connection).
	const older = await startServer(pair.server, '0.0.0.0', 7601, 'close-first', 51, scenarioNamed(dir, 'old-listener'));
	await runClient(pair.client, pair.serverAddr, 7601, 'wait-eof', 50);
	const onPort = (port: number) => pair.timeWait(pair.server).filter((l) => l.split(' ')[0]!.endsWith(`:${port}`)).length;
	t.is(onPort(7600), 100);
	t.is(onPort(7601), 50);

	// twtrace starts now (no agent): both are older than it.
	const top = await startTop(['--netns', String(pair.serverInode), '--interval', '500ms', '--walk-interval', '1s']);
	t.teardown(() => void top.stop());
	const unknownRow = (s: Json) => s.rows.find((r: Json) => r.comm === '(before start)');
	await top.waitFor((s) => unknownRow(s)?.timeWait === 150, 15_000);

	// The first server is restarted after twtrace began: its listen() is seen.
	const restarted = await startServer(pair.server, '0.0.0.0', 7600, 'wait-close', 1, serverBin);
	const after = await top.waitFor((s) => s.rows.some((r: Json) => r.pid === restarted.pid && r.timeWait > 0) && unknownRow(s)?.likely !== undefined, 15_000);
	t.like(after.rows.find((r: Json) => r.pid === restarted.pid), { comm: serverName, timeWait: onPort(7600), side: 'server', topDest: `local ${pair.serverAddr}:7600` });
	const unknown = unknownRow(after);
	t.is(unknown.timeWait, onPort(7601), 'what is left of unknown process is the older listener\'s port');
	t.deepEqual(unknown.likely, [{ pid: older.pid, comm: 'old-listener', timeWait: onPort(7601), inferred: true, evidence: `holds the listening socket of ${pair.serverAddr}:7601` }]);
	t.falsy(after.rows.find((r: Json) => r.pid === older.pid), 'the inference adds nothing to its own count');

	// A second top, started after the restart, did not see that listen(): to it both servers are
	// older listeners, named as the likely owners of their ports' TIME_WAIT, never counted as theirs.
	await top.stop();
	const text = await runTwtrace(['top', '--iterations', '3', '--interval', '500ms', '--netns', String(pair.serverInode), '--walk-interval', '1s']);
	t.regex(text.stdout, /\n- +\(before start\) +150 /);
	t.regex(text.stdout, new RegExp(`↳ likely ${serverName} \\(pid ${restarted.pid}\\): ${onPort(7600)} of these TIME_WAIT; holds the listening socket of ${escaped(pair.serverAddr)}:7600`));
	t.regex(text.stdout, new RegExp(`↳ likely old-listener \\(pid ${older.pid}\\): ${onPort(7601)} of these TIME_WAIT; holds the listening socket of ${escaped(pair.serverAddr)}:7601`));

	await runClient(pair.client, pair.serverAddr, 7600, 'close-first', 1);
	await runClient(pair.client, pair.serverAddr, 7601, 'wait-eof', 1);
	await restarted.done;
	await older.done;
});
