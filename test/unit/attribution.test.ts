import test from 'ava';
import { base } from '../helpers/events.js';
import { blame } from '../../src/model/attribution.js';


test('an outgoing connection is blamed on the connect() caller even when another process closed it', (t) => {
	t.like(blame(base), { pid: 100, comm: 'owner', via: 'connect' });
});

test('an accepted connection is blamed on the worker that closed it, not the listener', (t) => {
	t.like(blame({ ...base, side: 'server', ownerSource: 'listen' }), { pid: 200, tid: 201, uid: 33, comm: 'closer', via: 'close' });
});

test('an accepted connection not yet closed is blamed on the listener', (t) => {
	t.like(blame({ ...base, kind: 'accept', side: 'server', ownerSource: 'listen', closerPid: 0, closerComm: '' }), { pid: 100, via: 'listen' });
});

test('a socket older than twtrace is blamed on its closer, or on nobody', (t) => {
	t.like(blame({ ...base, side: 'unknown', ownerSource: 'none', pid: 0, comm: '' }), { pid: 200, via: 'close' });
	t.like(blame({ ...base, side: 'unknown', ownerSource: 'none', pid: 0, comm: '', closerPid: 0 }), { pid: 0, via: 'unknown' });
});

test('a bind failure is blamed on the calling process', (t) => {
	t.like(blame({ ...base, kind: 'bind_fail', ownerSource: 'syscall', closerPid: 0, side: 'unknown' }), { pid: 100, via: 'syscall' });
});
