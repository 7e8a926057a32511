/**
 * `twtrace serve`: the live feed `top` runs (events and socket walks), exported as Prometheus
 * metrics on --listen for as long as it runs. Wiring only: feed → model and metrics, a one-second
 * tick, and on each scrape a MetricsData rendered by the Prometheus view. SIGTERM or SIGINT stop
 * it cleanly: the port is closed first, then the BPF links.
 */
import { Option, type Command } from 'commander';
import { addFilterOptions, captureFilters, DEFAULT_METRICS_PORT, DEFAULT_RING_BYTES, modelFilters, parseCount, parseDuration, parseFileSize, parseInterval, parseListen, verboseLog, type FilterOptions } from './options.js';
import { AGENT_GROUP, DEFAULT_AGENT_SOCKET } from '../agent/wire.js';
import { COMMAND_KINDS } from '../event/kinds.js';
import { AgentServer } from '../agent/server.js';
import { agentSocketPath, prepareSocketPath } from '../agent/socket.js';
import { API_VERSION, type AgentInfo } from '../agent/wire.js';
import { ChurnMetrics } from '../model/churn-metrics.js';
import { MAX_WALKED_NAMESPACES, monotonicUs } from '../pipeline/live.js';
import { LivePipeline } from '../pipeline/pipeline.js';
import { defaultObjectPath, holdersObjectPath, packageVersion, preflight } from '../tracer/preflight.js';
import { MetricsServer, type ListenAddress } from '../server/http.js';
import os from 'node:os';
import { eventsLost } from '../model/losses.js';
import { PrometheusView } from '../views/prometheus.js';
import { resolveFilters, summaryLine, type Io } from './trace.js';

export interface ServeOptions extends FilterOptions {
	listen: ListenAddress;
	maxSeries: number;
	maxDestinations: number;
	walkInterval: number;
	/** The agent API's socket; false: no agent API (--no-agent-socket). */
	agentSocket: string | boolean;
	/** The flight recorder keeps this long (ms); false: none (--no-recorder). */
	recorder: number | false;
	recorderSize: number;
}

/** A group with no events and no TIME_WAIT held for this long loses its series: the process is gone. */
export const SERIES_IDLE_US = 5 * 60 * 1_000_000;
/** Rates for time-to-exhaustion are over this window (the model keeps 16 s). */
const RATE_WINDOW_US = 10 * 1_000_000;
const TICK_MS = 1000;
/** Losses are logged at most this often (the counters are exported all the time). */
const DROP_LOG_MS = 60_000;

