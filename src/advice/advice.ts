/**
 * Remediation advice for one offender, in the order that fixes port exhaustion for good first:
 *   1. fix the application (connection reuse), 2. widen ip_local_port_range, 3. (TIME_WAIT cannot
 *   be shortened on Linux: say so), 4. tcp_tw_reuse for outgoing connections, 5. long term: more
 *   source addresses, IP_BIND_ADDRESS_NO_PORT; and a tcp_max_tw_buckets overflow when one happened.
 * Each item is tied to what was measured and to the namespace's sysctls as they were; pure.
 *
 * Linux facts relied on: TIME_WAIT lasts TCP_TIMEWAIT_LEN (60 s, include/net/tcp.h, not tunable);
 * tcp_fin_timeout sets only the FIN_WAIT2 orphan timeout; tcp_tw_reuse is consulted by connect()
 * only (tcp_twsk_unique, from __inet_check_established) and needs timestamps on the old
 * connection; tcp_tw_reuse_delay (6.13+) is the age a TIME_WAIT must reach first; tcp_tw_recycle
 * was removed in 4.12 (it dropped SYNs from clients behind NAT).
 */
import { DEFAULT_PORT_RANGE, usablePorts, type NetnsSettings, type PortRange } from '../facts/netns-settings.js';
import { sustainableRate, TIME_WAIT_SECONDS } from '../model/ports.js';

export interface Advice {
	/** 1..5 in the remediation order; the overflow note is 6. */
	step: number;
	id: 'fix-application' | 'widen-port-range' | 'time-wait-is-fixed' | 'tcp-tw-reuse' | 'more-source-addresses' | 'tw-buckets-overflow';
	title: string;
	detail: string;
	/** Commands to apply it, when it is a setting. */
	commands: string[];
}

/** What the report found about one offender (a group of owners). */
export interface OffenderFinding {
	label: string;
	side: 'client' | 'server' | 'both' | '-';
	connections: number;
	timeWaitEntries: number;
	peakTimeWait: number;
	/** Connections per second: over the whole capture, and the busiest second. */
	connectRateAvg: number;
	connectRatePeak: number;
	lifetimeP50Ms: number | null;
	/** The lifetime is a bucket's bound (from the kernel's counts): at most that. */
	lifetimeUpTo?: boolean;
	/** Its busiest destination, when it connects out. */
	destination?: { label: string; peakPortsInUse: number; portsUsable: number };
	/** Victims (EADDRNOTAVAIL, EADDRINUSE) that failed against ports it held. */
	victimFailures: number;
	/** Its own bind() failures with EADDRINUSE (bind-before-connect clients). */
	bindFailures: number;
	seconds: number;
}

/** The widest range worth proposing: above the well-known and registered low ports many services use. */
const WIDEST: PortRange = { low: 1024, high: 65535 };
/** Headroom kept over the peak rate when sizing a range. */
const MARGIN = 1.25;

export function advise(f: OffenderFinding, settings: NetnsSettings | undefined, timeWaitOverflow: number): Advice[] {
	const out: Advice[] = [fixApplication(f)];
	const isClient = f.side === 'client' || f.side === 'both';
	const range = settings?.portRange ?? DEFAULT_PORT_RANGE;
	const usable = usablePorts(range, settings?.reservedPorts);
	if (isClient && isPressed(f, usable)) out.push(widenRange(f, range, usable));
	out.push(timeWaitIsFixed(settings));
	if (isClient) out.push(twReuse(settings));
	if (isClient && (isPressed(f, usable) || f.bindFailures > 0)) out.push(moreSourceAddresses(f));
	if (timeWaitOverflow > 0) out.push(overflow(timeWaitOverflow, settings));
	return out;
}

/** Ports are a constraint: half the range held at the peak, a rate above what it sustains, or failures. */
function isPressed(f: OffenderFinding, usable: number): boolean {
	const peakShare = f.destination ? f.destination.peakPortsInUse / Math.max(1, f.destination.portsUsable) : 0;
	return peakShare >= 0.5 || f.connectRatePeak > sustainableRate(usable) || f.victimFailures > 0;
}

