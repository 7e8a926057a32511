/**
 * A walk of a namespace read and reconciled with the model: a walk of its table a chunk at a time,
 * or an open-socket walk (open-walks.ts), read already, all at once. The live feed decides which and when; what a walk
 * does to the model is model/reconcile.ts.
 */
import { decodeSockets, TCP_LISTEN } from '../event/sock.js';
import type { ChurnModel } from '../model/churn-model.js';
import type { OpenedWalk } from '../tracer/namespaces.js';
import type { OpenSocketsWalk } from './open-walks.js';
import { readWalk, timed, type WalkRead, type WalkTime } from './walk-reader.js';

export interface WalkReconciling {
	listenerOwner: (port: number) => { pid: number; comm: string } | undefined;
	/** Drains the ring: before each chunk, and after the last. */
	drainNow: () => void;
	shouldStop: () => boolean;
	/** Keep the records up to this many bytes (record, the flight recorder); undefined: keep none. */
	keepBytes: number | undefined;
	/** With keepBytes: keep a table walk's timewait sockets (WalkReading.keepTimeWait). */
	keepTimeWait: boolean;
	time: WalkTime;
}

/** A walk read and reconciled: its reading, its listening ports, and the timewait sockets the model took (a table walk's). */
export interface WalkReconciled { read: WalkRead; listening: Iterable<number>; uncounted: number }

/** Reads a walk of the table to its end, reconciling a socket at a time; undefined when abandoned. */
export async function reconcileTableWalk(model: ChurnModel, w: OpenedWalk, r: WalkReconciling): Promise<WalkReconciled | undefined> {
	const walk: Parameters<ChurnModel['beginReconcile']>[0] = { netns: w.netns, takenAtUs: w.takenAtUs, settings: w.settings, listenerOwner: r.listenerOwner };
	const reconciler = model.beginReconcile(walk);
	const listening = new Set<number>();
	const read = await readWalk(w, {
		each: (s) => {
			if (s.state === TCP_LISTEN) listening.add(s.sport);
			reconciler.add(s);
		},
		// Reading a chunk ran dump_tcp over its sockets, which sent the time_wait events the kernel
		// missed (kernel-facts §8): the model takes them first, so the walk finds them known.
		beforeChunk: r.drainNow,
		shouldStop: r.shouldStop,
		keepBytes: r.keepBytes,
		keepTimeWait: r.keepTimeWait,
		time: r.time,
	});
	if (!read) return undefined;
	// The walk delivered the time_wait events the kernel missed (bpf/twtrace.bpf.c, dump_tcp):
	// the model takes them before the walk ends, so that they keep their owner.
	timed(r.time, 'drainMs', r.drainNow);
	walk.timeWaitCounted = read.timeWaitCounted;
	const uncounted = timed(r.time, 'handleMs', () => reconciler.finish());
	return { read, listening, uncounted };
}

/**
 * Reconciles an open-socket walk, its records read already: all at once, since its sockets come in
 * no particular order (a child may come before its listener) and are few.
 */
export function reconcileOpenWalk(model: ChurnModel, w: OpenSocketsWalk, r: Pick<WalkReconciling, 'listenerOwner' | 'keepBytes' | 'time'>): WalkReconciled {
	const sockets = decodeSockets(w.records).sockets;
	const timeWaitCounted = w.timeWaitKernel;
	timed(r.time, 'handleMs', () => model.reconcile({ netns: w.netns, takenAtUs: w.takenAtUs, settings: w.settings, sockets, listenerOwner: r.listenerOwner, timeWaitCounted, openOnly: true }));
	const kept = r.keepBytes !== undefined && w.records.length <= r.keepBytes ? w.records : undefined;
	return { read: { bytes: w.records.length, kept, timeWaitCounted, openOnly: true }, listening: sockets.filter((s) => s.state === TCP_LISTEN).map((s) => s.sport), uncounted: 0 };
}
