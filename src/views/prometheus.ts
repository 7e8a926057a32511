/**
 * MetricsData → the Prometheus exposition, through prom-client's registry. Converts to base units
 * here (µs → seconds, ratios 0..1), as Prometheus naming asks. Every metric is filled from the data
 * of the scrape in its collect(): nothing is counted per event in prom-client (at 450k events/s its
 * per-call label hashing would cost more than the whole tracer).
 */
import os from 'node:os';
import { Counter, Gauge, Histogram, Registry, type MetricType } from 'prom-client';
import { LIFETIME_BOUNDS_US, SLOT, type GroupSample, type MetricsData } from '../model/churn-metrics.js';
import type { DestinationRow } from '../model/port-rows.js';
import type { Losses } from '../facts/losses.js';

export interface ExporterState {
	/** Losses so far, by cause. */
	drops: Losses;
	/** Namespaces that could not be walked. */
	unwalkedNamespaces: number;
	/** Socket walks so far and the last one's length (LiveFeed.walks); absent: none exported. */
	walks?: { completed: number; lastMs: number | undefined; skipped?: number };
	version: string;
}

const GROUP = ['comm', 'cgroup', 'workload'] as const;
const DEST = ['netns', 'saddr', 'daddr', 'dport'] as const;
const LIFETIME_BOUNDS_S = LIFETIME_BOUNDS_US.map((us) => us / 1e6);

const groupLabels = (g: GroupSample) => ({ comm: g.labels.comm, cgroup: g.labels.cgroup, workload: g.labels.workload });
const destLabels = (d: DestinationRow) => ({ netns: String(d.netns), saddr: d.saddr, daddr: d.daddr, dport: String(d.dport) });

const LIFETIME = {
	name: 'twtrace_connection_lifetime_seconds',
	help: 'Lifetime of connections that closed (active close or reset), from connect() or accept() to the close',
};

type HistogramData = Awaited<ReturnType<Histogram['get']>>;

/** A histogram whose buckets come whole from the scrape's data (prom-client can only observe one value at a time). */
class LifetimeHistogram extends Histogram<(typeof GROUP)[number]> {
	readonly #data: () => MetricsData;

	constructor(data: () => MetricsData, registry: Registry) {
		super({ ...LIFETIME, labelNames: GROUP, buckets: LIFETIME_BOUNDS_S, registers: [registry] });
		this.#data = data;
	}

	override async get(): Promise<HistogramData> {
		const values: HistogramData['values'] = [];
		const bucket = `${LIFETIME.name}_bucket`;
		for (const g of this.#data().groups) {
			const labels = groupLabels(g);
			let cumulative = 0;
			LIFETIME_BOUNDS_S.forEach((le, i) => {
				cumulative += g.counts[SLOT.lifetimeBuckets + i]!;
				values.push({ labels: { ...labels, le }, value: cumulative, metricName: bucket });
			});
			values.push({ labels: { ...labels, le: '+Inf' }, value: g.counts[SLOT.lifetimeCount]!, metricName: bucket });
			values.push({ labels, value: g.counts[SLOT.lifetimeSumUs]! / 1e6, metricName: `${LIFETIME.name}_sum` });
			values.push({ labels, value: g.counts[SLOT.lifetimeCount]!, metricName: `${LIFETIME.name}_count` });
		}
		// prom-client's typings declare `type` an enum; at run time (and in the exposition) it is the string.
		return { ...LIFETIME, type: 'histogram' as unknown as MetricType, values, aggregator: 'sum', collect: () => undefined };
	}

	/** The registry prefers this to get(); the values above are already flat. */
	async getForPromString(): Promise<HistogramData> {
		return this.get();
	}
}

/**
 * What twtrace itself costs the host, under the standard process_* names. prom-client's default
 * metrics are not used: several of its nodejs_* gauges end in _total, which promtool rejects.
 */
function processMetricsOf(registers: Registry[]): void {
	const startTimeSeconds = Math.round(Date.now() / 1000 - process.uptime());
	new Counter({
		name: 'process_cpu_seconds_total', help: 'User and system CPU time of twtrace', registers,
		collect() {
			const { user, system } = process.cpuUsage();
			this.reset();
			this.inc((user + system) / 1e6);
		},
	});
	new Gauge({ name: 'process_resident_memory_bytes', help: 'Resident memory of twtrace', registers, collect() {
		this.set(process.memoryUsage.rss());
	} });
	new Gauge({ name: 'process_start_time_seconds', help: 'When twtrace started, seconds since the Unix epoch', registers, collect() {
		this.set(startTimeSeconds);
	} });
}

