/**
 * What the agent's local API carries, and the conversions to and from JSON. One definition for both
 * ends: `serve` encodes, `top`, `doctor`, `report` and `record` decode. A Snapshot is plain data but
 * for each namespace's reserved ports (a Set); the context a view needs besides the snapshot
 * (losses, walks, cgroup names) travels with it, already resolved by the agent.
 *
 * Versioned by path (/v1/…): a client refuses an agent whose `api` it does not know.
 */
import type { NetnsSettings } from '../facts/netns-settings.js';
import type { Losses } from '../facts/losses.js';
import type { Grouping } from '../model/groups.js';
import type { NamespaceRow } from '../model/port-rows.js';
import type { Snapshot, SortKey } from '../model/snapshot.js';
import type { ViewFilter } from '../model/view-filter.js';

export const API_VERSION = 1;

/** Where `serve` listens and clients look, unless --agent-socket or TWTRACE_AGENT_SOCKET say otherwise. */
export const DEFAULT_AGENT_SOCKET = '/run/twtrace/agent.sock';

/** The group whose members may use the agent without root (the socket is root:twtrace 0660). */
export const AGENT_GROUP = 'twtrace';

export interface AgentInfo {
	api: number;
	version: string;
	pid: number;
	/** ISO time the agent started tracing. */
	startedAt: string;
	uptimeSeconds: number;
	/** The agent's own filters: a client asking for other ones is told. */
	filters: { netns: number[]; comm: string | null; pid: number | null; port: number | null; family: '4' | '6' | null };
	/**
	 * The flight recorder: what it holds, its bounds, and which bound dropped its latest dropped frame
	 * (null: none was, so it holds everything since the agent started).
	 */
	recorder: {
		frames: number; bytes: number; maxBytes: number; spanSeconds: number; maxSeconds: number; firstAt: string | null; droppedBy: 'size' | 'age' | null;
		/** What it keeps of the events (serve --recorder-keeps); absent from agents before it could choose (records). */
		keeps?: 'counts' | 'records';
	};
}

export interface SnapshotQuery {
	by: Grouping;
	sort: SortKey;
	/** Window of the rates, ms. */
	windowMs: number;
	filter?: string;
	/** The client's tracing filters, answered from the agent's model (model/view-filter.ts). */
	view?: ViewFilter;
	maxRows?: number;
	maxDestinations?: number;
	maxVictims?: number;
}

export interface WalkState {
	inProgress: boolean;
	completed: number;
	lastMs: number | undefined;
}

/** Everything a view of the agent's model needs, resolved by the agent. */
export interface SnapshotReply {
	/** Who answered; absent when this process runs the pipeline itself (--standalone). */
	agent?: AgentInfo;
	/** The tracing filters the agent narrowed its model to (SnapshotQuery.view), when any. */
	view?: ViewFilter;
	snapshot: Snapshot;
	epochOffsetUs: number;
	/** The namespace the agent runs in. */
	home: number;
	drops: Losses;
	walks: WalkState;
	unwalked: Map<number, string>;
	/** cgroup id → path, for the ids in the snapshot. */
	cgroupNames: Map<number, string>;
}

type Json = Record<string, unknown>;

export function encodeSnapshotReply(r: SnapshotReply): string {
	return JSON.stringify({
		...r,
		snapshot: { ...r.snapshot, namespaces: r.snapshot.namespaces.map(encodeNamespace) },
		unwalked: [...r.unwalked],
		cgroupNames: [...r.cgroupNames],
		walks: { ...r.walks, lastMs: r.walks.lastMs ?? null },
	});
}

export function decodeSnapshotReply(text: string): SnapshotReply {
	const j = JSON.parse(text) as Json & { snapshot: Snapshot & { namespaces: Json[] }; unwalked: [number, string][]; cgroupNames: [number, string][]; walks: Json };
	return {
		...(j as unknown as SnapshotReply),
		snapshot: { ...j.snapshot, namespaces: j.snapshot.namespaces.map(decodeNamespace) },
		unwalked: new Map(j.unwalked),
		cgroupNames: new Map(j.cgroupNames),
		walks: { ...(j.walks as unknown as WalkState), lastMs: (j.walks.lastMs as number | null) ?? undefined },
	};
}

function encodeNamespace(n: NamespaceRow): Json {
	return { ...n, settings: n.settings ? { ...n.settings, reservedPorts: [...n.settings.reservedPorts] } : null };
}

function decodeNamespace(n: Json): NamespaceRow {
	const settings = n.settings as (Omit<NetnsSettings, 'reservedPorts'> & { reservedPorts: number[] }) | null;
	return { ...(n as unknown as NamespaceRow), settings: settings ? { ...settings, reservedPorts: new Set(settings.reservedPorts) } : null };
}

export function snapshotQueryString(q: SnapshotQuery): string {
	const p = new URLSearchParams({ by: q.by, sort: q.sort, windowMs: String(q.windowMs) });
	if (q.filter) p.set('filter', q.filter);
	if (q.maxRows !== undefined) p.set('maxRows', String(q.maxRows));
	if (q.maxDestinations !== undefined) p.set('maxDestinations', String(q.maxDestinations));
	if (q.maxVictims !== undefined) p.set('maxVictims', String(q.maxVictims));
	const v = q.view;
	if (v?.netns?.length) p.set('netns', v.netns.join(','));
	if (v?.pid !== undefined) p.set('pid', String(v.pid));
	if (v?.comm !== undefined) p.set('comm', v.comm);
	if (v?.port !== undefined) p.set('port', String(v.port));
	if (v?.family !== undefined) p.set('family', String(v.family));
	return p.toString();
}

/**
 * What a served window is, as the recorder saw it when it served it: the /v1/capture reply carries it
 * (header X-Twtrace-Window, JSON), so that a window shorter than asked is explained without asking
 * /v1/info again (source/agent-source.ts recorderShortfall).
 */
export type CaptureWindow = Pick<AgentInfo, 'uptimeSeconds' | 'recorder'>;
export const CAPTURE_WINDOW_HEADER = 'x-twtrace-window';
