/** Names of the generated enums, as users see them in flags and JSON. */
import { EventKind, OwnerSource, Side } from './layout.generated.js';

export type EventKindName = 'connect' | 'accept' | 'active_close' | 'time_wait' | 'reset' | 'connect_fail' | 'bind_fail';
export type SideName = 'client' | 'server' | 'unknown';
export type OwnerSourceName = 'none' | 'connect' | 'listen' | 'syscall';

/** Every kind by its record value; `satisfies` makes a kind added to twtrace.h a compile error here. */
const KIND_NAMES = {
	[EventKind.CONNECT]: 'connect',
	[EventKind.ACCEPT]: 'accept',
	[EventKind.ACTIVE_CLOSE]: 'active_close',
	[EventKind.TIME_WAIT]: 'time_wait',
	[EventKind.RESET]: 'reset',
	[EventKind.CONNECT_FAIL]: 'connect_fail',
	[EventKind.BIND_FAIL]: 'bind_fail',
} as const satisfies Record<Exclude<(typeof EventKind)[keyof typeof EventKind], typeof EventKind._MAX | typeof EventKind.TASK>, EventKindName>;

export const ALL_KINDS: readonly EventKindName[] = Object.values(KIND_NAMES);

const KIND_VALUES = new Map<string, number>(Object.entries(KIND_NAMES).map(([value, name]) => [name, Number(value)]));

export function kindName(value: number): EventKindName | undefined {
	return (KIND_NAMES as Record<number, EventKindName>)[value];
}

/** The record value of a kind name, or undefined for an unknown name. */
export function kindValue(name: string): number | undefined {
	return KIND_VALUES.get(name);
}

export const SIDE_NAMES: Record<number, SideName> = {
	[Side.UNKNOWN]: 'unknown',
	[Side.CLIENT]: 'client',
	[Side.SERVER]: 'server',
};

export const OWNER_SOURCE_NAMES: Record<number, OwnerSourceName> = {
	[OwnerSource.NONE]: 'none',
	[OwnerSource.CONNECT]: 'connect',
	[OwnerSource.LISTEN]: 'listen',
	[OwnerSource.SYSCALL]: 'syscall',
};

/** TCP states, include/net/tcp_states.h (stable since Linux 2.6). */
export const TCP_STATE_NAMES: readonly string[] = [
	'UNKNOWN', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT',
	'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV', 'BOUND_INACTIVE',
];

export const AF_INET = 2;
export const AF_INET6 = 10;

/** What the kernel's counters do not stand for: a failure's errno and target (victims are listed one by one). */
const FAILURES = ['connect_fail', 'bind_fail'] as const satisfies readonly EventKindName[];

/**
 * The kinds each live command asks the kernel for (the BPF program filters on them): every record
 * costs at every connection, so a command takes only what its model uses. trace takes what --kind
 * says; record and report take everything, a capture being the whole story.
 */
export const COMMAND_KINDS = {
	/**
	 * Failures (their errno and target; task records always flow): top and serve take the rest from the
	 * kernel's counters (docs/counting-in-the-kernel.md, step 4).
	 */
	top: FAILURES,
	serve: FAILURES,
	/** What a model fed per event takes (an agent whose flight recorder keeps records needs them all): rates, destinations, TIME_WAIT, lifetimes (from time_wait and reset), failures; closes counted at time_wait. */
	records: ['connect', 'accept', 'time_wait', 'reset', 'connect_fail', 'bind_fail'],
	/** Destination headroom (connect rates, TIME_WAIT held) and victims. */
	doctor: ['connect', 'time_wait', 'connect_fail', 'bind_fail'],
} as const satisfies Record<string, readonly EventKindName[]>;
