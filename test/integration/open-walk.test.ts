/**
 * An open-socket walk (src/pipeline/open-walks.ts) finds what a walk of the table finds but its
 * timewait sockets, and what `ss` shows: sockets processes hold (a listener, connections held open)
 * from iter/task_file, and orphans (closed with data the peer will not take: FIN_WAIT1, no process
 * holds them any more) from the closes in flight the tracer keeps. Timewait sockets are there too,
 * counted by the kernel: the open-socket walk visits none of them.
 */
import { spawn } from 'node:child_process';
import { TraceSession } from '../../src/tracer/session.js';
import { NamespaceWalker, WALK_CHUNK_BYTES, type OpenedWalk } from '../../src/tracer/namespaces.js';
import { OpenSocketWalker } from '../../src/tracer/open-sockets.js';
import { openSocketRecords } from '../../src/pipeline/open-walks.js';
import { openSocketsObjectPath } from '../../src/tracer/preflight.js';
import { decodeSockets, TCP_TIME_WAIT, type SocketEntry } from '../../src/event/sock.js';
import { bpfObject, bpfTest } from '../helpers/env.js';
import { track, waitForLine } from '../../testbed/children.js';
import { createPair, type NetnsPair } from '../../testbed/netns.js';
import { until } from '../helpers/serve.js';

const HELD = 20;
const ORPHANS = 5;
const CLOSED = 30;
const TCP_FIN_WAIT1 = 4;
const TCP_NEW_SYN_RECV = 12;

/**
 * On `port`, reads and closes when the peer closes; on `port` + 1, accepts and never reads (a full
 * receive window holds a closing peer in FIN_WAIT1). Bounded: exits after 30 s.
 */
const SERVER = `
const net = require('node:net');
const [addr, port] = process.argv.slice(1);
const sockets = [];
net.createServer((s) => { s.resume(); s.on('error', () => {}); sockets.push(s); }).listen(Number(port), addr, () => {
	net.createServer((s) => { s.pause(); s.on('error', () => {}); sockets.push(s); }).listen(Number(port) + 1, addr, () => console.log('ready'));
});
setTimeout(() => process.exit(0), 30000);
`;

/**
 * Listens on a port of its own; connects and closes CLOSED times (TIME_WAIT here); holds HELD
 * connections open; and sends ORPHANS more (to the port that never reads) 16 MB each, more than the peer's window and both buffers
 * take, then closes them: the FIN waits behind the data, in FIN_WAIT1, held by no process.
 */
const CLIENT = `
const net = require('node:net');
const [addr, port, held, orphans, closed] = process.argv.slice(1).map((v, i) => i === 0 ? v : Number(v));
const keep = [];
const connect = () => new Promise((resolve, reject) => { const s = net.connect({ host: addr, port }, () => resolve(s)); s.on('error', reject); });
(async () => {
	keep.push(net.createServer().listen(9000, '0.0.0.0'));
	for (let i = 0; i < closed; i++) { const s = await connect(); s.end(); await new Promise((resolve) => s.on('close', resolve).resume()); }
	for (let i = 0; i < held; i++) keep.push(await connect());
	for (let i = 0; i < orphans; i++) {
		const s = await new Promise((resolve, reject) => { const s = net.connect({ host: addr, port: port + 1 }, () => resolve(s)); s.on('error', reject); });
		s.on('error', () => {});
		s.write(Buffer.alloc(16 << 20));
		setTimeout(() => s.destroy(), 500);
	}
	setTimeout(() => console.log('ready'), 700);
})().catch((e) => { console.error(e); process.exit(2); });
setTimeout(() => process.exit(0), 30000);
`;

function node(ns: string, script: string, args: string[]) {
	return track(spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] }));
}

