/**
 * What `serve` exports, from synthetic events with an explicit clock: each metric's value against
 * the events that made it, base units, +Inf while a destination is sustainable, the series bound,
 * and the exposition accepted by `promtool check metrics` (Debian's prometheus package).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import type { TwtEvent } from '../../src/event/decode.js';
import { ChurnModel } from '../../src/model/churn-model.js';
import { ChurnMetrics } from '../../src/model/churn-metrics.js';
import { PrometheusView, type ExporterState } from '../../src/views/prometheus.js';
import { base } from '../helpers/events.js';
import { toolTest } from '../helpers/env.js';
import { parseExposition, valueOf } from '../helpers/exposition.js';

const S = 1_000_000;
const T0 = 1000 * S;
const STATE: ExporterState = { drops: { ringFull: 3, mapFull: 0, missedRuns: 0, nestedRecovered: 0, walkMissed: 0, unwitnessed: 0, ownerMissing: 0, decodeErrors: 1 }, unwalkedNamespaces: 0, version: '9.9.9' };

let cookie = 1;
function ev(atS: number, over: Partial<TwtEvent>): TwtEvent {
	return { ...base, cookie: cookie++, tsUs: T0 + atS * S, ...over };
}

function setup(maxSeries = 100) {
	const model = new ChurnModel(T0);
	// A 100-port range in namespace 1: one destination sustains 100 / 60 s ≈ 1.7 connections/s.
	model.reconcile({ netns: 1, takenAtUs: T0, sockets: [], settings: { portRange: { low: 40000, high: 40099 }, reservedPorts: new Set(), finTimeoutSec: 60 } });
	const metrics = new ChurnMetrics({ maxSeries, idleUs: 300 * S, cgroupLabel: (id) => `/app${id}.slice` });
	const feed = (events: TwtEvent[]) => {
		model.ingest(events);
		metrics.observe(events);
	};
	const scrape = async (atS: number, view = new PrometheusView({ processMetrics: false })) => {
		const nowUs = T0 + atS * S;
		model.tick(nowUs);
		const data = metrics.collect(model, { nowUs, rateWindowUs: 10 * S, maxDestinations: 10, maxNamespaces: 16 });
		const text = view.render(data, STATE);
		return { text, samples: parseExposition(text) };
	};
	return { model, metrics, feed, scrape };
}

const OWNER = { comm: 'owner', cgroup: '/app9.slice' };

test('counters, the TIME_WAIT gauge and the lifetime histogram follow the events, in base units', async (t) => {
	const { feed, scrape } = setup();
	feed([
		ev(1, { kind: 'connect', sport: 40001 }), ev(1, { kind: 'connect', sport: 40002 }), ev(1, { kind: 'connect', sport: 40003 }),
		ev(2, { kind: 'active_close', lifetimeUs: 40_000, sport: 40001 }), // serve does not ask for it: no effect
		// Lifetimes from the ends: 40 ms, and one whose start was not seen (0: not observed).
		ev(2, { kind: 'time_wait', sport: 40001, lifetimeUs: 40_000 }), ev(2, { kind: 'time_wait', sport: 40002, lifetimeUs: 0 }),
		ev(3, { kind: 'reset', lifetimeUs: 2_500, sport: 40003 }),
		ev(3, { kind: 'connect_fail', err: 99, sport: 0 }), ev(3, { kind: 'connect_fail', err: 99, sport: 0 }),
		ev(3, { kind: 'bind_fail', err: 98, sport: 8080 }),
		ev(4, { kind: 'accept', side: 'server', ownerSource: 'listen', comm: 'srv', closerPid: 0, pid: 300 }),
	]);
	const { samples } = await scrape(5);
	t.is(valueOf(samples, 'twtrace_connections_total', { ...OWNER, side: 'client' }), 3);
	t.is(valueOf(samples, 'twtrace_connections_total', { ...OWNER, side: 'server' }), 0);
	t.is(valueOf(samples, 'twtrace_connections_total', { comm: 'srv', side: 'server' }), 1);
	t.is(valueOf(samples, 'twtrace_timewait_entries_total', OWNER), 2);
	t.is(valueOf(samples, 'twtrace_timewait_sockets', OWNER), 2);
	t.is(valueOf(samples, 'twtrace_resets_total', OWNER), 1);
	t.is(valueOf(samples, 'twtrace_connect_failures_total', { ...OWNER, errno: 'EADDRNOTAVAIL' }), 2);
	t.is(valueOf(samples, 'twtrace_bind_failures_total', { ...OWNER, errno: 'EADDRINUSE' }), 1);
	// 2.5 ms and 40 ms: cumulative buckets, seconds.
	const bucket = (le: string) => valueOf(samples, 'twtrace_connection_lifetime_seconds_bucket', { ...OWNER, le });
	t.deepEqual(['0.001', '0.005', '0.01', '0.05', '+Inf'].map(bucket), [0, 1, 1, 2, 2]);
	t.is(valueOf(samples, 'twtrace_connection_lifetime_seconds_count', OWNER), 2);
	t.is(valueOf(samples, 'twtrace_connection_lifetime_seconds_sum', OWNER), 0.0425);
	t.is(valueOf(samples, 'twtrace_events_dropped_total', { reason: 'ring_full' }), 3);
	t.is(valueOf(samples, 'twtrace_events_dropped_total', { reason: 'decode_error' }), 1);
	t.is(valueOf(samples, 'twtrace_namespace_timewait_sockets', { netns: '1' }), 2);
	t.is(valueOf(samples, 'twtrace_build_info', { version: '9.9.9' }), 1);

	// TIME_WAIT lasts 60 s: the gauge falls back, the counters do not.
	const later = (await scrape(62.5)).samples;
	t.is(valueOf(later, 'twtrace_timewait_sockets', OWNER), 0);
	t.is(valueOf(later, 'twtrace_timewait_entries_total', OWNER), 2);
});

test('headroom and time to exhaustion of a destination; +Inf while its rate is sustainable', async (t) => {
	const { feed, scrape } = setup();
	const dest = { netns: '1', saddr: '10.200.0.1', daddr: '10.200.0.2', dport: '7101' };
	// 1 connection a second, below the sustainable 1.7/s: never exhausted.
	for (let s = 0; s < 10; s++) feed([ev(s, { kind: 'connect', sport: 40000 + s }), ev(s + 0.5, { kind: 'time_wait', sport: 40000 + s })]);
	let { samples } = await scrape(10);
	t.is(valueOf(samples, 'twtrace_ports_in_use', dest), 10);
	t.is(valueOf(samples, 'twtrace_ports_usable', dest), 100);
	t.is(valueOf(samples, 'twtrace_port_headroom_ratio', dest), 0.9);
	t.is(valueOf(samples, 'twtrace_seconds_to_exhaustion', dest), Infinity);
	// 6 connections a second for 10 s more: 70 held, the remaining 30 last about 5 s.
	for (let s = 10; s < 20; s++) {
		const events: TwtEvent[] = [];
		for (let i = 0; i < 6; i++) events.push(ev(s + i / 6, { kind: 'connect', sport: 40010 + (s - 10) * 6 + i }), ev(s + i / 6, { kind: 'time_wait', sport: 40010 + (s - 10) * 6 + i }));
		feed(events);
	}
	const at20 = await scrape(20);
	samples = at20.samples;
	t.is(valueOf(samples, 'twtrace_ports_in_use', dest), 70);
	// As written: 30 of 100 free is 0.3, not 1 - 0.7 = 0.30000000000000004.
	t.regex(at20.text, /^twtrace_port_headroom_ratio\{[^}]*dport="7101"\} 0\.3$/m);
	const seconds = valueOf(samples, 'twtrace_seconds_to_exhaustion', dest)!;
	t.true(seconds > 4 && seconds < 6, String(seconds));
});

test('thousands of distinct comms stay within --max-series: each metric has at most max + 1 groups', async (t) => {
	const { feed, scrape, metrics } = setup(10);
	for (let i = 0; i < 3000; i++) feed([ev(i / 1000, { kind: 'connect', comm: `job${i}`, sport: 0 }), ev(i / 1000, { kind: 'time_wait', comm: `job${i}`, sport: 0 })]);
	const { samples } = await scrape(4);
	t.is(metrics.groups, 10);
	for (const name of ['twtrace_connections_total', 'twtrace_timewait_sockets', 'twtrace_timewait_entries_total', 'twtrace_connection_lifetime_seconds_count']) {
		const groups = new Set(samples.filter((s) => s.name === name).map((s) => `${s.labels['comm']}\0${s.labels['cgroup']}`));
		t.is(groups.size, 11, name);
	}
	// Nothing is lost to the bound: "other" holds the rest.
	const sum = (name: string) => samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
	t.is(sum('twtrace_timewait_entries_total'), 3000);
	t.is(valueOf(samples, 'twtrace_timewait_sockets', { comm: 'other' }), 2990);
});

test('a process named "other" does not merge with the other bucket; label values are escaped', async (t) => {
	const { feed, scrape } = setup(5);
	feed([ev(1, { kind: 'connect', comm: 'other' }), ev(1, { kind: 'connect', comm: 'we"ird\\name' })]);
	const { samples } = await scrape(2);
	t.is(valueOf(samples, 'twtrace_connections_total', { comm: 'other_', side: 'client' }), 1);
	t.is(valueOf(samples, 'twtrace_connections_total', { comm: 'other', side: 'client' }), 0);
	t.is(valueOf(samples, 'twtrace_connections_total', { comm: 'we"ird\\name', side: 'client' }), 1);
});

toolTest(['promtool'], 'promtool check metrics accepts the exposition, every metric family present', async (t) => {
	const { feed, scrape } = setup(3);
	feed([
		ev(1, { kind: 'connect', sport: 40001 }), ev(1, { kind: 'time_wait', sport: 40001 }), ev(1, { kind: 'active_close', lifetimeUs: 900 }),
		ev(1, { kind: 'reset', lifetimeUs: 5e9 }), ev(1, { kind: 'connect_fail', err: 99 }), ev(1, { kind: 'bind_fail', err: 98 }),
		ev(1, { kind: 'connect', comm: 'q"uote\\' }), ...['a', 'b', 'c', 'd'].map((c) => ev(1, { kind: 'accept', comm: c, side: 'server', ownerSource: 'listen', closerPid: 0 })),
	]);
	const { text } = await scrape(2, new PrometheusView()); // with the process_* metrics, as served
	// promtool exits non-zero on a parse error or a lint problem, and names it on stdout.
	t.notThrows(() => execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' }));
	t.regex(text, /^process_cpu_seconds_total \d/m);
	// V8's heap, a part of the resident memory: in use at most what is committed.
	const { samples } = await scrape(2, new PrometheusView());
	const rss = valueOf(samples, 'process_resident_memory_bytes') ?? 0;
	const [used, total] = [valueOf(samples, 'nodejs_heap_size_used_bytes') ?? 0, valueOf(samples, 'nodejs_heap_size_total_bytes') ?? 0];
	t.true(used > 0 && used <= total && total < rss, `heap ${used} used of ${total}, RSS ${rss}`);
	// By space, the same heap: the old space's in use at most its committed, and the spaces add up to the whole.
	const space = (name: string, which: 'total' | 'used') => samples.find((x) => x.name === `nodejs_heap_space_size_${which}_bytes` && x.labels.space === name)?.value ?? NaN;
	t.true(space('old_space', 'used') > 0 && space('old_space', 'used') <= space('old_space', 'total'));
	const sum = (which: 'total' | 'used') => samples.filter((x) => x.name === `nodejs_heap_space_size_${which}_bytes`).reduce((a, x) => a + x.value, 0);
	t.true(Math.abs(sum('total') - total) <= 0.05 * total, `spaces ${sum('total')} committed, heap ${total}`);
	for (const family of ['connections_total', 'timewait_entries_total', 'timewait_sockets', 'resets_total', 'connect_failures_total', 'bind_failures_total',
		'connection_lifetime_seconds', 'port_headroom_ratio', 'seconds_to_exhaustion', 'events_dropped_total']) {
		t.regex(text, new RegExp(`^# TYPE twtrace_${family} `, 'm'));
	}
});

test('port failures are counted by victim and target, bounded: past the bound new pairs sum into addr="other"', async (t) => {
	const model = new ChurnModel(T0);
	const metrics = new ChurnMetrics({ maxSeries: 100, idleUs: 300 * S, cgroupLabel: () => '/', maxFailureSeries: 2 });
	const events = [
		ev(1, { kind: 'connect_fail', err: 99, sport: 0, comm: 'victim', closerPid: 0, ownerSource: 'syscall' }),
		ev(1, { kind: 'connect_fail', err: 99, sport: 0, comm: 'victim', closerPid: 0, ownerSource: 'syscall' }),
		ev(1, { kind: 'connect_fail', err: 111, sport: 0, comm: 'victim', closerPid: 0, ownerSource: 'syscall' }), // ECONNREFUSED: not for want of a port
		ev(1, { kind: 'bind_fail', err: 98, sport: 8080, comm: 'nginx', closerPid: 0, ownerSource: 'syscall' }),
		ev(1, { kind: 'connect_fail', err: 99, sport: 0, daddr: '10.200.9.9', comm: 'victim', closerPid: 0, ownerSource: 'syscall' }),
	];
	model.ingest(events);
	metrics.observe(events);
	const data = metrics.collect(model, { nowUs: T0 + 2 * S, rateWindowUs: 10 * S, maxDestinations: 10, maxNamespaces: 16 });
	const samples = parseExposition(await new PrometheusView({ processMetrics: false }).render(data, STATE));
	t.is(valueOf(samples, 'twtrace_port_failures_total', { comm: 'victim', call: 'connect', errno: 'EADDRNOTAVAIL', netns: '1', addr: '10.200.0.2', port: '7101' }), 2);
	t.is(valueOf(samples, 'twtrace_port_failures_total', { comm: 'nginx', call: 'bind', errno: 'EADDRINUSE', addr: '10.200.0.1', port: '8080' }), 1);
	t.is(valueOf(samples, 'twtrace_port_failures_total', { comm: 'other', call: 'connect', addr: 'other' }), 1);
	t.is(samples.filter((s) => s.name === 'twtrace_port_failures_total').length, 3);
});

test('"(before start)" has one series, whatever the sockets\' cgroups, beside the --max-series of real groups', async (t) => {
	const { model, feed, scrape } = setup(2);
	model.reconcile({
		netns: 1, takenAtUs: T0, settings: { portRange: { low: 40000, high: 40099 }, reservedPorts: new Set(), finTimeoutSec: 60 },
		sockets: [{ cookie: 999, netns: 1, family: 4, saddr: '10.200.0.1', daddr: '10.200.0.2', sport: 40090, dport: 7101, state: 6, substate: 6, expiresUs: 0, addressKey: () => 0 }],
	});
	const unknown = { ownerSource: 'none' as const, closerPid: 0, pid: 0, comm: '' };
	feed([
		ev(1, { kind: 'time_wait', sport: 40001, cgroupId: 5, ...unknown }), ev(1, { kind: 'time_wait', sport: 40002, cgroupId: 6, ...unknown }),
		ev(1, { kind: 'connect', sport: 40003, comm: 'a', pid: 301 }), ev(1, { kind: 'connect', sport: 40004, comm: 'b', pid: 302 }),
	]);
	const { samples } = await scrape(2);
	const before = samples.filter((s) => s.name === 'twtrace_timewait_sockets' && s.labels.comm === '(before start)');
	t.is(before.length, 1, JSON.stringify(before));
	t.is(before[0]!.value, 3);
	t.is(valueOf(samples, 'twtrace_connections_total', { comm: 'a', side: 'client' }), 1);
	t.is(valueOf(samples, 'twtrace_connections_total', { comm: 'b', side: 'client' }), 1, 'both real groups have their series: (before start) took no slot');
	t.is(valueOf(samples, 'twtrace_connections_total', { comm: 'other', side: 'client' }), 0);
});

test('group series carry the workload of their cgroup: a container by its runtime and short id', async (t) => {
	const id = '479e1c2a9b3f0d8e7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d';
	const model = new ChurnModel(T0);
	const metrics = new ChurnMetrics({ maxSeries: 10, idleUs: 300 * S, cgroupLabel: (cg) => (cg === 9 ? `/system.slice/docker-${id}.scope` : '/app.slice') });
	const events = [ev(1, { kind: 'connect' }), ev(1, { kind: 'connect', cgroupId: 10, comm: 'b' })];
	model.ingest(events);
	metrics.observe(events);
	const data = metrics.collect(model, { nowUs: T0 + 2 * S, rateWindowUs: 10 * S, maxDestinations: 10, maxNamespaces: 16 });
	const samples = parseExposition(await new PrometheusView({ processMetrics: false }).render(data, STATE));
	t.is(valueOf(samples, 'twtrace_connections_total', { comm: 'owner', side: 'client', workload: 'docker 479e1c2a9b3f' }), 1);
	t.is(valueOf(samples, 'twtrace_connections_total', { comm: 'b', side: 'client', workload: '' }), 1);
});
