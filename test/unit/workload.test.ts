/**
 * Workload names from cgroup v2 paths (src/facts/workload.ts): one fixture per layout people meet —
 * systemd units and sessions, Docker / containerd / CRI-O / podman containers under the systemd and
 * cgroupfs drivers, Kubernetes pods of each QoS class under both drivers — and what is left alone.
 */
import test from 'ava';
import { workloadOf } from '../../src/facts/workload.js';

const ID = '479e1c2a9b3f0d8e7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d';
const UID = '5c7d9e2f-1a2b-4c3d-8e9f-0a1b2c3d4e5f';
const UID_ = UID.replace(/-/g, '_');

const CASES: [string, string, string | undefined, object][] = [
	['systemd service', '/system.slice/nginx.service', 'nginx.service', { kind: 'service', short: 'nginx.service', unit: 'nginx.service' }],
	['service in a nested slice', '/system.slice/app.slice/api.service', 'api.service', { kind: 'service' }],
	['login session', '/user.slice/user-1000.slice/session-3.scope', 'session-3.scope', { kind: 'session' }],
	['user service', '/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service', 'dbus.service', { kind: 'service' }],
	['docker, systemd driver', `/system.slice/docker-${ID}.scope`, 'docker 479e1c2a9b3f', { kind: 'container', short: 'docker:479e1c2a9b3f', container: { runtime: 'docker', id: ID } }],
	['docker, cgroupfs driver', `/docker/${ID}`, 'docker 479e1c2a9b3f', { kind: 'container', container: { runtime: 'docker', id: ID } }],
	['containerd', `/system.slice/cri-containerd-${ID}.scope`, 'containerd 479e1c2a9b3f', { kind: 'container' }],
	['CRI-O', `/machine.slice/crio-${ID}.scope`, 'cri-o 479e1c2a9b3f', { kind: 'container' }],
	['podman', `/machine.slice/libpod-${ID}.scope`, 'podman 479e1c2a9b3f', { kind: 'container' }],
	['pod, burstable, systemd driver', `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`,
		'pod 5c7d9e2f-1a2b (burstable) containerd 479e1c2a9b3f', { kind: 'pod', short: 'pod:5c7d9e2f-1a2b', pod: { uid: UID, qos: 'burstable' }, container: { runtime: 'containerd', id: ID } }],
	['pod, besteffort, systemd driver, CRI-O', `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/crio-${ID}.scope`,
		'pod 5c7d9e2f-1a2b (besteffort) cri-o 479e1c2a9b3f', { kind: 'pod', pod: { uid: UID, qos: 'besteffort' } }],
	['pod, guaranteed, systemd driver', `/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope`, 'pod 5c7d9e2f-1a2b (guaranteed) containerd 479e1c2a9b3f', { pod: { uid: UID, qos: 'guaranteed' } }],
	['pod, burstable, cgroupfs driver', `/kubepods/burstable/pod${UID}/${ID}`, 'pod 5c7d9e2f-1a2b (burstable) container 479e1c2a9b3f', { kind: 'pod', pod: { uid: UID, qos: 'burstable' } }],
	['pod, guaranteed, cgroupfs driver', `/kubepods/pod${UID}/${ID}`, 'pod 5c7d9e2f-1a2b (guaranteed) container 479e1c2a9b3f', { pod: { uid: UID, qos: 'guaranteed' } }],
	['pod, cgroupfs driver, uid without dashes', `/kubepods/besteffort/pod${UID.replace(/-/g, '')}/${ID}`, 'pod 5c7d9e2f-1a2b (besteffort) container 479e1c2a9b3f', { pod: { uid: UID, qos: 'besteffort' } }],
	['the pod itself (its sandbox)', `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice`, 'pod 5c7d9e2f-1a2b (burstable)', { kind: 'pod' }],
	['the root', '/', '/', { kind: 'cgroup' }],
	['anything else', '/my/own/group', '/my/own/group', { kind: 'cgroup', short: 'group' }],
	['a directory named like an id outside /docker', `/tenants/${ID}`, `/tenants/${ID}`, { kind: 'cgroup' }],
];

for (const [title, path, name, expected] of CASES) {
	test(`${title}: ${path.length > 60 ? '…' + path.slice(-50) : path}`, (t) => {
		const w = workloadOf(path);
		t.is(w?.name, name);
		t.like(w, expected);
	});
}

test('a pod is named by its uid as kubectl prints it (metadata.uid), so the name greps there', (t) => {
	for (const path of [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice`, `/kubepods/pod${UID.replace(/-/g, '')}/${ID}`]) {
		const shown = /^pod (\S+) /.exec(workloadOf(path)!.name)![1]!;
		t.true(`uid: ${UID}`.includes(shown), `${shown} is part of ${UID}`);
		t.true(shown.includes('-'), 'with its dash, not run together');
	}
});

test('an unknown cgroup has no workload', (t) => {
	t.is(workloadOf(undefined), undefined);
});
