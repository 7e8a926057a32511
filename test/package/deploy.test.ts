/**
 * deploy/: the alert rules parse and fire as their tests say (promtool check/test rules), the
 * example scrape job is a valid configuration, and the DaemonSet asks for exactly the capabilities
 * the systemd unit grants (serve.test.ts runs serve with that list).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { daemonSetPod, podmanOptionsOfDaemonSet, unitCapabilities } from '../helpers/deploy.js';
import { root, toolTest } from '../helpers/env.js';

const deploy = path.join(root, 'deploy');
const promtool = (args: string[]) => execFileSync('promtool', args, { cwd: path.join(deploy, 'prometheus'), encoding: 'utf8' });

toolTest(['promtool'], 'the alert rules pass promtool check rules', (t) => {
	// Six alerts and two recording rules (the failures in 5 minutes, a destination's offender).
	t.regex(promtool(['check', 'rules', 'twtrace-alerts.yml']), /SUCCESS: 8 rules found/);
});

toolTest(['promtool'], 'each alert fires when and as its promtool unit test says', (t) => {
	t.regex(promtool(['test', 'rules', 'twtrace-alerts.test.yml']), /SUCCESS/);
});

toolTest(['promtool'], 'the example scrape job is a valid Prometheus configuration', (t) => {
	t.regex(promtool(['check', 'config', 'scrape-static.example.yml']), /is valid prometheus config file syntax/);
});

test('the DaemonSet adds exactly the unit\'s capabilities, drops all others, and is not privileged', (t) => {
	const pod = daemonSetPod();
	const { securityContext } = pod.containers[0]!;
	t.deepEqual([...securityContext.capabilities.add].sort(), unitCapabilities());
	t.deepEqual(securityContext.capabilities.drop, ['ALL']);
	t.like(securityContext, { privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
	t.like(pod, { hostPID: true, hostNetwork: true });
	// test/package/image.test.ts runs the image with these settings (podmanOptionsOfDaemonSet).
	t.deepEqual(podmanOptionsOfDaemonSet({ '/run/twtrace': '/tmp/x' }).filter((o, i, all) => all[i - 1] === '-v'),
		['/sys/fs/cgroup:/sys/fs/cgroup:ro', '/run/netns:/run/netns:ro,rslave', '/tmp/x:/run/twtrace:rw']);
});

test('the systemd unit starts the installed twtrace (npm install -g puts it in /usr/local/bin), not a checkout', (t) => {
	const unit = fs.readFileSync(path.join(deploy, 'systemd/twtrace.service'), 'utf8');
	t.regex(unit, /^ExecStart=\/usr\/local\/bin\/twtrace serve /m);
	const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> };
	t.deepEqual(Object.keys(pkg.bin), ['twtrace'], 'the command the unit runs is the package\'s bin');
	t.notRegex(unit, /dist\/src\/cli\.js|\/opt\/twtrace/);
});
