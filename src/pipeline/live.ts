/**
 * A live feed of the churn model: the trace session's events, and walks of the namespaces of
 * interest (at start, every walk interval, and as soon as events show a new namespace). The heart of
 * LivePipeline, which every live command and the agent run, so each sees the model built the same
 * way; `record` and the flight recorder also get the raw bytes of both, to store.
 */
import type { TwtEvent } from '../event/decode.js';
import type { ChurnModel } from '../model/aggregate.js';
import type { Blame } from '../model/attribution.js';
import fs from 'node:fs';
import { readIteratorChunk } from '../../native/iter.js';
import { forEachSocket, TCP_LISTEN } from '../event/sock.js';
import { SOCK_SIZE } from '../event/layout.generated.js';
import type { ListenerRecord, WalkRecord } from '../model/walk.js';
import { isWitnessDue, NamespaceWalker, WALK_CHUNK_BYTES, type OpenedWalk } from '../tracer/namespaces.js';
import { NO_DROPS, TraceSession, type SessionSummary } from '../tracer/session.js';
import type { Filters } from '../tracer/tracer.js';
import type { Losses } from '../model/losses.js';

export interface LiveFeedOptions {
	objectPath: string;
	filters: Filters;
	ringBytes: number;
	/** maybeWalk() walks at least this often; undefined: only at start and when a new namespace appears. */
	walkIntervalMs?: number;
	log?: (line: string) => void;
	/** Hand the raw records to onEvents too (record). */
	keepRaw?: boolean;
	/** With keepRaw: a walk's records are kept up to this many bytes; beyond, none (WalkRecord.omittedBytes). */
	keepWalkBytes?: number;
	/**
	 * Ingest each event as it is drained, from ring memory, with no object per event; onEach instead
	 * of onEvents gets it (top, serve). With keepRaw, onEvents gets the raw records, and no events.
	 */
	perEvent?: boolean;
}

export interface LiveFeedHandlers {
	/** After the model ingested them; `raw` is their bytes, EVENT_SIZE each, when keepRaw. */
	onEvents?: (events: readonly TwtEvent[], raw: Buffer | undefined) => void;
	/**
	 * With perEvent: after the model ingested it, with whom the model blamed it on; not for events
	 * the model's comm option left out. A view of ring memory: keep nothing of it.
	 */
	onEach?: (event: TwtEvent, blamed: Blame) => void;
	/** After the model reconciled it. */
	onWalk?: (walk: WalkRecord) => void;
}