function fixApplication(f: OffenderFinding): Advice {
	const life = f.lifetimeP50Ms === null ? '' : `, each open for ${f.lifetimeUpTo ? 'at most ' : ''}${fmt(f.lifetimeP50Ms)} ms (median)`;
	if (f.side === 'server') {
		return {
			step: 1, id: 'fix-application', commands: [],
			title: `${f.label} closes its accepted connections first, so the server keeps the TIME_WAIT`,
			detail: `${count(f.timeWaitEntries)} TIME_WAIT entered in ${fmt(f.seconds)} s${life}. Keep connections open for several requests ` +
				'(HTTP keep-alive; do not answer with "Connection: close"), or let clients close first: the end that closes first ' +
				'holds TIME_WAIT for 60 s. On a server it costs memory and tcp_max_tw_buckets slots, not ephemeral ports.',
		};
	}
	const dest = f.destination ? ` to ${f.destination.label}` : '';
	return {
		step: 1, id: 'fix-application', commands: [],
		title: `Reuse connections in ${f.label}: a connection pool or keep-alive`,
		detail: `${count(f.connections)} new connections${dest} in ${fmt(f.seconds)} s (peak ${fmt(f.connectRatePeak)}/s)${life}, ` +
			`${count(f.timeWaitEntries)} of them left in TIME_WAIT on this host. Each holds a local port for 60 s after it closes. ` +
			'One pooled, kept-alive connection carries many requests and leaves no TIME_WAIT per request: this is the fix; the steps below only buy time.',
	};
}

function widenRange(f: OffenderFinding, range: PortRange, usable: number): Advice {
	const before = sustainableRate(usable);
	const neededPorts = Math.ceil(f.connectRatePeak * TIME_WAIT_SECONDS * MARGIN);
	const reservedInside = (range.high - range.low + 1) - usable;
	// The smallest widening that carries the peak rate with margin, never narrower than now.
	const low = Math.max(WIDEST.low, Math.min(range.low, WIDEST.high - neededPorts - reservedInside + 1));
	const proposed: PortRange = { low, high: WIDEST.high };
	const after = sustainableRate(proposed.high - proposed.low + 1 - reservedInside);
	const enough = after >= f.connectRatePeak;
	const at = `net.ipv4.ip_local_port_range`;
	const peak = f.destination ? ` ${count(f.destination.peakPortsInUse)} of ${count(f.destination.portsUsable)} ports towards ${f.destination.label} were in use at the peak.` : '';
	const sameAlready = proposed.low === range.low && proposed.high === range.high;
	return {
		step: 2, id: 'widen-port-range',
		title: sameAlready
			? `ip_local_port_range is already ${range.low}-${range.high}: widening cannot help further`
			: `Widen ip_local_port_range from ${range.low}-${range.high} to ${proposed.low}-${proposed.high}`,
		detail: `The range sustains ${fmt(before)} new connections/s to one destination (${count(usable)} ports / 60 s); ` +
			`${f.label} reached ${fmt(f.connectRatePeak)}/s.${peak} ` +
			(sameAlready ? '' : `${proposed.low}-${proposed.high} sustains ${fmt(after)}/s. `) +
			(enough ? '' : 'Even that is below the peak rate: reusing connections (step 1) or more source addresses (step 5) is required. ') +
			'Put ports your services listen on in ip_local_reserved_ports first, so that connect() never takes them.',
		commands: sameAlready ? [] : [`sysctl -w ${at}="${proposed.low} ${proposed.high}"`, `echo '${at} = ${proposed.low} ${proposed.high}' > /etc/sysctl.d/60-twtrace-ports.conf`],
	};
}

function timeWaitIsFixed(settings: NetnsSettings | undefined): Advice {
	const fin = settings?.finTimeoutSec;
	const lowered = fin !== undefined && fin < 60;
	return {
		step: 3, id: 'time-wait-is-fixed', commands: [],
		title: 'TIME_WAIT cannot be shortened on Linux: it lasts 60 s',
		detail: 'The length is TCP_TIMEWAIT_LEN, compiled into the kernel; no sysctl changes it. ' +
			(lowered
				? `tcp_fin_timeout was lowered to ${fin} s here: that did not shorten TIME_WAIT. It only limits how long an orphaned socket waits in FIN_WAIT2 for the peer's FIN.`
				: 'tcp_fin_timeout, often lowered for this, only limits how long an orphaned socket waits in FIN_WAIT2 for the peer\'s FIN.'),
	};
}

