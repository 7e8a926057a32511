/**
 * The live source: this process traces the host itself (root, or CAP_BPF + CAP_PERFMON), through a
 * LivePipeline that runs its own walks and timers. Also the one way a command opens a live feed at
 * all: `trace` gets the same feed, without a model (openTraceFeed). Both check the privileges,
 * the kernel and the BPF object first (preflight), so the errors are the same everywhere.
 */
import type { SnapshotQuery, SnapshotReply } from '../agent/wire.js';
import type { EventKindName } from '../event/kinds.js';
import type { SessionSummary } from '../facts/losses.js';
import type { ModelOptions } from '../model/churn-model.js';
import { LiveFeed, type LiveFeedHandlers } from '../pipeline/live-feed.js';
import { LivePipeline, type PipelineOptions } from '../pipeline/live-pipeline.js';
import { workloadOf } from '../facts/workload.js';
import { CgroupPaths, epochOffsetUs } from '../tracer/host.js';
import { defaultObjectPath, openSocketsObjectPath, preflight } from '../tracer/preflight.js';
import type { Filters } from '../tracer/tracer.js';
import { sessionSummaryLine } from '../views/session-text.js';
import { modelFilters, resolveFilters, type FilterOptions } from './filters.js';
import type { Source } from './source.js';

export interface LiveSourceOptions {
	/** The event kinds the command uses: the others never reach the ring. Empty: all. */
	kinds: readonly EventKindName[];
	/** The model's own options; the filters' share (--comm, --pid, --port, --family) is added from the command's. */
	model?: Omit<ModelOptions, 'comm' | 'pid' | 'port' | 'family'>;
	walkIntervalMs?: number;
	/** Ingest events from ring memory, with no object per event (top, serve). */
	perEvent?: boolean;
	/**
	 * The model takes what the kernel counts from its counters, once an upkeep and before each
	 * snapshot (PipelineOptions.modelFromCounts): `kinds` need only what the counters do not hold (top).
	 */
	fromCounts?: boolean;
	/** Walk the sockets processes hold open, for likely owners of older TIME_WAIT (top, doctor). */
	likelyOwners?: boolean;
	/** Hand the raw records to the handlers (record). */
	keepRaw?: boolean;
	/** libbpf's and the verifier's messages, with --verbose. */
	log?: (line: string) => void;
	/**
	 * What else follows the model's feed (a report builder, a capture file): made once the pipeline
	 * exists, before any event arrives.
	 */
	follow?: (pipeline: LivePipeline) => LiveFeedHandlers;
}

export class LiveSource implements Source {
	readonly kind = 'live';
	readonly pipeline: LivePipeline;
	/** The filters as the kernel applies them (namespaces resolved to inodes). */
	readonly filters: Filters;
	#summary: SessionSummary | undefined;

	private constructor(pipeline: LivePipeline, filters: Filters) {
		this.pipeline = pipeline;
		this.filters = filters;
	}

	/** Checks what tracing needs, loads and attaches; the first walk starts in the background. Throws TwtraceError. */
	static open(command: string, opts: Partial<FilterOptions>, want: LiveSourceOptions): LiveSource {
		const filters = resolveFilters({ ...opts, kind: [...want.kinds] });
		const objectPath = defaultObjectPath();
		preflight(command, objectPath);
		const options: PipelineOptions = {
			objectPath, filters, ringBytes: opts.ringSize ?? 8 << 20, log: want.log, walkIntervalMs: want.walkIntervalMs,
			perEvent: want.perEvent, keepRaw: want.keepRaw, ...(want.fromCounts ? { counting: true, modelFromCounts: true } : {}),
			model: { ...want.model, ...modelFilters({ comm: opts.comm, pid: opts.pid, port: opts.port }, filters) },
			...(want.likelyOwners ? { openSocketsObjectPath: openSocketsObjectPath(objectPath) } : {}),
		};
		return new LiveSource(new LivePipeline(options, (pipeline) => want.follow?.(pipeline) ?? {}), filters);
	}

	label(): string {
		return 'standalone';
	}

	async reply(query: SnapshotQuery): Promise<SnapshotReply> {
		return this.pipeline.snapshotReply(query);
	}

	async settle(): Promise<void> {
		await this.pipeline.feed.walkAll();
	}

	/**
	 * Stops tracing and returns what the session counted; with `last`, looks up the closes still
	 * waiting and walks once more after detaching, so that the counts (and a capture's last walk) are
	 * exact at the end. Idempotent.
	 */
	async stop(options: { last?: boolean } = {}): Promise<SessionSummary> {
		this.#summary ??= await this.pipeline.stop(options);
		return this.#summary;
	}

	async close(): Promise<string> {
		return sessionSummaryLine(await this.stop());
	}
}

/**
 * `trace`'s feed: the same live feed, without a model; it walks no table, and looks up the closes
 * that wait too long for their end (kernel-facts §8). Throws TwtraceError.
 */
export function openTraceFeed(opts: FilterOptions, want: { log?: (line: string) => void }, handlers: LiveFeedHandlers): { feed: LiveFeed; filters: Filters } {
	const filters = resolveFilters(opts);
	const objectPath = defaultObjectPath();
	preflight('trace', objectPath);
	// The witness of time_wait events the kernel never reports (pipeline/suspect-check.ts) keeps every
	// active close in a map: only worth it when time_wait events are wanted.
	const witness = filters.kinds.length === 0 || filters.kinds.includes('time_wait');
	const feed = new LiveFeed({ objectPath, filters, ringBytes: opts.ringSize, log: want.log, witness }, handlers);
	return { feed, filters };
}

/**
 * How events name what they carry as ids, on this host: the wall clock of a monotonic time, a cgroup
 * id's path and its workload (remembered once its path is known: events come by the thousand per cgroup).
 */
export function hostNames(): { epochOffsetUs: number; cgroupPath: (id: number) => string | undefined; workload: (id: number) => string | undefined } {
	const cgroups = new CgroupPaths();
	const known = new Map<number, string | undefined>();
	return {
		epochOffsetUs: epochOffsetUs(),
		cgroupPath: (id) => cgroups.lookup(id),
		workload: (id) => {
			if (known.has(id)) return known.get(id);
			const path = cgroups.lookup(id);
			if (path === undefined) return undefined; // not found yet: asked again later
			const w = workloadOf(path);
			const name = w && w.name !== '/' ? w.name : undefined;
			known.set(id, name);
			return name;
		},
	};
}
