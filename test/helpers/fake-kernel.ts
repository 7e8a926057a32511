/**
 * A fake kernel for the live pipeline's unit tests (LiveFeedParts): a session whose events a test
 * emits by hand, namespaces whose socket tables it fills, walks that read them, closes waiting for
 * their end and what a lookup finds of each, a clock it moves, and a record of what the feed asked
 * for (walks, lookups, recoveries, detaching, stopping). Open-socket walks read the sockets a test
 * says processes hold, and the closes waiting.
 */
import { closingSockRecord, type Closing } from '../../src/event/closing.js';
import type { Lookup } from '../../src/tracer/sock-diag.js';
import type { TwtEvent } from '../../src/event/decode.js';
import type { ListenerOwner } from '../../src/event/listener.js';
import { NO_TASK } from '../../src/event/tasks.js';
import type { NetnsSettings } from '../../src/facts/netns-settings.js';
import type { FeedWalker, LiveFeedParts } from '../../src/pipeline/feed-parts.js';
import type { WalkPeek } from '../../src/tracer/namespaces.js';
import type { SessionHandlers, SessionSummary } from '../../src/tracer/session.js';

const S = 1_000_000;

export const SETTINGS: NetnsSettings = { portRange: { low: 40000, high: 40999 }, reservedPorts: new Set(), finTimeoutSec: 60 };

export class FakeKernel {
	nowUs = 1000 * S;
	readonly home = 1;
	/** netns → the records its walk returns (struct twt_sock each), and its settings. */
	readonly tables = new Map<number, { records: Buffer[]; settings: NetnsSettings }>();
	/** netns → the kernel's count of its timewait sockets (sockstat tw) a walk's open reads; unset: unknown. */
	readonly kernelCounts = new Map<number, number>();
	/** Namespaces that cannot be entered, with the reason. */
	readonly unreachable = new Map<number, string>();
	/** (netns port) → who called listen(). */
	readonly listeners = new Map<string, ListenerOwner>();
	/** Closes waiting for their end (the `closing` map's unclaimed entries), by cookie. */
	readonly closes = new Map<bigint, Closing>();
	/** What a lookup of a close's socket finds; none: no such socket (it ended). */
	readonly sockets = new Map<bigint, Lookup>();
	/** Namespaces opened for full walks, in order. */
	readonly opened: number[] = [];
	/** Sockets processes hold, every namespace's (OpenSocketWalker walkTcp): what LiveFeedOptions.processSockets reads. */
	processSockets: Buffer[] = [];
	/** Tracer.openWalkHazards: closes the closing map could not keep. */
	hazards = 0;
	/** Lookups: the namespace and the cookies asked for, each batch; and the ways in offered. */
	readonly lookups: { netns: number; cookies: bigint[]; pids: number[] }[] = [];
	/** Cookies whose time_wait event recoverTimeWait delivered; and those forgotten. */
	readonly recovered: bigint[] = [];
	readonly forgotten: bigint[] = [];
	/** How many times the walker looked for ways into namespaces (discover). */
	discovered = 0;
	/** Drains the feed asked the session for. */
	drains = 0;
	detached = false;
	stopped = false;
	#handlers: SessionHandlers | undefined;

	table(netns: number, records: Buffer[], settings: NetnsSettings = SETTINGS): void {
		this.tables.set(netns, { records, settings });
	}

	/** Hands `events` to the feed, as a drain of the ring would. */
	emit(events: TwtEvent[]): void {
		this.#handlers!.onEvents(events);
	}

	/** A close of `cookie` in `netns` by `pid`, `ageS` seconds ago by the fake clock. */
	close(cookie: bigint, netns: number, pid: number, ageS: number): void {
		const none = new Uint8Array(16);
		this.closes.set(cookie, { claim: 0, closedNs: BigInt(this.nowUs - ageS * S) * 1000n, netns, pid, closerPid: pid, socket: { family: 4, saddr: none, daddr: none, sport: 40000, dport: 80, boundDevIf: 0 } });
	}

