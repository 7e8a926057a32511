/** What the deploy/ files say, read for tests. */
import fs from 'node:fs';
import path from 'node:path';
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
