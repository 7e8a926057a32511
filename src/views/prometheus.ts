/**
 * MetricsData → the Prometheus exposition (views/exposition.ts). Converts to base units here
 * (µs → seconds, ratios 0..1), as Prometheus naming asks. Every sample comes from the data of the
 * scrape: nothing is counted per event here (the model counts in typed arrays, ChurnMetrics), and
 * nothing is kept between scrapes but the process's start time (and, in exposition.ts, the families' header lines).
 */
import os from 'node:os';
import v8 from 'node:v8';
import { LIFETIME_BOUNDS_US, SLOT, type GroupLabels, type GroupSample, type MetricsData } from '../model/churn-metrics.js';
import type { DestinationRow } from '../model/port-rows.js';
import type { Losses } from '../facts/losses.js';
import { EXPOSITION_CONTENT_TYPE, ExpositionWriter, formatValue } from './exposition.js';

export interface ExporterState {
	/** Losses so far, by cause. */
	drops: Losses;
	/** Namespaces that could not be walked. */
	unwalkedNamespaces: number;
	/** Socket walks so far and the last one's length (LiveFeed.walks); absent: none exported. */
	walks?: { completed: number; lastMs: number | undefined; skipped?: number; openOnly?: number };
	/** How long the previous scrape took inside twtrace, ms; absent: not exported. */
	lastScrapeMs?: number;
	version: string;
}

const LIFETIME_BOUNDS_S = LIFETIME_BOUNDS_US.map((us) => us / 1e6);
const LIFETIME = 'twtrace_connection_lifetime_seconds';
/** The histogram's `le` labels, formatted once: `le="0.001"` … `le="+Inf"`. */
const LIFETIME_LE = [...LIFETIME_BOUNDS_S, Infinity].map((s) => `le="${formatValue(s)}"`);

const groupLabels = (l: GroupLabels) => ({ comm: l.comm, cgroup: l.cgroup, workload: l.workload });
const destLabels = (d: DestinationRow) => ({ netns: d.netns, saddr: d.saddr, daddr: d.daddr, dport: d.dport });

/** A gauge per listed destination. */
const DESTINATION_GAUGES: [name: string, help: string, value: (d: DestinationRow) => number][] = [
	['twtrace_port_headroom_ratio', 'Share of usable ephemeral ports still free towards the destination (0..1), for the worst destinations', (d) => d.headroomRatio],
	['twtrace_seconds_to_exhaustion', 'Seconds until connect() finds no free port at the current connection rate; +Inf when the rate is sustainable',
		(d) => d.secondsToExhaustion ?? Infinity],
	['twtrace_ports_in_use', 'Ephemeral ports held towards the destination: open connections plus TIME_WAIT', (d) => d.portsInUse],
];

export class PrometheusView {
	readonly contentType = EXPOSITION_CONTENT_TYPE;
	readonly #processMetrics: boolean;
	readonly #startTimeSeconds = Math.round(Date.now() / 1000 - process.uptime());

	constructor({ processMetrics = true } = {}) {
		this.#processMetrics = processMetrics;
	}

