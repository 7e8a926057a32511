/**
 * `twtrace serve`: the agent (agent/daemon.ts): Prometheus metrics on --listen, the local API on
 * its socket, the flight recorder, for as long as it runs. Options and wiring: SIGTERM or SIGINT stop
 * it cleanly, the port first, then the BPF links.
 */
import { Option, type Command } from 'commander';
import { AgentDaemon, RECORDER_KEEPS, type RecorderKeeps } from '../agent/daemon.js';
import { agentSocketPath } from '../agent/socket.js';
import { AGENT_GROUP, DEFAULT_AGENT_SOCKET } from '../agent/wire.js';
import type { Io } from '../io.js';
import { captureFilters, modelFilters, resolveFilters } from '../source/filters.js';
import { sessionSummaryLine } from '../views/session-text.js';
import { addFilterOptions, DEFAULT_METRICS_PORT, DEFAULT_RING_BYTES, parseCount, parseDuration, parseFileSize, parseInterval, parseListen, verboseLog, type FilterOptions } from './options.js';
import type { ListenAddress } from '../server/http.js';

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
	recorderKeeps: RecorderKeeps;
}

export async function serveCommand(opts: ServeOptions, io: Io): Promise<void> {
	const filters = resolveFilters(opts);
	const socketPath = opts.agentSocket === false ? undefined : agentSocketPath(typeof opts.agentSocket === 'string' ? opts.agentSocket : undefined);
	const daemon = await AgentDaemon.start({
		listen: opts.listen, maxSeries: opts.maxSeries, maxDestinations: opts.maxDestinations, walkIntervalMs: opts.walkInterval, socketPath,
		recorder: opts.recorder === false ? undefined : { maxAgeMs: opts.recorder, maxBytes: opts.recorderSize, keeps: opts.recorderKeeps },
		filters, model: modelFilters(opts, filters), captureFilters: captureFilters(filters, opts), ringBytes: opts.ringSize, log: verboseLog(opts, io),
	}, io);
	try {
		io.stderr.write(`twtrace: serving metrics on ${daemon.metricsServer.url}/metrics (health: /healthz)${daemon.agentServer ? `, the agent API on ${daemon.agentServer.socketPath}` : ''}; SIGTERM or Ctrl-C to stop.\n`);
		const signal = await io.interrupted;
		io.stderr.write(`twtrace: ${signal}: stopping\n`);
	} finally {
		io.stderr.write(sessionSummaryLine(await daemon.stop()) + '\n');
	}
}

const SERVE_HELP = `
The agent: besides /metrics, serve answers twtrace top, doctor, report and record on a Unix socket
(--agent-socket, root:twtrace 0660; members of the twtrace group need no root), and keeps a flight
recorder of the last --recorder (15 min, at most --recorder-size) for report --last and record --last.
The kernel counts connections, TIME_WAIT entries, resets and lifetimes per (process, destination);
serve reads them once a second and at each question, into its metrics, the model top and doctor ask,
and the recorder, which keeps them once a second and the failures one by one (--recorder-keeps
counts): what serve costs follows the busy pairs and the scrapes, not the connection rate. Lifetimes
are then known to within the histogram's buckets (top and report show "≤ 5"), TIME_WAIT held to within
a second or two. --recorder-keeps records keeps every record too (exact replays, at 96 bytes a
transition: 64 MiB hold about 4 minutes at 1,000 connections/s), and its ring is 8 MiB unless
--ring-size says otherwise (2 MiB keeping counts: only task records and failures flow).

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


/**
 * serve's ring carries task records and failures only when its recorder keeps counts (the kernel counts
 * the rest: docs/counting-in-the-kernel.md, step 4): 2 MiB holds 21,000 of them between drains, and its
 * pages, mapped twice, are 12 MiB of RSS fewer than the 8 MiB ring a recorder keeping records takes.
 */
const SERVE_RING_BYTES = 2 * 1024 * 1024;

/** Adds `serve` and its options to the program (program.command() copies output, exit and help settings). */
export function registerServe(program: Command, io: Io): void {
	const serve = program.command('serve')
		.description('Export TIME_WAIT churn and port headroom per process as Prometheus metrics (/metrics, /healthz) until stopped.')
		.addOption(new Option('--listen <host:port>', 'address to serve on; 0.0.0.0:PORT to expose beyond this host')
			.argParser(parseListen).default({ host: '127.0.0.1', port: DEFAULT_METRICS_PORT }, `127.0.0.1:${DEFAULT_METRICS_PORT}`))
		.option('--max-series <n>', 'groups (comm, cgroup) with series of their own; the rest are summed as comm="other"', parseCount, 100)
		.option('--max-destinations <n>', 'destinations exported, the least headroom first', parseCount, 10)
		.addOption(new Option('--walk-interval <time>', 'check each namespace\'s TIME_WAIT count and settings against the kernel\'s this often; walk its socket table (sockets from before start, what no tracepoint shows) when they differ, and every 10 intervals (expiry between walks follows the kernel timers)')
			.argParser(parseInterval).default(60_000, '60s'))
		.option('--agent-socket <path>', `serve the agent API (top, doctor, report and record use it) on this Unix socket, root:${AGENT_GROUP} 0660 (default ${DEFAULT_AGENT_SOCKET}, or $TWTRACE_AGENT_SOCKET)`)
		.option('--no-agent-socket', 'no agent API: metrics only')
		.addOption(new Option('--recorder <time>', 'the flight recorder keeps this much of the past for report --last and record --last (bounded by --recorder-size too)')
			.argParser(parseDuration).default(15 * 60_000, '15m'))
		.option('--no-recorder', 'no flight recorder')
		.option('--recorder-size <bytes>', 'the flight recorder keeps at most this much memory (K, M, G)', parseFileSize, 64 * 1024 * 1024)
		.addOption(new Option('--recorder-keeps <what>', 'counts: the kernel\'s counts once a second and the failures (its size follows the busy process-destination pairs); records: every record (exact lifetimes, the connection rate\'s bytes)')
			.choices(RECORDER_KEEPS).default('counts'));
	addFilterOptions(serve, { kinds: false, ringBytes: SERVE_RING_BYTES })
		.addHelpText('after', SERVE_HELP)
		.action(async (opts: ServeOptions) => serveCommand({
			...opts,
			// Every record flows for a recorder that keeps them: the larger ring, unless one was asked for.
			ringSize: opts.recorderKeeps === 'records' && serve.getOptionValueSource('ringSize') === 'default' ? DEFAULT_RING_BYTES : opts.ringSize,
		}, io));
}
