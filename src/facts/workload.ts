/**
 * Names people know for a socket's cgroup: the systemd unit, the container, the Kubernetes pod.
 * During an incident people think in services, containers and pods, not in cgroup ids. Pure: a
 * cgroup v2 path (relative to the cgroup root, as CgroupPaths gives it) in, a Workload out.
 *
 * Layouts recognised (the last matching component wins, innermost first):
 * A pod is named by the first groups of its uid with their dash (as kubectl prints the uid):
 *
 *   systemd driver  /system.slice/nginx.service                       service nginx.service
 *                   /user.slice/user-1000.slice/session-3.scope        session session-3.scope
 *                   /system.slice/docker-<64 hex>.scope                docker container
 *                   /system.slice/containerd.service/… or cri-containerd-<id>.scope, crio-<id>.scope,
 *                   libpod-<id>.scope                                  containerd, CRI-O, podman
 *                   /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/
 *                   cri-containerd-<id>.scope                          pod <uid> (burstable), its container
 *   cgroupfs driver /docker/<64 hex>                                   docker container
 *                   /kubepods/besteffort/pod<uid>/<64 hex>             pod <uid> (besteffort), its container
 *                   /kubepods/pod<uid>/<64 hex>                        pod <uid> (guaranteed)
 */

export type WorkloadKind = 'pod' | 'container' | 'service' | 'session' | 'cgroup';

export interface Workload {
	kind: WorkloadKind;
	/** Display name: "nginx.service", "docker 479e1c2a9b3f", "pod 5c7d9e2f-1a2b (burstable) docker 479e1c2a9b3f". */
	name: string;
	/** Where space is tight: "nginx.service", "docker:479e1c2a9b3f", "pod:5c7d9e2f-1a2b". */
	short: string;
	/** The container runtime and full id, for a container (also inside a pod). */
	container?: { runtime: string; id: string };
	/** The pod's uid (dashes restored) and QoS class. */
	pod?: { uid: string; qos: 'guaranteed' | 'burstable' | 'besteffort' };
	/** The systemd unit (service or scope) the cgroup is in, when not a container. */
	unit?: string;
}

/** Characters of a container id shown (as `docker ps` does). */
export const SHORT_ID = 12;
/**
 * Characters of a pod's uid shown: its first two groups with their dash ("5c7d9e2f-1a2b"), as the
 * uid is written in `kubectl get pod -o yaml` (metadata.uid), so the name shown greps there.
 */
export const POD_UID_PREFIX = 13;

const HEX64 = /^[0-9a-f]{64}$/;
const RUNTIME_SCOPE = /^(docker|cri-containerd|crio|crio-conmon|libpod|containerd)-([0-9a-f]{64})\.scope$/;
const POD_SLICE = /^kubepods(?:-(burstable|besteffort))?-pod([0-9a-f_]{36}|[0-9a-f]{32})\.slice$/;
const POD_DIR = /^pod([0-9a-f-]{36}|[0-9a-f]{32})$/;
const RUNTIME_NAMES: Record<string, string> = { docker: 'docker', 'cri-containerd': 'containerd', containerd: 'containerd', crio: 'cri-o', 'crio-conmon': 'cri-o', libpod: 'podman' };

/** A pod uid as Kubernetes writes it (8-4-4-4-12, dashes): the cgroupfs driver may leave the dashes out. */
function dashedUid(uid: string): string {
	return uid.length === 32 ? `${uid.slice(0, 8)}-${uid.slice(8, 12)}-${uid.slice(12, 16)}-${uid.slice(16, 20)}-${uid.slice(20)}` : uid;
}

/** The workload of a cgroup v2 path ("/" or "" for the root), or undefined for an unknown path. */
export function workloadOf(cgroupPath: string | undefined): Workload | undefined {
	if (cgroupPath === undefined) return undefined;
	const parts = cgroupPath.split('/').filter(Boolean);
	if (parts.length === 0) return { kind: 'cgroup', name: '/', short: '/' };
	let container: Workload['container'];
	let pod: Workload['pod'];
	let unit: string | undefined;
	let inKubepods = false;
	let qos: NonNullable<Workload['pod']>['qos'] = 'guaranteed';
	for (let i = 0; i < parts.length; i++) {
		const p = parts[i]!;
		const prev = parts[i - 1];
		if (p === 'kubepods' || p === 'kubepods.slice') inKubepods = true;
		if (inKubepods && (p === 'burstable' || p === 'besteffort')) qos = p;
		let m = POD_SLICE.exec(p);
		if (m) {
			pod = { uid: m[2]!.replace(/_/g, '-'), qos: (m[1] as 'burstable' | 'besteffort' | undefined) ?? 'guaranteed' };
			continue;
		}
		m = inKubepods ? POD_DIR.exec(p) : null;
		if (m) {
			pod = { uid: dashedUid(m[1]!), qos };
			continue;
		}
		m = RUNTIME_SCOPE.exec(p);
		if (m) {
			container = { runtime: RUNTIME_NAMES[m[1]!]!, id: m[2]! };
			continue;
		}
		// cgroupfs layouts: the id alone, under /docker or a pod's directory.
		if (HEX64.test(p) && (prev === 'docker' || (pod && POD_DIR.test(prev ?? '')))) {
			container = { runtime: prev === 'docker' ? 'docker' : 'container', id: p };
			continue;
		}
		if (!container && (p.endsWith('.service') || p.endsWith('.scope'))) unit = p;
	}
	const shortId = (id: string) => id.slice(0, SHORT_ID);
	if (pod) {
		const c = container ? ` ${container.runtime} ${shortId(container.id)}` : '';
		const uid = pod.uid.slice(0, POD_UID_PREFIX);
		return { kind: 'pod', name: `pod ${uid} (${pod.qos})${c}`, short: `pod:${uid}`, pod, ...(container ? { container } : {}) };
	}
	if (container) return { kind: 'container', name: `${container.runtime} ${shortId(container.id)}`, short: `${container.runtime}:${shortId(container.id)}`, container };
	if (unit) {
		const kind = /^session-.*\.scope$/.test(unit) ? 'session' : 'service';
		return { kind, name: unit, short: unit, unit };
	}
	const last = parts[parts.length - 1]!;
	return { kind: 'cgroup', name: cgroupPath, short: last };
}
