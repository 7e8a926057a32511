/**
 * A live feed: the trace session's events, and the socket walks that keep them honest, on one
 * schedule, run by the feed's own upkeep timer (no caller drives it). Every live command and the
 * agent run it, so each sees the model built the same way; `record` and the flight recorder also
 * get the raw bytes of both, to store.
 *
 * With a model (top, doctor, report, record, serve), walks of the namespaces of interest make it
 * exact: at start, every walk interval, and a namespace by itself as soon as events show it. With
 * or without one (trace), every second the closes that wait too long for their end are looked up
 * one by one (suspect-check.ts): those found in TIME_WAIT are entries the kernel never reported
 * (kernel-facts §8), delivered late. Trace reads no socket table; after detaching it looks up every
 * close still waiting, once.
 *
 * The session and the walker are parts (feed-parts.ts): the real ones load BPF; tests give fakes.
 */
import type { TwtEvent } from '../event/decode.js';
import type { WalkRecord } from '../event/walk-record.js';
import type { Losses } from '../facts/losses.js';
import type { Blame } from '../model/attribution.js';
import type { ChurnModel } from '../model/churn-model.js';
import type { OpenedWalk, WalkPeek } from '../tracer/namespaces.js';
import { NO_DROPS, type RecordSink, type SessionSummary } from '../tracer/session.js';
import { BPF_PARTS, type FeedSession, type FeedWalker, type LiveFeedParts } from './feed-parts.js';
import { walkRecordOf, type WalkTime } from './walk-reader.js';
import { STALE_CLOSE_NS, SuspectChecker } from './suspect-check.js';
import { OpenWalks, type OpenSocketsWalk, type OpenWalkPass } from './open-walks.js';
import { reconcileOpenWalk, reconcileTableWalk, type WalkReconciling } from './walk-reconcile.js';
import { MAX_WALKED_NAMESPACES, namespacesToWalk, walkCheckOf, walkNeeded, type WalkStats } from './walk-plan.js';
import type { Filters } from '../tracer/tracer.js';

export interface LiveFeedOptions {
	objectPath: string;
	filters: Filters;
	ringBytes: number;
	/** The model to feed; without one (trace), events go to the handlers only, and no table is walked. */
	model?: ChurnModel;
	/** With a model: full walks at least this often (undefined: at start and when a namespace appears). */
	walkIntervalMs?: number;
	/**
	 * Deliver the TIME_WAIT entries the kernel never reports: keep active closes, look up those that
	 * wait too long (suspect checks). Always with a model.
	 */
	witness?: boolean;
	log?: (line: string) => void;
	/** Hand the raw records to onEvents too (record). */
	keepRaw?: boolean;
	/** With keepRaw: each record goes here as it is drained, not into onEvents' `raw` (SessionOptions.recordSink). */
	recordSink?: RecordSink;
	/** With keepRaw: a walk's records are kept up to this many bytes; beyond, none (WalkRecord.omittedBytes). */
	keepWalkBytes?: number;
	/** With keepRaw: whether a walk taken at `takenAtUs` keeps its timewait sockets (else counted: WalkRecord.timeWaitOmitted). */
	keepWalkTimeWait?: (takenAtUs: number) => boolean;
	/**
	 * Ingest each event as it is drained, from ring memory, with no object per event; onEach instead
	 * of onEvents gets it (top, serve). With keepRaw, onEvents gets the raw records, and no events.
	 */
	perEvent?: boolean;
	/** How often the upkeep runs: due walks, the model's clock, onUpkeep. */
	upkeepMs?: number;
	/** Count in the kernel too (SessionOptions.counting): `counts` reads the counters. */
	counting?: boolean;
	/** With counting: walks leave out the timewait sockets the counters hold (SessionOptions.walksLeaveCounted). */
	walksLeaveCounted?: boolean;
	/**
	 * With walksLeaveCounted: the sockets every process holds (OpenSocketWalker walkTcp), for
	 * open-socket walks (open-walks.ts) in place of walks of a table whose timewait sockets are counted.
	 */
	processSockets?: () => Promise<Uint8Array>;
}

