/**
 * Who holds the ports a failed call needed, now: the owners of the TIME_WAIT sockets of a port pool.
 * A connect() that failed with EADDRNOTAVAIL failed against a destination's pool; a bind() that
 * failed with EADDRINUSE against a local port. The victims' "held by" (snapshot, report). Pure.
 */
import { inRange } from '../facts/netns-settings.js';
import type { ChurnModel } from './churn-model.js';
import type { Owner } from './owners.js';

/**
 * Who holds ports towards daddr:dport in `netns` now (any source address): TIME_WAIT sockets per
 * owner, most first. A connect() that failed with EADDRNOTAVAIL failed against these.
 */
export function holdersOfDestination(model: ChurnModel, netns: number, daddr: string, dport: number): Map<Owner, number> {
	const out = new Map<Owner, number>();
	for (const d of model.destinations.values()) {
		if (d.netns !== netns || d.daddr !== daddr || d.dport !== dport) continue;
		for (const [holder, n] of d.holders) out.set(holder as Owner, (out.get(holder as Owner) ?? 0) + n);
	}
	return out;
}

/**
 * Who holds local port `port` of `netns` in TIME_WAIT now: servers whose accepted connections on
 * it closed first, and, for an ephemeral port (or port 0: any ephemeral port), the clients
 * holding ports of the range. A bind() that failed with EADDRINUSE failed against these.
 */
export function holdersOfLocalPort(model: ChurnModel, netns: number, port: number): Map<Owner, number> {
	const out = new Map<Owner, number>();
	const ephemeral = port === 0 || inRange(port, model.portRange(netns));
	for (const o of model.owners.values()) {
		if (o.netns !== netns || o.timeWait === 0) continue;
		const onPort = o.side === 'server' && o.peer.endsWith(`:${port}`);
		if (onPort || (ephemeral && o.side !== 'server')) out.set(o, o.timeWait);
	}
	return out;
}
