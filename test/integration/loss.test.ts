/**
 * Loss measured against the truth, not against twtrace's own counters: a churn generator counts the
 * connections it completed (the client closes first, so each leaves exactly one TIME_WAIT socket on
 * the client), `ss` counts the TIME-WAIT sockets in the client namespace, and `twtrace trace` must
 * account for every one of them: delivered as a time_wait event (some found later and recovered,
 * when the kernel ran no program for them), or reported lost. A loss reported that did not happen
 * fails as surely as a silent one. Five short runs, each in fresh namespaces.
 */
import { bpfTest } from '../helpers/env.js';
import { runChurnClient, startChurnServer, stopChurnServer } from '../../testbed/churn.js';
import { createPair, settledTimeWait, type NetnsPair } from '../../testbed/netns.js';
import { startTrace } from '../helpers/processes.js';

const RUNS = 5;
const PORT = 7600;
const PORTS = 16;
/** Bounded in time and count: about 2 s at most, 30,000 connections at most. */
const SECONDS = 2;
const MAX_CONNECTIONS = 30_000;

const LOAD = { port: PORT, ports: PORTS, threads: 2 };

async function churn(pair: NetnsPair): Promise<{ completed: number; clientPid: number }> {
	const server = await startChurnServer(pair, LOAD, SECONDS + 3);
	const result = await runChurnClient(pair, LOAD, SECONDS, MAX_CONNECTIONS);
	await stopChurnServer(server);
	return { completed: result.connections, clientPid: result.pid };
}

/** The counts of trace's closing line. */
function summaryCounts(stderr: string): { lost: number; recovered: number } {
	const line = stderr.split('\n').find((l) => / lost \(ring full /.test(l));
	if (!line) throw new Error(`no summary line in: ${stderr}`);
	const lost = Number(/([\d,]+) lost \(/.exec(line)![1]!.replaceAll(',', ''));
	const recovered = Number(/(\d+) time_wait missed by the kernel's tracepoint/.exec(line)?.[1] ?? 0);
	return { lost, recovered };
}

bpfTest(`trace accounts for every TIME_WAIT the kernel made: delivered plus reported lost equals connections completed, ${RUNS} runs`, async (t) => {
	for (let run = 1; run <= RUNS; run++) {
		const pair = createPair();
		let trace: Awaited<ReturnType<typeof startTrace>> | undefined;
		try {
			pair.sysctl(pair.client, 'net.ipv4.ip_local_port_range', '10000 65000');
			pair.sysctl(pair.client, 'net.ipv4.tcp_max_tw_buckets', '1000000');
			trace = await startTrace(['--kind', 'time_wait', '--netns', String(pair.clientInode)]);
			const { completed, clientPid } = await churn(pair);
			const held = await settledTimeWait(pair);
			const { code, events, stderr } = await trace.stop();
			trace = undefined;
			const { lost, recovered } = summaryCounts(stderr);
			const cookies = new Set(events.map((e) => e.cookie));
			const label = `run ${run}: ${completed} connections, ${held} TIME-WAIT in ss, ${events.length} time_wait events (${recovered} found later and recovered), ${lost} reported lost`;
			t.log(label);
			t.is(code, 0, `${label}; trace's stderr: ${stderr}`);
			t.true(completed > 1000, `${label}: the generator made too few connections to mean anything`);
			t.is(held, completed, `${label}: every connection left one TIME-WAIT socket (the truth this test relies on)`);
			t.is(events.length + lost, completed, `${label}: delivered + reported lost must equal completed`);
			t.is(cookies.size, events.length, `${label}: no socket delivered twice`);
			t.is(events.filter((e) => e.recovered === true).length, recovered, `${label}: recovered events are the ones the summary counts`);
			t.true(events.every((e) => e.kind === 'time_wait' && e.pid === clientPid && e.comm === 'churn'), `${label}: every event blames the client`);
		} finally {
			await trace?.stop();
			pair.remove();
		}
	}
});
