/**
 * The model's cache of recent (owner, destination) pairs (src/model/recent-owners.ts): what an event
 * finds without building string keys.
 */
import test from 'ava';
import { RecentOwners, type RecentKey, type RecentOwner } from '../../src/model/recent-owners.js';
import type { Owner } from '../../src/model/owners.js';

const key = (o: Partial<RecentKey>): RecentKey => ({
	generation: 1, pid: 4242, comm: 'churn', cgroupId: 1, netns: 4026532245, side: 'client', peerKind: 0, port: 7000, saddr: '10.200.0.1', daddr: '10.200.0.2', ...o,
});
const entry = (k: RecentKey): RecentOwner => ({ ...k, owner: { key: `${k.pid} ${k.port} ${k.peerKind}` } as Owner, dest: undefined });

test('a churner\'s 64 destinations and its server\'s 64 services are all found once each was put: none pushes another out', (t) => {
	// The agent-cost bench's shape. The direct-mapped cache before (pid·31 + port·7 + netns, 256 slots) lost 54 of these 128 keys.
	const recent = new RecentOwners();
	const keys: RecentKey[] = [];
	for (let i = 0; i < 64; i++) {
		keys.push(key({ port: 7000 + i }));
		keys.push(key({ pid: 4243, netns: 4026532283, side: 'server', peerKind: 1, port: 7000 + i, saddr: '10.200.0.2', daddr: '0.0.0.0' }));
	}
	for (const k of keys) recent.put(entry(k));
	const missing = keys.filter((k) => recent.find(k)?.owner.key !== `${k.pid} ${k.port} ${k.peerKind}`);
	t.deepEqual(missing, []);
});

test('a pair is found only by every field it was cached with, and not after the model forgot owners (a new generation)', (t) => {
	const recent = new RecentOwners();
	recent.put(entry(key({})));
	t.truthy(recent.find(key({})));
	for (const change of [{ comm: 'other' }, { cgroupId: 2 }, { saddr: '10.200.0.9' }, { daddr: '10.200.0.9' }, { side: 'unknown' as const }, { generation: 2 }, { pid: 1 }, { port: 7001 }]) {
		t.is(recent.find(key(change)), undefined, JSON.stringify(change));
	}
	recent.put(entry(key({ peerKind: 1, daddr: '1.1.1.1' })));
	t.truthy(recent.find(key({ peerKind: 1, daddr: '2.2.2.2' })), 'a server-side pair is per service: the peer address does not matter');
});
