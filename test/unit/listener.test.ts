/**
 * The listeners map's values and keys (struct twt_listener, struct twt_listener_key in bpf/twtrace.h),
 * decoded from bytes laid out by hand as the C compiler lays the structs out: a listener's name of
 * the kernel's full 15 bytes comes back whole, and both byte orders decode.
 */
import test from 'ava';
import { decodeListener, encodeListenerKey } from '../../src/event/listener.js';
import { encodeConfig } from '../../src/tracer/tracer.js';
import { CONFIG_FIELDS } from '../../src/event/layout.generated.js';

/** struct twt_listener { u64 cookie; u32 pid; u32 task; char comm[16]; }: 32 bytes. */
function listenerBytes(pid: number, comm: string, little: boolean): Buffer {
	const b = Buffer.alloc(32);
	if (little) {
		b.writeBigUInt64LE(0x1122334455667788n, 0);
		b.writeUInt32LE(pid, 8);
		b.writeUInt32LE(77, 12);
	} else {
		b.writeBigUInt64BE(0x1122334455667788n, 0);
		b.writeUInt32BE(pid, 8);
		b.writeUInt32BE(77, 12);
	}
	b.write(comm, 16, 'utf8');
	return b;
}

test('a listener whose name is the 15 bytes the kernel keeps decodes whole, with its pid', (t) => {
	const name = 'restarted-serve'; // 15 characters: TASK_COMM_LEN 16 with the NUL
	t.is(name.length, 15);
	t.deepEqual(decodeListener(listenerBytes(31337, name, true), true), { pid: 31337, comm: name });
});

test('a short name ends at its NUL; the bytes after it are not part of it', (t) => {
	const b = listenerBytes(4242, 'nginx', true);
	b.write('xyz', 22, 'utf8'); // garbage after the NUL at 21
	t.deepEqual(decodeListener(b, true), { pid: 4242, comm: 'nginx' });
});

test('a big-endian host decodes its own byte order', (t) => {
	t.deepEqual(decodeListener(listenerBytes(0x01020304, 'postgres', false), false), { pid: 0x01020304, comm: 'postgres' });
});

test('a value shorter than the struct decodes to nothing', (t) => {
	t.is(decodeListener(Buffer.alloc(31)), undefined);
});

test('the key is (netns, port) as two u32 in host order', (t) => {
	const le = encodeListenerKey(4026532387, 7600, true);
	t.is(le.length, 8);
	t.is(le.readUInt32LE(0), 4026532387);
	t.is(le.readUInt32LE(4), 7600);
	const be = encodeListenerKey(4026532387, 7600, false);
	t.is(be.readUInt32BE(0), 4026532387);
	t.is(be.readUInt32BE(4), 7600);
});

test('the config block is encoded in the byte order asked for (the host\'s by default)', (t) => {
	const be = new DataView(encodeConfig({ netns: [], pid: 1234, port: 7101, kinds: [] }, {}, false).buffer);
	t.is(be.getUint32(CONFIG_FIELDS.pid.offset, false), 1234);
	t.is(be.getUint16(CONFIG_FIELDS.port.offset, false), 7101);
	const le = new DataView(encodeConfig({ netns: [], pid: 1234, port: 7101, kinds: [] }, {}, true).buffer);
	t.is(le.getUint32(CONFIG_FIELDS.pid.offset, true), 1234);
});
