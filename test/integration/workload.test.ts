/**
 * Workload names end to end: two churners run in cgroups made as Docker (systemd driver) and a
 * Kubernetes burstable pod's containerd container lay them out; trace --json names each event's
 * workload, and top --by workload groups their TIME_WAIT by those names.
 */
import fs from 'node:fs';
import path from 'node:path';
import { bpfTest, scenarioBin } from '../helpers/env.js';
import { createPair } from '../../testbed/netns.js';
import { runClient, startServer, startTop, startTrace } from '../helpers/processes.js';
import { cgroup2Root } from '../../src/tracer/host.js';

const DOCKER_ID = '479e1c2a9b3f0d8e7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d';
const POD_UID = '5c7d9e2f-1a2b-4c3d-8e9f-0a1b2c3d4e5f';
const POD_CONTAINER = 'aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44';

bpfTest('workloads: a churner in a docker scope and one in a Kubernetes pod are named so by trace --json and grouped so by top --by workload', async (t) => {
	const root = cgroup2Root();
	if (!root) return t.fail('no cgroup v2 hierarchy mounted (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified)');
	const slice = path.join(root, `twtrace-test-${process.pid}.slice`);
	const docker = path.join(slice, `docker-${DOCKER_ID}.scope`);
	const pod = path.join(slice, 'kubepods.slice', 'kubepods-burstable.slice', `kubepods-burstable-pod${POD_UID.replace(/-/g, '_')}.slice`, `cri-containerd-${POD_CONTAINER}.scope`);
	fs.mkdirSync(docker, { recursive: true });
	fs.mkdirSync(pod, { recursive: true });
	t.teardown(() => {
		// Deepest first; a cgroup is removed with rmdir once its processes are gone.
		for (const dir of [docker, pod, path.dirname(pod), path.dirname(path.dirname(pod)), path.dirname(path.dirname(path.dirname(pod))), slice]) {
			try {
				fs.rmdirSync(dir);
			} catch {
				// already gone
			}
		}
	});
	const pair = createPair();
	t.teardown(() => pair.remove());
	const server = await startServer(pair.server, '0.0.0.0', 7950, 'wait-close', 50);
	const trace = await startTrace(['--netns', String(pair.clientInode), '--kind', 'time_wait']);
	const top = await startTop(['--by', 'workload', '--interval', '500ms', '--netns', String(pair.clientInode)]);
	const a = await runClient(pair.client, pair.serverAddr, 7950, 'close-first', 30, scenarioBin, docker);
	const b = await runClient(pair.client, pair.serverAddr, 7950, 'close-first', 20, scenarioBin, pod);
	await server.done;
	const { events } = await trace.stop();
	const byPid = (pid: number) => events.filter((e) => e.pid === pid);
	t.is(byPid(a.pid).length, 30);
	t.true(byPid(a.pid).every((e) => e.workload === 'docker 479e1c2a9b3f' && String(e.cgroup).endsWith(`docker-${DOCKER_ID}.scope`)), JSON.stringify(byPid(a.pid)[0]));
	t.is(byPid(b.pid).length, 20);
	t.true(byPid(b.pid).every((e) => e.workload === 'pod 5c7d9e2f-1a2b (burstable) containerd aa11bb22cc33'), JSON.stringify(byPid(b.pid)[0]));

	// top --by workload: one row per workload, holding its churner's TIME_WAIT.
	const held = (snap: Record<string, any>, workload: string) => snap.rows.find((r: { workload: string }) => r.workload === workload)?.timeWait;
	const snap = await top.waitFor((s) => held(s, 'docker 479e1c2a9b3f') === 30 && held(s, 'pod 5c7d9e2f-1a2b (burstable) containerd aa11bb22cc33') === 20, 10_000);
	await top.stop();
	t.is(snap.by, 'workload');
});
