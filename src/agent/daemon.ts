/**
 * The agent (`twtrace serve`): the live pipeline with the full model from its start, exported as
 * Prometheus metrics on an HTTP port, answered on its local API socket (top, doctor, report and
 * record use it), and kept in a flight recorder of the last minutes. start() brings it all up in
 * order (the socket is claimed before anything is loaded; the port is opened after BPF is
 * attached, so twtrace's own scrapes have an owner); stop() takes it down in reverse.
 */
import os from 'node:os';
import { COMMAND_KINDS, type EventKindName } from '../event/kinds.js';
import { eventsLost, type SessionSummary } from '../facts/losses.js';
import type { Io } from '../io.js';
import { ChurnMetrics } from '../model/churn-metrics.js';
import type { ModelOptions } from '../model/churn-model.js';
import { MAX_WALKED_NAMESPACES } from '../pipeline/walk-plan.js';
import { monotonicUs } from '../tracer/host.js';
import { LivePipeline } from '../pipeline/live-pipeline.js';
import type { RecorderKeeps } from '../pipeline/recorder.js';
export { RECORDER_KEEPS, type RecorderKeeps } from '../pipeline/recorder.js';
import { MetricsServer, type ListenAddress } from '../server/http.js';
import { defaultObjectPath, openSocketsObjectPath, packageVersion, preflight } from '../tracer/preflight.js';
import type { Filters } from '../tracer/tracer.js';
import { PrometheusView } from '../views/prometheus.js';
import { AgentServer } from './server.js';
import { prepareSocketPath } from './socket.js';
import { API_VERSION, type AgentInfo } from './wire.js';
import type { CaptureHeader } from '../capture/format.js';

export interface AgentOptions {
	listen: ListenAddress;
	/** Groups (comm, cgroup) with series of their own. */
	maxSeries: number;
	maxDestinations: number;
	walkIntervalMs: number;
	/** The API's Unix socket; undefined: metrics only. */
	socketPath: string | undefined;
	/** The flight recorder's bounds; undefined: none (it also needs the socket, which serves it). */
	recorder: { maxAgeMs: number; maxBytes: number; keeps?: RecorderKeeps } | undefined;
	/** The kernel's filters (resolved), the model's share, and as a capture header names them. */
	filters: Filters;
	model: Pick<ModelOptions, 'comm' | 'pid' | 'port' | 'family'>;
	captureFilters: CaptureHeader['filters'];
	ringBytes: number;
	log?: (line: string) => void;
}

/** A group with no events and no TIME_WAIT held for this long loses its series: the process is gone. */
export const SERIES_IDLE_US = 5 * 60 * 1_000_000;
/** Rates for time-to-exhaustion are over this window (the model keeps 16 s). */
const RATE_WINDOW_US = 10 * 1_000_000;
/** Losses are logged at most this often (the counters are exported all the time). */
const DROP_LOG_MS = 60_000;

export class AgentDaemon {
	readonly pipeline: LivePipeline;
	readonly metricsServer: MetricsServer;
	readonly agentServer: AgentServer | undefined;
	readonly #state: { stopping: boolean };
	#summary: SessionSummary | undefined;

	private constructor(pipeline: LivePipeline, metricsServer: MetricsServer, agentServer: AgentServer | undefined, state: { stopping: boolean }) {
		this.pipeline = pipeline;
		this.metricsServer = metricsServer;
		this.agentServer = agentServer;
		this.#state = state;
	}

