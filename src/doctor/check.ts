/**
 * The doctor's verdict, pure: TIME_WAIT per namespace against --warn/--crit, the headroom of the
 * worst destination (free share of its ports: below 20 % warns, below 10 % is critical), failures
 * seen while sampling (EADDRNOTAVAIL, EADDRINUSE: exhaustion now), and a review of the sysctls.
 * Status and exit code follow the Nagios plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
 */
import { endpoint } from '../event/endpoint.js';
import { formatDuration } from '../views/duration.js';
import type { NetnsSettings } from '../facts/netns-settings.js';
import { holderLabel, type VictimRow } from '../model/port-rows.js';
import type { Snapshot } from '../model/snapshot.js';

export const STATUS = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const;
export type Status = (typeof STATUS)[number];

export interface Thresholds {
	warnTimeWait: number;
	critTimeWait: number;
	/** Free share of a destination's ports below which it warns / is critical. */
	warnHeadroom: number;
	critHeadroom: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = { warnTimeWait: 20_000, critTimeWait: 30_000, warnHeadroom: 0.2, critHeadroom: 0.1 };

export interface DoctorInput {
	namespaces: {
		netns: number;
		/** /run/netns NAME, or the workload of a process in it. */
		name?: string;
		/** TIME_WAIT in the namespace now (the model's count); null when it was never walked. */
		timeWait: number | null;
		/** Set when timeWait is the last walk's, not now's (an agent with filters): how old it is. */
		walkedAgoSeconds?: number;
		settings: NetnsSettings | null;
		error?: string;
		asked: boolean;
		/** TCPTimeWaitOverflow's increase while sampling. */
		overflowDelta: number;
	}[];
	destinations: { netns: number; saddr: string; daddr: string; dport: number; portsInUse: number; portsUsable: number; currentRate: number; sustainableRate: number; secondsToExhaustion: number | null }[];
	victims: { pid: number; comm: string; netns: number; errno: 'EADDRNOTAVAIL' | 'EADDRINUSE'; target: string; failures: number; heldBy: { label: string; timeWait: number }[] }[];
	/** The busiest TIME_WAIT holders, for the details. */
	holders: { label: string; timeWait: number; side: string }[];
	/** Victims are those of the last sampleSeconds. */
	sampleSeconds: number;
	/** overflowDelta is over this many seconds (the sample, or the agent's life). */
	watchedSeconds: number;
}

export interface Finding {
	status: Status;
	check: 'time-wait' | 'headroom' | 'failures' | 'sysctl' | 'walk';
	netns: number | null;
	message: string;
}

export interface Verdict {
	status: Status;
	exitCode: 0 | 1 | 2 | 3;
	/** The first line, Nagios style, with performance data after "|". */
	line: string;
	findings: Finding[];
}

const n = (v: number) => v.toLocaleString('en-US');
// UNKNOWN ranks above CRITICAL for Nagios only when nothing else is known; a CRITICAL finding wins.
const rank = (s: Status) => ({ OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3 })[s];

export function evaluate(input: DoctorInput, t: Thresholds): Verdict {
	const findings: Finding[] = [];
	const perf: string[] = [];
	for (const ns of input.namespaces) {
		if (ns.timeWait === null) {
			findings.push({ status: ns.asked ? 'UNKNOWN' : 'OK', check: 'walk', netns: ns.netns, message: `${nsLabel(ns)} not walked: ${ns.error ?? 'unknown reason'}` });
			continue;
		}
		const status: Status = ns.timeWait >= t.critTimeWait ? 'CRITICAL' : ns.timeWait >= t.warnTimeWait ? 'WARNING' : 'OK';
		const max = ns.settings?.maxTimeWaitBuckets;
		const when = ns.walkedAgoSeconds === undefined ? '' : ` at the last walk, ${formatDuration(ns.walkedAgoSeconds)} ago`;
		findings.push({ status, check: 'time-wait', netns: ns.netns, message: `${nsLabel(ns)}: ${n(ns.timeWait)} TIME_WAIT${when} (warn ${n(t.warnTimeWait)}, crit ${n(t.critTimeWait)}${max !== undefined ? `, tcp_max_tw_buckets ${n(max)}` : ''})` });
		perf.push(`'time_wait_${ns.netns}'=${ns.timeWait};${t.warnTimeWait};${t.critTimeWait};0${max !== undefined ? `;${max}` : ''}`);
		findings.push(...reviewSysctls(ns.netns, nsLabel(ns), ns.settings, ns.overflowDelta, input.watchedSeconds));
	}
	const worst = input.destinations
		.map((d) => ({ d, headroom: d.portsUsable > 0 ? Math.max(0, 1 - d.portsInUse / d.portsUsable) : 0 }))
		.sort((a, b) => a.headroom - b.headroom)[0];
	if (worst) {
		const { d, headroom } = worst;
		const status: Status = headroom < t.critHeadroom ? 'CRITICAL' : headroom < t.warnHeadroom ? 'WARNING' : 'OK';
		const eta = d.secondsToExhaustion === null ? '' : d.secondsToExhaustion === 0 ? '; exhausted' : `; exhausted in ${Math.round(d.secondsToExhaustion)} s at ${n(Math.round(d.currentRate))}/s`;
		findings.push({
			status, check: 'headroom', netns: d.netns,
			message: `worst destination ${d.saddr} → ${endpoint(d.daddr, d.dport)} (netns ${d.netns}): ${n(d.portsInUse)} of ${n(d.portsUsable)} ports in use, ` +
				`${Math.floor(headroom * 100)} % headroom (warn < ${t.warnHeadroom * 100} %, crit < ${t.critHeadroom * 100} %); sustains ${n(Math.round(d.sustainableRate))}/s${eta}`,
		});
		perf.push(`'headroom_min'=${Math.floor(headroom * 100)}%;${t.warnHeadroom * 100};${t.critHeadroom * 100};0;100`);
	}
	for (const v of input.victims) {
		const heldBy = v.heldBy.length ? `; the ports are held by ${v.heldBy.map((h) => `${h.label} (${n(h.timeWait)} TIME_WAIT)`).join(', ')}` : '';
		findings.push({ status: 'CRITICAL', check: 'failures', netns: v.netns, message: `${v.comm} (pid ${v.pid}) failed ${n(v.failures)}× with ${v.errno} (${v.errno === 'EADDRNOTAVAIL' ? 'connect to' : 'bind'} ${v.target}) in the last ${input.sampleSeconds} s: ports are exhausted now${heldBy}` });
	}
	const status = findings.reduce<Status>((s, f) => (rank(f.status) > rank(s) ? f.status : s), 'OK');
	const exitCode = STATUS.indexOf(status) as Verdict['exitCode'];
	const headline = findings.filter((f) => f.status === status && status !== 'OK').map((f) => f.message);
	const okLine = () => {
		const total = input.namespaces.reduce((s, ns) => s + (ns.timeWait ?? 0), 0);
		return `${n(total)} TIME_WAIT in ${input.namespaces.filter((ns) => ns.timeWait !== null).length} namespace(s)` +
			(worst ? `, worst destination ${Math.floor(worst.headroom * 100)} % headroom` : '');
	};
	const line = `TWTRACE ${status} - ${headline.length ? headline[0] + (headline.length > 1 ? ` (+${headline.length - 1} more)` : '') : okLine()}` +
		(perf.length ? ` | ${perf.join(' ')}` : '');
	return { status, exitCode, line, findings };
}

/** Settings that are wrong, or believed to help and do not. */
function reviewSysctls(netns: number, label: string, s: NetnsSettings | null, overflowDelta: number, watchedSeconds: number): Finding[] {
	if (!s) return [];
	const out: Finding[] = [];
	const f = (status: Status, message: string) => out.push({ status, check: 'sysctl', netns, message: `${label}: ${message}` });
	if (s.twRecycle === 1) f('WARNING', 'tcp_tw_recycle=1 drops connections from clients behind NAT (removed in Linux 4.12): set it to 0');
	if (s.twReuse === 1 && s.timestamps === 0) f('WARNING', 'tcp_tw_reuse=1 has no effect with tcp_timestamps=0');
	if (overflowDelta > 0) f('WARNING', `the kernel dropped ${n(overflowDelta)} TIME_WAIT sockets at tcp_max_tw_buckets in the last ${formatDuration(watchedSeconds)} (TCPTimeWaitOverflow)`);
	else if ((s.timeWaitOverflow ?? 0) > 0) f('OK', `TCPTimeWaitOverflow is ${n(s.timeWaitOverflow!)} since the namespace was created, none in the last ${formatDuration(watchedSeconds)}`);
	if (s.finTimeoutSec < 60) f('OK', `tcp_fin_timeout is ${s.finTimeoutSec} s: it does not shorten TIME_WAIT (fixed 60 s), only orphaned FIN_WAIT2`);
	return out;
}


export interface InputContext {
	/** Namespaces asked for with --netns; empty: all. */
	asked: ReadonlySet<number>;
	/** Namespaces that could not be walked, with the reason. */
	unwalked: ReadonlyMap<number, string>;
	sampleSeconds: number;
	watchedSeconds: number;
}

/** The doctor's input from a snapshot: alike for a standalone run and one answered by the agent. */
export function inputFromSnapshot(snap: Snapshot, ctx: InputContext): DoctorInput {
	const { asked, unwalked } = ctx;
	const wanted = (netns: number) => asked.size === 0 || asked.has(netns);
	const namespaces: DoctorInput['namespaces'] = snap.namespaces
		.filter((ns) => ns.walkedTimeWait !== null || unwalked.has(ns.netns))
		.filter((ns) => wanted(ns.netns))
		.map((ns) => ({
			netns: ns.netns,
			...(ns.name ? { name: ns.name } : {}),
			// The count now, not the last walk's: a walk may be a minute old (serve's interval), and
			// thresholds must fire as the namespace fills (the model follows every TIME_WAIT entry).
			timeWait: ns.walkedTimeWait === null ? null : ns.timeWait,
			...(ns.timeWaitFrom === 'walk' && ns.walkedAgoMs !== null ? { walkedAgoSeconds: Math.round(ns.walkedAgoMs / 1000) } : {}),
			settings: ns.settings,
			asked: asked.has(ns.netns),
			overflowDelta: ns.overflowSinceStart ?? 0,
			...(unwalked.has(ns.netns) ? { error: unwalked.get(ns.netns) } : {}),
		}));
	// A namespace asked for that the source has not walked (an agent walks those in use, 16 at most) is never OK unseen.
	for (const netns of asked) {
		if (namespaces.some((ns) => ns.netns === netns)) continue;
		namespaces.push({ netns, timeWait: null, settings: null, asked: true, overflowDelta: 0,
			error: unwalked.get(netns) ?? 'not walked yet by the agent (it walks the namespaces in use, 16 at most): twtrace doctor --standalone --netns walks it' });
	}
	return {
		namespaces,
		destinations: snap.destinations.filter((d) => wanted(d.netns)),
		victims: snap.victims.filter((v) => wanted(v.netns)).map(victimInput),
		holders: snap.rows.filter((r) => r.timeWait > 0).map((r) => ({
			label: holderLabel({ pid: r.pid ?? 0, comm: r.comm }) + (r.workload ? ` in ${r.workload}` : '') +
				(r.likely?.length ? ` — likely ${r.likely.map((l) => `${l.comm} (pid ${l.pid}): ${l.timeWait.toLocaleString('en-US')}, ${l.evidence}`).join('; ')}` : ''),
			timeWait: r.timeWait, side: r.side,
		})),
		sampleSeconds: ctx.sampleSeconds,
		watchedSeconds: ctx.watchedSeconds,
	};
}

function victimInput(v: VictimRow): DoctorInput['victims'][number] {
	return { pid: v.pid, comm: v.comm, netns: v.netns, errno: v.errno, target: v.target, failures: v.failures, heldBy: v.holders.map((h) => ({ label: holderLabel(h), timeWait: h.timeWait })) };
}

/** "netns 4026532177 (app)": the inode, and the name people know when there is one. */
function nsLabel(ns: { netns: number; name?: string }): string {
	return `netns ${ns.netns}${ns.name ? ` (${ns.name})` : ''}`;
}