export class PrometheusView {
	readonly registry = new Registry();
	#data: MetricsData | undefined;
	#state: ExporterState | undefined;

	constructor({ processMetrics = true } = {}) {
		const registers = [this.registry];
		const data = () => this.#data!;
		const state = () => this.#state!;
		// Each collect() runs synchronously at the start of registry.metrics(), so one scrape reads one MetricsData.
		const groupCounter = (name: string, help: string, slot: number) => new Counter({
			name, help, labelNames: GROUP, registers,
			collect() {
				this.reset();
				for (const g of data().groups) this.inc(groupLabels(g), g.counts[slot]!);
			},
		});
		new Counter({
			name: 'twtrace_connections_total', help: 'Connections established: side="client" by connect(), side="server" by accept()',
			labelNames: [...GROUP, 'side'], registers,
			collect() {
				this.reset();
				for (const g of data().groups) {
					this.inc({ ...groupLabels(g), side: 'client' }, g.counts[SLOT.connects]!);
					this.inc({ ...groupLabels(g), side: 'server' }, g.counts[SLOT.accepts]!);
				}
			},
		});
		groupCounter('twtrace_timewait_entries_total', 'Sockets that entered TIME_WAIT, each holding its port for 60 s (TCP_TIMEWAIT_LEN)', SLOT.timeWaitEntries);
		new Gauge({
			name: 'twtrace_timewait_sockets', help: 'TIME_WAIT sockets held now (reconciled with the socket table every walk interval)',
			labelNames: GROUP, registers,
			collect() {
				this.reset();
				for (const g of data().groups) this.set(groupLabels(g), g.timeWait);
			},
		});
		new Gauge({
			name: 'twtrace_timewait_likely_sockets',
			help: 'TIME_WAIT sockets of unknown process (comm="(before start)" or "(events lost)" in twtrace_timewait_sockets), by the comm of their likely owner: inferred from who connects to the same destination, never exact',
			labelNames: ['comm'], registers,
			collect() {
				this.reset();
				for (const l of data().likely) this.set({ comm: l.comm }, l.timeWait);
			},
		});
		groupCounter('twtrace_resets_total', 'Connections ended by a reset (RST sent or received)', SLOT.resets);
		const failureCounter = (call: 'connect' | 'bind', help: string) => new Counter({
			name: `twtrace_${call}_failures_total`, help, labelNames: [...GROUP, 'errno'], registers,
			collect() {
				this.reset();
				for (const g of data().groups) {
					for (const [key, n] of g.failures) if (key.startsWith(`${call} `)) this.inc({ ...groupLabels(g), errno: key.slice(call.length + 1) }, n);
				}
			},
		});
		failureCounter('connect', 'connect() failures by errno; EADDRNOTAVAIL means no ephemeral port was free');
		failureCounter('bind', 'bind() failures by errno; EADDRINUSE means the address was taken (TIME_WAIT included)');
		new Counter({
			name: 'twtrace_port_failures_total',
			help: 'Failures for want of a port, by victim and target: call="connect" errno="EADDRNOTAVAIL" towards addr:port (no free ephemeral port), ' +
				'call="bind" errno="EADDRINUSE" on addr:port (taken, TIME_WAIT included); addr="other" past the series bound',
			labelNames: ['comm', 'call', 'errno', 'netns', 'addr', 'port'], registers,
			collect() {
				this.reset();
				for (const f of data().portFailures) this.inc({ comm: f.comm, call: f.call, errno: f.errno, netns: String(f.netns), addr: f.addr, port: f.port }, f.failures);
			},
		});
		new LifetimeHistogram(data, this.registry);

		const destGauge = (name: string, help: string, value: (d: DestinationRow) => number) => new Gauge({
			name, help, labelNames: DEST, registers,
			collect() {
				this.reset();
				for (const d of data().destinations) this.set(destLabels(d), value(d));
			},
		});
		destGauge('twtrace_port_headroom_ratio', 'Share of usable ephemeral ports still free towards the destination (0..1), for the worst destinations',
			(d) => d.headroomRatio);
		destGauge('twtrace_seconds_to_exhaustion', 'Seconds until connect() finds no free port at the current connection rate; +Inf when the rate is sustainable',
			(d) => d.secondsToExhaustion ?? Infinity);
		destGauge('twtrace_ports_in_use', 'Ephemeral ports held towards the destination: open connections plus TIME_WAIT', (d) => d.portsInUse);
		new Gauge({
			name: 'twtrace_port_holder_timewait_sockets',
			help: 'TIME_WAIT sockets holding ports towards the destination, by holder (its 3 largest groups, labelled as in twtrace_timewait_sockets): who an exhaustion alert names',
			labelNames: [...DEST, ...GROUP], registers,
			collect() {
				this.reset();
				for (const h of data().holders) this.set({ ...destLabels(h.destination), comm: h.labels.comm, cgroup: h.labels.cgroup, workload: h.labels.workload }, h.timeWait);
			},
		});
		destGauge('twtrace_ports_usable', 'Ephemeral ports connect() may use towards the destination: ip_local_port_range minus reserved ports', (d) => d.portsUsable);

		new Gauge({
			name: 'twtrace_namespace_timewait_sockets', help: 'TIME_WAIT sockets in the network namespace, all processes (those --comm or --pid let through, when given)',
			labelNames: ['netns'], registers,
			collect() {
				this.reset();
				for (const n of data().namespaces) this.set({ netns: String(n.netns) }, n.timeWait);
			},
		});
		const reasonCounter = (name: string, help: string, byReason: () => Record<string, number>) => new Counter({
			name, help, labelNames: ['reason'], registers,
			collect() {
				this.reset();
				for (const [reason, n] of Object.entries(byReason())) this.inc({ reason }, n);
			},
		});
		reasonCounter('twtrace_events_dropped_total',
			'Losses: ring_full (ring buffer full), missed_runs (bind() program runs skipped), decode_error, map_full (socket storage or listener map full: the event kept, its owner lost), unwitnessed (closing map full: a missed TIME_WAIT entry of those closes would go unseen)', () => {
				const d = state().drops;
				return { ring_full: d.ringFull, missed_runs: d.missedRuns, decode_error: d.decodeErrors, map_full: d.mapFull, unwitnessed: d.unwitnessed };
			});
		new Counter({
			name: 'twtrace_timewait_missed_total',
			help: 'Sockets that entered TIME_WAIT with no tracepoint call, found later by socket lookups or walks; their time_wait events were delivered late (counted in the per-group totals)',
			registers,
			collect() {
				this.reset();
				this.inc(state().drops.walkMissed);
			},
		});
		new Counter({
			name: 'twtrace_timewait_untracked_total', help: 'TIME_WAIT sockets not tracked because of the memory bound: the TIME_WAIT gauges undercount',
			registers,
			collect() {
				this.reset();
				this.inc(data().timeWaitUntracked);
			},
		});
		reasonCounter('twtrace_series_removed_total',
			'Group series removed: reason="idle" (departed), reason="displaced" (a busier group took its place; raise --max-series)', () => ({ ...data().seriesRemoved }));
		new Gauge({
			name: 'twtrace_namespaces_unwalked', help: 'Network namespaces whose socket table could not be walked (their TIME_WAIT counts only what events showed)',
			registers,
			collect() {
				this.set(state().unwalkedNamespaces);
			},
		});
		new Counter({
			name: 'twtrace_socket_walks_total', help: 'Passes of walks of the namespaces\' socket tables completed: at start, then each --walk-interval where a namespace\'s timewait count by the kernel disagrees with the model\'s, or 10 intervals after its last walk',
			registers,
			collect() {
				this.reset();
				this.inc(state().walks?.completed ?? 0);
			},
		});
		new Counter({
			name: 'twtrace_socket_walks_skipped_total', help: 'Due walks of a namespace not read: the kernel\'s own count of its timewait sockets (sockstat tw) agreed with the model\'s',
			registers,
			collect() {
				this.reset();
				this.inc(state().walks?.skipped ?? 0);
			},
		});
		new Gauge({
			name: 'twtrace_socket_walk_duration_seconds', help: 'Wall time of the last walk of all namespaces (the metrics and the event drain run between its chunks)',
			registers,
			collect() {
				this.set((state().walks?.lastMs ?? 0) / 1000);
			},
		});
		new Gauge({
			name: 'twtrace_build_info', help: 'twtrace version, kernel release and hostname (what alerts name the host by), value 1', labelNames: ['version', 'kernel', 'host'], registers,
			collect() {
				this.reset();
				this.set({ version: state().version, kernel: os.release(), host: os.hostname() }, 1);
			},
		});
		if (processMetrics) processMetricsOf(registers);
	}

	get contentType(): string {
		return this.registry.contentType;
	}

	/** The exposition of one scrape. */
	async render(data: MetricsData, state: ExporterState): Promise<string> {
		this.#data = data;
		this.#state = state;
		return this.registry.metrics();
	}
}
