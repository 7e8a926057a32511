/**
 * The live pipeline every modelling command runs, standalone or as the agent: the trace session and
 * the socket walks (LiveFeed) feeding one ChurnModel, the cgroup names, and what a view asks of it,
 * a SnapshotReply. `top` renders the same reply whether it comes from this process or from the
 * agent's socket, so the two cannot drift apart.
 */
import type { AgentInfo, SnapshotQuery, SnapshotReply } from '../agent/wire.js';
import { ChurnModel, type ModelOptions } from '../model/churn-model.js';
import { markExited, snapshot } from '../model/snapshot.js';
import { CgroupPaths, epochOffsetUs, inHostPidNamespace, NamespaceNames, processRuns } from '../tracer/host.js';
import { BPF_PARTS, type LiveFeedParts } from './feed-parts.js';
import { LiveFeed, type LiveFeedHandlers, type LiveFeedOptions } from './live-feed.js';
import { FlightRecorder, type RecorderOptions } from './recorder.js';
import { OpenSocketWalker } from '../tracer/open-sockets.js';
import type { DeltaVisitor } from '../model/count-bins.js';
import { CountReader } from './count-reader.js';
import { captureDrops, captureHeader, type CaptureHeader } from '../capture/format.js';
import { CountKeyCache, type CountKey } from '../event/counts.js';
import type { TaskInfo } from '../event/tasks.js';

/** Walks of the sockets processes hold open, at most this often (each reads every file of every process). */
const OPEN_SOCKET_WALK_US = 5_000_000;

export interface PipelineOptions extends Omit<LiveFeedOptions, 'model' | 'socketWalks'> {
	model: ModelOptions;
	/** How soon after a miss the cgroup tree is scanned again (a new container's cgroup). */
	cgroupRescanMs?: number;
	/** build/open-sockets.bpf.o: walk the sockets processes hold, for likely owners of older TIME_WAIT. */
	openSocketsObjectPath?: string;
	/** Keep the last minutes as capture frames (the agent): `capture` says what a capture's header names. */
	recorder?: RecorderOptions & { filters: CaptureHeader['filters']; describe: () => string };
	/** The feed's parts: BPF by default; tests give fakes. */
	parts?: LiveFeedParts;
	/** The walk of the sockets processes hold open: from openSocketsObjectPath by default; tests give a fake. */
	openSockets?: OpenSocketWalk | { error: string };
	/**
	 * With counting: the model takes connections, TIME_WAIT entries, resets and lifetimes from the
	 * kernel's counters at each reading (ChurnModel.ingestCounts), as a replay of the flight
	 * recorder's counts does, and from events only what the counters do not hold (failures): the
	 * agent (docs/counting-in-the-kernel.md, step 4). The filters' kinds should then leave those out.
	 */
	modelFromCounts?: boolean;
}

/** The feed's handlers, and the kernel's counters' differences (with the counting option: CountReader). */
export interface PipelineHandlers extends LiveFeedHandlers {
	/** Every upkeep and readCounts(), key by key, the key decoded and its blamed task (known: the ring was drained first); keep nothing of `delta`. */
	onCounts?: (key: CountKey, who: TaskInfo, delta: Float64Array) => void;
}

/** What the pipeline needs of an open-socket walk (tracer/open-sockets.ts OpenSocketWalker). */
export type OpenSocketWalk = Pick<OpenSocketWalker, 'walk' | 'close'> & Partial<Pick<OpenSocketWalker, 'walkTcp'>>;

export class LivePipeline {
	readonly model: ChurnModel;
	readonly feed: LiveFeed;
	readonly cgroups: CgroupPaths;
	/** Unix epoch ms the pipeline started. */
	readonly startedAtMs = Date.now();
	/** The flight recorder, when asked for. */
	readonly recorder: FlightRecorder | undefined;
	/** The kernel's counters, read every upkeep, with the counting option. */
	readonly counts: CountReader | undefined;
	readonly #onCounts: DeltaVisitor;
	/** Before a reading's differences are handed on: the recorder's frame of that second takes them. */
	readonly #readingAt: ((atUs: number) => void) | undefined;
	/** The reading being delivered (readCounts): when the model takes its differences. */
	#readingUs = 0;
	/** Why likely owners cannot be inferred here, when they cannot. */
	likelyUnavailable: string | undefined;
	readonly #namespaceNames = new NamespaceNames();
	#openSockets: OpenSocketWalk | undefined;
	#openSocketsWalking = false;
	#openSocketsWalkedAtUs = -Infinity;
	readonly #clockUs: () => number;

