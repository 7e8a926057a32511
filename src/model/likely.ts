/**
 * Likely owners of TIME_WAIT sockets that predate twtrace: their real owner cannot be known (the
 * kernel keeps no process for a timewait socket, and enters TIME_WAIT in softirq context:
 * docs/kernel-facts.md §1.2, §1.3), but whoever connects to the same destination now, or holds
 * connections open to it, most likely made a client's; whoever holds the listening socket of its
 * port, a server's. Evidence, never attribution: what this infers is shown apart from exact
 * counts, with the reason, and never added to them. Pure.
 */
import { endpoint, parseEndpoint } from '../event/endpoint.js';
import type { OpenSocket } from '../event/open-sockets.js';
import { TCP_LISTEN } from '../event/sock.js';
import { C, isUnknownOwner, type Owner } from './owners.js';

/** A process that likely owns sockets towards a destination, and why. */
export interface Likely {
	pid: number;
	comm: string;
	/** "only process connecting to 10.0.0.5:443 (420 connects since start)" */
	evidence: string;
}

interface Candidate {
	pid: number;
	comm: string;
	/** Connections open to the destination at the last open-socket walk. */
	open: number;
	/** connect() calls towards it seen since start, failed ones included. */
	attempts: number;
}

/**
 * From the last open-socket walk: open connections per destination ("netns daddr dport") and process,
 * and the processes holding each listening socket ("netns port").
 */
export class OpenSockets {
	readonly #byDest = new Map<string, Map<number, { comm: string; open: number }>>();
	readonly #listening = new Map<string, Map<number, string>>();
	/** CLOCK_MONOTONIC µs of the last walk; undefined before the first. */
	walkedAtUs: number | undefined;

	/** Replaces what is known with a walk's sockets; `isClientPort` tells outgoing connections apart. */
	update(entries: readonly OpenSocket[], atUs: number, isClientPort: (netns: number, port: number) => boolean): void {
		this.#byDest.clear();
		this.#listening.clear();
		for (const h of entries) {
			if (h.state === TCP_LISTEN) {
				const key = `${h.netns} ${h.sport}`;
				let byPid = this.#listening.get(key);
				if (!byPid) this.#listening.set(key, (byPid = new Map()));
				byPid.set(h.pid, h.comm);
				continue;
			}
			if (!isClientPort(h.netns, h.sport)) continue;
			const key = destKey(h.netns, h.daddr, h.dport);
			let byPid = this.#byDest.get(key);
			if (!byPid) this.#byDest.set(key, (byPid = new Map()));
			const p = byPid.get(h.pid);
			if (p) p.open++;
			else byPid.set(h.pid, { comm: h.comm, open: 1 });
		}
		this.walkedAtUs = atUs;
	}

	at(netns: number, daddr: string, dport: number): ReadonlyMap<number, { comm: string; open: number }> | undefined {
		return this.#byDest.get(destKey(netns, daddr, dport));
	}

	/** The processes holding a listening socket on `port` of `netns` (pid → comm), if any. */
	listeningOn(netns: number, port: number): ReadonlyMap<number, string> | undefined {
		return this.#listening.get(`${netns} ${port}`);
	}
}

/**
 * The likely owner of a server's TIME_WAIT sockets on local `addr`:`port` of `netns` that predate
 * twtrace, whose listener's listen() twtrace did not see: the process holding the listening socket
 * of that port now, or, when several share it (a pre-forked server's workers, SO_REUSEPORT), the
 * first of them (the lowest pid: usually the parent that opened it), saying how many there are.
 */
export function likelyListener(netns: number, addr: string, port: number, sockets: OpenSockets): Likely | undefined {
	const byPid = sockets.listeningOn(netns, port);
	if (!byPid?.size) return undefined;
	const pids = [...byPid.keys()].sort((a, b) => a - b);
	const pid = pids[0]!;
	const comm = byPid.get(pid)!;
	const where = `the listening socket of ${endpoint(addr, port)}`;
	if (pids.length === 1) return { pid, comm, evidence: `holds ${where}` };
	const comms = [...new Set(byPid.values())].join(', ');
	return { pid, comm, evidence: `the first of ${pids.length} processes that hold ${where} (${comms}): which of them made these sockets is not known` };
}

