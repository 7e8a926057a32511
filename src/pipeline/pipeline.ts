/**
 * The live pipeline every modelling command runs, standalone or as the agent: the trace session and
 * the socket walks (LiveFeed) feeding one ChurnModel, the cgroup names, and what a view asks of it,
 * a SnapshotReply. `top` renders the same reply whether it comes from this process or from the
 * agent's socket, so the two cannot drift apart.
 */
import type { AgentInfo, SnapshotQuery, SnapshotReply } from '../agent/wire.js';
import { ChurnModel, type ModelOptions } from '../model/aggregate.js';
import { markExited, snapshot } from '../model/snapshot.js';
import { CgroupPaths, epochOffsetUs, NamespaceNames, processRuns } from '../tracer/host.js';
import { LiveFeed, monotonicUs, type LiveFeedHandlers, type LiveFeedOptions } from './live.js';
import { FlightRecorder, type RecorderOptions } from './recorder.js';
import { HolderWalker } from '../tracer/holders.js';
import { captureDrops, captureHeader, type CaptureHeader } from '../capture/format.js';

/** Holder walks at most this often (each reads every file of every process). */
const HOLDER_WALK_US = 5_000_000;

export interface PipelineOptions extends LiveFeedOptions {
	model: ModelOptions;
	/** How soon after a miss the cgroup tree is scanned again (a new container's cgroup). */
	cgroupRescanMs?: number;
	/** build/holders.bpf.o: walk the sockets processes hold, for likely owners of older TIME_WAIT. */
	holdersObjectPath?: string;
	/** Keep the last minutes as capture frames (the agent): `capture` says what a capture's header names. */
	recorder?: RecorderOptions & { filters: CaptureHeader['filters']; describe: () => string };
}

export class LivePipeline {
	readonly model: ChurnModel;
	readonly feed: LiveFeed;
	readonly cgroups: CgroupPaths;
	/** Unix epoch ms the pipeline started. */
	readonly startedAtMs = Date.now();
	/** The flight recorder, when asked for. */
	readonly recorder: FlightRecorder | undefined;
	/** Why likely owners cannot be inferred here, when they cannot. */
	holdersUnavailable: string | undefined;
	readonly #namespaceNames = new NamespaceNames();
	#holders: HolderWalker | undefined;
	#holdersWalking = false;
	#holdersWalkedAtUs = -Infinity;

	/** Loads and attaches (throws what the tracer throws); the first walk starts in the background. */
	constructor(options: PipelineOptions, handlers: (model: ChurnModel) => LiveFeedHandlers = () => ({})) {
		this.model = new ChurnModel(monotonicUs(), options.model);
		this.cgroups = new CgroupPaths(undefined, options.cgroupRescanMs);
		const given = handlers(this.model);
		const rec = options.recorder;
		// The recorder is made once the feed exists (it reads the feed's losses); nothing reaches
		// these handlers before: events and walks arrive from the event loop.
		let recorder: FlightRecorder | undefined;
		// The recorder keeps a walk only when it takes at most a quarter of its bytes: a million sockets
		// copied each walk would cost the agent more than it serves (and leave no room for events).
		const keepWalkBytes = rec ? rec.maxBytes / 4 : options.keepWalkBytes;
		this.feed = new LiveFeed(this.model, { ...options, keepRaw: options.keepRaw || rec !== undefined, keepWalkBytes }, {
			...given,
			onEvents: (events, raw) => {
				if (raw) recorder?.addEvents(raw, monotonicUs());
				given.onEvents?.(events, raw);
			},
			onWalk: (walk) => {
				recorder?.addWalk(walk, monotonicUs());
				given.onWalk?.(walk);
				this.#maybeWalkHolders();
			},
		});
		if (options.holdersObjectPath) {
			const opened = HolderWalker.open(options.holdersObjectPath);
			if ('error' in opened) this.holdersUnavailable = opened.error;
			else this.#holders = opened;
		}
		if (rec) {
			recorder = new FlightRecorder(rec, {
				header: (startUs) => captureHeader({
					startedAt: new Date((startUs + epochOffsetUs()) / 1000).toISOString(),
					clock: { startUs: Math.round(startUs), epochOffsetUs: epochOffsetUs() },
					filters: rec.filters,
					walkIntervalMs: options.walkIntervalMs ?? 0,
					namespaces: [],
				}),
				drops: () => captureDrops(this.feed.drops),
				cgroups: () => this.#cgroupNames(),
				describe: rec.describe,
			}, monotonicUs());
		}
		this.recorder = recorder;
	}

	/**
	 * After a socket walk: walks the sockets processes hold open, when TIME_WAIT of unknown process
	 * is held (its likely owners need the evidence) and the last such walk is HOLDER_WALK_US old.
	 */
	#maybeWalkHolders(): void {
		const nowUs = monotonicUs();
		if (!this.#holders || this.#holdersWalking || nowUs - this.#holdersWalkedAtUs < HOLDER_WALK_US) return;
		if (!hasUnknownTimeWait(this.model)) return;
		this.#holdersWalking = true;
		this.#holdersWalkedAtUs = nowUs;
		void this.#holders.walk().then((entries) => this.model.setOpenHolders(entries, monotonicUs()), (error: Error) => {
			this.holdersUnavailable = `the process socket walk failed: ${error.message}`;
		}).finally(() => (this.#holdersWalking = false));
	}

	/** Stops the feed (LiveFeed.stop) and releases the holder walk. */
	async stop(options?: Parameters<LiveFeed['stop']>[0]): ReturnType<LiveFeed['stop']> {
		const summary = await this.feed.stop(options);
		this.#holders?.close();
		this.#holders = undefined;
		return summary;
	}

	/** cgroup id → path for the owners the model holds. */
	#cgroupNames(): Record<string, string> {
		const out: Record<string, string> = {};
		for (const o of this.model.owners.values()) {
			const name = o.cgroupId ? this.cgroups.lookup(o.cgroupId) : undefined;
			if (name !== undefined) out[o.cgroupId] = name;
		}
		return out;
	}

	/** The model now, as `query` asks, with what a view needs besides. Drains the ring first. */
	snapshotReply(query: SnapshotQuery, agent?: AgentInfo): SnapshotReply {
		this.feed.drainNow();
		const nowUs = monotonicUs();
		this.model.tick(nowUs);
		const cgroupPath = (id: number) => this.cgroups.lookup(id);
		const snap = snapshot(this.model, {
			by: query.by, sort: query.sort, nowUs, rateWindowUs: Math.max(query.windowMs, 1000) * 1000, filter: query.filter, view: query.view, cgroupPath,
			maxRows: query.maxRows, maxDestinations: query.maxDestinations, maxVictims: query.maxVictims,
		});
		markExited(snap, processRuns);
		for (const ns of snap.namespaces) {
			const name = this.#namespaceNames.name(ns.netns);
			if (name !== undefined) ns.name = name;
		}
		const cgroupNames = new Map<number, string>();
		for (const r of snap.rows) {
			const name = r.cgroupId === undefined ? undefined : cgroupPath(r.cgroupId);
			if (name !== undefined) cgroupNames.set(r.cgroupId!, name);
		}
		return {
			...(agent ? { agent } : {}),
			...(query.view ? { view: query.view } : {}),
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

/** Whether any TIME_WAIT is held by sockets of unknown process (those likely owners are for). */
function hasUnknownTimeWait(model: ChurnModel): boolean {
	for (const o of model.owners.values()) if (o.pid === 0 && o.timeWait > 0) return true;
	return false;
}
