/**
 * A live feed of the churn model: the trace session's events, and walks of the namespaces of
 * interest (at start, every walk interval, and as soon as events show a new namespace). Shared by
 * `top`, `record` and a live `report`, so each sees the model built the same way; `record` also
 * gets the raw bytes of both, to store.
 */
import type { TwtEvent } from '../event/decode.js';
import type { ChurnModel } from '../model/aggregate.js';
import type { WalkRecord } from '../model/walk.js';
import { NamespaceWalker } from './namespaces.js';
import { NO_DROPS, TraceSession, type SessionSummary } from './session.js';
import type { DropCounts, Filters } from './tracer.js';

export interface LiveFeedOptions {
	objectPath: string;
	filters: Filters;
	ringBytes: number;
	/** maybeWalk() walks at least this often; undefined: only at start and when a new namespace appears. */
	walkIntervalMs?: number;
	log?: (line: string) => void;
	/** Hand the raw records to onEvents too (record). */
	keepRaw?: boolean;
}

export interface LiveFeedHandlers {
	/** After the model ingested them; `raw` is their bytes, EVENT_SIZE each, when keepRaw. */
	onEvents?: (events: readonly TwtEvent[], raw: Buffer | undefined) => void;
	/** After the model reconciled it. */
	onWalk?: (walk: WalkRecord) => void;
}

export type LiveDrops = DropCounts & { decodeErrors: number };

/** At most this many namespaces walked per pass: each costs a setns and a walk. */
export const MAX_WALKED_NAMESPACES = 16;

export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

export class LiveFeed {
	readonly model: ChurnModel;
	/** Namespaces that could not be walked, with the reason. */
	readonly unwalked = new Map<number, string>();
	readonly #session: TraceSession;
	readonly #walker: NamespaceWalker;
	readonly #asked: readonly number[];
	readonly #walkIntervalMs: number;
	readonly #handlers: LiveFeedHandlers;
	#lastWalkUs = 0;
	#stopped = false;
	#drops: LiveDrops = { ...NO_DROPS, decodeErrors: 0 };

	/** Loads and attaches (throws what the tracer throws), then walks once, before any caller reads the model. */
	constructor(model: ChurnModel, options: LiveFeedOptions, handlers: LiveFeedHandlers = {}) {
		this.model = model;
		this.#asked = options.filters.netns;
		this.#walkIntervalMs = options.walkIntervalMs ?? Infinity;
		this.#handlers = handlers;
		const keepRaw = options.keepRaw === true;
		this.#session = new TraceSession({ objectPath: options.objectPath, filters: options.filters, ringBytes: options.ringBytes, log: options.log, socketWalks: true, keepRaw }, {
			onEvents: (events, raw) => {
				model.ingest(events);
				handlers.onEvents?.(events, keepRaw ? raw : undefined);
			},
			onDrops: (_delta, total) => (this.#drops = total),
		});
		this.#walker = new NamespaceWalker(this.#session.tracer, monotonicUs, () => this.#session.drainNow());
		try {
			this.walkAll();
		} catch (error) {
			this.#session.stop();
			throw error;
		}
	}

	/** The namespace twtrace runs in. */
	get home(): number {
		return this.#walker.home;
	}

	/** Losses so far (updated about once a second). */
	get drops(): LiveDrops {
		return this.#drops;
	}

	/** Delivers what the ring holds now. */
	drainNow(): void {
		this.#session.drainNow();
	}

	/** Walks when the interval has passed or events showed a namespace not yet walked. */
	maybeWalk(): void {
		this.#session.drainNow();
		const isNewNamespace = [...this.model.namespaces.values()].some((ns) => ns.netns !== 0 && !ns.settings && !this.unwalked.has(ns.netns));
		if (isNewNamespace || monotonicUs() - this.#lastWalkUs >= this.#walkIntervalMs * 1000) this.walkAll();
	}

	walkAll(): void {
		this.#session.drainNow(); // events from before the walk must reach the model before it
		const discovered = this.#walker.discover();
		for (const netns of namespacesToWalk(this.model, this.#asked, this.home, discovered)) {
			const outcome = this.#walker.walk(netns, pidsIn(this.model, netns));
			// The walk delivered the time_wait events the kernel missed (bpf/twtrace.bpf.c, dump_tcp):
			// the model takes them before the walk, so that they keep their owner.
			this.#session.drainNow();
			if ('error' in outcome) {
				this.unwalked.set(netns, outcome.error);
				this.model.addNamespace(netns); // shown, with the reason it was not walked
			} else {
				this.unwalked.delete(netns);
				this.model.reconcile(outcome.walk);
				this.#handlers.onWalk?.(outcome.record);
			}
		}
		this.#session.tracer.sweepClosing(process.hrtime.bigint());
		this.#lastWalkUs = monotonicUs();
	}

	/**
	 * Detaches and delivers the rest of the ring; idempotent. With `lastWalk`, walks once more after
	 * detaching, so that every missed time_wait of a socket that closed before the stop is delivered
	 * (a record's capture ends complete); top and serve skip it to exit at once.
	 */
	stop(options: { lastWalk?: boolean } = {}): SessionSummary {
		if (options.lastWalk && !this.#stopped) {
			this.#session.detachTracepoints();
			this.walkAll();
		}
		this.#stopped = true;
		return this.#session.stop();
	}
}

/**
 * The namespaces asked for; else this one, those seen in events (the busiest first), then the
 * others in use on the host, which may hold TIME_WAIT sockets from before start.
 */
function namespacesToWalk(model: ChurnModel, asked: readonly number[], home: number, discovered: readonly number[]): number[] {
	if (asked.length) return [...asked];
	const seen = [...model.namespaces.keys()].filter((n) => n !== home && n !== 0)
		.sort((a, b) => model.timeWait.countIn(b) - model.timeWait.countIn(a));
	return [...new Set([home, ...seen, ...discovered])].slice(0, MAX_WALKED_NAMESPACES);
}

/** Processes seen in a namespace, the most recent first: their /proc/PID/ns/net is a way in. */
function pidsIn(model: ChurnModel, netns: number): number[] {
	return [...model.owners.values()].filter((o) => o.netns === netns && o.pid > 0)
		.sort((a, b) => b.lastEventUs - a.lastEventUs).slice(0, 8).map((o) => o.pid);
}