	parts(): LiveFeedParts {
		return {
			clockUs: () => this.nowUs,
			clockNs: () => BigInt(this.nowUs) * 1000n,
			open: (_options, handlers, walks) => {
				this.#handlers = handlers;
				const summary: SessionSummary = { events: 0, decodeErrors: 0, seconds: 0, ringFull: 0, mapFull: 0, missedRuns: 0, nestedRecovered: 0, ownerMissing: 0, walkMissed: 0, unwitnessed: 0 };
				return {
					session: {
						ringBytes: 4096,
						drainNow: () => void this.drains++,
						pause: () => {},
						resume: () => {},
						detachTracepoints: () => void (this.detached = true),
						stop: () => ((this.stopped = true), summary),
						sweepClosing: () => 0,
						staleCloses: (nowNs, minAgeNs, max) => [...this.closes].filter(([, c]) => c.claim === 0 && nowNs - c.closedNs > minAgeNs)
							.slice(0, max).map(([cookie, closing]) => ({ cookie, closing })),
						recoverTimeWait: (cookie) => {
							const c = this.closes.get(cookie);
							if (!c || c.claim !== 0) return false;
							c.claim = 1;
							this.recovered.push(cookie);
							return true;
						},
						forgetClose: (cookie) => (this.forgotten.push(cookie), this.closes.delete(cookie)),
						listenerOwner: (netns, port) => this.listeners.get(`${netns} ${port}`),
						task: () => NO_TASK,
						closesInFlight: () => Buffer.concat([...this.closes].filter(([, c]) => c.claim === 0).map(([cookie, c]) => closingSockRecord(cookie, c))),
						openWalkHazards: () => this.hazards,
					},
					walker: walks ? {
						home: this.home,
						discover: () => (this.discovered++, [...this.tables.keys()]),
						// One implementation of both overloads (NamespaceWalker.open).
						open: ((netns: number, _pids?: Iterable<number>, needed?: (peek: WalkPeek) => boolean) => {
							const why = this.unreachable.get(netns);
							if (why) return { netns, error: why };
							const t = this.tables.get(netns) ?? { records: [], settings: SETTINGS };
							if (needed && !needed({ netns, takenAtUs: this.nowUs, settings: t.settings, timeWaitKernel: this.kernelCounts.get(netns) })) return undefined;
							this.opened.push(netns);
							const bytes = Buffer.concat(t.records);
							let at = 0;
							return {
								netns, takenAtUs: this.nowUs, settings: t.settings,
								// Reads end inside records on purpose: the feed must carry the tail over.
								read: (buf: Buffer) => {
									const n = Math.min(buf.length, 100, bytes.length - at);
									bytes.copy(buf, 0, at, at + n);
									at += n;
									return n;
								},
								close: () => {},
							};
						}) as FeedWalker['open'],
						peek: (netns) => {
							const why = this.unreachable.get(netns);
							if (why) return { netns, error: why };
							return { netns, takenAtUs: this.nowUs, settings: (this.tables.get(netns) ?? { settings: SETTINGS }).settings, timeWaitKernel: this.kernelCounts.get(netns) };
						},
						lookup: (netns, pids, sockets) => {
							const why = this.unreachable.get(netns);
							if (why) return { netns, error: why };
							this.lookups.push({ netns, cookies: sockets.map((s) => s.cookie), pids: [...pids] });
							return sockets.map((s) => this.sockets.get(s.cookie) ?? { found: false });
						},
					} : undefined,
				};
			},
		};
	}
}

/** Resolves once `check` holds (polled every ms), or rejects after `ms`. */
export async function eventually(check: () => boolean, ms = 2000): Promise<void> {
	const deadline = Date.now() + ms;
	while (!check()) {
		if (Date.now() > deadline) throw new Error('condition not reached');
		await new Promise((resolve) => setTimeout(resolve, 1));
	}
}
