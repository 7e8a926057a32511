/** Host lookups that need no privileges: where cgroup v2 is mounted, on unified and hybrid hosts. */
import test from 'ava';
import { cgroup2Root } from '../../src/tracer/host.js';

test('cgroup v2 is found at /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid)', (t) => {
	const unified = '35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n';
	const hybrid = [
		'25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755',
		'26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate',
		'27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd',
		'',
	].join('\n');
	t.is(cgroup2Root(unified), '/sys/fs/cgroup');
	t.is(cgroup2Root(hybrid), '/sys/fs/cgroup/unified');
	t.is(cgroup2Root('27 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n'), undefined, 'v1 only: no v2 names');
});
