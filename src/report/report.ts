/**
 * A churn report, as data: who created the TIME_WAIT, who failed because of it, and what to do;
 * its one-line summary for an incident channel. ReportBuilder (builder.ts) makes it from the model
 * `top` runs; views/report-text.ts writes it as a table or Markdown.
 */
import type { Advice } from '../advice/advice.js';
import type { CaptureDrops } from '../capture/format.js';
import type { NetnsSettings } from '../facts/netns-settings.js';
import type { Grouping } from '../model/groups.js';
import type { NamespaceTimeWait } from '../model/owners.js';
import type { PortFailure } from '../model/victims.js';
import { formatDuration } from '../views/duration.js';
import type { Timeline } from './timeline.js';

export interface Offender {
	rank: number;
	/** Grouping key: pid, comm, cgroup id, netns or peer. */
	key: string;
	pid: number | null;
	comm: string;
	processes: number;
	cgroupId: number | null;
	cgroup: string | null;
	/** The workload (systemd unit, container, pod) of its busiest cgroup, when known. */
	workload: string | null;
	netns: number | null;
	side: 'client' | 'server' | 'both' | '-';
	connections: number;
	timeWaitEntries: number;
	/** Share of all TIME_WAIT entries in the report, 0..1. */
	timeWaitShare: number;
	/** The most TIME_WAIT it held at once (sampled each second), and at the end. */
	peakTimeWait: number;
	timeWaitAtEnd: number;
	resets: number;
	connectFailures: Record<string, number>;
	bindFailures: number;
	connectRateAvg: number;
	connectRatePeak: number;
	/**
	 * Connection lifetimes. `upTo`: from the kernel's counts (a flight recorder keeping counts), which
	 * keep a histogram of buckets: each value is the bound of its bucket, the lifetime at most that.
	 */
	lifetimeMs: { p50: number; p90: number; p99: number; max: number; upTo?: true } | null;
	topDestinations: { peer: string; timeWaitEntries: number; connections: number }[];
	/**
	 * For sockets of unknown process ("(before start)", "(events lost)"): who likely owns them and
	 * why, from the connect() calls recorded. Inferred: never part of another offender's counts.
	 */
	likely?: { pid: number; comm: string; peakTimeWait: number; evidence: string; inferred: true }[];
	advice: Advice[];
}

export interface Victim {
	pid: number;
	comm: string;
	netns: number;
	/** connect() EADDRNOTAVAIL, or bind() EADDRINUSE. */
	call: PortFailure['call'];
	errno: PortFailure['errno'];
	/** "daddr:dport" for connect, "saddr:sport" for bind. */
	target: string;
	failures: number;
	/** ISO 8601 times of the first and the last failure. */
	first: string;
	last: string;
	/** Who held the ports at those moments: ranks of offenders (and labels), most ports first. */
	heldBy: { offenderRank: number | null; label: string; portsHeld: number }[];
}

export interface DestinationSummary {
	netns: number;
	saddr: string;
	daddr: string;
	dport: number;
	connects: number;
	peakPortsInUse: number;
	portsUsable: number;
	sustainableRate: number;
	peakConnectRate: number;
	connectFailures: number;
}

export interface NamespaceSummary {
	netns: number;
	settings: NetnsSettings | null;
	/**
	 * TIME_WAIT in the namespace at the end, every process's, and the most held at once (sampled each
	 * second and at each walk): the model's count (ChurnModel.namespaceTimeWait), exact at each walk
	 * and kept by the events in between; a filtered capture's model has only its walks' counts.
	 */
	timeWaitAtEnd: number;
	peakTimeWait: number;
	timeWaitFrom: NamespaceTimeWait['from'];
	/** No walk of it: TIME_WAIT it held before the capture began is not counted. */
	walked: boolean;
	/** TCPTimeWaitOverflow during the capture (last walk's counter minus the first's). */
	timeWaitOverflow: number;
}

export interface Report {
	/** capture: a file (`file` is its path); agent: the agent's flight recorder (`file` says which agent and span); live. */
	source: { kind: 'capture' | 'agent' | 'live'; file?: string; host: string; kernel: string; startedAt: string; seconds: number; filters: string };
	complete: boolean;
	incomplete?: string;
	by: Grouping;
	totals: { events: number; connections: number; timeWaitEntries: number; connectFailures: Record<string, number>; bindFailures: number; walks: number };
	losses: CaptureDrops & {
		ownersMerged: number;
		timeWaitUntracked: number;
		/** End-frame counters that held no usable value ("ringFull -1"): those losses are unknown. */
		unreadable: string[];
	};
	offenders: Offender[];
	victims: Victim[];
	destinations: DestinationSummary[];
	namespaces: NamespaceSummary[];
	summary: string;
	/** What the HTML report plots (timeline.ts). */
	timeline: Timeline;
}

export function labelOf(o: Pick<Offender, 'pid' | 'comm' | 'key' | 'processes'> & Partial<Pick<Offender, 'cgroup' | 'workload'>>, by: Grouping): string {
	if (by === 'process') return o.pid ? `${o.comm} (pid ${o.pid})` : o.comm;
	if (by === 'comm') return `${o.comm} (${o.processes} process${o.processes === 1 ? '' : 'es'})`;
	// A cgroup by the names people know (its workload), else its path; its id only when neither is known.
	if (by === 'cgroup') return o.workload ?? o.cgroup ?? `cgroup id ${o.key}`;
	if (by === 'workload') return o.key;
	return `${by} ${o.key}`;
}

/** One line for an incident channel: the top offender, its share, the victims, the first fix. */
export function summarize(r: Report): string {
	const where = `${r.source.host}, ${formatDuration(r.source.seconds)}`;
	const partial = r.complete ? '' : ' [INCOMPLETE capture]';
	const top = r.offenders[0];
	if (!top || r.totals.timeWaitEntries === 0) return `twtrace: no TIME_WAIT churn (${where}; ${r.totals.connections.toLocaleString('en-US')} connections)${partial}`;
	const share = Math.round(top.timeWaitShare * 100);
	const victims = r.victims.reduce((n, v) => n + v.failures, 0);
	const failed = victims ? `; ${victims.toLocaleString('en-US')} connect/bind failures from port exhaustion` : '';
	const dest = top.topDestinations[0] ? ` to ${top.topDestinations[0].peer}` : '';
	return `twtrace: ${labelOf(top, r.by)} made ${share} % of ${r.totals.timeWaitEntries.toLocaleString('en-US')} TIME_WAIT` +
		` (${top.side}${dest}, peak ${top.peakTimeWait.toLocaleString('en-US')} held)${failed} (${where})${partial}. First fix: ${top.advice[0]!.title}.`;
}
