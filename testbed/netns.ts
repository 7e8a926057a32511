/**
 * A pair of network namespaces joined by veth, made and removed by one test: the client at
 * 10.200.0.1 / fd00:200::1, the server at 10.200.0.2 / fd00:200::2. Traffic stays inside them.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

let counter = 0;

export interface NetnsPair {
	client: string;
	server: string;
	clientInode: number;
	serverInode: number;
	clientAddr: string;
	serverAddr: string;
	clientAddr6: string;
	serverAddr6: string;
	/** Runs a command inside a namespace, returning stdout. */
	exec(ns: string, args: string[]): string;
	/** Sets a sysctl inside one of the pair's namespaces (never the host's). */
	sysctl(ns: string, key: string, value: string): void;
	/** Sockets in TIME-WAIT (state) in `ns`, as ss reports them: "local peer" lines. */
	timeWait(ns: string): string[];
	/** How many sockets `ss` lists in TIME-WAIT in `ns` (counted by wc: fine for millions). */
	timeWaitCount(ns: string): number;
	remove(): void;
}

function ip(args: string[]): string {
	return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Pairs not yet removed: removed when this process exits (an interrupted bench, a failed test). */
const live = new Set<NetnsPair>();
process.on('exit', () => {
	for (const pair of live) pair.remove();
});

export function createPair(): NetnsPair {
	const tag = `twt${process.pid}x${counter++}`;
	const client = `${tag}c`;
	const server = `${tag}s`;
	ip(['netns', 'add', client]);
	ip(['netns', 'add', server]);
	const pair: NetnsPair = {
		client,
		server,
		clientInode: fs.statSync(`/run/netns/${client}`).ino,
		serverInode: fs.statSync(`/run/netns/${server}`).ino,
		clientAddr: '10.200.0.1',
		serverAddr: '10.200.0.2',
		clientAddr6: 'fd00:200::1',
		serverAddr6: 'fd00:200::2',
		exec: (ns, args) => ip(['netns', 'exec', ns, ...args]),
		sysctl: (ns, key, value) => void ip(['netns', 'exec', ns, 'sysctl', '-q', '-w', `${key}=${value}`]),
		timeWait: (ns) => ip(['netns', 'exec', ns, 'ss', '-tanH', 'state', 'time-wait'])
			.split('\n').map((l) => l.trim().split(/\s+/).slice(-2).join(' ')).filter((l) => l.length > 1),
		timeWaitCount: (ns) => Number(execFileSync('sh', ['-c', `ip netns exec ${ns} ss -tanH state time-wait | wc -l`], { encoding: 'utf8' }).trim()),
		remove: () => {
			live.delete(pair);
			for (const ns of [client, server]) {
				try {
					ip(['netns', 'delete', ns]);
				} catch {
					// already gone
				}
			}
		},
	};
	live.add(pair);
	try {
		// Both ends are created inside the namespaces, so no name can clash in the host's namespace.
		ip(['link', 'add', 'name', 'v0', 'netns', client, 'type', 'veth', 'peer', 'name', 'v1', 'netns', server]);
		for (const [ns, dev, v4, v6] of [[client, 'v0', pair.clientAddr, pair.clientAddr6], [server, 'v1', pair.serverAddr, pair.serverAddr6]] as const) {
			pair.exec(ns, ['ip', 'link', 'set', 'lo', 'up']);
			pair.exec(ns, ['ip', 'addr', 'add', `${v4}/24`, 'dev', dev]);
			pair.exec(ns, ['ip', '-6', 'addr', 'add', `${v6}/64`, 'dev', dev, 'nodad']);
			pair.exec(ns, ['ip', 'link', 'set', dev, 'up']);
			// An RST ends a TIME_WAIT socket early (tcp_timewait_state_process, "TIME-WAIT
			// assassination") unless tcp_rfc1337=1. The closed peer here answers a late segment with
			// an RST now and then (measured: 51 TcpOutRsts and 68 fewer TIME-WAIT sockets in ss than
			// time_wait events, for 1,600 connections), so tests that count TIME-WAIT against a
			// nominal number would depend on that race. twtrace's walk handles it either way.
			pair.sysctl(ns, 'net.ipv4.tcp_rfc1337', '1');
		}
	} catch (error) {
		pair.remove();
		throw error;
	}
	return pair;
}

/** TIME-WAIT sockets in the client namespace, once two readings 300 ms apart agree (FINs in flight). */
export async function settledTimeWait(pair: NetnsPair): Promise<number> {
	let last = -1;
	for (let i = 0; i < 20; i++) {
		const now = pair.timeWaitCount(pair.client);
		if (now === last) return now;
		last = now;
		await new Promise((r) => setTimeout(r, 300));
	}
	return last;
}