export async function serveCommand(opts: ServeOptions, io: Io): Promise<void> {
	const filters = resolveFilters({ ...opts, kind: [...COMMAND_KINDS.serve] });
	const objectPath = defaultObjectPath();
	preflight('serve', objectPath);
	const socketPath = opts.agentSocket === false ? undefined : agentSocketPath(typeof opts.agentSocket === 'string' ? opts.agentSocket : undefined);
	// Before loading anything: a second agent is refused while the first keeps running.
	if (socketPath) await prepareSocketPath(socketPath);

	let pipeline: LivePipeline | undefined;
	const metrics = new ChurnMetrics({
		maxSeries: opts.maxSeries,
		idleUs: SERIES_IDLE_US,
		// Resolved when a group gets its series (after the pipeline exists); the pipeline rescans soon
		// after a miss (cgroupRescanMs below): a new container's cgroup.
		cgroupLabel: (id) => (id === 0 ? '(unknown)' : pipeline?.cgroups.lookup(id) ?? `id:${id}`),
		comm: opts.comm,
		maxFailureSeries: opts.maxSeries,
	});
	const view = new PrometheusView();
	const version = packageVersion();
	let stopping = false;
	let server: MetricsServer | undefined;
	let agent: AgentServer | undefined;
	let timer: NodeJS.Timeout | undefined;
	try {
		const log = verboseLog(opts, io);
		const p = (pipeline = new LivePipeline({
			objectPath, holdersObjectPath: holdersObjectPath(objectPath), filters, ringBytes: opts.ringSize, log, walkIntervalMs: opts.walkInterval, perEvent: true, cgroupRescanMs: 250,
			model: { ...modelFilters(opts, filters), closesFromTimeWait: true },
			...(opts.recorder !== false && socketPath ? {
				recorder: {
					maxAgeMs: opts.recorder, maxBytes: opts.recorderSize, filters: captureFilters(filters, opts),
					describe: () => `flight recorder of the twtrace agent (pid ${process.pid}) on ${os.hostname()}`,
				},
			} : {}),
		}, () => ({ onEach: (e, blamed) => metrics.observeOne(e, blamed) })));
		const live = p.feed;
		const model = p.model;
		const info = (): AgentInfo => ({
			api: API_VERSION, version, pid: process.pid,
			startedAt: new Date(p.startedAtMs).toISOString(),
			uptimeSeconds: (Date.now() - p.startedAtMs) / 1000,
			filters: { netns: filters.netns, comm: opts.comm ?? null, pid: opts.pid ?? null, port: opts.port ?? null, family: opts.family ?? null },
			recorder: recorderInfo(p),
		});
		// Listening after BPF is attached, so the listener's owner is captured like any other
		// (else twtrace's own scrapes would count as accepted by "(before start)").
		server = await MetricsServer.listen(opts.listen, {
			metrics: async () => {
				const nowUs = monotonicUs();
				live.drainNow();
				model.tick(nowUs);
				const data = metrics.collect(model, { nowUs, rateWindowUs: RATE_WINDOW_US, maxDestinations: opts.maxDestinations, maxNamespaces: MAX_WALKED_NAMESPACES });
				const body = await view.render(data, { drops: live.drops, unwalkedNamespaces: live.unwalked.size, walks: live.walks, version });
				return { body, contentType: view.contentType };
			},
			health: () => (stopping ? { ok: false, body: 'stopping\n' } : { ok: true, body: 'ok\n' }),
		});
		if (socketPath) {
			agent = await AgentServer.listen(socketPath, {
				info,
				snapshot: (q) => p.snapshotReply(q, info()),
				capture: (lastMs) => {
					if (!p.recorder) throw new Error('the flight recorder is off (serve --no-recorder)');
					live.drainNow();
					return p.recorder.capture(lastMs, monotonicUs());
				},
			});
		}
		let loggedLosses = 0;
		let loggedAtMs = 0;
		timer = setInterval(() => {
			live.maybeWalk();
			const nowUs = monotonicUs();
			model.tick(nowUs);
			metrics.tick(model, nowUs);
			p.recorder?.tick(nowUs);
			const d = live.drops;
			const losses = eventsLost(d) + d.mapFull;
			if (losses > loggedLosses && Date.now() - loggedAtMs >= DROP_LOG_MS) {
				io.stderr.write(`twtrace: so far ${eventsLost(d)} events lost (ring full ${d.ringFull}, skipped runs ${d.missedRuns}), ${d.mapFull} unattributed (map full); ` +
					'see twtrace_events_dropped_total. Raise --ring-size or narrow with --netns/--port.\n');
				[loggedLosses, loggedAtMs] = [losses, Date.now()];
			}
		}, TICK_MS);
		io.stderr.write(`twtrace: serving metrics on ${server.url}/metrics (health: /healthz)${agent ? `, the agent API on ${agent.socketPath}` : ''}; SIGTERM or Ctrl-C to stop.\n`);
		const signal = await io.interrupted;
		stopping = true;
		io.stderr.write(`twtrace: ${signal}: stopping\n`);
	} finally {
		clearInterval(timer);
		stopping = true;
		await agent?.close();
		await server?.close();
		const summary = await pipeline?.stop();
		if (summary && server) io.stderr.write(summaryLine(summary) + '\n');
	}
}

function recorderInfo(p: LivePipeline): AgentInfo['recorder'] {
	if (!p.recorder) return { frames: 0, bytes: 0, maxBytes: 0, spanSeconds: 0, maxSeconds: 0, firstAt: null };
	const nowUs = monotonicUs();
	const { firstUs, ...s } = p.recorder.stats(nowUs);
	return { ...s, firstAt: new Date(Date.now() - (nowUs - firstUs) / 1000).toISOString() };
}