function twReuse(settings: NetnsSettings | undefined): Advice {
	const reuse = settings?.twReuse;
	const ts = settings?.timestamps;
	const delay = settings?.twReuseDelayMs;
	const needsTs = ts === 0 ? ' tcp_timestamps is 0 here: turn it on first (sysctl -w net.ipv4.tcp_timestamps=1), on this host and its peers.' : ' It needs TCP timestamps, on here and at the peer.';
	const wait = delay !== undefined ? ` A TIME_WAIT port is reused only once it is ${delay} ms old (tcp_tw_reuse_delay).` : ' A TIME_WAIT port is reused only once it is at least a second old.';
	const recycle = settings?.twRecycle === 1
		? ' tcp_tw_recycle is 1 on this kernel: set it to 0. It drops connections from clients behind NAT, and was removed in Linux 4.12.'
		: ' Never tcp_tw_recycle: it broke clients behind NAT and was removed in Linux 4.12.';
	if (reuse === 1) {
		return {
			step: 4, id: 'tcp-tw-reuse', commands: [],
			title: 'tcp_tw_reuse is already 1: outgoing connections reuse TIME_WAIT ports',
			detail: `Reuse applies to connect() only.${wait}${ts === 0 ? ' But tcp_timestamps is 0, so nothing is reused: turn it on.' : ''}${recycle}`,
		};
	}
	const now = reuse === 2 ? ' (now 2: loopback only)' : reuse === 0 ? ' (now 0: off)' : '';
	return {
		step: 4, id: 'tcp-tw-reuse',
		title: `Set tcp_tw_reuse=1${now}: connect() may take over a TIME_WAIT port`,
		detail: `It helps outgoing connections only, as here; a server gains nothing from it.${needsTs}${wait}${recycle}`,
		commands: [...(ts === 0 ? ['sysctl -w net.ipv4.tcp_timestamps=1'] : []), 'sysctl -w net.ipv4.tcp_tw_reuse=1'],
	};
}

function moreSourceAddresses(f: OffenderFinding): Advice {
	const bind = f.bindFailures > 0
		? ` ${f.label} called bind() before connect() and got EADDRINUSE ${count(f.bindFailures)} times: set IP_BIND_ADDRESS_NO_PORT on those sockets, so that the port is chosen at connect() for the full 4-tuple instead of reserved for any destination.`
		: ' Clients that bind() before connect() should set IP_BIND_ADDRESS_NO_PORT, so that the port is chosen at connect() for the full 4-tuple.';
	return {
		step: 5, id: 'more-source-addresses', commands: [],
		title: 'Long term: more source addresses or destinations',
		detail: 'Ports run out per (source address, destination address, destination port): each extra source address, or extra ' +
			`destination address behind a balancer, gives another ${count(usablePorts(DEFAULT_PORT_RANGE))} ports at the default range.${bind}`,
	};
}

function overflow(n: number, settings: NetnsSettings | undefined): Advice {
	const max = settings?.maxTimeWaitBuckets;
	return {
		step: 6, id: 'tw-buckets-overflow', commands: [],
		title: `The kernel dropped ${count(n)} TIME_WAIT sockets at tcp_max_tw_buckets${max !== undefined ? ` (${count(max)})` : ''}`,
		detail: 'TcpExtTCPTimeWaitOverflow counted connections that closed without their TIME_WAIT: their ports were free again at once, ' +
			'but late segments of an old connection can reach a new one. It is a symptom of the churn above; fix that rather than raise the cap.',
	};
}

const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n >= 1 ? String(Math.round(n * 10) / 10) : String(Math.round(n * 100) / 100));
const count = (n: number) => Math.round(n).toLocaleString('en-US');
