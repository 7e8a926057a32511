/**
 * twtrace trace against ground truth: scripted clients and servers in a fresh pair of network
 * namespaces joined by veth (not loopback: there the peer's softirq runs in the sender's syscall and
 * hides attribution bugs, kernel-facts §1.2), traced with --netns on that pair only, compared with
 * the pids the test started and with `ss` in those namespaces.
 */
import type { ExecutionContext } from 'ava';
import { bpfTest } from '../helpers/env.js';
import { createPair, type NetnsPair } from '../../testbed/netns.js';
import { runClient, startServer, startTrace } from '../helpers/processes.js';

type Event = Record<string, unknown>;

const N = 20;

function ofKind(events: Event[], kind: string, netns?: number): Event[] {
	return events.filter((e) => e.kind === kind && (netns === undefined || e.netns === netns));
}

function tuple(e: Event): string {
	const ep = (a: unknown, p: unknown) => (e.family === 'ipv6' ? `[${String(a)}]:${String(p)}` : `${String(a)}:${String(p)}`);
	return `${ep(e.saddr, e.sport)} ${ep(e.daddr, e.dport)}`;
}

/** Runs `body` with a fresh namespace pair and a twtrace tracing only that pair. */
async function withTrace(
	t: ExecutionContext,
	setup: (pair: NetnsPair) => void,
	body: (pair: NetnsPair) => Promise<void>,
): Promise<{ pair: NetnsPair; events: Event[]; stderr: string }> {
	const pair = createPair();
	t.teardown(() => pair.remove());
	setup(pair);
	const trace = await startTrace(['--netns', String(pair.clientInode), '--netns', String(pair.serverInode)]);
	let result: Awaited<ReturnType<typeof trace.stop>>;
	try {
		await body(pair);
	} finally {
		result = await trace.stop();
	}
	t.is(result.code, 0, result.stderr);
	t.regex(result.stderr, / 0 lost /, 'no event may be lost');
	return { pair, events: result.events, stderr: result.stderr };
}

const noSetup = () => {};

bpfTest('client closes first: N time_wait on the client, owned by the client pid, side client, same 4-tuples as ss', async (t) => {
	let clientPid = 0;
	let serverPid = 0;
	const { pair, events } = await withTrace(t, noSetup, async (p) => {
		const server = await startServer(p.server, '0.0.0.0', 7101, 'wait-close', N);
		serverPid = server.pid;
		clientPid = (await runClient(p.client, p.serverAddr, 7101, 'close-first', N)).pid;
		await server.done;
	});
	const tw = ofKind(events, 'time_wait');
	const ss = pair.timeWait(pair.client);
	t.is(ss.length, N);
	t.is(pair.timeWait(pair.server).length, 0);
	t.is(tw.length, N);
	for (const e of tw) {
		t.like(e, { pid: clientPid, comm: 'tcp-scenario', side: 'client', netns: pair.clientInode, closerPid: clientPid, attributedBy: 'connect' });
		// TIME_WAIT when the peer's FIN came with its ACK; FIN_WAIT2 when the ACK came first (the orphan
		// turns into a timewait socket at once and becomes TIME_WAIT silently on the FIN: kernel-facts §1.3).
		t.true(e.substate === 'TIME_WAIT' || e.substate === 'FIN_WAIT2', String(e.substate));
		t.true(typeof e.lifetimeMs === 'number' && e.lifetimeMs >= 0);
	}
	t.deepEqual(tw.map(tuple).sort(), ss.sort());
	t.is(ofKind(events, 'connect').filter((e) => e.pid === clientPid).length, N);
	t.is(ofKind(events, 'accept').filter((e) => e.pid === serverPid && e.side === 'server').length, N);
	t.is(ofKind(events, 'active_close').filter((e) => e.pid === clientPid).length, N);
	t.is(ofKind(events, 'reset').length, 0);
});

bpfTest('server closes first: N time_wait on the server, blamed on the server pid, side server', async (t) => {
	let serverPid = 0;
	const { pair, events } = await withTrace(t, noSetup, async (p) => {
		const server = await startServer(p.server, '0.0.0.0', 7102, 'close-first', N);
		serverPid = server.pid;
		await runClient(p.client, p.serverAddr, 7102, 'wait-eof', N);
		await server.done;
	});
	const tw = ofKind(events, 'time_wait');
	const ss = pair.timeWait(pair.server);
	t.is(ss.length, N);
	t.is(pair.timeWait(pair.client).length, 0);
	t.is(tw.length, N);
	for (const e of tw) t.like(e, { pid: serverPid, side: 'server', netns: pair.serverInode, closerPid: serverPid, ownerPid: serverPid });
	t.deepEqual(tw.map(tuple).sort(), ss.sort());
});

bpfTest('fd inherited by a forked child that closes last: owner is the connecting parent, closer is the child', async (t) => {
	const n = 5;
	let parent = 0;
	let children: number[] = [];
	const { events } = await withTrace(t, noSetup, async (p) => {
		const server = await startServer(p.server, '0.0.0.0', 7103, 'wait-close', n);
		const r = await runClient(p.client, p.serverAddr, 7103, 'fork-close', n);
		parent = r.pid;
		children = r.children;
		await server.done;
	});
	const tw = ofKind(events, 'time_wait');
	t.is(tw.length, n);
	t.is(children.length, n);
	t.deepEqual(tw.map((e) => e.pid), Array(n).fill(parent));
	t.deepEqual(tw.map((e) => e.closerPid).sort(), [...children].sort());
});

