/**
 * record → report end to end: a capture recorded during a churn in a namespace pair, ended by
 * SIGTERM, replays into the report the workload implies; an existing file is not overwritten
 * without --force.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { bpfTest, cli } from '../helpers/env.js';
import { createPair } from '../../testbed/netns.js';
import { runClient, runTwtrace, startServer } from '../helpers/processes.js';

const run = runTwtrace;

bpfTest('record ended by SIGTERM keeps everything; the report names the churner; no overwrite without --force', async (t) => {
	const pair = createPair();
	t.teardown(() => pair.remove());
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-rec-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	const file = path.join(dir, 'churn.twtcap');
	const rec = spawn(process.execPath, [cli, 'record', '-o', file, '--netns', String(pair.clientInode), '--netns', String(pair.serverInode), '--walk-interval', '1s']);
	let stderr = '';
	rec.stderr.on('data', (d) => (stderr += d));
	const exited = new Promise<number | null>((resolve) => rec.on('exit', resolve));
	while (!stderr.includes('recording to')) await new Promise((r) => setTimeout(r, 50));

	const server = await startServer(pair.server, '0.0.0.0', 7800, 'wait-close', 250);
	const client = await runClient(pair.client, pair.serverAddr, 7800, 'close-first', 250);
	await server.done;
	await new Promise((r) => setTimeout(r, 300));
	rec.kill('SIGTERM');
	t.is(await exited, 0, stderr);
	t.regex(stderr, /events and \d+ socket walks written to .*; stopped by SIGTERM/);

	const r = await run(['report', file, '--format', 'json']);
	t.is(r.code, 0, r.stderr);
	const report = JSON.parse(r.stdout);
	t.true(report.complete);
	t.like(report.offenders[0], { pid: client.pid, comm: 'tcp-scenario', side: 'client', connections: 250, timeWaitEntries: 250, peakTimeWait: 250 });
	t.is(report.totals.connections, 500, '250 connects and 250 accepts');

	const again = await run(['record', '-o', file, '--duration', '1s']);
	t.is(again.code, 2);
	t.regex(again.stderr, /exists; use --force to overwrite it/);
	t.is((await run(['report', file])).code, 0, 'the capture is untouched');
});
