/**
 * Every query of the Grafana dashboard (deploy/grafana/twtrace-dashboard.json, the file people
 * import), run against Debian's Prometheus scraping `twtrace serve` while a churner in a systemd
 * service's cgroup exhausts its ports towards a server in a namespace pair and some of its connect()
 * calls fail: each query returns series, and each series carries the labels its legend shows.
 * Grafana itself is not packaged here: its template variables are filled in as Grafana would with
 * "All" selected ($instance: this serve, $netns: .*, $__rate_interval: 1m).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { createPair } from '../../testbed/netns.js';
import { bpfTest, root, toolTest, which } from '../helpers/env.js';
import { runClient, startServer } from '../helpers/processes.js';
import { serviceChurner } from '../helpers/service-churner.js';
import { query, startPrometheus } from '../helpers/prometheus.js';
import { startServe, until } from '../helpers/serve.js';

interface Target { refId: string; expr: string; legendFormat: string }
interface PanelJson { type: string; title: string; targets?: Target[] }

const dashTest = (title: string, fn: (t: ExecutionContext) => Promise<void>) =>
	(which('prometheus') ? bpfTest(title, fn) : toolTest(['prometheus'], title, fn, true));

dashTest('dashboard: every panel\'s query returns series with the labels its legend shows, from serve during an exhaustion', async (t) => {
	t.timeout(180_000);
	const dashboard = JSON.parse(fs.readFileSync(path.join(root, 'deploy/grafana/twtrace-dashboard.json'), 'utf8')) as { panels: PanelJson[] };
	const churner = serviceChurner(t, 'twt-dash-churn', 'dash');

	const pair = createPair();
	t.teardown(() => pair.remove());
	pair.sysctl(pair.client, 'net.ipv4.ip_local_port_range', '40000 40099'); // 100 ports
	pair.sysctl(pair.client, 'net.ipv4.tcp_tw_reuse', '0');
	const server = await startServer(pair.server, '0.0.0.0', 7820, 'wait-close', 100);
	const serve = await startServe(['--netns', String(pair.clientInode), '--netns', String(pair.serverInode), '--walk-interval', '1s']);
	t.teardown(() => void (serve.child.exitCode === null && serve.child.kill('SIGKILL')));
	const prom = await startPrometheus(t, serve.url);

	// 100 connections take every port; the 10 after them fail with EADDRNOTAVAIL.
	const churn = await runClient(pair.client, pair.serverAddr, 7820, 'close-first', 110, churner.bin, churner.cgroup);
	t.is(churn.ok, 100);
	t.is(churn.failed, 10);
	await server.done;

	const instance = new URL(serve.url).host;
	const fill = (expr: string) => expr.replaceAll('$instance', instance).replaceAll('$netns', '.*').replaceAll('$__rate_interval', '1m');
	const targets = dashboard.panels.filter((p) => p.type !== 'row').flatMap((p) => (p.targets ?? []).map((q) => ({ panel: p.title, ...q })));
	t.true(targets.length >= 12, `${targets.length} queries`);
	// Rates need two scrapes after the churn: polled until every query answers, then checked one by one.
	const answers = await until('every panel\'s query answered', 60_000, async () => {
		const all = await Promise.all(targets.map(async (q) => ({ q, series: await query(prom, fill(q.expr)) })));
		return all.every((a) => a.series.length > 0) ? all : undefined;
	}).catch(async () => Promise.all(targets.map(async (q) => ({ q, series: await query(prom, fill(q.expr)) }))));
	for (const { q, series } of answers) {
		const where = `${q.panel} ${q.refId}: ${q.expr}`;
		t.true(series.length > 0, `${where} returned no series`);
		const shown = [...q.legendFormat.matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!);
		for (const [labels] of series) for (const l of shown) t.truthy(labels[l], `${where}: a series without ${l} (${JSON.stringify(labels)})`);
	}
	const byPanel = (title: string) => answers.filter((a) => a.q.panel === title).flatMap((a) => a.series);
	// What the panels show is the incident: the churner by name and by workload, its victims' failures, the destination.
	t.true(byPanel('TIME_WAIT held by comm').some(([l, v]) => l['comm'] === 'twt-dash-churn' && v >= 90));
	t.true(byPanel('TIME_WAIT held by workload').some(([l, v]) => l['workload'] === 'twt-dash-churn.service' && v >= 90));
	t.true(byPanel('Holders of each destination\'s ports').some(([l]) => l['comm'] === 'twt-dash-churn' && l['daddr'] === pair.serverAddr && l['dport'] === '7820'));
	t.true(byPanel('Failures for want of a port, by victim and target').some(([l, v]) => l['errno'] === 'EADDRNOTAVAIL' && l['addr'] === pair.serverAddr && v > 0));
	t.true(byPanel('Worst headroom per destination').some(([l, v]) => l['daddr'] === pair.serverAddr && v < 0.1));
	t.is(await serve.stop(), 0, serve.stderr());
});
