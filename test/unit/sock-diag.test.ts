/**
 * A suspect's lookup (tracer/sock-diag.ts) as the kernel reads it (linux/inet_diag.h: struct
 * inet_diag_req_v2, struct inet_diag_sockid) and its answers as the kernel writes them
 * (inet_diag_msg, NLMSG_ERROR), laid out by hand; and a `closing` value (struct twt_closing) decoded.
 */
import test from 'ava';
import { decodeLookup, encodeLookup, type SocketKey } from '../../src/tracer/sock-diag.js';
import { decodeClosing } from '../../src/event/closing.js';
import { CLOSING_SIZE } from '../../src/event/layout.generated.js';

const v4 = (a: number, b: number, c: number, d: number) => Uint8Array.from([a, b, c, d, ...new Array(12).fill(0)]);
const KEY: SocketKey = { cookie: 0x1122_3344_5566_7788n, family: 4, saddr: v4(10, 200, 0, 2), daddr: v4(10, 200, 0, 1), sport: 40001, dport: 8080, boundDevIf: 3 };

test('the request: SOCK_DIAG_BY_FAMILY for one TCP socket, ports big-endian, addresses as given, device and cookie in host order', (t) => {
	const b = encodeLookup(KEY, 7, true);
	t.is(b.length, 16 + 56);
	t.is(b.readUInt32LE(0), b.length, 'nlmsg_len');
	t.is(b.readUInt16LE(4), 20, 'SOCK_DIAG_BY_FAMILY');
	t.is(b.readUInt16LE(6), 1, 'NLM_F_REQUEST: one socket, not a dump');
	t.is(b.readUInt32LE(8), 7, 'nlmsg_seq');
	t.deepEqual([b[16], b[17]], [2, 6], 'AF_INET, IPPROTO_TCP');
	t.is(b.readUInt32LE(20), 0xfff, 'every state');
	t.is(b.readUInt16BE(24), 40001, 'idiag_sport');
	t.is(b.readUInt16BE(26), 8080, 'idiag_dport');
	t.deepEqual([...b.subarray(28, 32)], [10, 200, 0, 2], 'idiag_src');
	t.deepEqual([...b.subarray(44, 48)], [10, 200, 0, 1], 'idiag_dst');
	t.is(b.readUInt32LE(60), 3, 'idiag_if: a socket bound to a device is found only by naming it');
	t.is(b.readUInt32LE(64), 0x5566_7788, 'idiag_cookie[0]: the low half');
	t.is(b.readUInt32LE(68), 0x1122_3344, 'idiag_cookie[1]');
	t.is(encodeLookup({ ...KEY, family: 6 }, 1, true)[16], 10, 'AF_INET6');
	t.is(encodeLookup(KEY, 7, false).readUInt32BE(64), 0x5566_7788, 'a big-endian host writes its own order');
});

/** An inet_diag_msg reply: state, timer, and expires (ms). */
function reply(state: number, timer: number, expiresMs: number): Buffer {
	const b = Buffer.alloc(16 + 72 + 8); // with an attribute after it
	b.writeUInt32LE(b.length, 0);
	b.writeUInt16LE(20, 4);
	b[16] = 2;
	b[17] = state;
	b[18] = timer;
	b.writeUInt32LE(expiresMs, 16 + 4 + 48);
	return b;
}

function error(errno: number): Buffer {
	const b = Buffer.alloc(16 + 4 + 16);
	b.writeUInt32LE(b.length, 0);
	b.writeUInt16LE(2, 4); // NLMSG_ERROR
	b.writeInt32LE(-errno, 16);
	return b;
}

test('a timewait socket (timer 3) is told from a full one by its timer, its substate kept as the state', (t) => {
	t.deepEqual(decodeLookup(reply(6, 3, 59_000), 96, true), { found: true, isTimeWait: true, state: 6, expiresMs: 59_000 });
	t.deepEqual(decodeLookup(reply(5, 3, 1_000), 96, true), { found: true, isTimeWait: true, state: 5, expiresMs: 1_000 }, 'FIN_WAIT2 substate');
	t.like(decodeLookup(reply(5, 0, 0), 96, true), { found: true, isTimeWait: false, state: 5 }, 'a half-closed full socket');
});

test('no such socket (ENOENT), or another socket on the tuple (ESTALE: the cookie differs), is not found; other errors are errors', (t) => {
	t.deepEqual(decodeLookup(error(2), 36, true), { found: false });
	t.deepEqual(decodeLookup(error(116), 36, true), { found: false });
	t.deepEqual(decodeLookup(error(1), 36, true), { error: 1 });
	t.is(decodeLookup(reply(6, 3, 0), 40, true), undefined, 'cut short');
	t.is(decodeLookup(Buffer.alloc(8), 8, true), undefined);
});

test('a closing value decodes its owner, closer, age, claim and the socket as it was at its close', (t) => {
	const b = Buffer.alloc(CLOSING_SIZE);
	b.writeUInt32LE(4242, 32); // owner.pid
	b.writeUInt32LE(4343, 36); // owner.closer_pid
	b.writeBigUInt64LE(123_456_789n, 48); // closed_ns
	b.set([10, 200, 0, 2], 56);
	b.set([10, 200, 0, 1], 72);
	b.writeUInt32LE(4026532000, 88); // netns
	b.writeUInt32LE(0, 92); // claim
	b.writeUInt16LE(40001, 96);
	b.writeUInt16LE(8080, 98);
	b.writeUInt16LE(10, 100); // AF_INET6
	b.writeUInt32LE(7, 104); // bound_dev_if
	const c = decodeClosing(b, true)!;
	t.like(c, { claim: 0, closedNs: 123_456_789n, netns: 4026532000, pid: 4242, closerPid: 4343 });
	t.like(c.socket, { family: 6, sport: 40001, dport: 8080, boundDevIf: 7 });
	t.deepEqual([...c.socket.saddr.subarray(0, 4)], [10, 200, 0, 2]);
	t.deepEqual([...c.socket.daddr.subarray(0, 4)], [10, 200, 0, 1]);
	t.is(decodeClosing(b.subarray(0, 100)), undefined, 'shorter than the struct');
});