	/** Loads and attaches (throws what the tracer throws); the first walk starts in the background. */
	constructor(options: PipelineOptions, handlers: (pipeline: LivePipeline) => PipelineHandlers = () => ({})) {
		const parts = options.parts ?? BPF_PARTS;
		this.model = new ChurnModel(parts.clockUs(), options.model);
		this.cgroups = new CgroupPaths(undefined, options.cgroupRescanMs);
		const given = handlers(this); // its model and cgroups exist by now; the feed does not yet
		const rec = options.recorder;
		// The recorder is made once the feed exists (it reads the feed's losses); nothing reaches
		// these handlers before: events and walks arrive from the event loop.
		let recorder: FlightRecorder | undefined;
		// The recorder keeps a walk only when it takes at most a quarter of its bytes: a million sockets
		// copied each walk would cost the agent more than it serves (and leave no room for events).
		const keepWalkBytes = rec ? rec.maxBytes / 4 : options.keepWalkBytes;
		this.#clockUs = parts.clockUs;
		// The recorder takes each record straight from ring memory as the session drains it (no batch
		// copied once more, no buffer per drain for the garbage collector); others keeping raw records
		// get them per batch in onEvents.
		const recordSink = rec && !options.keepRaw ? { keep: (ring: Uint32Array, offset: number) => recorder?.keep(ring, offset) } : undefined;
		// A recorder keeping counts keeps walks without their timewait sockets: the feed copies only what it keeps.
		const keepWalkTimeWait = rec ? (takenAtUs: number) => recorder?.keepsTimeWaitOf(takenAtUs) ?? true : undefined;
		// Where the model and any recorder take TIME_WAIT from the counts, a walk need not copy the timewait sockets they hold.
		const walksLeaveCounted = options.modelFromCounts === true && options.counting === true && (rec === undefined || rec.keeps === 'counts');
		const opened = options.openSockets ?? (options.openSocketsObjectPath ? OpenSocketWalker.open(options.openSocketsObjectPath) : undefined);
		if (opened && 'error' in opened) this.likelyUnavailable = opened.error;
		else this.#openSockets = opened;
		// Open-socket walks need every process's sockets: a task iterator sees those of twtrace's own pid namespace.
		const walkTcp = this.#openSockets?.walkTcp?.bind(this.#openSockets);
		const processSockets = walkTcp && walksLeaveCounted && inHostPidNamespace() ? walkTcp : undefined;
		this.feed = new LiveFeed({ ...options, model: this.model, keepRaw: options.keepRaw || rec !== undefined, recordSink, keepWalkBytes, keepWalkTimeWait, walksLeaveCounted, processSockets }, {
			...given,
			onEvents: (events, raw) => {
				if (raw) recorder?.addEvents(raw, parts.clockUs());
				given.onEvents?.(events, raw);
			},
			onWalk: (walk) => {
				recorder?.addWalk(walk, parts.clockUs());
				given.onWalk?.(walk);
				this.#maybeWalkOpenSockets();
			},
			upToNow: () => this.readCounts(),
			onUpkeep: (nowUs) => {
				if (this.counts) this.readCounts(nowUs); // the upkeep has drained already
				recorder?.tick(nowUs);
				given.onUpkeep?.(nowUs);
			},
		}, parts);
		this.counts = this.feed.counts ? new CountReader(this.feed.counts) : undefined;
		// Counting began as the programs were attached: the recorder's start, and the model's, which
		// then leaves to the counters every TIME_WAIT a walk finds entered since (reconcile.ts countedFromUs).
		const countingFromUs = parts.clockUs();
		// A recorder keeps counts only where the kernel counts: else it would keep neither the records nor their counts.
		const keepsCounts = rec?.keeps === 'counts' && this.counts !== undefined;
		const modelFromCounts = options.modelFromCounts === true && this.counts !== undefined;
		if (modelFromCounts) this.model.countFrom(countingFromUs);
		// Counted TIME_WAIT entries end in the timer wheel's buckets, live and in a replay of the recorder's window alike.
		const wheel = this.feed.counts?.wheel;
		if (modelFromCounts && wheel) this.model.setWheel(wheel);
		// Each key is decoded once, for the model and the handler; the recorder keeps its bytes.
		const decoded = modelFromCounts || given.onCounts !== undefined;
		const keys = new CountKeyCache();
		this.#onCounts = (hex, delta) => {
			if (keepsCounts) recorder?.addCounts(hex, delta);
			if (!decoded) return;
			const key = keys.get(hex);
			const who = this.feed.task(key.blamed);
			if (modelFromCounts) this.model.ingestCounts(key, who, delta, this.#readingUs);
			given.onCounts?.(key, who, delta);
		};
		this.#readingAt = keepsCounts ? (atUs) => recorder?.beginCounts(atUs, parts.clockUs()) : undefined;
		if (rec) {
			recorder = new FlightRecorder({ ...rec, keeps: keepsCounts ? 'counts' : 'records' }, {
				header: (startUs) => ({
					...captureHeader({
						startedAt: new Date((startUs + epochOffsetUs()) / 1000).toISOString(),
						clock: { startUs: Math.round(startUs), epochOffsetUs: epochOffsetUs() },
						filters: rec.filters,
						walkIntervalMs: options.walkIntervalMs ?? 0,
						namespaces: [],
					}),
					...(keepsCounts && wheel ? { wheel } : {}),
				}),
				drops: () => captureDrops(this.feed.drops),
				cgroups: () => this.#cgroupNames(),
				describe: rec.describe,
				clockUs: parts.clockUs,
			}, this.model.startUs, countingFromUs);
		}
		this.recorder = recorder;
	}