	/** Brings the agent up; on failure takes down what was up, and throws. */
	static async start(o: AgentOptions, io: Io): Promise<AgentDaemon> {
		const objectPath = defaultObjectPath();
		preflight('serve', objectPath);
		// Before loading anything: a second agent is refused while the first keeps running.
		if (o.socketPath) await prepareSocketPath(o.socketPath);
		let pipeline: LivePipeline | undefined;
		const metrics = new ChurnMetrics({
			maxSeries: o.maxSeries,
			idleUs: SERIES_IDLE_US,
			// Resolved when a group gets its series (after the pipeline exists); the pipeline rescans soon
			// after a miss (cgroupRescanMs below): a new container's cgroup.
			cgroupLabel: (id) => (id === 0 ? '(unknown)' : pipeline?.cgroups.lookup(id) ?? `id:${id}`),
			comm: o.model.comm,
			maxFailureSeries: o.maxSeries,
		});
		const view = new PrometheusView();
		const version = packageVersion();
		let loggedLosses = 0;
		let loggedAtMs = 0;
		let metricsServer: MetricsServer | undefined;
		let agentServer: AgentServer | undefined;
		const state = { stopping: false };
		// The model, the metrics and a recorder keeping counts take what the kernel counts from its counters: the
		// ring carries task records and failures. A recorder keeping records needs every record.
		const keepsRecords = o.recorder !== undefined && o.socketPath !== undefined && o.recorder.keeps === 'records';
		try {
			const p = (pipeline = new LivePipeline({
				objectPath, openSocketsObjectPath: openSocketsObjectPath(objectPath), filters: { ...o.filters, kinds: [...(keepsRecords ? COMMAND_KINDS.records : COMMAND_KINDS.serve)] }, ringBytes: o.ringBytes, log: o.log,
				walkIntervalMs: o.walkIntervalMs, perEvent: true, counting: true, modelFromCounts: true, cgroupRescanMs: 250, upkeepMs: 1000,
				model: o.model,
				...(o.recorder && o.socketPath ? {
					recorder: {
						...o.recorder, filters: o.captureFilters,
						describe: () => `flight recorder of the twtrace agent (pid ${process.pid}) on ${os.hostname()}`,
					},
				} : {}),
			}, () => ({
				// The kernel counts connections, TIME_WAIT entries, resets and lifetimes (docs/counting-in-the-kernel.md,
				// step 2): the metrics take those from its counters, once a second, and only failures from events.
				onEach: (e, blamed) => void (isFailure(e.kind) && metrics.observeOne(e, blamed)),
				onCounts: (key, who, delta) => metrics.observeCounts(who, key, delta, monotonicUs()),
				onUpkeep: (nowUs) => {
					metrics.tick(p.model, nowUs);
					const d = p.feed.drops;
					const losses = eventsLost(d) + d.mapFull;
					if (losses > loggedLosses && Date.now() - loggedAtMs >= DROP_LOG_MS) {
						io.stderr.write(`twtrace: so far ${eventsLost(d)} events lost (ring full ${d.ringFull}, skipped runs ${d.missedRuns}), ${d.mapFull} unattributed (map full); ` +
							'see twtrace_events_dropped_total. Raise --ring-size or narrow with --netns/--port.\n');
						[loggedLosses, loggedAtMs] = [losses, Date.now()];
					}
				},
			})));
			const info = (): AgentInfo => ({
				api: API_VERSION, version, pid: process.pid,
				startedAt: new Date(p.startedAtMs).toISOString(),
				uptimeSeconds: (Date.now() - p.startedAtMs) / 1000,
				filters: { netns: o.filters.netns, comm: o.model.comm ?? null, pid: o.model.pid ?? null, port: o.model.port ?? null, family: o.filters.family === undefined ? null : o.filters.family === 4 ? '4' : '6' },
				recorder: recorderInfo(p),
			});
			// Listening after BPF is attached, so the listener's owner is captured like any other
			// (else twtrace's own scrapes would count as accepted by "(before start)").
			let lastScrapeMs = 0; // none before the first: 0
			metricsServer = await MetricsServer.listen(o.listen, {
				metrics: () => {
					const startedMs = performance.now();
					const nowUs = monotonicUs();
					p.readCounts(nowUs); // the counters, the ring and the model as of now, not of the last upkeep
					const data = metrics.collect(p.model, { nowUs, rateWindowUs: RATE_WINDOW_US, maxDestinations: o.maxDestinations, maxNamespaces: MAX_WALKED_NAMESPACES });
					const body = view.render(data, { drops: p.feed.drops, unwalkedNamespaces: p.feed.unwalked.size, walks: p.feed.walks, lastScrapeMs, version });
					lastScrapeMs = performance.now() - startedMs;
					return { body, contentType: view.contentType };
				},
				health: () => (state.stopping ? { ok: false, body: 'stopping\n' } : { ok: true, body: 'ok\n' }),
			});
			if (o.socketPath) {
				agentServer = await AgentServer.listen(o.socketPath, {
					info,
					snapshot: (q) => p.snapshotReply(q, info()),
					capture: (lastMs) => {
						if (!p.recorder) throw new Error('the flight recorder is off (serve --no-recorder)');
						p.readCounts(); // the counters (a counts frame) and the ring as of now
						const body = p.recorder.capture(lastMs, monotonicUs());
						const { uptimeSeconds, recorder } = info(); // as the window was served: what it holds, and why
						return { body, window: { uptimeSeconds, recorder } };
					},
				});
			}
			return new AgentDaemon(p, metricsServer, agentServer, state);
		} catch (error) {
			await agentServer?.close();
			await metricsServer?.close();
			await pipeline?.stop();
			throw error;
		}
	}

	/** Answers health checks with "stopping", closes the socket and the port, then detaches. Idempotent. */
	async stop(): Promise<SessionSummary> {
		this.#state.stopping = true;
		await this.agentServer?.close();
		await this.metricsServer.close();
		this.#summary ??= await this.pipeline.stop();
		return this.#summary;
	}
}

/** Failures flow as events (their errno and target); every other kind is counted by the kernel. */
const isFailure = (kind: EventKindName) => kind === 'connect_fail' || kind === 'bind_fail';

function recorderInfo(p: LivePipeline): AgentInfo['recorder'] {
	if (!p.recorder) return { frames: 0, bytes: 0, maxBytes: 0, spanSeconds: 0, maxSeconds: 0, firstAt: null, droppedBy: null };
	const nowUs = monotonicUs();
	const { firstUs, ...s } = p.recorder.stats(nowUs);
	return { ...s, firstAt: new Date(Date.now() - (nowUs - firstUs) / 1000).toISOString(), keeps: p.recorder.keeps };
}
