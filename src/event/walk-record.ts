/**
 * A walk of one namespace as it is kept: the iter/tcp records as the kernel wrote them, the
 * namespace's settings, and the owners of its listening ports (from the listeners map, which a
 * replay no longer has). The live feed makes it, `record` and the flight recorder store it, a
 * replay reads it back (model/walk.ts turns it into what the model reconciles), so live and
 * replayed models see identical input.
 */
import type { NetnsSettings } from '../facts/netns-settings.js';

export interface ListenerRecord {
	port: number;
	pid: number;
	comm: string;
}

export interface WalkRecord {
	netns: number;
	/** CLOCK_MONOTONIC µs when the walk started. */
	takenAtUs: number;
	settings: NetnsSettings;
	/** Owners of listening ports, known for those twtrace saw listen(). */
	listeners: ListenerRecord[];
	/** struct twt_sock records, in host byte order. */
	sockets: Uint8Array;
	/**
	 * The walk's records were not kept (more than the keeper's bound): `sockets` is empty and is not
	 * the namespace's table. How many bytes of records there were.
	 */
	omittedBytes?: number;
	/**
	 * The walk's timewait sockets were left out, and how many there were: a flight recorder keeping
	 * the kernel's counts has the entries counted (pipeline/recorder.ts), and a walk's other sockets
	 * (listeners, open connections) are a small part of it.
	 */
	timeWaitOmitted?: number;
	/**
	 * The kernel left out the timewait sockets armed since counting began, and how many there were
	 * (Tracer's walksLeaveCounted): their entries are counted. Those armed before are in `sockets`.
	 */
	timeWaitCounted?: number;
	/**
	 * An open-socket walk (src/pipeline/open-walks.ts): `sockets` are the sockets processes held in the
	 * namespace and its closes in flight; none of its timewait sockets was visited, and timeWaitCounted
	 * is the kernel's count of them (sockstat), every one counted.
	 */
	openOnly?: boolean;
}
