/**
 * The Grafana dashboard for `twtrace serve`, as a typed object: `npm run dashboard`
 * (scripts/gen-dashboard.ts) writes it to twtrace-dashboard.json, the file people import, and
 * test/unit/dashboard.test.ts fails when the two differ. The types are Grafana's own dashboard
 * schema (@grafana/schema): `npm run typecheck` checks the model against it.
 *
 * Read top to bottom as an incident goes: is a destination running out and when (headroom, time to
 * exhaustion, ports in use), who holds the ports (by workload, by comm, per destination), how fast
 * it grows (new TIME_WAIT/s), who already fails (victims by target), and whether twtrace itself
 * can be trusted right now (losses, walks). Templated by instance and by network namespace.
 *
 * Each query's legendFormat names the labels its series carry: test/integration/dashboard.test.ts
 * runs every query against a real Prometheus scraping serve during churn and checks that each
 * returns series with those labels.
 */
import type { Dashboard, DataQuery, FieldConfigSource, Panel, RowPanel, VariableModel } from '@grafana/schema';

const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

/** A Prometheus query: Grafana's DataQuery (refId, datasource) and the Prometheus data source's own fields. */
export type PrometheusQuery = Pick<DataQuery, 'refId'> & {
	datasource: typeof DATASOURCE;
	expr: string;
	legendFormat: string;
	/** A table panel's instant query. */
	instant?: boolean;
	format?: 'time_series' | 'table';
};
/** The label filters every query carries: the templated instance, and the namespace where the metric has one. */
const I = 'instance=~"$instance"';
const IN = `${I}, netns=~"$netns"`;

/**
 * increase() over the interval, counting a series born within it whole: serve exports a victim's
 * failure series at its first failure, so it may start at 40, where increase() sees no rise (as the
 * recording rule twtrace:port_failures:increase5m in deploy/prometheus/twtrace-alerts.yml).
 */
function increaseFromBirth(selector: string): string {
	const born = `(${selector} unless ${selector} offset $__rate_interval)`;
	return `increase(${selector}[$__rate_interval]) unless ${born} or ${born}`;
}

let nextId = 1;
let y = 0;

function fieldConfig(unit: string, extra: Record<string, unknown> = {}): FieldConfigSource {
	return { defaults: { unit, min: 0, ...extra }, overrides: [] };
}

function row(title: string): RowPanel {
	const r: RowPanel = { type: 'row', id: nextId++, title, collapsed: false, panels: [], gridPos: { h: 1, w: 24, x: 0, y } };
	y += 1;
	return r;
}

/** A panel of `w` columns (of 24) at x, on the current line; `newLine` moves down after it. */
function panel(p: { title: string; description: string; type?: string; unit: string; targets: Omit<PrometheusQuery, 'refId' | 'datasource'>[]; x: number; w: number; h?: number; newLine?: boolean; options?: Record<string, unknown>; extra?: Record<string, unknown> }): Panel {
	const h = p.h ?? 8;
	const targets: PrometheusQuery[] = p.targets.map((t, i) => ({ refId: String.fromCharCode(65 + i), datasource: DATASOURCE, ...t }));
	const out: Panel = {
		type: p.type ?? 'timeseries',
		id: nextId++,
		title: p.title,
		description: p.description,
		datasource: DATASOURCE,
		gridPos: { h, w: p.w, x: p.x, y },
		targets,
		fieldConfig: fieldConfig(p.unit, p.extra),
		options: p.options ?? { legend: { displayMode: 'table', placement: 'right', calcs: ['lastNotNull', 'max'] }, tooltip: { mode: 'multi', sort: 'desc' } },
	};
	if (p.newLine !== false) y += h;
	return out;
}

function queryVariable(name: string, label: string, query: string): VariableModel {
	return {
		type: 'query', name, label, datasource: DATASOURCE, query, refresh: 2, multi: true, includeAll: true, allValue: '.*',
		current: { text: 'All', value: '$__all' }, sort: 1,
	};
}