	/**
	 * After a socket walk: walks the sockets processes hold open, when TIME_WAIT of unknown process
	 * is held (its likely owners need the evidence) and the last such walk is OPEN_SOCKET_WALK_US old.
	 */
	#maybeWalkOpenSockets(): void {
		const nowUs = this.#clockUs();
		if (!this.#openSockets || this.#openSocketsWalking || nowUs - this.#openSocketsWalkedAtUs < OPEN_SOCKET_WALK_US) return;
		if (!hasUnknownTimeWait(this.model)) return;
		this.#openSocketsWalking = true;
		this.#openSocketsWalkedAtUs = nowUs;
		void this.#openSockets.walk().then((entries) => this.model.setOpenSockets(entries, this.#clockUs()), (error: Error) => {
			this.likelyUnavailable = `the process socket walk failed: ${error.message}`;
		}).finally(() => (this.#openSocketsWalking = false));
	}

	/**
	 * Brings everything up to now: reads the kernel's counters (with the counting option), drains the
	 * ring, then hands the counters' differences to onCounts, so that every task the keys name is
	 * known (count-reader.ts), then moves the model to now (for a model fed from counts, after its
	 * reading: each second's sample of TIME_WAIT held is taken after its last, as a replay has it).
	 * Without counting, drains and moves the model.
	 */
	readCounts(nowUs = this.#clockUs()): void {
		this.counts?.take(Math.floor(nowUs / 1e6));
		this.feed.drainNow();
		if (this.counts) {
			this.#readingAt?.(nowUs);
			this.#readingUs = nowUs;
			this.counts.deliver(this.#onCounts);
		}
		this.model.tick(nowUs);
	}

	/** Stops the feed (LiveFeed.stop) and releases the open-socket walk. */
	async stop(options?: Parameters<LiveFeed['stop']>[0]): ReturnType<LiveFeed['stop']> {
		const summary = await this.feed.stop(options);
		this.#openSockets?.close();
		this.#openSockets = undefined;
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

	/** The model now, as `query` asks, with what a view needs besides. Reads the counters and drains the ring first. */
	snapshotReply(query: SnapshotQuery, agent?: AgentInfo): SnapshotReply {
		// A namespace asked about that no walk read yet is walked soon: the next answer counts it whole.
		if (query.view?.netns?.length) this.feed.askedAbout(query.view.netns);
		const nowUs = this.#clockUs();
		this.readCounts(nowUs); // true as of the question, not as of the last upkeep
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