/** An abortive close by the client: resets instead of TIME_WAIT on either side. */
async function abortiveClose(t: ExecutionContext, port: number, serverMode: string, clientMode: string) {
	let clientPid = 0;
	const { pair, events } = await withTrace(t, noSetup, async (p) => {
		const server = await startServer(p.server, '0.0.0.0', port, serverMode, N);
		clientPid = (await runClient(p.client, p.serverAddr, port, clientMode, N)).pid;
		await server.done;
	});
	t.is(ofKind(events, 'time_wait').length, 0);
	t.is(pair.timeWait(pair.client).length + pair.timeWait(pair.server).length, 0);
	const local = ofKind(events, 'reset', pair.clientInode);
	t.is(local.length, N);
	for (const e of local) t.like(e, { pid: clientPid, origin: 'local', errno: null, side: 'client' });
	return { pair, events };
}

bpfTest('SO_LINGER {1,0}: no time_wait, N resets sent by the client and N received by the server', async (t) => {
	const { pair, events } = await abortiveClose(t, 7104, 'wait-close', 'linger0');
	const peer = ofKind(events, 'reset', pair.serverInode);
	t.is(peer.length, N);
	for (const e of peer) t.like(e, { origin: 'peer', errno: 'ECONNRESET', side: 'server' });
});

bpfTest('close with unread data: no time_wait, N resets sent by the client', async (t) => {
	await abortiveClose(t, 7105, 'send-wait', 'unread');
});

bpfTest('connection refused: connect_fail ECONNREFUSED for each attempt, blamed on the client', async (t) => {
	const n = 5;
	let clientPid = 0;
	const { events } = await withTrace(t, noSetup, async (p) => {
		const r = await runClient(p.client, p.serverAddr, 7106, 'refused', n);
		t.is(r.failed, n);
		clientPid = r.pid;
	});
	const fails = ofKind(events, 'connect_fail');
	t.is(fails.length, n);
	for (const e of fails) t.like(e, { pid: clientPid, errno: 'ECONNREFUSED', dport: 7106, side: 'client' });
	t.is(ofKind(events, 'time_wait').length, 0);
});

bpfTest('port exhaustion (20-port range, tcp_tw_reuse=0): 20 time_wait, then EADDRNOTAVAIL for connect and EADDRINUSE for bind', async (t) => {
	const ports = 20;
	let clientPid = 0;
	let bindPid = 0;
	let heldPort = 0;
	const { pair, events } = await withTrace(t, (p) => {
		p.sysctl(p.client, 'net.ipv4.ip_local_port_range', '40000 40019');
		p.sysctl(p.client, 'net.ipv4.tcp_tw_reuse', '0');
	}, async (p) => {
		const server = await startServer(p.server, '0.0.0.0', 7201, 'wait-close', ports);
		const r = await runClient(p.client, p.serverAddr, 7201, 'exhaust', ports + 5);
		t.like(r, { ok: ports, failed: 1, errno: 99 });
		clientPid = r.pid;
		await server.done;
		// bind() to a port that a TIME_WAIT socket holds, the classic "Address already in use".
		// (A port is chosen from ss rather than bind(port 0): the test then needs no assumption
		// about how inet_csk_find_open_port scans the range.)
		heldPort = Number(p.timeWait(p.client)[0]?.split(' ')[0]?.split(':').pop());
		t.true(heldPort >= 40000 && heldPort <= 40019, `a TIME_WAIT port from ss, got ${heldPort}`);
		const b = await runClient(p.client, p.clientAddr, heldPort, 'bind', 1);
		t.like(b, { ok: 0, failed: 1, errno: 98 });
		bindPid = b.pid;
	});
	t.is(pair.timeWait(pair.client).length, ports);
	const tw = ofKind(events, 'time_wait');
	t.is(tw.length, ports);
	t.true(tw.every((e) => e.pid === clientPid && Number(e.sport) >= 40000 && Number(e.sport) <= 40019));
	const fail = ofKind(events, 'connect_fail');
	t.is(fail.length, 1);
	t.like(fail[0], { pid: clientPid, errno: 'EADDRNOTAVAIL', sport: 0, daddr: pair.serverAddr, dport: 7201 });
	const bind = ofKind(events, 'bind_fail');
	t.is(bind.length, 1);
	t.like(bind[0], { pid: bindPid, comm: 'tcp-scenario', errno: 'EADDRINUSE', saddr: pair.clientAddr, sport: heldPort, netns: pair.clientInode });
});

bpfTest('IPv6, client closes first: N time_wait with IPv6 addresses, owned by the client', async (t) => {
	let clientPid = 0;
	const { pair, events } = await withTrace(t, noSetup, async (p) => {
		const server = await startServer(p.server, '::', 7301, 'wait-close', N);
		clientPid = (await runClient(p.client, p.serverAddr6, 7301, 'close-first', N)).pid;
		await server.done;
	});
	const tw = ofKind(events, 'time_wait');
	t.is(tw.length, N);
	for (const e of tw) t.like(e, { pid: clientPid, family: 'ipv6', saddr: pair.clientAddr6, daddr: pair.serverAddr6, side: 'client' });
	t.deepEqual(tw.map(tuple).sort(), pair.timeWait(pair.client).sort());
});
