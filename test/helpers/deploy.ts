/** What the deploy/ files say, read for tests. */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { root } from './env.js';

const deploy = path.join(root, 'deploy');

/** Capability names without the CAP_ prefix, sorted. */
export function unitCapabilities(): string[] {
	const unit = fs.readFileSync(path.join(deploy, 'systemd/twtrace.service'), 'utf8');
	const line = (key: string) => /^(\S+)=(.*)$/m.exec(unit.split('\n').filter((l) => l.startsWith(`${key}=`)).join('\n'))?.[2]?.split(/\s+/).map((c) => c.replace(/^CAP_/, '')).sort();
	const ambient = line('AmbientCapabilities');
	if (!ambient || JSON.stringify(ambient) !== JSON.stringify(line('CapabilityBoundingSet'))) throw new Error('the unit\'s AmbientCapabilities and CapabilityBoundingSet differ');
	return ambient;
}

interface Mount { name: string; mountPath: string; readOnly?: boolean; mountPropagation?: string }
interface PodSpec {
	hostNetwork?: boolean;
	hostPID?: boolean;
	containers: { name: string; securityContext: { privileged?: boolean; allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities: { drop: string[]; add: string[] } }; volumeMounts: Mount[] }[];
	volumes: { name: string; hostPath?: { path: string } }[];
}

/** The pod spec of deploy/kubernetes/daemonset.yaml. */
export function daemonSetPod(): PodSpec {
	const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(deploy, 'kubernetes/daemonset.yaml'), 'utf8')).map((d) => d.toJS() as { kind: string; spec: { template: { spec: PodSpec } } });
	return docs.find((d) => d.kind === 'DaemonSet')!.spec.template.spec;
}

/**
 * `podman run` options that run the DaemonSet's container as a kubelet would on this node: its host
 * namespaces, read-only root, capabilities and hostPath mounts (`hostPaths` moves a host path, as a
 * test's own directory for the agent's socket).
 */
export function podmanOptionsOfDaemonSet(hostPaths: Record<string, string> = {}): string[] {
	const pod = daemonSetPod();
	const container = pod.containers[0]!;
	const security = container.securityContext;
	const options: string[] = [];
	if (pod.hostNetwork) options.push('--network', 'host');
	if (pod.hostPID) options.push('--pid', 'host');
	if (security.privileged) options.push('--privileged');
	if (security.readOnlyRootFilesystem) options.push('--read-only');
	if (security.allowPrivilegeEscalation === false) options.push('--security-opt', 'no-new-privileges');
	options.push('--cap-drop', security.capabilities.drop.join(',').toLowerCase(), '--cap-add', security.capabilities.add.join(','));
	for (const mount of container.volumeMounts) {
		const host = pod.volumes.find((v) => v.name === mount.name)?.hostPath?.path;
		if (host === undefined) throw new Error(`volume ${mount.name} is not a hostPath`);
		const flags = [mount.readOnly ? 'ro' : 'rw', ...(mount.mountPropagation === 'HostToContainer' ? ['rslave'] : [])];
		options.push('-v', `${hostPaths[host] ?? host}:${mount.mountPath}:${flags.join(',')}`);
	}
	return options;
}
