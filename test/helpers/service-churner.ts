/**
 * A churner as a systemd service would run it: tcp-scenario copied under the service's name (its comm)
 * and a cgroup `twtrace-test-PID-TAG.slice/NAME.service` of the test's own, so that twtrace names its
 * workload `NAME.service`. Both are removed at teardown (the cgroup once its processes are gone).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { cgroup2Root } from '../../src/tracer/host.js';
import { scenarioNamed } from './processes.js';

export interface ServiceChurner {
	/** The copy of tcp-scenario named `name`. */
	bin: string;
	/** The service's cgroup directory, for runClient's cgroupDir. */
	cgroup: string;
}

/** `name` at most 15 characters (a comm). Fails the test when no cgroup v2 hierarchy is mounted. */
export function serviceChurner(t: ExecutionContext, name: string, tag: string): ServiceChurner {
	const root = cgroup2Root();
	if (!root) throw new Error('no cgroup v2 hierarchy mounted (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified)');
	const slice = path.join(root, `twtrace-test-${process.pid}-${tag}.slice`);
	const cgroup = path.join(slice, `${name}.service`);
	fs.mkdirSync(cgroup, { recursive: true });
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), `twt-${tag}-`));
	t.teardown(() => {
		fs.rmSync(dir, { recursive: true, force: true });
		for (const d of [cgroup, slice]) {
			try {
				fs.rmdirSync(d);
			} catch {
				// already gone
			}
		}
	});
	return { bin: scenarioNamed(dir, name), cgroup };
}
