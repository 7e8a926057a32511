/**
 * The live pipeline every modelling command runs, standalone or as the agent: the trace session and
 * the socket walks (LiveFeed) feeding one ChurnModel, the cgroup names, and what a view asks of it,
 * a SnapshotReply. `top` renders the same reply whether it comes from this process or from the
 * agent's socket, so the two cannot drift apart.
 */
import type { AgentInfo, SnapshotQuery, SnapshotReply } from '../agent/wire.js';
import { ChurnModel, type ModelOptions } from '../model/aggregate.js';
import { snapshot } from '../model/snapshot.js';
import { CgroupPaths, epochOffsetUs } from '../tracer/host.js';
import { LiveFeed, monotonicUs, type LiveFeedHandlers, type LiveFeedOptions } from './live.js';

export interface PipelineOptions extends LiveFeedOptions {
	model: ModelOptions;
	/** How soon after a miss the cgroup tree is scanned again (a new container's cgroup). */
	cgroupRescanMs?: number;
}

export class LivePipeline {
	readonly model: ChurnModel;
	readonly feed: LiveFeed;
	readonly cgroups: CgroupPaths;
	/** Unix epoch ms the pipeline started. */
	readonly startedAtMs = Date.now();

	/** Loads and attaches (throws what the tracer throws); the first walk starts in the background. */
	constructor(options: PipelineOptions, handlers: (model: ChurnModel) => LiveFeedHandlers = () => ({})) {
		this.model = new ChurnModel(monotonicUs(), options.model);
		this.cgroups = new CgroupPaths(undefined, options.cgroupRescanMs);
		this.feed = new LiveFeed(this.model, options, handlers(this.model));
	}

	/** The model now, as `query` asks, with what a view needs besides. Drains the ring first. */
	snapshotReply(query: SnapshotQuery, agent?: AgentInfo): SnapshotReply {
		this.feed.drainNow();
		const nowUs = monotonicUs();
		this.model.tick(nowUs);
		const cgroupPath = (id: number) => this.cgroups.lookup(id);
		const snap = snapshot(this.model, {
			by: query.by, sort: query.sort, nowUs, rateWindowUs: Math.max(query.windowMs, 1000) * 1000, filter: query.filter, cgroupPath,
			maxRows: query.maxRows, maxDestinations: query.maxDestinations, maxVictims: query.maxVictims,
		});
		const cgroupNames = new Map<number, string>();
		for (const r of snap.rows) {
			const name = r.cgroupId === undefined ? undefined : cgroupPath(r.cgroupId);
			if (name !== undefined) cgroupNames.set(r.cgroupId!, name);
		}
		return {
			...(agent ? { agent } : {}),
			snapshot: snap,
			epochOffsetUs: epochOffsetUs(),
			home: this.feed.home,
			drops: this.feed.drops,
			walks: this.feed.walks,
			unwalked: new Map(this.feed.unwalked),
			cgroupNames,
		};
	}
}