	/** The exposition of one scrape. */
	render(data: MetricsData, state: ExporterState): string {
		const w = new ExpositionWriter();
		writeGroups(w, data);
		writeDestinations(w, data);
		writeLosses(w, data, state);
		w.family('twtrace_build_info', 'gauge', 'twtrace version, kernel release and hostname (what alerts name the host by), value 1')
			.sample('twtrace_build_info', { version: state.version, kernel: os.release(), host: os.hostname() }, 1);
		if (this.#processMetrics) this.#writeProcess(w);
		return w.text();
	}

	/**
	 * What twtrace itself costs the host, under the standard process_* names (prom-client's default
	 * metrics were never used: several of its nodejs_* gauges end in _total, which promtool rejects).
	 */
	#writeProcess(w: ExpositionWriter): void {
		const { user, system } = process.cpuUsage();
		w.family('process_cpu_seconds_total', 'counter', 'User and system CPU time of twtrace').sample('process_cpu_seconds_total', undefined, (user + system) / 1e6);
		w.family('process_resident_memory_bytes', 'gauge', 'Resident memory of twtrace').sample('process_resident_memory_bytes', undefined, process.memoryUsage.rss());
		w.family('process_start_time_seconds', 'gauge', 'When twtrace started, seconds since the Unix epoch').sample('process_start_time_seconds', undefined, this.#startTimeSeconds);
		// V8's heap (the model's objects; not the typed arrays and buffers, whose allocated sizes count
		// pages never touched and so say little about the resident set), under the names Node's
		// Prometheus clients use: whole, and by space, from one reading (the whole is the spaces' sum).
		// The old space committed well above its use after a major collection is room V8 keeps for
		// garbage that outlived the young generation, not objects twtrace keeps (docs/counting-in-the-kernel.md).
		const spaces = v8.getHeapSpaceStatistics();
		const [total, used] = spaces.reduce(([t, u], sp) => [t + sp.space_size, u + sp.space_used_size], [0, 0]);
		w.family('nodejs_heap_size_total_bytes', 'gauge', 'V8 heap committed by twtrace (all spaces)').sample('nodejs_heap_size_total_bytes', undefined, total);
		w.family('nodejs_heap_size_used_bytes', 'gauge', 'V8 heap in use by twtrace').sample('nodejs_heap_size_used_bytes', undefined, used);
		w.family('nodejs_heap_space_size_total_bytes', 'gauge', 'V8 heap committed by twtrace, by space');
		for (const sp of spaces) w.sample('nodejs_heap_space_size_total_bytes', { space: sp.space_name }, sp.space_size);
		w.family('nodejs_heap_space_size_used_bytes', 'gauge', 'V8 heap in use by twtrace, by space');
		for (const sp of spaces) w.sample('nodejs_heap_space_size_used_bytes', { space: sp.space_name }, sp.space_used_size);
	}
}

/** Per group (comm, cgroup, workload): connections, TIME_WAIT, resets, failures, lifetimes. */
function writeGroups(w: ExpositionWriter, data: MetricsData): void {
	const { groups } = data;
	// Each group's labels, formatted once for its twenty-odd samples.
	const labelled = groups.map((g) => w.labels(groupLabels(g.labels)));
	const perGroup = (name: string, type: 'counter' | 'gauge', help: string, value: (g: GroupSample) => number) => {
		w.family(name, type, help);
		groups.forEach((g, i) => w.sampleLabelled(name, labelled[i]!, value(g)));
	};
	w.family('twtrace_connections_total', 'counter', 'Connections started: side="client" by connect() (a refused one too: see twtrace_connect_failures_total), side="server" accepted (from the SYN on)');
	groups.forEach((g, i) => {
		w.sampleLabelled('twtrace_connections_total', labelled[i]!, g.counts[SLOT.connects]!, 'side="client"');
		w.sampleLabelled('twtrace_connections_total', labelled[i]!, g.counts[SLOT.accepts]!, 'side="server"');
	});
	perGroup('twtrace_timewait_entries_total', 'counter', 'Sockets that entered TIME_WAIT, each holding its port for 60 s (TCP_TIMEWAIT_LEN)', (g) => g.counts[SLOT.timeWaitEntries]!);
	perGroup('twtrace_timewait_sockets', 'gauge', 'TIME_WAIT sockets held now (reconciled with the socket table every walk interval)', (g) => g.timeWait);
	w.family('twtrace_timewait_likely_sockets', 'gauge',
		'TIME_WAIT sockets of unknown process (comm="(before start)" or "(events lost)" in twtrace_timewait_sockets), by the comm of their likely owner: inferred from who connects to the same destination, never exact');
	for (const l of data.likely) w.sample('twtrace_timewait_likely_sockets', { comm: l.comm }, l.timeWait);
	perGroup('twtrace_resets_total', 'counter', 'Connections ended by a reset (RST sent or received)', (g) => g.counts[SLOT.resets]!);
	const failures = (call: 'connect' | 'bind', help: string) => {
		const name = `twtrace_${call}_failures_total`;
		w.family(name, 'counter', help);
		for (const g of groups) {
			for (const [key, n] of g.failures) if (key.startsWith(`${call} `)) w.sample(name, { ...groupLabels(g.labels), errno: key.slice(call.length + 1) }, n);
		}
	};
	failures('connect', 'connect() failures by errno; EADDRNOTAVAIL means no ephemeral port was free');
	failures('bind', 'bind() failures by errno; EADDRINUSE means the address was taken (TIME_WAIT included)');
	w.family('twtrace_port_failures_total', 'counter',
		'Failures for want of a port, by victim and target: call="connect" errno="EADDRNOTAVAIL" towards addr:port (no free ephemeral port), ' +
		'call="bind" errno="EADDRINUSE" on addr:port (taken, TIME_WAIT included); addr="other" past the series bound');
	for (const f of data.portFailures) w.sample('twtrace_port_failures_total', { comm: f.comm, call: f.call, errno: f.errno, netns: f.netns, addr: f.addr, port: f.port }, f.failures);
	// The histogram's buckets come whole from the model's counts (not cumulative there: summed here).
	w.family(LIFETIME, 'histogram', 'Lifetime of connections that closed (active close or reset), from connect() or accept() to the close');
	groups.forEach((g, at) => {
		const labels = labelled[at]!;
		let cumulative = 0;
		for (let i = 0; i < LIFETIME_BOUNDS_S.length; i++) {
			cumulative += g.counts[SLOT.lifetimeBuckets + i]!;
			w.sampleLabelled(`${LIFETIME}_bucket`, labels, cumulative, LIFETIME_LE[i]!);
		}
		w.sampleLabelled(`${LIFETIME}_bucket`, labels, g.counts[SLOT.lifetimeCount]!, LIFETIME_LE[LIFETIME_BOUNDS_S.length]!);
		w.sampleLabelled(`${LIFETIME}_sum`, labels, g.counts[SLOT.lifetimeSumUs]! / 1e6);
		w.sampleLabelled(`${LIFETIME}_count`, labels, g.counts[SLOT.lifetimeCount]!);
	});
}

/** Per listed destination (netns, saddr, daddr, dport): headroom, and who holds its ports. */
function writeDestinations(w: ExpositionWriter, data: MetricsData): void {
	// Each destination's labels, formatted once for its five gauges and its holders.
	const labelled = new Map<DestinationRow, string>();
	const of = (d: DestinationRow) => {
		let l = labelled.get(d);
		if (l === undefined) labelled.set(d, (l = w.labels(destLabels(d))));
		return l;
	};
	for (const [name, help, value] of DESTINATION_GAUGES) {
		w.family(name, 'gauge', help);
		for (const d of data.destinations) w.sampleLabelled(name, of(d), value(d));
	}
	w.family('twtrace_port_holder_timewait_sockets', 'gauge',
		'TIME_WAIT sockets holding ports towards the destination, by holder (its 3 largest groups, labelled as in twtrace_timewait_sockets): who an exhaustion alert names');
	for (const h of data.holders) w.sampleLabelled('twtrace_port_holder_timewait_sockets', of(h.destination), h.timeWait, w.labels(groupLabels(h.labels)));
	w.family('twtrace_ports_usable', 'gauge', 'Ephemeral ports connect() may use towards the destination: ip_local_port_range minus reserved ports');
	for (const d of data.destinations) w.sampleLabelled('twtrace_ports_usable', of(d), d.portsUsable);
	w.family('twtrace_namespace_timewait_sockets', 'gauge', 'TIME_WAIT sockets in the network namespace, all processes (those --comm or --pid let through, when given)');
	for (const n of data.namespaces) w.sample('twtrace_namespace_timewait_sockets', { netns: n.netns }, n.timeWait);
}

/** What twtrace lost, missed or left out, and its socket walks. */
function writeLosses(w: ExpositionWriter, data: MetricsData, state: ExporterState): void {
	const { drops, walks } = state;
	const byReason = (name: string, help: string, counts: Record<string, number>) => {
		w.family(name, 'counter', help);
		for (const reason in counts) w.sample(name, { reason }, counts[reason]!);
	};
	const single = (name: string, type: 'counter' | 'gauge', help: string, value: number) => w.family(name, type, help).sample(name, undefined, value);
	byReason('twtrace_events_dropped_total',
		'Losses: ring_full (ring buffer full), missed_runs (bind() program runs skipped), decode_error, map_full (socket storage or listener map full: the event kept, its owner lost; or the counters in the kernel full: an event not counted in the per-group totals), unwitnessed (closing map full: a missed TIME_WAIT entry of those closes would go unseen)',
		{ ring_full: drops.ringFull, missed_runs: drops.missedRuns, decode_error: drops.decodeErrors, map_full: drops.mapFull, unwitnessed: drops.unwitnessed });
	single('twtrace_timewait_missed_total', 'counter',
		'Sockets that entered TIME_WAIT with no tracepoint call, found later by socket lookups or walks; their time_wait events were delivered late (counted in the per-group totals)', drops.walkMissed);
	single('twtrace_timewait_untracked_total', 'counter', 'TIME_WAIT sockets not tracked because of the memory bound: the TIME_WAIT gauges undercount', data.timeWaitUntracked);
	byReason('twtrace_series_removed_total',
		'Group series removed: reason="idle" (departed), reason="displaced" (a busier group took its place; raise --max-series)', { ...data.seriesRemoved });
	single('twtrace_namespaces_unwalked', 'gauge', 'Network namespaces whose socket table could not be walked (their TIME_WAIT counts only what events showed)', state.unwalkedNamespaces);
	single('twtrace_socket_walks_total', 'counter',
		'Passes of walks of the namespaces\' socket tables completed: at start, then each --walk-interval where a namespace\'s timewait count by the kernel disagrees with the model\'s, or 10 intervals after its last walk',
		walks?.completed ?? 0);
	single('twtrace_socket_walks_skipped_total', 'counter',
		'Due walks of a namespace not read: the kernel\'s own count of its timewait sockets (sockstat tw) agreed with the model\'s', walks?.skipped ?? 0);
	single('twtrace_socket_walks_open_only_total', 'counter',
		'Walks of a namespace that read its open sockets alone (those processes hold, and the closes in flight), its timewait sockets all counted in the kernel', walks?.openOnly ?? 0);
	single('twtrace_socket_walk_duration_seconds', 'gauge', 'Wall time of the last walk of all namespaces (the metrics and the event drain run between its chunks)', (walks?.lastMs ?? 0) / 1000);
	if (state.lastScrapeMs !== undefined) {
		// As node_exporter's node_scrape_collector_duration_seconds: a slow scrape that took little here waited
		// elsewhere (for the CPU, or behind other work of twtrace's event loop), which Prometheus's scrape_duration_seconds includes.
		single('twtrace_scrape_duration_seconds', 'gauge',
			'Time twtrace took to answer the previous /metrics request, from reading the kernel\'s counters to the finished text (Prometheus\'s scrape_duration_seconds adds the network and any wait for the CPU or the event loop)',
			state.lastScrapeMs / 1000);
	}
}
