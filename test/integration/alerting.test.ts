/**
 * From the alert to the answer, for real: a churner in a systemd service's cgroup exhausts the ports
 * towards a server in a namespace pair; Debian's Prometheus scrapes `twtrace serve` and evaluates
 * deploy/'s rules; Debian's Alertmanager delivers to a webhook in this test. The notification names
 * the host, the destination and the offender (comm and workload) and carries the runbook and the
 * commands; once the TIME_WAIT sockets expire (60 s), a resolved notification follows.
 *
 * The rules are deploy/prometheus/twtrace-alerts.yml as shipped except their `for:` durations,
 * shortened to 5 s: the test would otherwise wait minutes for what promtool's unit tests
 * (twtrace-alerts.test.yml) already time exactly.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { createPair, settledTimeWait } from '../../testbed/netns.js';
import { bpfTest, toolTest, which } from '../helpers/env.js';
import { runClient, startServer } from '../helpers/processes.js';
import { serviceChurner } from '../helpers/service-churner.js';
import { ALERT_RULES, query, startAlertmanager, startPrometheus } from '../helpers/prometheus.js';
import { startServe, until } from '../helpers/serve.js';

interface Notification {
	status: 'firing' | 'resolved';
	alerts: { status: 'firing' | 'resolved'; labels: Record<string, string>; annotations: Record<string, string> }[];
}

/** An HTTP receiver for Alertmanager's webhook: every notification, in order of arrival. */
async function startWebhook(t: ExecutionContext): Promise<{ url: string; received: Notification[] }> {
	const received: Notification[] = [];
	const server = http.createServer((req, res) => {
		let body = '';
		req.on('data', (d: Buffer) => (body += d.toString()));
		req.on('end', () => {
			try {
				received.push(JSON.parse(body) as Notification);
			} finally {
				res.end();
			}
		});
	});
	server.listen(0, '127.0.0.1');
	await new Promise((resolve) => server.once('listening', resolve));
	t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
	return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received };
}

/** deploy/'s rules with every `for:` at 5 s, in a file of the test's own. */
function rulesWithShortFor(t: ExecutionContext): string {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-rules-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	const file = path.join(dir, 'twtrace-alerts.yml');
	const rules = fs.readFileSync(ALERT_RULES, 'utf8');
	const shortened = rules.replace(/^(\s+for:) \S+$/gm, '$1 5s');
	if (shortened === rules) throw new Error('no `for:` in the rules: the test no longer matches them');
	fs.writeFileSync(file, shortened);
	return file;
}

const tools = ['prometheus', 'prometheus-alertmanager'];
const alertTest = (title: string, fn: (t: ExecutionContext) => Promise<void>) =>
	(tools.every(which) ? bpfTest(title, fn) : toolTest(tools, title, fn, true));

alertTest('alerting: Alertmanager delivers the headroom alert naming host, destination and offender, with the runbook; resolved once TIME_WAIT expires', async (t) => {
	t.timeout(240_000);
	const churner = serviceChurner(t, 'twt-batch-sync', 'alert');

	const pair = createPair();
	t.teardown(() => pair.remove());
	pair.sysctl(pair.client, 'net.ipv4.ip_local_port_range', '40000 40099'); // 100 ports
	pair.sysctl(pair.client, 'net.ipv4.tcp_tw_reuse', '0');
	const server = await startServer(pair.server, '0.0.0.0', 7810, 'wait-close', 95);
	const serve = await startServe(['--netns', String(pair.clientInode), '--netns', String(pair.serverInode), '--walk-interval', '1s']);
	t.teardown(() => void (serve.child.exitCode === null && serve.child.kill('SIGKILL')));
	const webhook = await startWebhook(t);
	const alertmanager = await startAlertmanager(t, webhook.url);
	const prom = await startPrometheus(t, serve.url, { ruleFiles: [rulesWithShortFor(t)], alertmanager });

	// 95 of the 100 ports end in TIME_WAIT: 5 % headroom, under the rule's 10 %.
	await runClient(pair.client, pair.serverAddr, 7810, 'close-first', 95, churner.bin, churner.cgroup);
	await server.done;
	t.true(await settledTimeWait(pair) >= 90);

	const isOurs = (a: Notification['alerts'][number]) => a.labels['alertname'] === 'TwtracePortHeadroomLow' && a.labels['daddr'] === pair.serverAddr && a.labels['dport'] === '7810';
	const firing = await until('a firing TwtracePortHeadroomLow at the webhook', 60_000, async () =>
		webhook.received.flatMap((n) => n.alerts).find((a) => isOurs(a) && a.status === 'firing'));
	t.is(firing.labels['host'], os.hostname(), 'the host by name');
	t.is(firing.labels['netns'], String(pair.clientInode));
	t.is(firing.labels['saddr'], pair.clientAddr);
	t.is(firing.labels['offender'], 'twt-batch-sync', JSON.stringify(firing.labels));
	t.is(firing.labels['offender_workload'], 'twt-batch-sync.service');
	t.is(firing.labels['severity'], 'critical');
	t.regex(firing.annotations['summary']!, new RegExp(`^${os.hostname()}: \\d+% of ephemeral ports free towards ${pair.serverAddr.replace(/\./g, '\\.')}:7810, held mostly by twt-batch-sync \\(twt-batch-sync\\.service\\)$`));
	t.regex(firing.annotations['runbook']!, /docs\/playbook\.md/);
	t.is(firing.annotations['commands'], `on ${os.hostname()}: twtrace doctor, then twtrace report --last 15m`);
	const unnamed = webhook.received.flatMap((n) => n.alerts).filter((a) => isOurs(a) && a.status === 'firing' && !a.labels['offender']);
	t.deepEqual(unnamed, [], 'every firing notification for the destination names its offender');
	// What the alert says agrees with what Prometheus holds from serve.
	const [[, heldByOffender]] = await query(prom, `twtrace_port_holder_timewait_sockets{daddr="${pair.serverAddr}",dport="7810",comm="twt-batch-sync"}`) as [[Record<string, string>, number]];
	t.true(heldByOffender >= 90, `${heldByOffender} held by the offender`);

	// No more churn: the 60 s of TIME_WAIT pass, the headroom comes back, Alertmanager says so.
	const resolved = await until('a resolved TwtracePortHeadroomLow at the webhook', 150_000, async () =>
		webhook.received.flatMap((n) => n.alerts).find((a) => isOurs(a) && a.status === 'resolved'));
	t.is(resolved.labels['offender'], 'twt-batch-sync');
	t.is(await serve.stop(), 0, serve.stderr());
});
