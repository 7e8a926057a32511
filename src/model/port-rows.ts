/**
 * The rows about ports in a snapshot: each destination's headroom and time to exhaustion, each
 * namespace's TIME_WAIT and settings, and each victim of a failed connect() or bind() with who holds
 * the ports it needed now. Pure: the model and the time come in.
 */
import type { NetnsSettings } from '../facts/netns-settings.js';
import type { ChurnModel } from './churn-model.js';
import type { Likely } from './likely.js';
import { perSecond, type Destination, type NamespaceTimeWait } from './owners.js';
import { holdersOfDestination, holdersOfLocalPort } from './port-holders.js';
import { secondsToExhaustion, sustainableRate } from './ports.js';
import type { VictimEntry } from './victims.js';

const US = 1_000_000;

export interface DestinationRow {
	netns: number;
	saddr: string;
	daddr: string;
	dport: number;
	portsInUse: number;
	portsUsable: number;
	/** Ports in use / usable, 0..1. */
	usedRatio: number;
	/** Free ports / usable, 0..1: (usable - in use) / usable, not 1 - usedRatio, which prints 0.30000000000000004. */
	headroomRatio: number;
	/** New connections per second it sustains: usable / 60 s. */
	sustainableRate: number;
	/** New connections per second now. */
	currentRate: number;
	/** At the current rate; null when it is sustainable. */
	secondsToExhaustion: number | null;
	connectFailures: number;
}

export interface NamespaceRow {
	netns: number;
	/** Its name: /run/netns/NAME's NAME, or the workload of a process in it; set by the pipeline. */
	name?: string;
	/** TIME_WAIT sockets in the namespace, every process's (ChurnModel.namespaceTimeWait). */
	timeWait: number;
	/** `model`: now; `walk`: at the last walk, walkedAgoMs ago (a filtered model sees only part of the namespace). */
	timeWaitFrom: NamespaceTimeWait['from'];
	/** The last walk's count (all owners), and its age. */
	walkedTimeWait: number | null;
	walkedAgoMs: number | null;
	settings: NetnsSettings | null;
	portsUsable: number | null;
	/** TIME_WAIT sockets the kernel did not create (tcp_max_tw_buckets) since the first walk; null before it. */
	overflowSinceStart: number | null;
}

/** Who holds ports a victim needed: TIME_WAIT sockets per process, now. */
export interface HolderRow {
	pid: number;
	comm: string;
	timeWait: number;
	/** When the holder's process is unknown: who likely owns those sockets, and why. */
	likely?: Likely;
}

/** A process whose connect() or bind() failed for want of a port in the victim window. */
export interface VictimRow extends Omit<VictimEntry, 'addr' | 'port'> {
	/** The holders of that pool's ports, the most first (at most MAX_HOLDERS). */
	holders: HolderRow[];
	/** TIME_WAIT held in that pool by all holders. */
	heldTimeWait: number;
}

/** How a process holding ports is named wherever victims are shown: "comm (pid N)", or the comm alone. */
export function holderLabel(h: { pid: number; comm: string; likely?: Likely }): string {
	const name = h.pid ? `${h.comm} (pid ${h.pid})` : h.comm;
	return h.likely ? `${name} (likely ${h.likely.comm}, pid ${h.likely.pid})` : name;
}

/** Victims whose last failure is at most this old are shown. */
export const VICTIM_WINDOW_US = 60 * 1_000_000;
const MAX_HOLDERS = 3;