const SERVE_HELP = `
The agent: besides /metrics, serve answers twtrace top, doctor, report and record on a Unix socket
(--agent-socket, root:twtrace 0660; members of the twtrace group need no root), and keeps a flight
recorder of the last --recorder (15 min, at most --recorder-size) for report --last and record --last.

Metrics (base units, twtrace_ prefix), per (comm, cgroup) group: connections_total{side},
timewait_entries_total, timewait_sockets (held now), resets_total, connect_failures_total{errno},
bind_failures_total{errno}, connection_lifetime_seconds; per victim and target: port_failures_total{comm,call,errno,netns,addr,port}; per worst destination {netns,saddr,daddr,dport}:
port_headroom_ratio, seconds_to_exhaustion (+Inf while sustainable), ports_in_use, ports_usable; per
namespace: namespace_timewait_sockets; timewait_likely_sockets{comm} (inferred owners of older sockets);
and events_dropped_total{reason}. See README "twtrace serve".

Cardinality: at most --max-series groups have series of their own; the rest are summed into
comm="other". A group idle for 5 minutes (its processes gone, no TIME_WAIT held) loses its series, and
a group in "other" twice as busy as the quietest series takes its place. Each group has 20 series, plus one per errno seen.

Listening beyond this host is a choice you write out: --listen 0.0.0.0:${DEFAULT_METRICS_PORT}. Behind it,
firewall the port or put a TLS-terminating proxy in front: the metrics name processes and peers.

Deployment: deploy/systemd/twtrace.service, deploy/kubernetes/daemonset.yaml, and alert rules in
deploy/prometheus/twtrace-alerts.yml (TIME_WAIT above 30000, headroom under 10 %, exhaustion within 5 min,
connect()/bind() failing for want of a port).

Examples:
  sudo twtrace serve
  sudo twtrace serve --listen 0.0.0.0:${DEFAULT_METRICS_PORT} --max-series 200
  sudo twtrace serve --netns /run/netns/app --listen 127.0.0.1:0     (port 0: any free one, printed at start)
  curl -s 127.0.0.1:${DEFAULT_METRICS_PORT}/metrics | grep twtrace_timewait_sockets`;


/** Adds `serve` and its options to the program (program.command() copies output, exit and help settings). */
export function registerServe(program: Command, io: Io): void {
	const serve = program.command('serve')
		.description('Export TIME_WAIT churn and port headroom per process as Prometheus metrics (/metrics, /healthz) until stopped.')
		.addOption(new Option('--listen <host:port>', 'address to serve on; 0.0.0.0:PORT to expose beyond this host')
			.argParser(parseListen).default({ host: '127.0.0.1', port: DEFAULT_METRICS_PORT }, `127.0.0.1:${DEFAULT_METRICS_PORT}`))
		.option('--max-series <n>', 'groups (comm, cgroup) with series of their own; the rest are summed as comm="other"', parseCount, 100)
		.option('--max-destinations <n>', 'destinations exported, the least headroom first', parseCount, 10)
		.addOption(new Option('--walk-interval <time>', 'walk the socket tables this often: sockets from before start, settings, and what no tracepoint shows (expiry between walks follows the kernel timers)')
			.argParser(parseInterval).default(60_000, '60s'))
		.option('--agent-socket <path>', `serve the agent API (top, doctor, report and record use it) on this Unix socket, root:${AGENT_GROUP} 0660 (default ${DEFAULT_AGENT_SOCKET}, or $TWTRACE_AGENT_SOCKET)`)
		.option('--no-agent-socket', 'no agent API: metrics only')
		.addOption(new Option('--recorder <time>', 'the flight recorder keeps this much of the past for report --last and record --last (bounded by --recorder-size too)')
			.argParser(parseDuration).default(15 * 60_000, '15m'))
		.option('--no-recorder', 'no flight recorder')
		.option('--recorder-size <bytes>', 'the flight recorder keeps at most this much memory (K, M, G)', parseFileSize, 64 * 1024 * 1024);
	addFilterOptions(serve, { kinds: false, ringBytes: DEFAULT_RING_BYTES })
		.addHelpText('after', SERVE_HELP)
		.action(async (opts: ServeOptions) => serveCommand(opts, io));
}