/** "local-port peer-port" of every socket ss shows in the client namespace but its timewait ones (a listener's peer port: 0). */
function ssOpen(pair: NetnsPair): string[] {
	return pair.exec(pair.client, ['ss', '-Htan', 'exclude', 'time-wait']).trim().split('\n').filter(Boolean).map((l) => {
		const [, , , local, peer] = l.trim().split(/\s+/);
		const port = (ep: string) => (ep.endsWith(':*') ? '0' : ep.split(':').pop()!);
		return `${port(local!)} ${port(peer!)}`;
	}).sort();
}

function readAll(opened: OpenedWalk | { error: string } | undefined): SocketEntry[] {
	if (!opened || 'error' in opened) throw new Error(opened ? opened.error : 'not opened');
	const chunks: Buffer[] = [];
	const buf = Buffer.allocUnsafe(WALK_CHUNK_BYTES);
	try {
		for (let n = opened.read(buf); n > 0; n = opened.read(buf)) chunks.push(Buffer.from(buf.subarray(0, n)));
	} finally {
		opened.close();
	}
	return decodeSockets(Buffer.concat(chunks)).sockets;
}

const keys = (sockets: SocketEntry[]) => sockets.map((s) => `${s.sport} ${s.dport}`).sort();

bpfTest('an open-socket walk finds the listener, the connections held and the orphans a walk of the table and ss find, and no timewait socket', async (t) => {
	const pair = createPair();
	t.teardown(() => pair.remove());
	const session = new TraceSession(
		{ objectPath: bpfObject, filters: { netns: [pair.clientInode], kinds: [] }, ringBytes: 1 << 20, socketWalks: true, counting: true, walksLeaveCounted: true },
		{ onEvents: () => {} },
	);
	t.teardown(() => void session.stop());
	const processes = OpenSocketWalker.open(openSocketsObjectPath(bpfObject));
	if ('error' in processes) return t.fail(processes.error);
	t.teardown(() => processes.close());
	const server = node(pair.server, SERVER, [pair.serverAddr, '7000']);
	await waitForLine(server, 'stdout', /^ready/, 10_000);
	const client = node(pair.client, CLIENT, [pair.serverAddr, '7000', String(HELD), String(ORPHANS), String(CLOSED)]);
	await waitForLine(client, 'stdout', /^ready/, 15_000);
	await until(`${ORPHANS} orphans in FIN-WAIT-1`, 10_000, async () => pair.exec(pair.client, ['ss', '-Htan', 'state', 'fin-wait-1']).trim().split('\n').filter(Boolean).length === ORPHANS || undefined);
	t.is(pair.timeWaitCount(pair.client), CLOSED, 'timewait sockets the open-socket walk must not visit');

	const walker = new NamespaceWalker(session.tracer, () => 0);
	walker.discover();
	// The walk of the table ends with its trailer (state 0: how many counted timewait sockets it left out).
	const table = readAll(walker.open(pair.clientInode)).filter((s) => s.state !== TCP_TIME_WAIT && s.state !== TCP_NEW_SYN_RECV && s.state !== 0);
	// As OpenWalks.open makes it: the namespace's count, its sockets processes hold, the closes in flight.
	t.like(walker.peek(pair.clientInode), { timeWaitKernel: CLOSED }, 'with the kernel\'s count of the timewait sockets');
	const open = decodeSockets(openSocketRecords(pair.clientInode, await processes.walkTcp(), session.tracer.closesInFlight())).sockets;
	const ss = ssOpen(pair);
	t.is(ss.length, 1 + HELD + ORPHANS);
	t.deepEqual(keys(open), ss, 'what ss shows');
	t.deepEqual(keys(open), keys(table), 'what a walk of the table finds');
	t.false(open.some((s) => s.state === TCP_TIME_WAIT));
	const orphans = open.filter((s) => s.state === TCP_FIN_WAIT1);
	t.is(orphans.length, ORPHANS, 'the orphans, from the closes in flight');
	t.deepEqual(new Set(orphans.map((s) => s.cookie)).size, ORPHANS);
	t.true(orphans.every((s) => table.some((u) => u.cookie === s.cookie && u.sport === s.sport)), 'the same sockets, by cookie');
	t.is(session.tracer.openWalkHazards(), 0, 'every close was kept');
});
