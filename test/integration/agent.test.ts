/**
 * The agent flow end to end, in a namespace pair with a 100-port range: `serve` runs before a
 * churner takes every port; a victim's connect() then fails with EADDRNOTAVAIL. `top` and `doctor`
 * started afterwards answer from the agent: the churner's exact TIME_WAIT count equals `ss`, the
 * victim is linked to it, and serve's metrics count the failure by destination. The socket is
 * refused to an unprivileged user.
 */
import { type CommandResult } from '../../testbed/children.js';
import fs from 'node:fs';
import path from 'node:path';
import { bpfTest } from '../helpers/env.js';
import { agentTestBed, exhaustRange, runClient, runTwtrace, scenarioNamed, startServer } from '../helpers/processes.js';
import { startServe } from '../helpers/serve.js';
import { parseExposition, valueOf } from '../helpers/exposition.js';

/**
 * As user nobody (uid 65534, no groups) with CAP_DAC_READ_SEARCH only: it may read the checkout
 * wherever it is (a 0700 temporary clone) and traverse any directory, but may not write to a file it
 * does not own, so connecting to the agent's socket is up to the socket's own mode.
 */
function asNobody(groups: number[] = []): string[] {
	return ['setpriv', '--reuid=65534', '--regid=65534', groups.length ? `--groups=${groups.join(',')}` : '--clear-groups',
		'--inh-caps=+dac_read_search', '--ambient-caps=+dac_read_search', '--'];
}

/** twtrace ARGS, as root, or as nobody (in `groups`). */
function run(args: string[], nobody?: { groups: number[] }): Promise<CommandResult> {
	return runTwtrace(args, nobody ? asNobody(nobody.groups) : []);
}

