import test from 'ava';
import { InvalidArgumentError } from 'commander';
import { parseDuration, parseKinds, parsePid, parsePort, parseRingSize } from '../../src/commands/options.js';
import { CONFIG_FIELDS as F, CONFIG_SIZE } from '../../src/event/layout.generated.js';
import { encodeConfig } from '../../src/tracer/tracer.js';

test('ports are 1-65535', (t) => {
	t.is(parsePort('1'), 1);
	t.is(parsePort('65535'), 65535);
	for (const bad of ['0', '65536', '70000', '-1', '80x', '']) {
		t.throws(() => parsePort(bad), { instanceOf: InvalidArgumentError, message: /is not a port \(1-65535\)/ });
	}
});

test('pids are positive whole numbers up to PID_MAX_LIMIT', (t) => {
	t.is(parsePid('4194304'), 4194304);
	for (const bad of ['0', '4194305', '1.5', 'abc']) t.throws(() => parsePid(bad), { instanceOf: InvalidArgumentError });
});

test('durations take ms, s, m, h, and bare seconds', (t) => {
	t.is(parseDuration('500ms'), 500);
	t.is(parseDuration('10s'), 10_000);
	t.is(parseDuration('1.5m'), 90_000);
	t.is(parseDuration('2h'), 7_200_000);
	t.is(parseDuration('30'), 30_000);
	for (const bad of ['0s', 'soon', '-1s', '10d']) t.throws(() => parseDuration(bad), { instanceOf: InvalidArgumentError });
});

test('ring sizes are powers of two from 4K to 1G', (t) => {
	t.is(parseRingSize('8M'), 8 << 20);
	t.is(parseRingSize('256KiB'), 256 << 10);
	t.is(parseRingSize('4096'), 4096);
	for (const bad of ['3M', '2K', '2G', 'big']) t.throws(() => parseRingSize(bad), { instanceOf: InvalidArgumentError });
});

test('kinds are validated and the message lists the valid ones', (t) => {
	t.deepEqual(parseKinds('time_wait,reset'), ['time_wait', 'reset']);
	t.throws(() => parseKinds('time_wait,timewait'), { message: /unknown kind timewait; choose from connect, accept, active_close, time_wait/ });
	t.throws(() => parseKinds(','), { message: /unknown kind \(empty\)/ });
});

test('filters encode into struct twt_config at the generated offsets', (t) => {
	const bytes = encodeConfig({ netns: [4026532387, 7], pid: 1234, port: 7101, cgroupId: 2 ** 40 + 5, family: 6, kinds: ['time_wait', 'bind_fail'] });
	t.is(bytes.length, CONFIG_SIZE);
	const v = new DataView(bytes.buffer);
	t.is(v.getBigUint64(F.cgroup_id.offset, true), BigInt(2 ** 40 + 5));
	t.is(v.getUint32(F.netns.offset, true), 4026532387);
	t.is(v.getUint32(F.netns.offset + 4, true), 7);
	t.is(v.getUint32(F.netns_count.offset, true), 2);
	t.is(v.getUint32(F.pid.offset, true), 1234);
	t.is(v.getUint32(F.kinds.offset, true), (1 << 4) | (1 << 7));
	t.is(v.getUint16(F.port.offset, true), 7101);
	t.is(v.getUint16(F.family.offset, true), 10);
});

test('no filters encode as all zeros: everything passes', (t) => {
	t.deepEqual([...encodeConfig({ netns: [], kinds: [] })], Array(CONFIG_SIZE).fill(0));
});

test('more network namespaces than the kernel filter holds is refused', (t) => {
	t.throws(() => encodeConfig({ netns: Array.from({ length: F.netns.count + 1 }, (_, i) => i + 1), kinds: [] }), { instanceOf: RangeError });
});
