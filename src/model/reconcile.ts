/**
 * A walk reconciled with the model (ChurnModel.reconcile, beginReconcile): the TIME_WAIT population
 * of one namespace made exactly what the walk found (kernel timers, sockets twtrace never saw enter
 * counted as "(before start)" or against the listener that owns their port, entries the kernel no
 * longer has removed), the destinations' open ports counted, the namespace's settings taken. Works
 * a socket at a time, for walks of millions of sockets read in chunks while events keep arriving.
 */
import { endpoint } from '../event/endpoint.js';
import { TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_TIME_WAIT, type SocketEntry } from '../event/sock.js';
import type { TimeWaitWheel } from './wheel.js';
import type { NetnsSettings } from '../facts/netns-settings.js';
import { BEFORE_START, destKey, LOST, type Destination, type NetnsState, type Owner } from './owners.js';
import { TIME_WAIT_SECONDS } from './ports.js';
import type { TimeWaitPopulation } from './time-wait.js';
import type { SideName } from '../event/kinds.js';

const US = 1_000_000;

/** One walk of a namespace's socket table. */
export interface NetnsWalk {
	netns: number;
	/** When the walk started (CLOCK_MONOTONIC µs): entries that came later are not in it. */
	takenAtUs: number;
	sockets: readonly SocketEntry[];
	settings: NetnsSettings;
	/** The process that called listen() on (netns, port), when known. */
	listenerOwner?: (port: number) => { pid: number; comm: string } | undefined;
	/** Its timewait sockets were left out (counted instead: event/walk-record.ts), and how many there were. */
	timeWaitOmitted?: number;
	/**
	 * The kernel left out those armed since counting began, and how many (event/walk-record.ts): read
	 * at finish(), since a live walk learns it at its end.
	 */
	timeWaitCounted?: number;
	/**
	 * An open-socket walk (pipeline/open-walks.ts): the namespace's open sockets only, its timewait
	 * sockets not visited, all of them counted (timeWaitCounted is the kernel's count). It removes no
	 * entry, as a walk without its timewait sockets does.
	 */
	openOnly?: boolean;
}

/** One walk being reconciled a socket at a time (ChurnModel.beginReconcile). */
export interface WalkReconciler {
	add(socket: SocketEntry): void;
	/** Ends the walk; returns how many of its timewait sockets the model took (not counted: older than counting, or no counts). */
	finish(): number;
}

/** What a reconciliation reads and changes of the model: ChurnModel hands its own parts over. */
export interface ReconcileTarget {
	readonly timeWait: TimeWaitPopulation<Owner>;
	readonly owners: ReadonlyMap<string, Owner>;
	readonly destinations: ReadonlyMap<string, Destination>;
	/** The model's filters that apply to walked sockets. */
	readonly options: { readonly pid?: number; readonly port?: number; readonly family?: 4 | 6; readonly comm?: string };
	/** When the tracepoints were attached: a socket that entered TIME_WAIT after it with no event was lost. */
	readonly attachedUs: number;
	netnsState(netns: number): NetnsState;
	owner(pid: number, comm: string, cgroupId: number, netns: number, side: SideName, peer: string, nowUs: number): Owner;
	destination(netns: number, saddr: string, daddr: string, dport: number, nowUs: number): Destination;
	holdsEphemeralPort(netns: number, sport: number): boolean;
	/**
	 * From when TIME_WAIT entries come from the kernel's counts (counted.ts), if they do: those have no
	 * cookie a walk could match, so a walk takes only the timewait sockets that entered before (older
	 * than the counts: "(before start)", or their listener's), and the rest as it does (settings,
	 * listeners, open ports, the namespace's count).
	 */
	countedFromUs: number | undefined;
	/**
	 * The reading whose counts are being taken (counted.ts): its entries came after the reading
	 * before it, at most a second before (the agent reads every second; a frame sums a second).
	 */
	countedReading: { fromUs: number; atUs: number } | undefined;
	/** The kernel's timer wheel, when its clock is known: where counted TIME_WAIT entries end (wheel.ts). */
	wheel: TimeWaitWheel | undefined;
}