bpfTest('agent: top and doctor started after exhaustion answer from the agent: exact owner = ss, the victim linked to it, metrics by destination', async (t) => {
	const { dir, socket, pair } = agentTestBed(t, 100);

	const serve = await startServe(['--agent-socket', socket, '--netns', String(pair.clientInode), '--netns', String(pair.serverInode)]);
	t.teardown(() => void serve.stop());
	t.regex(serve.stderr(), new RegExp(`the agent API on ${socket.replace(/[.]/g, '\\.')}`));

	const { churner, victim, startedAtMs: churnStartedAt, inSs } = await exhaustRange(t, { dir, pair }, 100);

	// top --json, started now: exact from the agent's model, which saw every connection.
	const top = await run(['top', '--json', '--once', '--agent-socket', socket]);
	t.is(top.code, 0, top.stderr);
	const snap = JSON.parse(top.stdout.trim());
	t.regex(snap.source, /^agent pid \d+, up /);
	const churnerRow = snap.rows.find((r: { pid: number }) => r.pid === churner.pid);
	t.like(churnerRow, { comm: 'churner', timeWait: inSs, exited: true });
	t.falsy(snap.rows.find((r: { comm: string }) => r.comm === '(before start)'));
	t.is(snap.namespaces.find((n: { netns: number }) => n.netns === pair.clientInode)?.name, pair.client, 'named as ip netns names it');
	const v = snap.victims.find((x: { pid: number }) => x.pid === victim.pid);
	t.like(v, { comm: 'victim', call: 'connect', errno: 'EADDRNOTAVAIL', target: `${pair.serverAddr}:7800`, failures: 1 });
	t.deepEqual(v.holders[0], { pid: churner.pid, comm: 'churner', timeWait: inSs });

	// The text view: the agent in the header, the victims panel naming the churner.
	const text = await run(['top', '--once', '--agent-socket', socket]);
	t.regex(text.stdout, /\[agent pid \d+, up /);
	t.regex(text.stdout, new RegExp(`\\n${churner.pid} +churner \\(exited\\) +${inSs} `), 'a process that has exited is marked');
	t.regex(text.stdout, new RegExp(`VICTIMS: 1 process failed.*\\n  victim \\(pid ${victim.pid}\\) connect\\(\\) to ${pair.serverAddr.replace(/\./g, '\\.')}:7800: EADDRNOTAVAIL ×1, last \\d+ s ago \\(netns ${pair.clientInode}\\) ← held by churner \\(pid ${churner.pid}\\) ${inSs} TIME_WAIT`));

	// doctor: CRITICAL at once (no sample), the victim and who holds its ports.
	const doc = await run(['doctor', '--agent-socket', socket]);
	t.is(doc.code, 2, doc.stdout + doc.stderr);
	t.regex(doc.stdout, new RegExp(`victim \\(pid ${victim.pid}\\) failed 1× with EADDRNOTAVAIL \\(connect to ${pair.serverAddr.replace(/\./g, '\\.')}:7800\\) in the last 60 s: ports are exhausted now; the ports are held by churner \\(pid ${churner.pid}\\) \\(${inSs} TIME_WAIT\\)`));
	t.regex(doc.stdout, /\nSource: agent pid \d+/);

	// serve's metrics: the failure by victim and destination.
	const samples = parseExposition(await (await fetch(`${serve.url}/metrics`)).text());
	t.is(valueOf(samples, 'twtrace_port_failures_total', { comm: 'victim', call: 'connect', errno: 'EADDRNOTAVAIL', netns: String(pair.clientInode), addr: pair.serverAddr, port: '7800' }), 1);

	// report --last: the flight recorder's minutes before the call, with the victim linked to the churner.
	const calledAt = Date.now();
	const rep = await run(['report', '--last', '5m', '--format', 'json', '--agent-socket', socket]);
	t.is(rep.code, 0, rep.stderr);
	t.regex(rep.stderr, /report from the agent pid \d+, up .*: the last 5 min/);
	const report = JSON.parse(rep.stdout);
	t.true(Date.parse(report.source.startedAt) < churnStartedAt, `the report starts at ${report.source.startedAt}, before the churner (${new Date(churnStartedAt).toISOString()})`);
	t.true(churnStartedAt < calledAt);
	t.like(report.offenders[0], { pid: churner.pid, comm: 'churner', timeWaitEntries: 100 });
	t.like(report.victims[0], { pid: victim.pid, comm: 'victim', errno: 'EADDRNOTAVAIL', failures: 1 });
	t.is(report.victims[0].heldBy[0].label, `churner (pid ${churner.pid})`);
	t.like(report.losses, { ringFull: 0, missedRuns: 0 });

	// The same minutes as the page for the ticket: its plots' data name the churner and the victim's target.
	const page = await run(['report', '--last', '5m', '--format', 'html', '--agent-socket', socket]);
	t.is(page.code, 0, page.stderr);
	t.true(page.stdout.startsWith('<!doctype html>'));
	const timeline = JSON.parse(/<script type="application\/json" id="twtrace-timeline">(.*?)<\/script>/s.exec(page.stdout)![1]!);
	t.is(timeline.offenders[0].label, `churner (pid ${churner.pid})`);
	t.true(timeline.failures.some((f: { label: string }) => f.label === `connect ${pair.serverAddr}:7800 EADDRNOTAVAIL`), JSON.stringify(timeline.failures));

	// record --last saves the same minutes to a file; report on it agrees.
	const file = path.join(dir, 'last.twtcap');
	const rec = await run(['record', '--last', '5m', '-o', file, '--agent-socket', socket]);
	t.is(rec.code, 0, rec.stderr);
	t.regex(rec.stderr, /the last 5 min from the agent pid \d+.* written to /);
	const fromFile = JSON.parse((await run(['report', file, '--format', 'json'])).stdout);
	t.like(fromFile.offenders[0], { pid: churner.pid, timeWaitEntries: 100 });
	t.is((await run(['record', '--last', '5m', '-o', file, '--agent-socket', socket])).code, 2, 'an existing file needs --force');

	// Who may use the socket: root and the twtrace group only.
	t.is(fs.statSync(path.dirname(socket)).mode & 0o777, 0o750);
	t.is(fs.statSync(socket).mode & 0o777, 0o660);
	t.true(fs.statSync(socket).isSocket());
	// Even with the directory open to it, the socket's mode refuses a user outside the group.
	const denied = await run(['top', '--once', '--agent-socket', socket], { groups: [] });
	t.is(denied.code, 1, denied.stdout + denied.stderr);
	t.regex(denied.stderr, /the agent's socket .* is for root and the twtrace group\n {2}Run with sudo, or ask for the group/);
	// The same user in the socket's group may use it (as the twtrace group's members do).
	const member = await run(['top', '--json', '--once', '--agent-socket', socket], { groups: [fs.statSync(socket).gid] });
	t.is(member.code, 0, member.stderr);
	t.like(JSON.parse(member.stdout).rows.find((r: { pid: number }) => r.pid === churner.pid), { timeWait: inSs });

	// A second agent on the same socket is refused; the first keeps answering.
	const second = await run(['serve', '--listen', '127.0.0.1:0', '--agent-socket', socket]);
	t.is(second.code, 1);
	t.regex(second.stderr, /an agent already answers on/);
	t.is((await run(['top', '--json', '--once', '--agent-socket', socket])).code, 0);

	t.is(await serve.stop(), 0);
	t.false(fs.existsSync(socket), 'the socket is removed when the agent stops');
});

for (const keeps of ['records', 'counts'] as const) {
	bpfTest(`agent: a window of more records than one recorder chunk holds is served whole, every connection in it (--recorder-keeps ${keeps})`, async (t) => {
		// 5,000 connections closed first by the client: at least a connect and a time_wait record each on its
		// side, so a recorder keeping records fills several of its chunks (pipeline/recorder.ts CHUNK_BYTES,
		// 2,730 records); one keeping counts holds a frame a second.
		const connections = 5000;
		const { dir, socket, pair } = agentTestBed(t, 20_000);
		const serve = await startServe(['--agent-socket', socket, '--recorder-keeps', keeps, '--netns', String(pair.clientInode), '--netns', String(pair.serverInode)]);
		t.teardown(() => void serve.stop());
		const server = await startServer(pair.server, '0.0.0.0', 7800, 'wait-close', connections);
		const churner = await runClient(pair.client, pair.serverAddr, 7800, 'close-first', connections, scenarioNamed(dir, 'churner'));
		t.is(churner.ok, connections, 'the generator completed every connection: the truth to compare with');
		await server.done;

		const rep = await run(['report', '--last', '5m', '--format', 'json', '--agent-socket', socket]);
		t.is(rep.code, 0, rep.stderr);
		const report = JSON.parse(rep.stdout);
		const offender = report.offenders.find((o: { pid: number }) => o.pid === churner.pid);
		t.like(offender, { comm: 'churner', timeWaitEntries: connections });
		t.like(report.losses, { ringFull: 0, missedRuns: 0 });
		// Within a minute of the load every entry is still held: the window's model, the live one and ss agree.
		const top = JSON.parse((await run(['top', '--json', '--once', '--agent-socket', socket])).stdout);
		t.is(top.rows.find((r: { pid: number }) => r.pid === churner.pid)?.timeWait, connections, 'the live model (records, per socket)');
		t.is(offender.timeWaitAtEnd, connections, 'the window replayed');
		t.is(offender.connections, connections, 'each connection once: counted at its start, or at its handshake\'s end');
		if (keeps === 'counts') t.true(offender.lifetimeMs.upTo, 'lifetimes are the buckets\' bounds');
		else t.is(offender.lifetimeMs.upTo, undefined);
	});
}

bpfTest('agent: a window longer than the flight recorder holds says how much it holds and why, in the report and on stderr', async (t) => {
	// 5,000 connections closed first by the client: about 15,000 records, 1.4 MB, past a 1 MiB recorder.
	const connections = 5000;
	const { dir, socket, pair } = agentTestBed(t, 20_000);
	// Records: 96 bytes a transition (counts would hold these minutes in a few kilobytes).
	const serve = await startServe(['--agent-socket', socket, '--recorder-size', '1M', '--recorder-keeps', 'records', '--netns', String(pair.clientInode), '--netns', String(pair.serverInode)]);
	t.teardown(() => void serve.stop());
	const server = await startServer(pair.server, '0.0.0.0', 7800, 'wait-close', connections);
	const churner = await runClient(pair.client, pair.serverAddr, 7800, 'close-first', connections, scenarioNamed(dir, 'churner'));
	t.is(churner.ok, connections);
	await server.done;

	const cut = /the flight recorder holds only the last (\d+(\.\d)? s) of the 5 min asked for: its 1 MiB \(serve --recorder-size\) fill that fast at this rate of events; a larger --recorder-size keeps more\./;
	const rep = await run(['report', '--last', '5m', '--format', 'json', '--agent-socket', socket]);
	t.is(rep.code, 0, rep.stderr);
	t.regex(rep.stderr, cut);
	const report = JSON.parse(rep.stdout);
	t.regex(report.source.file, /: the last \d+(\.\d)? s \(of 5 min asked for: its 1 MiB \(serve --recorder-size\) fill that fast/);
	const served = report.offenders.find((o: { pid: number }) => o.pid === churner.pid)?.timeWaitEntries ?? 0;
	t.true(served > 0 && served < connections, `${served} of the ${connections} connections' TIME_WAIT entries are in the window`);

	const file = path.join(dir, 'cut.twtcap');
	const rec = await run(['record', '--last', '5m', '-o', file, '--agent-socket', socket]);
	t.is(rec.code, 0, rec.stderr);
	t.regex(rec.stderr, cut);
	t.is(await serve.stop(), 0);
});