/** Destinations with ports in use or connects in the rate window, the least headroom first. */
export function destinationRows(model: ChurnModel, nowUs: number, rateWindowUs: number, wanted?: (d: Destination) => boolean): DestinationRow[] {
	const nowSecond = Math.floor(nowUs / US);
	const rows: DestinationRow[] = [];
	for (const d of model.destinations.values()) {
		if (wanted && !wanted(d)) continue;
		const portsUsable = model.portsUsable(d.netns);
		const portsInUse = d.portsHeldOpen + d.timeWait;
		if (portsInUse === 0 && d.connects.every((n) => n === 0)) continue;
		const currentRate = perSecond(d.connects, d.slotSecond, 1, 0, nowUs, rateWindowUs, model.startUs);
		const ns = model.namespaces.get(d.netns);
		const cap = ns?.settings?.maxTimeWaitBuckets;
		const timeWaitElsewhere = model.namespaceTimeWait(d.netns).count - d.timeWait;
		const maxTimeWait = cap === undefined ? undefined : Math.max(0, cap - Math.max(0, timeWaitElsewhere));
		const seconds = secondsToExhaustion({ portsUsable, portsHeldOpen: d.portsHeldOpen, timeWaitExpiring: d.expiring, nowSecond, ratePerSec: currentRate, maxTimeWait });
		rows.push({
			netns: d.netns, saddr: d.saddr, daddr: d.daddr, dport: d.dport,
			portsInUse, portsUsable,
			usedRatio: portsUsable > 0 ? Math.min(1, portsInUse / portsUsable) : 1,
			headroomRatio: portsUsable > 0 ? Math.max(0, portsUsable - portsInUse) / portsUsable : 0,
			sustainableRate: sustainableRate(portsUsable),
			currentRate,
			secondsToExhaustion: seconds === undefined ? null : Math.round(seconds * 10) / 10,
			connectFailures: d.connectFailures,
		});
	}
	return rows.sort((a, b) => b.usedRatio - a.usedRatio || (a.secondsToExhaustion ?? Infinity) - (b.secondsToExhaustion ?? Infinity) || b.currentRate - a.currentRate);
}

/** Every namespace known, the most TIME_WAIT first. */
export function namespaceRows(model: ChurnModel, nowUs: number): NamespaceRow[] {
	return [...model.namespaces.values()].map((ns) => {
		const timeWait = model.namespaceTimeWait(ns.netns);
		return {
			netns: ns.netns,
			timeWait: timeWait.count,
			timeWaitFrom: timeWait.from,
			walkedTimeWait: ns.walkedTimeWait ?? null,
			walkedAgoMs: ns.walkedAtUs === undefined ? null : Math.round((nowUs - ns.walkedAtUs) / 1000),
			settings: ns.settings ?? null,
			portsUsable: ns.settings ? model.portsUsable(ns.netns) : null,
			overflowSinceStart: ns.settings ? (ns.settings.timeWaitOverflow ?? 0) - (ns.overflowAtFirstWalk ?? 0) : null,
		};
	}).sort((a, b) => b.timeWait - a.timeWait || a.netns - b.netns);
}

/** Victims since `sinceUs`, each with who holds the ports it needed now (ChurnModel.holdersOf…). */
export function victimRows(model: ChurnModel, sinceUs: number, likelyByOwner = model.likelyOwners(), wanted?: (v: VictimEntry) => boolean): VictimRow[] {
	return model.victims.since(sinceUs).filter((v) => !wanted || wanted(v)).map(({ addr, port, ...v }) => {
		const held = v.call === 'connect' ? holdersOfDestination(model, v.netns, addr, port) : holdersOfLocalPort(model, v.netns, port);
		const byProcess = new Map<string, HolderRow>();
		let heldTimeWait = 0;
		for (const [o, n] of held) {
			heldTimeWait += n;
			const likely = likelyByOwner.get(o);
			const key = `${o.pid} ${o.comm} ${likely?.pid ?? ''}`;
			const h: HolderRow = byProcess.get(key) ?? { pid: o.pid, comm: o.comm, timeWait: 0, ...(likely ? { likely } : {}) };
			h.timeWait += n;
			byProcess.set(key, h);
		}
		const holders = [...byProcess.values()].sort((a, b) => b.timeWait - a.timeWait || a.comm.localeCompare(b.comm)).slice(0, MAX_HOLDERS);
		return { ...v, holders, heldTimeWait };
	});
}