/**
 * The likely owner of sockets towards daddr:dport in `netns`: the process with the most connect()
 * calls to it since start and connections open to it now; undefined when nobody does either.
 */
export function likelyOwner(
	netns: number, daddr: string, dport: number,
	sockets: OpenSockets, attempts: Iterable<{ pid: number; comm: string; attempts: number }>,
): Likely | undefined {
	const byPid = new Map<number, Candidate>();
	for (const [pid, h] of sockets.at(netns, daddr, dport) ?? []) byPid.set(pid, { pid, comm: h.comm, open: h.open, attempts: 0 });
	for (const a of attempts) {
		if (a.attempts === 0) continue;
		const c = byPid.get(a.pid) ?? { pid: a.pid, comm: a.comm, open: 0, attempts: 0 };
		c.attempts += a.attempts;
		byPid.set(a.pid, c);
	}
	const ranked = [...byPid.values()].sort((a, b) => b.attempts + b.open - (a.attempts + a.open) || a.pid - b.pid);
	const best = ranked[0];
	if (!best) return undefined;
	const dest = endpoint(daddr, dport);
	const facts = [
		...(best.attempts ? [`${best.attempts.toLocaleString('en-US')} connect() calls since start`] : []),
		...(best.open ? [`${best.open.toLocaleString('en-US')} open now`] : []),
	].join(', ');
	if (ranked.length === 1) return { pid: best.pid, comm: best.comm, evidence: `only process connecting to ${dest} (${facts})` };
	const total = ranked.reduce((n, c) => n + c.attempts + c.open, 0);
	const share = Math.round(((best.attempts + best.open) / total) * 100);
	return { pid: best.pid, comm: best.comm, evidence: `${share} % of the connections to ${dest} of ${ranked.length} processes (${facts})` };
}

function destKey(netns: number, daddr: string, dport: number): string {
	return `${netns} ${daddr} ${dport}`;
}

/**
 * The likely owner of each owner whose process is unknown (its sockets predate twtrace, or their
 * events were lost): for a client's sockets, who connects to the destination of its peer; for a
 * server's, who holds the listening socket of its port; none when nobody does. Evidence only: never
 * counted as that process's. One pass over the owners, whatever the number of unknown ones.
 */
export function likelyOwners(owners: Iterable<Owner>, sockets: OpenSockets): Map<Owner, Likely> {
	const unknown: Owner[] = [];
	const unknownServers: Owner[] = [];
	const attemptsByPeer = new Map<string, { pid: number; comm: string; attempts: number }[]>();
	for (const o of owners) {
		const isUnknown = isUnknownOwner(o);
		if (isUnknown && o.peer.startsWith('local ')) unknownServers.push(o);
		if (o.side === 'server' || o.peer.startsWith('local ') || o.peer.startsWith('bind ')) continue;
		if (o.pid === 0) {
			if (isUnknown) unknown.push(o);
			continue;
		}
		const key = `${o.netns} ${o.peer}`;
		let list = attemptsByPeer.get(key);
		if (!list) attemptsByPeer.set(key, (list = []));
		list.push({ pid: o.pid, comm: o.comm, attempts: o.totals[C.connects]! + o.totals[C.connectFailures]! });
	}
	const out = new Map<Owner, Likely>();
	for (const o of unknown) {
		const { addr, port } = parseEndpoint(o.peer);
		const likely = likelyOwner(o.netns, addr, port, sockets, attemptsByPeer.get(`${o.netns} ${o.peer}`) ?? []);
		if (likely) out.set(o, likely);
	}
	// A server's, on a port whose listener twtrace did not see open: who holds that listening socket.
	for (const o of unknownServers) {
		const { addr, port } = parseEndpoint(o.peer.slice('local '.length));
		const likely = likelyListener(o.netns, addr, port, sockets);
		if (likely) out.set(o, likely);
	}
	return out;
}
