/**
 * A view of a model narrowed by the tracing filters (--netns, --pid, --comm, --port, --family),
 * for a model built without them: the agent's, which watches the whole host. A standalone run asks
 * the kernel to filter; the agent's model already holds every socket, so the same question is
 * answered by keeping only the owners, destinations, namespaces and victims that match. Pure.
 *
 * What each filter keeps, from what an owner records (its process, namespace and peer):
 *   netns   owners, destinations, victims and namespaces of those namespaces;
 *   pid     the sockets blamed on that process (the connect() caller, the closer of an accepted
 *           one), the destinations it connects to, its own failures;
 *   comm    the same, by command name;
 *   port    outgoing connections to that port, accepted ones on that local port, failures for it;
 *   family  IPv4 or IPv6 endpoints.
 * Destinations keep their whole counts: their ports are shared by every process that uses them.
 */
import { endpoint, parseEndpoint } from '../event/endpoint.js';

export interface ViewFilter {
	/** Network namespace inodes; empty or absent: all. */
	netns?: readonly number[];
	pid?: number;
	comm?: string;
	port?: number;
	family?: 4 | 6;
}

/** Whether `f` narrows anything. */
export function isNarrowing(f: ViewFilter | undefined): f is ViewFilter {
	return f !== undefined && (!!f.netns?.length || f.pid !== undefined || f.comm !== undefined || f.port !== undefined || f.family !== undefined);
}

/** What an owner is known by: ChurnModel's Owner has these. */
export interface FilteredOwner {
	pid: number;
	comm: string;
	netns: number;
	/** "daddr:dport", "local saddr:sport" or "bind saddr:sport". */
	peer: string;
}

const familyOf = (addr: string): 4 | 6 => (addr.includes(':') ? 6 : 4);

/** The endpoint of an owner's peer, without the "local " or "bind " prefix. */
function peerEndpoint(peer: string): { addr: string; port: number } | undefined {
	const text = peer.replace(/^(local|bind) /, '');
	return text ? parseEndpoint(text) : undefined;
}

export function netnsMatches(f: ViewFilter, netns: number): boolean {
	return !f.netns?.length || f.netns.includes(netns);
}

export function ownerMatches(f: ViewFilter, o: FilteredOwner): boolean {
	if (!netnsMatches(f, o.netns)) return false;
	if (f.pid !== undefined && o.pid !== f.pid) return false;
	if (f.comm !== undefined && o.comm !== f.comm) return false;
	if (f.port === undefined && f.family === undefined) return true;
	const peer = peerEndpoint(o.peer);
	if (!peer) return false;
	return (f.port === undefined || peer.port === f.port) && (f.family === undefined || familyOf(peer.addr) === f.family);
}

/**
 * Whether a destination is in the view. `usedBy`: the "netns daddr:dport" keys of the owners in
 * the view, consulted when the filter names a process (a destination has no process of its own).
 */
export function destinationMatches(f: ViewFilter, d: { netns: number; daddr: string; dport: number }, usedBy: ReadonlySet<string>): boolean {
	if (!netnsMatches(f, d.netns)) return false;
	if (f.port !== undefined && d.dport !== f.port) return false;
	if (f.family !== undefined && familyOf(d.daddr) !== f.family) return false;
	return (f.pid === undefined && f.comm === undefined) || usedBy.has(destinationKey(d.netns, endpoint(d.daddr, d.dport)));
}

/** destinationMatches' `usedBy` key of an owner's peer, or of a destination. */
export function destinationKey(netns: number, peer: string): string {
	return `${netns} ${peer}`;
}

export function victimMatches(f: ViewFilter, v: { pid: number; comm: string; netns: number; addr: string; port: number }): boolean {
	return netnsMatches(f, v.netns) && (f.pid === undefined || v.pid === f.pid) && (f.comm === undefined || v.comm === f.comm) &&
		(f.port === undefined || v.port === f.port) && (f.family === undefined || familyOf(v.addr) === f.family);
}

/**
 * "--netns 4026532177 --pid 42 --kind time_wait": filters as the flags that ask for them, in one
 * order wherever they are shown (trace's first line, a report's source, an agent's header); '' for none.
 */
export function describeFilters(f: ViewFilter & { kinds?: readonly string[] }): string {
	const parts: string[] = [];
	for (const n of f.netns ?? []) parts.push(`--netns ${n}`);
	if (f.pid !== undefined) parts.push(`--pid ${f.pid}`);
	if (f.comm !== undefined) parts.push(`--comm ${f.comm}`);
	if (f.port !== undefined) parts.push(`--port ${f.port}`);
	if (f.family !== undefined) parts.push(`--family ${f.family}`);
	if (f.kinds?.length) parts.push(`--kind ${f.kinds.join(',')}`);
	return parts.join(' ');
}