export interface LiveFeedHandlers {
	/** After the model (if any) ingested them; `raw` is their bytes, EVENT_SIZE each, when keepRaw. */
	onEvents?: (events: readonly TwtEvent[], raw: Buffer | undefined) => void;
	/** With perEvent: after the model ingested it, with whom it was blamed on (not for events the comm option left out). A view of ring memory: keep nothing of it. */
	onEach?: (event: TwtEvent, blamed: Blame) => void;
	/** After the model reconciled it. */
	onWalk?: (walk: WalkRecord) => void;
	/** New losses since the last report, and the totals. */
	onDrops?: (delta: Losses, total: Losses) => void;
	/** Every upkeep, after the walks due were started and the model's clock moved: timers of one's own are not needed. */
	onUpkeep?: (nowUs: number) => void;
	/** Brings the model up to now before a due walk's check (the kernel's counters read, its clock moved), in place of a drain and a tick. */
	upToNow?: () => void;
}

/** Namespaces a question may add to the model (askedAbout), in all: questions cannot grow it without bound. */
const MAX_ASKED_NAMESPACES = 4 * MAX_WALKED_NAMESPACES;
/** How often the feed looks up the closes waiting too long (suspect-check.ts). */
const SUSPECT_CHECK_US = 1_000_000;
/** A namespace with a suspect and no way in: ways in are looked for again at most this often. */
const REDISCOVER_US = 10_000_000;
/** The last walk of stop() gives up after this: every command exits within a second of SIGTERM. */
const LAST_WALK_MS = 700;
const DEFAULT_UPKEEP_MS = 500;

export class LiveFeed {
	readonly model: ChurnModel | undefined;
	/** Namespaces that could not be walked, with the reason. */
	readonly unwalked = new Map<number, string>();
	readonly #parts: LiveFeedParts;
	readonly #session: FeedSession;
	readonly #walker: FeedWalker | undefined;
	readonly #suspects: SuspectChecker | undefined;
	readonly #openWalks: OpenWalks | undefined;
	readonly #asked: readonly number[];
	readonly #walkIntervalMs: number;
	readonly #handlers: LiveFeedHandlers;
	readonly #keepRaw: boolean;
	readonly #walkKept: Pick<LiveFeedOptions, 'keepWalkBytes' | 'keepWalkTimeWait'>;
	readonly #upkeep: NodeJS.Timeout;
	/** Without a model: namespaces seen in events, with a process seen in each (a way in). */
	readonly #seen = new Map<number, number>();
	#lastWalkUs: number;
	#lastSuspectCheckUs = 0;
	/** Namespaces added by askedAbout. */
	#askedAbout = 0;
	#lastDiscoverUs = 0;
	/** Passes completed, due walks skipped, the last pass's wall time and where it went. */
	#walkCounts: Omit<WalkStats, 'inProgress'> = { completed: 0, skipped: 0, lastMs: undefined, openOnly: 0 };
	#paused = false;
	/** The walk in progress (one at a time), settled when it ends or is abandoned. */
	#walking: Promise<void> | undefined;
	/** Abandon the walk in progress at its next chunk. */
	#abandon = false;
	#stopped: SessionSummary | undefined;
	#drops: Losses = { ...NO_DROPS, decodeErrors: 0 };

