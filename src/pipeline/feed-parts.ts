/**
 * What a live feed is made of: a trace session (the BPF programs, the ring, the loss counters, the
 * kernel's side of walks) and a walker of network namespaces. The real ones load BPF (BPF_PARTS);
 * unit tests give fakes (test/helpers/fake-kernel.ts), so the feed's scheduling is tested without root.
 */
import type { ListenerOwner } from '../event/listener.js';
import type { TaskInfo } from '../event/tasks.js';
import type { CountSource } from './count-reader.js';
import { monotonicUs } from '../tracer/host.js';
import { NamespaceWalker } from '../tracer/namespaces.js';
import type { SuspectSession } from './suspect-check.js';
import { TraceSession, type SessionHandlers, type SessionOptions, type SessionSummary } from '../tracer/session.js';

/** What the feed needs of a trace session (tracer/session.ts), and of the kernel's side of walks. */
export interface FeedSession extends SuspectSession {
	readonly ringBytes: number;
	/** `untilPaused`: stop early if the consumer pauses meanwhile (tracer/ring-reader.ts). */
	drainNow(untilPaused?: boolean): void;
	pause(): void;
	resume(): void;
	detachTracepoints(): void;
	stop(): SessionSummary;
	/** Deletes the `closing` entries a walk settled (Tracer.sweepClosing). */
	sweepClosing(nowNs: bigint, walk?: { startNs: bigint; netns: ReadonlySet<number> }): number;
	/** Who called listen() on (netns, port), as seen since start (Tracer.listenerOwner). */
	listenerOwner(netns: number, port: number): ListenerOwner | undefined;
	/** The kernel's counters, when the session counts (SessionOptions.counting). */
	readonly counts?: CountSource;
	/** The task of an id the ring's records named (TraceSession.task). */
	task(id: number): TaskInfo;
	/** The closes in flight of every namespace, as socket records (Tracer.closesInFlight): for open-socket walks. */
	closesInFlight?(): Uint8Array;
	/** What open-socket walks' soundness depends on, a number that only grows (Tracer.openWalkHazards). */
	openWalkHazards?(): number;
}

/** What the feed needs of a namespace walker (tracer/namespaces.ts NamespaceWalker). */
export type FeedWalker = Pick<NamespaceWalker, 'home' | 'discover' | 'open' | 'lookup'> & Partial<Pick<NamespaceWalker, 'peek'>>;

/** The parts a feed is made of: real ones by default, fakes in tests. */
export interface LiveFeedParts {
	clockUs(): number;
	/** CLOCK_MONOTONIC ns, the BPF side's clock (bpf_ktime_get_ns): the ages of closes. */
	clockNs(): bigint;
	/** Loads and attaches; `walks` asks for a walker too (walks and lookups). Throws what loading throws. */
	open(options: SessionOptions, handlers: SessionHandlers, walks: boolean): { session: FeedSession; walker: FeedWalker | undefined };
}

/** The real parts: a TraceSession over the BPF object, and a NamespaceWalker of its tracer. */
export const BPF_PARTS: LiveFeedParts = {
	clockUs: monotonicUs,
	clockNs: () => process.hrtime.bigint(), // libuv's hrtime is CLOCK_MONOTONIC
	open(options, handlers, walks) {
		const trace = new TraceSession(options, handlers);
		const t = trace.tracer;
		const session: FeedSession = {
			get ringBytes() { return trace.ringBytes; },
			drainNow: (untilPaused) => trace.drainNow(untilPaused),
			pause: () => trace.pause(),
			resume: () => trace.resume(),
			detachTracepoints: () => trace.detachTracepoints(),
			stop: () => trace.stop(),
			sweepClosing: (nowNs, walk) => t.sweepClosing(nowNs, walk),
			staleCloses: (nowNs, minAgeNs, max) => t.staleCloses(nowNs, minAgeNs, max),
			recoverTimeWait: (cookie, substate) => t.recoverTimeWait(cookie, substate),
			forgetClose: (cookie) => t.forgetClose(cookie),
			listenerOwner: (netns, port) => t.listenerOwner(netns, port),
			counts: t.counts,
			task: (id) => trace.task(id),
			closesInFlight: () => t.closesInFlight(),
			openWalkHazards: () => t.openWalkHazards(),
		};
		return { session, walker: walks ? new NamespaceWalker(t, monotonicUs) : undefined };
	},
};