/**
 * A socket's TIME_WAIT entry is dated from its timer (armedUs); a walk from before capture format 6
 * does not say the wheel's slack, up to 2 s at HZ 250 (kernel-facts §9): entries this close to the
 * attach are given the benefit of the doubt.
 */
const ENTRY_DATING_SLACK_US = 2 * 1_000_000;

/**
 * reconcile() a socket at a time, for a walk read in chunks while events keep arriving (a walk of
 * millions of sockets must not stall the pipeline). Sockets may be reused objects: nothing keeps
 * them. `listening`: ports known to listen before the walk reaches them (iter/tcp walks the
 * listening hash before the established one, bpf_iter_tcp_batch, so its LISTEN sockets come first
 * anyway). One walk at a time; finish() ends it.
 */
export function beginReconcile(m: ReconcileTarget, walk: Omit<NetnsWalk, 'sockets'>, listening: Iterable<number> = []): WalkReconciler {
	const ns = m.netnsState(walk.netns);
	const previousRange = ns.settings?.portRange;
	// A narrowed range: TIME_WAIT sockets on ports now outside it no longer count in their pools.
	const rangeChanged = previousRange !== undefined && (previousRange.low !== walk.settings.portRange.low || previousRange.high !== walk.settings.portRange.high);
	ns.settings = walk.settings; // the port range decides which sockets hold ephemeral ports
	ns.overflowAtFirstWalk ??= walk.settings.timeWaitOverflow;
	const listeningPorts = new Set(listening);
	const openByDest = new Map<string, number>();
	const unknownPeers = new Map<string, { owner: Owner; pool: Destination | undefined } | null>();
	let timeWait = walk.timeWaitOmitted ?? 0;
	let uncounted = 0;
	const { pid, port, family } = m.options;
	// Who listens on a port, when twtrace saw the listen() (looked up once per port and walk: the
	// lookup reads a BPF map).
	const listeners = new Map<number, { pid: number; comm: string } | undefined>();
	const listenerOf = (sport: number) => {
		if (!listeners.has(sport)) listeners.set(sport, walk.listenerOwner?.(sport));
		return listeners.get(sport);
	};
	m.timeWait.beginWalk();
	const countedFromUs = m.countedFromUs;
	// When a timewait socket's timer was armed: when the wheel runs it, less the wheel's slack (kernel-facts §9), less its length.
	const armedUs = (s: SocketEntry) => s.expiresUs - (s.slackUs ?? 0) - lengthUs(s.substate, ns.settings);
	const add = (s: SocketEntry): void => {
		if (s.state === TCP_TIME_WAIT) timeWait++;
		if (s.state === TCP_LISTEN) listeningPorts.add(s.sport);
		// Entered since counting began: counted.
		if (countedFromUs !== undefined && s.state === TCP_TIME_WAIT && s.expiresUs > 0 && armedUs(s) >= countedFromUs) return;
		if (s.state === TCP_TIME_WAIT) uncounted++;
		if (port !== undefined && s.sport !== port && s.dport !== port) return;
		if (family !== undefined && s.family !== family) return;
		if (s.state === TCP_LISTEN || s.state === TCP_NEW_SYN_RECV) return;
		const isServer = listeningPorts.has(s.sport);
		if (s.state !== TCP_TIME_WAIT) {
			if (!isServer && m.holdsEphemeralPort(walk.netns, s.sport)) {
				const key = destKey(walk.netns, s.saddr, s.daddr, s.dport);
				openByDest.set(key, (openByDest.get(key) ?? 0) + 1);
			}
			return;
		}
		const expiresUs = s.expiresUs > 0 ? s.expiresUs : undefined;
		const known = m.timeWait.seenHolder(s.cookie, expiresUs);
		if (known) {
			if (rangeChanged && !m.holdsEphemeralPort(walk.netns, s.sport)) m.timeWait.leavePool(s.cookie, walk.takenAtUs);
			// Counted as of unknown process when an earlier walk found it (nobody listened on its port
			// then, or twtrace had not seen the listen()): a process seen calling listen() on that port
			// since owns it, as it owns every socket found on a port it listens on.
			const listener = isServer && known.pid === 0 && (known.comm === BEFORE_START || known.comm === LOST) ? listenerOf(s.sport) : undefined;
			if (listener && (pid === undefined || listener.pid === pid) && (m.options.comm === undefined || listener.comm === m.options.comm)) {
				const owner = m.owner(listener.pid, listener.comm, 0, walk.netns, 'server', `local ${endpoint(s.saddr, s.sport)}`, walk.takenAtUs);
				m.timeWait.add(s.cookie, owner, undefined, walk.netns, walk.takenAtUs, m.timeWait.expiryOf(s.cookie)!);
			}
			return;
		}
		// Not seen entering TIME_WAIT: owned by its listener; else older than twtrace ("(before
		// start)"), or, when its timer says it entered after the attach, its events were lost.
		const lost = expiresUs !== undefined && armedUs(s) > m.attachedUs + ENTRY_DATING_SLACK_US;
		// Such sockets come by the thousand towards one peer: their owner and port pool are looked
		// up once per peer and walk, by the raw address words, without formatting addresses.
		const holdsPort = !isServer && m.holdsEphemeralPort(walk.netns, s.sport);
		const peerKey = isServer ? `s ${s.sport} ${s.addressKey('saddr')} ${lost}` : `c ${s.dport} ${s.addressKey('daddr')} ${s.addressKey('saddr')} ${holdsPort} ${lost}`;
		let found = unknownPeers.get(peerKey);
		if (!found) {
			const listener = isServer ? listenerOf(s.sport) : undefined;
			const comm = listener?.comm ?? (lost ? LOST : BEFORE_START);
			const isWanted = (pid === undefined || listener?.pid === pid) && (m.options.comm === undefined || comm === m.options.comm);
			found = isWanted ? {
				owner: m.owner(listener?.pid ?? 0, comm, 0, walk.netns, isServer ? 'server' : 'unknown',
					isServer ? `local ${endpoint(s.saddr, s.sport)}` : endpoint(s.daddr, s.dport), walk.takenAtUs),
				pool: holdsPort ? m.destination(walk.netns, s.saddr, s.daddr, s.dport, walk.takenAtUs) : undefined,
			} : null;
			unknownPeers.set(peerKey, found);
		}
		if (!found) return;
		// add() marks it seen by this walk.
		m.timeWait.add(s.cookie, found.owner, found.pool, walk.netns, walk.takenAtUs, expiresUs ?? walk.takenAtUs + TIME_WAIT_SECONDS * US);
	};
	const finish = (): number => {
		ns.listeningPorts = listeningPorts;
		// Counted entries stay (TimeWaitPopulation.addCounted); a walk without its timewait sockets removes none.
		if (walk.timeWaitOmitted === undefined && !walk.openOnly) m.timeWait.endWalk(walk.netns, walk.takenAtUs);
		for (const d of m.destinations.values()) {
			if (d.netns === walk.netns) d.portsHeldOpen = 0;
		}
		for (const [key, n] of openByDest) {
			const [, saddr, daddr, dport] = key.split(' ');
			m.destination(walk.netns, saddr!, daddr!, Number(dport), walk.takenAtUs).portsHeldOpen = n;
		}
		ns.walkedTimeWait = timeWait + (walk.timeWaitCounted ?? 0);
		ns.walkedAtUs = walk.takenAtUs;
		return uncounted;
	};
	return { add, finish };
}

/** How long a timewait socket of `substate` lives: 60 s (TCP_TIMEWAIT_LEN), or the namespace's tcp_fin_timeout. */
function lengthUs(substate: number, settings: NetnsSettings | undefined): number {
	return substate === TCP_TIME_WAIT ? TIME_WAIT_SECONDS * US : (settings?.finTimeoutSec ?? TIME_WAIT_SECONDS) * US;
}