	/**
	 * Loads and attaches (throws what the session throws), then, with a model, starts the first walk,
	 * which runs in the background like every other: the model shows events at once and the
	 * namespaces' older sockets as soon as the walk has read them. The upkeep timer runs from here
	 * until stop().
	 */
	constructor(options: LiveFeedOptions, handlers: LiveFeedHandlers = {}, parts: LiveFeedParts = BPF_PARTS) {
		const model = (this.model = options.model);
		this.#parts = parts;
		this.#asked = options.filters.netns;
		this.#walkIntervalMs = options.walkIntervalMs ?? Infinity;
		this.#handlers = handlers;
		const keepRaw = (this.#keepRaw = options.keepRaw === true);
		this.#walkKept = options;
		const onEach = options.perEvent && model ? (e: TwtEvent) => {
			const who = model.ingestOne(e);
			if (who) handlers.onEach?.(e, who);
		} : undefined;
		const witness = model !== undefined || options.witness === true;
		const { session, walker } = parts.open(
			{ objectPath: options.objectPath, filters: options.filters, ringBytes: options.ringBytes, log: options.log, witness, socketWalks: model !== undefined, keepRaw, recordSink: options.recordSink, onEach, counting: options.counting, walksLeaveCounted: options.walksLeaveCounted },
			{
				onEvents: (events, raw) => {
					if (model) model.ingest(events);
					else this.#note(events);
					handlers.onEvents?.(events, keepRaw ? raw : undefined);
				},
				onDrops: (delta, total) => {
					this.#drops = total;
					handlers.onDrops?.(delta, total);
				},
			},
			witness,
		);
		this.#session = session;
		this.#walker = walker;
		this.#suspects = walker ? new SuspectChecker(session, walker) : undefined;
		this.#openWalks = walker ? new OpenWalks(walker, session, options.walksLeaveCounted ? options.processSockets : undefined) : undefined;
		// Sockets entering TIME_WAIT from now on reach the model by events: any a walk finds without one was lost.
		if (model) model.attachedUs = parts.clockUs();
		this.#lastWalkUs = parts.clockUs();
		if (model) void this.walkAll();
		this.#upkeep = setInterval(() => this.#tick(), options.upkeepMs ?? DEFAULT_UPKEEP_MS);
	}

	/** The namespace twtrace runs in (0 without walks). */
	get home(): number { return this.#walker?.home ?? 0; }
	get ringBytes(): number { return this.#session.ringBytes; }

	/** The kernel's counters (with the counting option), and the tasks their keys name. */
	get counts(): FeedSession['counts'] { return this.#session.counts; }
	task(id: number): ReturnType<FeedSession['task']> { return this.#session.task(id); }

	/** Losses so far (updated about once a second). */
	get drops(): Losses { return this.#drops; }
	/** Socket walks: whether one is in progress, how many ran, and how long the last full pass took. */
	get walks(): WalkStats { return { inProgress: this.#walking !== undefined, ...this.#walkCounts }; }

	/**
	 * A question about `namespaces` (a view's --netns): those the model does not know yet are walked
	 * soon, by themselves, as if events had shown them. A host with more namespaces than a pass
	 * covers (MAX_WALKED_NAMESPACES) has some no pass reads; one that does not exist is listed in
	 * `unwalked` with the reason. At most MAX_ASKED_NAMESPACES are added this way, ever.
	 */
	askedAbout(namespaces: readonly number[]): void {
		if (!this.model) return;
		for (const netns of namespaces) {
			if (this.model.namespaces.has(netns) || this.#askedAbout >= MAX_ASKED_NAMESPACES) continue;
			this.#askedAbout++;
			this.model.addNamespace(netns);
		}
	}

	/** Delivers what the ring holds now. */
	drainNow(): void {
		if (!this.#stopped && !this.#paused) this.#session.drainNow();
	}

	/** Whether draining is stopped (pause). */
	get paused(): boolean { return this.#paused; }

	/** Stop draining (a slow consumer); the ring absorbs, then the kernel counts what overflows. */
	pause(): void {
		this.#paused = true; // the upkeep's drains too: they would hand the reader what it cannot take
		this.#session.pause();
	}

	resume(): void {
		this.#paused = false;
		this.#session.resume();
	}

	/** The upkeep: walks that are due, suspect checks, the model's clock, then the handler's own work. */
	#tick(): void {
		if (this.#stopped) return;
		if (!this.#paused) this.#session.drainNow(true); // a consumer that pauses meanwhile is not flooded
		this.#startDueWalk();
		this.#checkSuspects();
		const nowUs = this.#parts.clockUs();
		this.model?.tick(nowUs);
		this.#handlers.onUpkeep?.(nowUs);
	}

	/**
	 * With a model, starts a walk unless one runs: a full pass when the interval has passed; else a
	 * namespace events showed that no walk has read yet, by itself.
	 */
	#startDueWalk(): void {
		if (this.#walking || this.#stopped || !this.#walker || !this.model) return;
		if (this.#parts.clockUs() - this.#lastWalkUs >= this.#walkIntervalMs * 1000) {
			void this.#chain(() => this.#walkNamespaces(undefined, true));
			return;
		}
		// A namespace first seen in events is walked at once, by itself: its settings and its older
		// sockets count now, and the namespaces walked already are not read again before their time.
		const fresh = [...this.model.namespaces.values()].filter((ns) => ns.netns !== 0 && !ns.settings && !this.unwalked.has(ns.netns)).map((ns) => ns.netns);
		if (fresh.length) void this.#chain(() => this.#walkNamespaces(fresh));
	}

	/**
	 * Once a second: looks up the closes that wait too long for their end (suspect-check.ts); with
	 * `minAgeNs` 0 and no limit, all of them now (after detaching: no event is on its way any more).
	 * The events it delivers are drained with the next.
	 */
	#checkSuspects(last?: { minAgeNs: bigint }): void {
		if (!this.#suspects || !this.#walker) return;
		const nowUs = this.#parts.clockUs();
		if (!last && nowUs - this.#lastSuspectCheckUs < SUSPECT_CHECK_US) return;
		this.#lastSuspectCheckUs = nowUs;
		const result = this.#suspects.check(this.#parts.clockNs(), last?.minAgeNs ?? STALE_CLOSE_NS, (netns) => this.#pidsIn(netns), last ? Infinity : undefined);
		// No way into a namespace with a suspect: the processes seen there are gone. Look for ways in
		// (named namespaces, every process's ns/net), not more than every few seconds.
		if (result.unreachable.size && (last || nowUs - this.#lastDiscoverUs >= REDISCOVER_US)) {
			this.#lastDiscoverUs = nowUs;
			this.#walker.discover();
			if (last) this.#suspects.check(this.#parts.clockNs(), last.minAgeNs, (netns) => this.#pidsIn(netns), Infinity);
		}
	}

	/**
	 * Walks the namespaces of interest, a chunk of sockets at a time, giving the event loop back
	 * between chunks: draining, snapshots, scrapes and signals keep their pace during a walk of
	 * millions of sockets. After a walk in progress, if any. Never rejects: a namespace that cannot be
	 * walked is listed in `unwalked` with the reason.
	 */
	walkAll(): Promise<void> {
		return this.model ? this.#chain(() => this.#walkNamespaces()) : Promise.resolve();
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

	/**
	 * Walks the namespaces of interest, or only `fresh` ones (first seen in events): see walkAll. A due
	 * pass (`due`) reads only the namespaces whose kernel count disagrees with the model's (walk-plan.ts).
	 */
	async #walkNamespaces(fresh?: readonly number[], due = false): Promise<void> {
		const model = this.model;
		if (this.#stopped || this.#abandon || !this.#walker || !model) return;
		const startedUs = this.#parts.clockUs();
		const startNs = this.#parts.clockNs();
		const walked = new Set<number>();
		const time: WalkTime = { readMs: 0, drainMs: 0, handleMs: 0 };
		let openOnly = 0;
		const pass: OpenWalkPass = { time };
		// Before any walk of the pass: a hazard during any of them keeps its namespace on the table (OpenWalks.tableWalked).
		const hazards = this.#openWalks!.before();
		this.drainNow(); // events from before the walk must reach the model before it
		const discovered = fresh ? [] : this.#walker.discover();
		for (const netns of fresh ?? namespacesToWalk(model, this.#asked, this.home, discovered)) {
			if (this.#abandon) return;
			const opened = await this.#openWalks!.open(netns, this.#pidsIn(netns), due ? (peek) => this.#walkNeeded(model, peek) : undefined, pass);
			if (!opened) {
				this.#walkCounts.skipped++;
				continue;
			}
			if ('error' in opened) {
				this.unwalked.set(netns, opened.error);
				model.addNamespace(netns); // shown, with the reason it was not walked
				continue;
			}
			if (await this.#read(model, opened, time, hazards)) {
				this.unwalked.delete(netns);
				walked.add(netns);
				if ('records' in opened) openOnly++;
			}
		}
		this.#session.sweepClosing(this.#parts.clockNs(), { startNs, netns: walked });
		// Not a pass over the namespaces of interest: the interval and the pass count are theirs.
		if (fresh) return;
		this.#lastWalkUs = this.#parts.clockUs();
		if (due && walked.size === 0) return; // every namespace checked by its count: no walk to count or time
		Object.assign(this.#walkCounts, { lastMs: (this.#lastWalkUs - startedUs) / 1000, lastTime: time, completed: this.#walkCounts.completed + 1, lastOpenOnly: openOnly, lastTable: walked.size - openOnly, openOnly: this.#walkCounts.openOnly + openOnly });
	}

	/** Whether a due walk must be read: the model's count, its clock moved to now, against the kernel's. */
	#walkNeeded(model: ChurnModel, peek: WalkPeek): boolean {
		// The kernel's count is of now, so must the model's be (with counts, else a second of entries apart: a walk read for nothing).
		if (this.#handlers.upToNow) this.#handlers.upToNow();
		else this.drainNow(), model.tick(this.#parts.clockUs());
		return walkNeeded(walkCheckOf(model, peek, this.#walkIntervalMs));
	}

	/** Reads and reconciles one opened walk (a table walk began with `hazards`: OpenWalks.before); false when abandoned. */
	async #read(model: ChurnModel, w: OpenedWalk | OpenSocketsWalk, time: WalkTime, hazards: number | undefined): Promise<boolean> {
		const listenerOwner = (port: number) => this.#session.listenerOwner(w.netns, port);
		const r: WalkReconciling = {
			listenerOwner, drainNow: () => this.drainNow(), shouldStop: () => this.#abandon, time,
			keepBytes: this.#keepRaw ? this.#walkKept.keepWalkBytes ?? Infinity : undefined, keepTimeWait: this.#walkKept.keepWalkTimeWait?.(w.takenAtUs) ?? true,
		};
		const done = 'records' in w ? reconcileOpenWalk(model, w, r) : await reconcileTableWalk(model, w, r);
		if (!done) return false;
		if (!('records' in w)) this.#openWalks!.tableWalked(w.netns, hazards, done.uncounted);
		this.#handlers.onWalk?.(walkRecordOf(w, done.listening, listenerOwner, done.read, this.#keepRaw));
		return true;
	}

	/** Without a model: remembers the namespaces events came from, and a process in each (a way in). */
	#note(events: readonly TwtEvent[]): void {
		for (const e of events) {
			if (e.netns && !this.#seen.has(e.netns) && this.#seen.size < MAX_WALKED_NAMESPACES) this.#seen.set(e.netns, e.pid || e.closerPid);
		}
	}

	/** Processes seen in a namespace, the most recent first: their /proc/PID/ns/net is a way in. */
	#pidsIn(netns: number): number[] {
		if (!this.model) return [this.#seen.get(netns) ?? 0];
		return [...this.model.owners.values()].filter((o) => o.netns === netns && o.pid > 0)
			.sort((a, b) => b.lastEventUs - a.lastEventUs).slice(0, 8).map((o) => o.pid);
	}

	/**
	 * Stops the upkeep, abandons a walk in progress, detaches and delivers the rest of the ring;
	 * idempotent. With `last`, first makes the end complete after detaching, when no time_wait event
	 * is on its way any more: every close still waiting is looked up (its missed TIME_WAIT entry
	 * delivered), and with a model the namespaces are walked once more (for at most `lastWalkMs`, 0.7 s
	 * unless told: Infinity for the whole walk), so that the TIME_WAIT held at the end is exact (a
	 * report's, a record's capture end). top and serve skip it to exit at once.
	 */
	async stop(options: { last?: boolean; lastWalkMs?: number } = {}): Promise<SessionSummary> {
		if (this.#stopped) return this.#stopped;
		clearInterval(this.#upkeep);
		this.#abandon = true;
		await this.#walking;
		if (options.last && this.#walker) {
			this.#abandon = false;
			this.#session.detachTracepoints();
			this.#openWalks?.stop();
			this.#checkSuspects({ minAgeNs: 0n });
			const ms = options.lastWalkMs ?? LAST_WALK_MS;
			const deadline = Number.isFinite(ms) ? setTimeout(() => (this.#abandon = true), ms) : undefined;
			await this.walkAll();
			clearTimeout(deadline);
			this.#abandon = true;
		}
		this.#stopped = this.#session.stop();
		return this.#stopped;
	}
}
