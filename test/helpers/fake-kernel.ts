/**
 * A fake kernel for the live pipeline's unit tests (LiveFeedParts): a session whose events a test
 * emits by hand, namespaces whose socket tables it fills, walks that read them, a clock it moves,
 * and a record of what the feed asked for (full walks, witness walks, detaching, stopping).
 */
import type { TwtEvent } from '../../src/event/decode.js';
import type { ListenerOwner } from '../../src/event/listener.js';
import type { NetnsSettings } from '../../src/facts/netns-settings.js';
import type { LiveFeedParts } from '../../src/pipeline/feed-parts.js';
import type { SessionHandlers, SessionSummary } from '../../src/tracer/session.js';

const S = 1_000_000;

export const SETTINGS: NetnsSettings = { portRange: { low: 40000, high: 40999 }, reservedPorts: new Set(), finTimeoutSec: 60 };

export class FakeKernel {
	nowUs = 1000 * S;
	readonly home = 1;
	/** netns → the records its walk returns (struct twt_sock each), and its settings. */
	readonly tables = new Map<number, { records: Buffer[]; settings: NetnsSettings }>();
	/** Namespaces that cannot be entered, with the reason. */
	readonly unreachable = new Map<number, string>();
	/** (netns port) → who called listen(). */
	readonly listeners = new Map<string, ListenerOwner>();
	/** Whether a close waits too long for its end (the sign of a missed TIME_WAIT entry). */
	staleClose = false;
	/** Namespaces opened for full walks, in order; witness walks, each the set it covered. */
	readonly opened: number[] = [];
	readonly witnessed: number[][] = [];
	/** How many times the walker looked for ways into namespaces (discover). */
	discovered = 0;
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

	parts(): LiveFeedParts {
		return {
			clockUs: () => this.nowUs,
			open: (_options, handlers, walks) => {
				this.#handlers = handlers;
				const summary: SessionSummary = { events: 0, decodeErrors: 0, seconds: 0, ringFull: 0, mapFull: 0, missedRuns: 0, nestedRecovered: 0, ownerMissing: 0, walkMissed: 0, unwitnessed: 0 };
				return {
					session: {
						ringBytes: 4096,
						drainNow: () => {},
						pause: () => {},
						resume: () => {},
						detachTracepoints: () => void (this.detached = true),
						stop: () => ((this.stopped = true), summary),
						sweepClosing: () => 0,
						hasStaleClose: () => this.staleClose,
						listenerOwner: (netns, port) => this.listeners.get(`${netns} ${port}`),
					},
					walker: walks ? {
						home: this.home,
						discover: () => (this.discovered++, [...this.tables.keys()]),
						open: (netns) => {
							const why = this.unreachable.get(netns);
							if (why) return { netns, error: why };
							this.opened.push(netns);
							const t = this.tables.get(netns) ?? { records: [], settings: SETTINGS };
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
						},
						witness: async (namespaces: Iterable<number>) => {
							const set = new Set(namespaces);
							this.witnessed.push([...set]);
							return set;
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