const panels: (Panel | RowPanel)[] = [
	row('Are ports running out?'),
	panel({
		title: 'Worst headroom per destination', x: 0, w: 8, newLine: false, unit: 'percentunit', type: 'timeseries',
		description: 'Share of usable ephemeral ports still free towards each destination (twtrace_port_headroom_ratio): connect() fails with EADDRNOTAVAIL at 0. Alerted under 10 % (TwtracePortHeadroomLow).',
		targets: [{ expr: `bottomk(10, twtrace_port_headroom_ratio{${IN}})`, legendFormat: '{{instance}} {{saddr}} → {{daddr}}:{{dport}}' }],
		extra: { max: 1, thresholds: { mode: 'absolute', steps: [{ color: 'red', value: null }, { color: 'orange', value: 0.1 }, { color: 'green', value: 0.2 }] } },
	}),
	panel({
		title: 'Time to exhaustion', x: 8, w: 8, newLine: false, unit: 's',
		description: 'Seconds until connect() finds no free port towards the destination at its current connection rate (twtrace_seconds_to_exhaustion), capped at 1 h here: a sustainable rate shows as 1 h. Alerted under 5 minutes (TwtracePortExhaustionSoon).',
		targets: [{ expr: `clamp_max(twtrace_seconds_to_exhaustion{${IN}}, 3600)`, legendFormat: '{{instance}} {{saddr}} → {{daddr}}:{{dport}}' }],
	}),
	panel({
		title: 'Ports in use and usable', x: 16, w: 8, unit: 'short',
		description: 'Ephemeral ports held towards each destination (open connections plus TIME_WAIT), beside the ports connect() may use (ip_local_port_range minus reserved ports).',
		targets: [
			{ expr: `twtrace_ports_in_use{${IN}}`, legendFormat: 'in use {{daddr}}:{{dport}} ({{instance}})' },
			{ expr: `twtrace_ports_usable{${IN}}`, legendFormat: 'usable {{daddr}}:{{dport}} ({{instance}})' },
		],
	}),
	row('Who holds them'),
	panel({
		title: 'TIME_WAIT held by workload', x: 0, w: 8, newLine: false, unit: 'short',
		description: 'TIME_WAIT sockets held now by systemd unit, container or pod (twtrace_timewait_sockets, exact at each socket walk and kept by the events in between). Processes in no workload are under "TIME_WAIT held by comm".',
		targets: [{ expr: `sum by (instance, workload) (twtrace_timewait_sockets{${I}, workload!=""})`, legendFormat: '{{workload}} ({{instance}})' }],
	}),
	panel({
		title: 'TIME_WAIT held by comm', x: 8, w: 8, newLine: false, unit: 'short',
		description: 'TIME_WAIT sockets held now by process name. "(before start)": sockets older than the agent, whose owner it never saw; "other": past --max-series.',
		targets: [{ expr: `sum by (instance, comm) (twtrace_timewait_sockets{${I}})`, legendFormat: '{{comm}} ({{instance}})' }],
	}),
	panel({
		title: 'Holders of each destination\'s ports', x: 16, w: 8, type: 'table', unit: 'short',
		description: 'The largest holders of each listed destination\'s ports in TIME_WAIT (twtrace_port_holder_timewait_sockets): the offender the exhaustion alerts name.',
		targets: [{ expr: `sort_desc(twtrace_port_holder_timewait_sockets{${IN}})`, legendFormat: '{{comm}} {{workload}} → {{daddr}}:{{dport}}', instant: true, format: 'table' }],
		options: { showHeader: true, sortBy: [{ displayName: 'Value', desc: true }] },
	}),
	row('How fast it grows'),
	panel({
		title: 'New TIME_WAIT per second, by comm', x: 0, w: 12, newLine: false, unit: 'ops',
		description: 'Sockets entering TIME_WAIT per second (twtrace_timewait_entries_total): each holds its port for 60 s, so one destination sustains usable ports / 60 s of them.',
		targets: [{ expr: `sum by (instance, comm) (rate(twtrace_timewait_entries_total{${I}}[$__rate_interval]))`, legendFormat: '{{comm}} ({{instance}})' }],
	}),
	panel({
		title: 'TIME_WAIT per network namespace', x: 12, w: 12, unit: 'short',
		description: 'Every process\'s TIME_WAIT in the namespace (twtrace_namespace_timewait_sockets): the figure `ss -tan state time-wait | wc -l` gives inside it. Alerted above 30,000 (TwtraceTimeWaitHigh).',
		targets: [{ expr: `twtrace_namespace_timewait_sockets{${IN}}`, legendFormat: 'netns {{netns}} ({{instance}})' }],
	}),
	row('Who fails'),
	panel({
		title: 'Failures for want of a port, by victim and target', x: 0, w: 24, unit: 'short',
		description: 'connect() EADDRNOTAVAIL towards addr:port (no free ephemeral port) and bind() EADDRINUSE on addr:port, per victim (twtrace_port_failures_total), per interval. `twtrace top` links each to the holders of the ports it needed.',
		targets: [{ expr: `sum by (instance, comm, call, errno, addr, port) (${increaseFromBirth(`twtrace_port_failures_total{${IN}}`)})`, legendFormat: '{{comm}}: {{call}} {{addr}}:{{port}} {{errno}} ({{instance}})' }],
		type: 'timeseries', options: { legend: { displayMode: 'table', placement: 'right', calcs: ['sum'] }, tooltip: { mode: 'multi', sort: 'desc' } },
		extra: { custom: { drawStyle: 'bars', fillOpacity: 60 } },
	}),
	row('Can twtrace be trusted right now?'),
	panel({
		title: 'Events lost', x: 0, w: 8, newLine: false, unit: 'short',
		description: 'Losses by reason (twtrace_events_dropped_total): ring_full (raise --ring-size), map_full, missed_runs, decode_error, unwitnessed. While any is above 0 the figures above undercount.',
		targets: [{ expr: `sum by (instance, reason) (increase(twtrace_events_dropped_total{${I}}[$__rate_interval]))`, legendFormat: '{{reason}} ({{instance}})' }],
	}),
	panel({
		title: 'Socket walks', x: 8, w: 8, newLine: false, unit: 'short',
		description: 'Walks of the namespaces\' socket tables read, and due walks skipped because the kernel\'s own count agreed with twtrace\'s (per minute); namespaces that could not be walked.',
		targets: [
			{ expr: `sum by (instance) (increase(twtrace_socket_walks_total{${I}}[$__rate_interval]))`, legendFormat: 'walks read ({{instance}})' },
			{ expr: `sum by (instance) (increase(twtrace_socket_walks_skipped_total{${I}}[$__rate_interval]))`, legendFormat: 'walks skipped ({{instance}})' },
			{ expr: `twtrace_namespaces_unwalked{${I}}`, legendFormat: 'namespaces unwalked ({{instance}})' },
		],
	}),
	panel({
		title: 'Walk duration and TIME_WAIT found late', x: 16, w: 8, unit: 'short',
		description: 'Wall time of the last walk (s); TIME_WAIT entries the kernel never reported, found by lookups or walks (delivered late, counted); entries past the memory bound (untracked: the gauges undercount).',
		targets: [
			{ expr: `twtrace_socket_walk_duration_seconds{${I}}`, legendFormat: 'walk seconds ({{instance}})' },
			{ expr: `increase(twtrace_timewait_missed_total{${I}}[$__rate_interval])`, legendFormat: 'found late ({{instance}})' },
			{ expr: `increase(twtrace_timewait_untracked_total{${I}}[$__rate_interval])`, legendFormat: 'untracked ({{instance}})' },
		],
	}),
];

export const dashboard: Dashboard = {
	uid: 'twtrace',
	title: 'twtrace: TIME_WAIT and ephemeral ports',
	description: 'Who exhausts ephemeral ports, how close each destination is to running out, and who fails because of it: from twtrace serve.',
	tags: ['twtrace', 'tcp', 'time_wait'],
	editable: true,
	graphTooltip: 1,
	schemaVersion: 39,
	version: 1,
	refresh: '30s',
	time: { from: 'now-1h', to: 'now' },
	timezone: 'browser',
	links: [],
	annotations: { list: [] },
	templating: {
		list: [
			{ type: 'datasource', name: 'datasource', label: 'Prometheus', query: 'prometheus' },
			queryVariable('instance', 'Host', 'label_values(twtrace_build_info, instance)'),
			queryVariable('netns', 'Network namespace', 'label_values(twtrace_namespace_timewait_sockets{instance=~"$instance"}, netns)'),
		],
	},
	panels,
};
