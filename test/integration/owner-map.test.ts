/**
 * sock_owner, where the programs keep what they know of each socket (bpf/twtrace.bpf.c), is a hash
 * keyed by the socket's address: nothing frees an entry with its socket, so the programs must delete
 * it at the socket's end, on every way a TCP socket ends. Read through bpftool, from the map that
 * the tracing twtrace holds open (its map ids in /proc/PID/fdinfo: other twtrace instances may run).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { bpfTest } from '../helpers/env.js';
import { createPair } from '../../testbed/netns.js';
import { runClient, startServer, startTrace } from '../helpers/processes.js';

const N = 200;

/** The ids of the BPF maps process `pid` holds open. */
function mapIdsOf(pid: number): Set<number> {
	const ids = new Set<number>();
	for (const fd of fs.readdirSync(`/proc/${pid}/fdinfo`)) {
		const m = /^map_id:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
		if (m) ids.add(Number(m[1]));
	}
	return ids;
}

/** Entries in the sock_owner map of the twtrace with pid `pid`. */
function ownerEntries(pid: number): number {
	const ids = mapIdsOf(pid);
	const maps = JSON.parse(execFileSync('bpftool', ['map', 'show', '-j'], { encoding: 'utf8' })) as { id: number; name?: string }[];
	const owner = maps.filter((m) => m.name === 'sock_owner' && ids.has(m.id));
	if (owner.length !== 1) throw new Error(`expected one sock_owner map held by pid ${pid}, found ${owner.length}`);
	const entries = JSON.parse(execFileSync('bpftool', ['map', 'dump', 'id', String(owner[0]!.id), '-j'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as unknown[];
	return entries.length;
}

bpfTest('sock_owner: an entry per listener while they listen, none left once every socket ended (client first, server first, resets)', async (t) => {
	const pair = createPair();
	t.teardown(() => pair.remove());
	const trace = await startTrace(['--kind', 'time_wait', '--netns', String(pair.clientInode), '--netns', String(pair.serverInode)]);
	let stopped: Awaited<ReturnType<typeof trace.stop>> | undefined;
	t.teardown(async () => void (stopped ?? (await trace.stop())));
	// Three listeners, seen as they listen: their entries prove the map read is the one the programs write.
	const waitClose = await startServer(pair.server, '0.0.0.0', 7121, 'wait-close', N);
	const closeFirst = await startServer(pair.server, '0.0.0.0', 7122, 'close-first', N);
	const sendWait = await startServer(pair.server, '0.0.0.0', 7123, 'send-wait', N);
	t.is(ownerEntries(trace.pid), 3, 'one entry per listening socket');

	// The connections run one at a time, so each socket's address is soon reused by the next socket
	// (the slab allocator's last freed first), whose start overwrites a forgotten entry: each way of
	// ending goes last once, in a run of its own, for its last sockets' entries to be seen.
	// The client resets (unread data): ESTABLISHED -> CLOSE on both ends.
	t.is((await runClient(pair.client, pair.serverAddr, 7123, 'unread', N)).ok, N);
	await sendWait.done;
	await new Promise((r) => setTimeout(r, 200)); // the server's socket ends as the client's RST arrives
	const afterResets = ownerEntries(trace.pid);
	// The server closes first: its socket ends FIN_WAIT2 -> CLOSE, the client's LAST_ACK -> CLOSE.
	t.is((await runClient(pair.client, pair.serverAddr, 7122, 'wait-eof', N)).ok, N);
	await closeFirst.done;
	await new Promise((r) => setTimeout(r, 200));
	const afterServerFirst = ownerEntries(trace.pid);
	// The client closes first: the other way round.
	t.is((await runClient(pair.client, pair.serverAddr, 7121, 'close-first', N)).ok, N);
	await waitClose.done;
	await new Promise((r) => setTimeout(r, 200));
	const left = ownerEntries(trace.pid);
	stopped = await trace.stop();
	t.is(stopped.code, 0, stopped.stderr);
	t.is(afterResets, 2, 'after the resets: the two servers still listening');
	t.is(afterServerFirst, 1, 'after the server-first closes: the last server still listening');
	t.is(left, 0, `${6 * N} sockets started and ended; entries left: ${left}`);
	t.is(pair.timeWait(pair.client).length + pair.timeWait(pair.server).length, 2 * N, 'the sockets did end: 2N in TIME-WAIT, per ss');
});
