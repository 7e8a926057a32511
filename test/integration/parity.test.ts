/**
 * One model, live and replayed (docs/counting-in-the-kernel.md, step 4): the agent's live model takes
 * what the kernel counts from its counters, as `report --last` and `top --replay` take it from the
 * flight recorder's counts frames. This test asks the running agent for a snapshot, then for its
 * window, replays the window to the same moment, and asks the replay the same question: the two
 * answers must be equal, row by row and field by field, for a run with every kind the model takes
 * (connections both sides, TIME_WAIT on each side, resets, refused connects, an exhausted range and its
 * victim).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { AgentClient } from '../../src/agent/client.js';
import type { SnapshotQuery, SnapshotReply } from '../../src/agent/wire.js';
import { parseCapture } from '../../src/capture/reader.js';
import { CaptureReplay } from '../../src/pipeline/capture-replay.js';
import { bpfTest } from '../helpers/env.js';
import { agentTestBed, exhaustRange, runClient, scenarioNamed, startServer } from '../helpers/processes.js';
import { startServe } from '../helpers/serve.js';

/** Rates over a window longer than the run: both answers count all of it, whatever their clocks. */
const QUERY: SnapshotQuery = { by: 'process', sort: 'timeWait', windowMs: 60_000, maxRows: 100, maxDestinations: 100, maxVictims: 100 };

/**
 * What a snapshot says of the churn, without what belongs to the answering side rather than the
 * model: the clock it was asked at (uptime) and whether a process has exited since (asked of /proc by
 * the live side only), and a namespace's name (from /run/netns, on the live side only).
 */
function modelOf(reply: SnapshotReply): unknown {
	const { snapshot } = reply;
	return JSON.parse(JSON.stringify({
		rows: snapshot.rows.map(({ exited: _exited, ...row }) => row),
		destinations: snapshot.destinations,
		namespaces: snapshot.namespaces.map(({ name: _name, ...ns }) => ns),
		victims: snapshot.victims,
		overflow: snapshot.overflow,
	}));
}

/** The counts a snapshot holds, without the rates and history that move with the clock. */
const countsOf = (reply: SnapshotReply) => JSON.stringify(reply.snapshot.rows.map((r) => [r.key, r.timeWait, r.connectFailures, r.lifetimeP99Ms]));

async function settle(t: ExecutionContext, client: AgentClient): Promise<SnapshotReply> {
	// Every connection ended and its last count read: two snapshots a second apart count the same.
	let before = await client.snapshot(QUERY);
	for (let i = 0; i < 10; i++) {
		await new Promise((r) => setTimeout(r, 1100));
		const now = await client.snapshot(QUERY);
		if (countsOf(now) === countsOf(before)) return now;
		before = now;
	}
	t.fail('the agent\'s model did not settle within 11 s of the churn\'s end');
	return before;
}

bpfTest('parity: the agent\'s live snapshot equals the replay of its own flight recorder at the same moment, field by field', async (t) => {
	const bed = agentTestBed(t, 1000);
	const { dir, socket, pair } = bed;
	const serve = await startServe(['--agent-socket', socket, '--netns', String(pair.clientInode), '--netns', String(pair.serverInode)]);
	t.teardown(() => void serve.stop());

	// The server closes first: TIME_WAIT on the server side, per service.
	const closer = await startServer(pair.server, '0.0.0.0', 7801, 'close-first', 500, scenarioNamed(dir, 'closer'));
	const waiter = await runClient(pair.client, pair.serverAddr, 7801, 'wait-eof', 500, scenarioNamed(dir, 'waiter'));
	t.is(waiter.ok, 500);
	await closer.done;
	// Resets: closed with SO_LINGER 0, no TIME_WAIT.
	const sink = await startServer(pair.server, '0.0.0.0', 7802, 'wait-close', 300);
	const resetter = await runClient(pair.client, pair.serverAddr, 7802, 'linger0', 300, scenarioNamed(dir, 'resetter'));
	t.is(resetter.ok, 300);
	await sink.done;
	// Refused connects: nobody listens on 7809.
	await runClient(pair.client, pair.serverAddr, 7809, 'refused', 50, scenarioNamed(dir, 'refused'));
	// The client closes first until the range is exhausted, then a victim fails (EADDRNOTAVAIL).
	const { churner, victim } = await exhaustRange(t, bed, 1000);
	t.true(victim.failed > 0);

	const { client } = await AgentClient.find(socket);
	if (!client) return t.fail('no agent on the socket');
	const live = await settle(t, client);
	const { bytes } = await client.capture(undefined);
	fs.writeFileSync(path.join(dir, 'window.twtcap'), bytes);

	const replay = new CaptureReplay(parseCapture(bytes));
	t.true(replay.model.fromCounts, 'the window holds counts, not records');
	// As the agent's model moved: a second at a time (each second's sample of TIME_WAIT held is taken at its last reading), then to the moment asked.
	for (let us = Math.ceil(replay.startUs / 1e6) * 1e6 - 1; us < live.snapshot.atUs; us += 1e6) replay.advanceTo(us);
	replay.advanceTo(live.snapshot.atUs);
	const replayed = replay.reply(QUERY);

	const liveModel = modelOf(live) as { rows: { comm: string; timeWait: number }[] };
	t.deepEqual(modelOf(replayed), liveModel);
	// And the numbers are the churn's, not two equal mistakes.
	const held = (comm: string) => liveModel.rows.filter((r) => r.comm === comm).reduce((n, r) => n + r.timeWait, 0);
	t.is(held('closer'), 500);
	t.is(held('churner'), churner.ok);
	t.is(held('resetter'), 0);
});
