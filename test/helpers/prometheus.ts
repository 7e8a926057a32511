/**
 * Debian's Prometheus and Alertmanager as children of a test, on loopback and free ports, with their
 * data in a temporary directory removed at teardown; and Prometheus's HTTP query API.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { track } from '../../testbed/children.js';
import { root } from './env.js';
import { freePort, until } from './serve.js';

/** deploy/'s alert rules, as shipped. */
export const ALERT_RULES = path.join(root, 'deploy/prometheus/twtrace-alerts.yml');

function tempDir(t: ExecutionContext, prefix: string): string {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	return dir;
}

/** Starts `argv`, keeps its stderr for error messages, and stops it (SIGTERM) at teardown. */
function startDaemon(t: ExecutionContext, argv: string[]): { child: ChildProcess; log: () => string } {
	const child = track(spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] }));
	let log = '';
	child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
	t.teardown(async () => {
		if (child.exitCode === null && child.signalCode === null) {
			child.kill('SIGTERM');
			await once(child, 'close');
		}
	});
	return { child, log: () => log };
}

export interface PrometheusOptions {
	/** Rule files (default: deploy/'s alert rules). */
	ruleFiles?: string[];
	/** host:port of an Alertmanager to send alerts to. */
	alertmanager?: string;
}

/** Debian's Prometheus scraping `target` (serve's URL) every second as job "twtrace"; its URL. */
export async function startPrometheus(t: ExecutionContext, target: string, options: PrometheusOptions = {}): Promise<string> {
	const dir = tempDir(t, 'twt-prom-');
	const config = path.join(dir, 'prometheus.yml');
	fs.writeFileSync(config, [
		'global: { scrape_interval: 1s, evaluation_interval: 1s }',
		`rule_files: [${(options.ruleFiles ?? [ALERT_RULES]).map((f) => JSON.stringify(f)).join(', ')}]`,
		...(options.alertmanager ? ['alerting:', '  alertmanagers:', `    - static_configs: [{ targets: [${JSON.stringify(options.alertmanager)}] }]`] : []),
		'scrape_configs:',
		'  - job_name: twtrace',
		`    static_configs: [{ targets: [${JSON.stringify(new URL(target).host)}] }]`,
	].join('\n'));
	const port = await freePort();
	const { log } = startDaemon(t, ['prometheus', `--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
		`--web.listen-address=127.0.0.1:${port}`, '--log.level=warn']);
	const url = `http://127.0.0.1:${port}`;
	await until('Prometheus ready', 30_000, async () => {
		if (log().includes('level=error')) throw new Error(`Prometheus failed: ${log()}`);
		return (await fetch(`${url}/-/ready`)).ok ? true : undefined;
	});
	return url;
}

/**
 * Debian's Alertmanager routing every alert to `webhookUrl` at once (group_wait 1 s), resolved ones
 * too; no cluster. Its host:port, for Prometheus's `alerting:`.
 */
export async function startAlertmanager(t: ExecutionContext, webhookUrl: string): Promise<string> {
	const dir = tempDir(t, 'twt-am-');
	const config = path.join(dir, 'alertmanager.yml');
	fs.writeFileSync(config, [
		'route:',
		'  receiver: test',
		'  group_by: [alertname, host, daddr, dport]',
		'  group_wait: 1s',
		'  group_interval: 1s',
		'  repeat_interval: 1h',
		'receivers:',
		'  - name: test',
		`    webhook_configs: [{ url: ${JSON.stringify(webhookUrl)}, send_resolved: true }]`,
	].join('\n'));
	const port = await freePort();
	const { log } = startDaemon(t, ['prometheus-alertmanager', `--config.file=${config}`, `--storage.path=${path.join(dir, 'data')}`,
		`--web.listen-address=127.0.0.1:${port}`, '--cluster.listen-address=', '--log.level=warn']);
	await until('Alertmanager ready', 30_000, async () => {
		if (log().includes('level=error')) throw new Error(`Alertmanager failed: ${log()}`);
		return (await fetch(`http://127.0.0.1:${port}/-/ready`)).ok ? true : undefined;
	});
	return `127.0.0.1:${port}`;
}

/** An instant query through Prometheus's HTTP API: [labels, value] per series. */
export async function query(prom: string, promql: string): Promise<[Record<string, string>, number][]> {
	const body = await (await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(promql)}`)).json() as {
		status: string; error?: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] };
	};
	if (body.status !== 'success') throw new Error(`${promql}: ${body.error ?? JSON.stringify(body)}`);
	return body.data.result.map((r) => [r.metric, Number(r.value[1])]);
}