export interface WalkStats {
	inProgress: boolean;
	/** Full passes over the namespaces of interest since start. */
	completed: number;
	/** Wall time of the last full pass, ms (the event loop ran between its chunks); undefined before the first. */
	lastMs: number | undefined;
}

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
	readonly #keepRaw: boolean;
	readonly #keepWalkBytes: number;
	#lastWalkUs = 0;
	#lastStaleCheckUs = 0;
	#lastWitnessUs = 0;
	#lastWitnessMs = 0;
	/** The namespaces the last full walk read: a witness walk goes through them again. */
	#lastWalked: ReadonlySet<number> = new Set();
	#walksCompleted = 0;
	#lastWalkMs: number | undefined;
	/** The walk in progress (one at a time), settled when it ends or is abandoned. */
	#walking: Promise<void> | undefined;
	/** Abandon the walk in progress at its next chunk. */
	#abandon = false;
	#stopped: SessionSummary | undefined;
	#drops: Losses = { ...NO_DROPS, decodeErrors: 0 };

	/**
	 * Loads and attaches (throws what the tracer throws), then starts the first walk, which runs in
	 * the background like every other: the model shows events at once and the namespaces' older
	 * sockets as soon as the walk has read them.
	 */
	constructor(model: ChurnModel, options: LiveFeedOptions, handlers: LiveFeedHandlers = {}) {
		this.model = model;
		this.#asked = options.filters.netns;
		this.#walkIntervalMs = options.walkIntervalMs ?? Infinity;
		this.#handlers = handlers;
		const keepRaw = (this.#keepRaw = options.keepRaw === true);
		this.#keepWalkBytes = options.keepWalkBytes ?? Infinity;
		const onEach = options.perEvent ? (e: TwtEvent) => {
			const who = model.ingestOne(e);
			if (who) handlers.onEach?.(e, who);
		} : undefined;
		this.#session = new TraceSession({ objectPath: options.objectPath, filters: options.filters, ringBytes: options.ringBytes, log: options.log, socketWalks: true, keepRaw, onEach }, {
			onEvents: (events, raw) => {
				model.ingest(events);
				handlers.onEvents?.(events, keepRaw ? raw : undefined);
			},
			onDrops: (_delta, total) => (this.#drops = total),
		});
		// Sockets entering TIME_WAIT from now on reach the model by events: any a walk finds without one was lost.
		model.attachedUs = monotonicUs();
		this.#walker = new NamespaceWalker(this.#session.tracer, monotonicUs, () => this.#session.drainNow());
		void this.walkAll();
	}

	/** The namespace twtrace runs in. */
	get home(): number {
		return this.#walker.home;
	}

	/** Losses so far (updated about once a second). */
	get drops(): Losses {
		return this.#drops;
	}

	/** Socket walks: whether one is in progress, how many ran, and how long the last full pass took. */
	get walks(): WalkStats {
		return { inProgress: this.#walking !== undefined, completed: this.#walksCompleted, lastMs: this.#lastWalkMs };
	}

	/** Delivers what the ring holds now. */
	drainNow(): void {
		if (!this.#stopped) this.#session.drainNow();
	}

	/**
	 * Starts a walk, unless one runs, when the interval has passed, when events showed a namespace not
	 * yet walked, or when a close has waited too long for its end: the kernel then reported no
	 * TIME_WAIT entry for it (kernel-facts §8), and a walk delivers it within seconds, whatever the interval.
	 */
	maybeWalk(): void {
		this.drainNow();
		if (this.#walking || this.#stopped) return;
		const nowUs = monotonicUs();
		if (nowUs - this.#lastWalkUs >= this.#walkIntervalMs * 1000) {
			void this.walkAll();
			return;
		}
		// A namespace first seen in events is walked at once, by itself: its settings and its older
		// sockets count now, and the namespaces walked already are not read again before their time.
		const fresh = [...this.model.namespaces.values()].filter((ns) => ns.netns !== 0 && !ns.settings && !this.unwalked.has(ns.netns)).map((ns) => ns.netns);
		if (fresh.length) {
			void this.#chain(() => this.#walkNamespaces(fresh));
			return;
		}
		// Once a second at most: a witness walk for TIME_WAIT entries the kernel did not report.
		if (nowUs - this.#lastStaleCheckUs < STALE_CHECK_US || !this.#lastWalked.size) return;
		this.#lastStaleCheckUs = nowUs;
		if (isWitnessDue(this.#session.tracer, nowUs - Math.max(this.#lastWalkUs, this.#lastWitnessUs), this.#lastWitnessMs)) void this.#chain(() => this.#witnessNamespaces());
	}

	/** A witness walk (NamespaceWalker.witness) of the namespaces the last full walk covered. */
	async #witnessNamespaces(): Promise<void> {
		if (this.#stopped || this.#abandon) return;
		const startedUs = monotonicUs();
		const startNs = process.hrtime.bigint();
		const walked = await this.#walker.witness(this.#lastWalked, (netns) => pidsIn(this.model, netns), () => this.#abandon);
		if (this.#abandon) return;
		this.drainNow(); // the events the walk delivered
		this.#session.tracer.sweepClosing(process.hrtime.bigint(), { startNs, netns: walked });
		this.#lastWitnessUs = monotonicUs();
		this.#lastWitnessMs = (this.#lastWitnessUs - startedUs) / 1000;
	}

	/**
	 * Walks the namespaces of interest, a chunk of sockets at a time, giving the event loop back
	 * between chunks: draining, snapshots, scrapes and signals keep their pace during a walk of
	 * millions of sockets. After a walk in progress, if any. Never rejects: a namespace that cannot be
	 * walked is listed in `unwalked` with the reason.
	 */
	walkAll(): Promise<void> {
		return this.#chain(() => this.#walkNamespaces());
	}

	/** Runs `body` after the walk in progress, if any: one walk at a time. Never rejects. */
	#chain(body: () => Promise<void>): Promise<void> {
		const previous = this.#walking ?? Promise.resolve();
		const walk: Promise<void> = previous.then(body).catch((error: Error) => {
			this.unwalked.set(0, `walk failed: ${error.message}`);
		}).finally(() => {
			if (this.#walking === walk) this.#walking = undefined;
		});
		this.#walking = walk;
		return walk;
	}

	/** Walks the namespaces of interest, or only `fresh` ones (first seen in events): see walkAll. */
	async #walkNamespaces(fresh?: readonly number[]): Promise<void> {
		if (this.#stopped || this.#abandon) return;
		const startedUs = monotonicUs();
		const startNs = process.hrtime.bigint();
		const walked = new Set<number>();
		this.drainNow(); // events from before the walk must reach the model before it
		const discovered = fresh ? [] : this.#walker.discover();
		for (const netns of fresh ?? namespacesToWalk(this.model, this.#asked, this.home, discovered)) {
			if (this.#abandon) return;
			const opened = this.#walker.open(netns, pidsIn(this.model, netns));
			if ('error' in opened) {
				this.unwalked.set(netns, opened.error);
				this.model.addNamespace(netns); // shown, with the reason it was not walked
				continue;
			}
			if (await this.#read(opened)) {
				this.unwalked.delete(netns);
				walked.add(netns);
			}
		}
		this.#session.tracer.sweepClosing(process.hrtime.bigint(), { startNs, netns: walked });
		if (fresh) {
			// Not a pass over the namespaces of interest: the interval and the pass count are theirs.
			this.#lastWalked = new Set([...this.#lastWalked, ...walked]);
			return;
		}
		this.#lastWalked = walked;
		this.#lastWalkUs = monotonicUs();
		this.#lastWalkMs = (this.#lastWalkUs - startedUs) / 1000;
		this.#walksCompleted++;
	}

	/** Reads and reconciles one opened walk; false when abandoned. */
	async #read(w: OpenedWalk): Promise<boolean> {
		const tracer = this.#session.tracer;
		const reconciler = this.model.beginReconcile({ netns: w.netns, takenAtUs: w.takenAtUs, settings: w.settings, listenerOwner: (port) => tracer.listenerOwner(w.netns, port) });
		const listening = new Set<number>();
		let kept: Buffer[] | undefined = this.#keepRaw ? [] : undefined;
		let walkBytes = 0;
		const buf = Buffer.allocUnsafe(WALK_CHUNK_BYTES);
		let carry: Buffer | undefined;
		try {
			for (;;) {
				if (this.#abandon) return false;
				const n = readIteratorChunk(w.fd, buf);
				if (n === 0) break;
				// Reading the chunk ran dump_tcp over its sockets, which sent the time_wait events the
				// kernel missed (kernel-facts §8): the model takes them first, so the walk finds them known.
				this.drainNow();
				// A read may end inside a record: keep the tail for the next one.
				const bytes = carry ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n);
				const whole = bytes.length - (bytes.length % SOCK_SIZE);
				carry = whole < bytes.length ? Buffer.from(bytes.subarray(whole)) : undefined;
				forEachSocket(bytes.subarray(0, whole), (s) => {
					if (s.state === TCP_LISTEN) listening.add(s.sport);
					reconciler.add(s);
				});
				walkBytes += whole;
				// Past the bound nothing more is copied, and what was is let go: the walk is kept as omitted.
				if (kept && walkBytes > this.#keepWalkBytes) kept = undefined;
				kept?.push(Buffer.from(bytes.subarray(0, whole)));
				await new Promise((resolve) => setImmediate(resolve));
			}
		} finally {
			fs.closeSync(w.fd);
		}
		// The walk delivered the time_wait events the kernel missed (bpf/twtrace.bpf.c, dump_tcp):
		// the model takes them before the walk ends, so that they keep their owner.
		this.drainNow();
		reconciler.finish();
		const listeners: ListenerRecord[] = [];
		for (const port of listening) {
			const owner = tracer.listenerOwner(w.netns, port);
			if (owner) listeners.push({ port, ...owner });
		}
		const omitted = this.#keepRaw && !kept ? { omittedBytes: walkBytes } : {};
		this.#handlers.onWalk?.({ netns: w.netns, takenAtUs: w.takenAtUs, settings: w.settings, listeners, sockets: kept ? Buffer.concat(kept) : new Uint8Array(), ...omitted });
		return true;
	}

	/**
	 * Abandons a walk in progress, detaches and delivers the rest of the ring; idempotent. With
	 * `lastWalk`, walks once more after detaching (for at most `lastWalkMs`), so that every missed
	 * time_wait of a socket that closed before the stop is delivered (a record's capture ends
	 * complete); top and serve skip it to exit at once.
	 */
	async stop(options: { lastWalk?: boolean; lastWalkMs?: number } = {}): Promise<SessionSummary> {
		if (this.#stopped) return this.#stopped;
		this.#abandon = true;
		await this.#walking;
		if (options.lastWalk) {
			this.#abandon = false;
			this.#session.detachTracepoints();
			const deadline = setTimeout(() => (this.#abandon = true), options.lastWalkMs ?? LAST_WALK_MS);
			await this.walkAll();
			clearTimeout(deadline);
			this.#abandon = true;
		}
		this.#stopped = this.#session.stop();
		return this.#stopped;
	}
}

/** How often maybeWalk() looks for closes waiting too long (isWitnessDue). */
const STALE_CHECK_US = 1_000_000;
/** The last walk of stop() gives up after this: every command exits within a second of SIGTERM. */
const LAST_WALK_MS = 700;

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

