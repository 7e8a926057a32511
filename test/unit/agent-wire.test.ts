/**
 * The agent's wire (src/agent/wire.ts, server.ts, socket.ts), without BPF: a snapshot reply survives
 * JSON with its sets and maps, bad queries are refused with the reason, and the socket is created
 * with its mode from the first moment, refuses a second agent and replaces one left by a killed agent.
 */
import test from 'ava';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { AgentClient } from '../../src/agent/client.js';
import { AgentServer, parseSnapshotQuery } from '../../src/agent/server.js';
import { groupId } from '../../src/agent/socket.js';
import { API_VERSION, decodeSnapshotReply, encodeSnapshotReply, type AgentInfo, type SnapshotReply } from '../../src/agent/wire.js';
import { ChurnModel } from '../../src/model/churn-model.js';
import { snapshot } from '../../src/model/snapshot.js';
import { TwtraceError } from '../../src/errors.js';

const INFO: AgentInfo = {
	api: API_VERSION, version: '9.9.9', pid: 42, startedAt: new Date(0).toISOString(), uptimeSeconds: 10,
	filters: { netns: [], comm: null, pid: null, port: null, family: null },
	recorder: { frames: 0, bytes: 0, maxBytes: 0, spanSeconds: 0, maxSeconds: 0, firstAt: null, droppedBy: null },
};

function reply(): SnapshotReply {
	const m = new ChurnModel(1_000_000);
	m.reconcile({ netns: 7, takenAtUs: 1_000_000, sockets: [], settings: { portRange: { low: 40000, high: 40099 }, reservedPorts: new Set([40001, 40005]), finTimeoutSec: 60 } });
	return {
		agent: INFO,
		snapshot: snapshot(m, { by: 'process', sort: 'timeWait', nowUs: 2_000_000, rateWindowUs: 1_000_000 }),
		epochOffsetUs: 5, home: 7,
		drops: { ringFull: 1, mapFull: 0, missedRuns: 0, nestedRecovered: 0, ownerMissing: 0, walkMissed: 0, unwitnessed: 0, decodeErrors: 0 },
		walks: { inProgress: false, completed: 1, lastMs: undefined },
		unwalked: new Map([[9, 'no way in']]),
		cgroupNames: new Map([[3, '/system.slice/app.service']]),
	};
}

test('a snapshot reply survives JSON: reserved ports stay a set, unwalked and cgroup names stay maps', (t) => {
	const back = decodeSnapshotReply(encodeSnapshotReply(reply()));
	t.deepEqual(back, reply());
	t.true(back.snapshot.namespaces[0]!.settings!.reservedPorts.has(40005));
});

test('bad snapshot queries are refused with the reason', (t) => {
	t.throws(() => parseSnapshotQuery(new URLSearchParams('by=owner')), { message: /by=owner: one of process, comm/ });
	t.throws(() => parseSnapshotQuery(new URLSearchParams('windowMs=-1')), { message: /windowMs=-1: a whole number/ });
	t.like(parseSnapshotQuery(new URLSearchParams('')), { by: 'process', sort: 'timeWait', windowMs: 1000 });
});

test('the socket: mode 0660 in a 0750 directory, one agent at a time, a dead agent\'s socket replaced', async (t) => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-sock-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	const socket = path.join(dir, 'run', 'agent.sock');
	const window = { uptimeSeconds: 600, recorder: { ...INFO.recorder, spanSeconds: 234, droppedBy: 'size' as const, keeps: 'counts' as const } };
	const provider = { info: () => INFO, snapshot: () => reply(), capture: () => ({ body: Buffer.from('x'), window }) };
	const agent = await AgentServer.listen(socket, provider);
	t.is(fs.statSync(socket).mode & 0o777, 0o660);
	t.is(fs.statSync(path.dirname(socket)).mode & 0o777, 0o750);
	const found = await AgentClient.find(socket);
	t.is(found.client && found.info.pid, 42);
	t.deepEqual(await found.client!.snapshot({ by: 'process', sort: 'timeWait', windowMs: 1000 }), reply());
	t.deepEqual(await found.client!.capture(60_000), { bytes: Buffer.from('x'), window }, 'a window comes with what the recorder held as it served it');
	await t.throwsAsync(AgentServer.listen(socket, provider), { instanceOf: TwtraceError, message: /an agent already answers on/ });
	await agent.close();
	t.false(fs.existsSync(socket));
	t.regex((await AgentClient.find(socket)).client ? '' : 'absent', /absent/);

	// A killed agent leaves its socket file behind: nobody answers on it; the next agent takes the path.
	const killed = spawn(process.execPath, ['-e', 'require("net").createServer().listen(process.argv[1]); setInterval(() => {}, 1000)', socket]);
	for (let i = 0; i < 100 && !fs.existsSync(socket); i++) await new Promise((r) => setTimeout(r, 20));
	killed.kill('SIGKILL');
	await once(killed, 'exit');
	t.true(fs.existsSync(socket));
	t.is((await AgentClient.find(socket)).client, undefined);
	const next = await AgentServer.listen(socket, provider);
	t.truthy((await AgentClient.find(socket)).client);
	await next.close();
	t.is(groupId('twtrace', 'root:x:0:\ntwtrace:x:989:alice\n'), 989);
	t.is(groupId('twtrace', 'root:x:0:\n'), undefined);
});
