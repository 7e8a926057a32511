/**
 * The agent's local API, served by `twtrace serve` on its Unix socket (socket.ts says who may
 * connect). HTTP/1.1, GET only, JSON replies:
 *
 *   /v1/info                   who answers: version, pid, uptime, filters, the flight recorder
 *   /v1/snapshot?by=&sort=&windowMs=&filter=&maxRows=&maxDestinations=&maxVictims=
 *               &netns=A,B&pid=&comm=&port=&family=
 *                              the model as `top` and `doctor` show it (wire.ts SnapshotReply),
 *                              narrowed by the client's tracing filters (model/view-filter.ts)
 *   /v1/capture?lastMs=        the flight recorder's last minutes as a capture file (octet-stream)
 *
 * A bad query is a 400 with the reason; nothing the client sends changes the agent.
 */
import http from 'node:http';
import { GROUPINGS, type Grouping } from '../model/groups.js';
import { SORT_KEYS, type SortKey } from '../model/snapshot.js';
import { listenPrivately, prepareSocketPath } from './socket.js';
import { CAPTURE_WINDOW_HEADER, encodeSnapshotReply, type AgentInfo, type CaptureWindow, type SnapshotQuery, type SnapshotReply } from './wire.js';
import type { ViewFilter } from '../model/view-filter.js';

export interface AgentProvider {
	info(): AgentInfo;
	snapshot(query: SnapshotQuery): SnapshotReply;
	/** The flight recorder's frames of the last `lastMs` (all it holds when undefined), as one capture file, and what it held then. */
	capture(lastMs: number | undefined): { body: Buffer; window: CaptureWindow };
}

class BadQuery extends Error {}

export class AgentServer {
	readonly #server: http.Server;
	readonly socketPath: string;

	private constructor(server: http.Server, socketPath: string) {
		this.#server = server;
		this.socketPath = socketPath;
	}

	static async listen(socketPath: string, provider: AgentProvider): Promise<AgentServer> {
		await prepareSocketPath(socketPath);
		const server = http.createServer((req, res) => handle(req, res, provider));
		server.headersTimeout = 10_000;
		server.requestTimeout = 30_000;
		await listenPrivately(server, socketPath);
		return new AgentServer(server, socketPath);
	}

	/** Stops answering; removes the socket, so that clients find no agent rather than a dead one. */
	async close(): Promise<void> {
		const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
		this.#server.closeAllConnections();
		await closed; // net.Server unlinks its Unix socket on close
	}
}

function handle(req: http.IncomingMessage, res: http.ServerResponse, provider: AgentProvider): void {
	if (req.method !== 'GET') {
		res.writeHead(405, { Allow: 'GET', 'Content-Type': 'text/plain' }).end('only GET\n');
		return;
	}
	const url = new URL(req.url ?? '/', 'http://agent');
	try {
		switch (url.pathname) {
			case '/v1/info':
				return json(res, JSON.stringify(provider.info()));
			case '/v1/snapshot':
				return json(res, encodeSnapshotReply(provider.snapshot(parseSnapshotQuery(url.searchParams))));
			case '/v1/capture': {
				const lastMs = optionalInt(url.searchParams, 'lastMs');
				const { body, window } = provider.capture(lastMs);
				res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length, [CAPTURE_WINDOW_HEADER]: JSON.stringify(window) }).end(body);
				return;
			}
			default:
				res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: /v1/info, /v1/snapshot, /v1/capture\n');
		}
	} catch (error) {
		const status = error instanceof BadQuery ? 400 : 500;
		res.writeHead(status, { 'Content-Type': 'text/plain' }).end(`${(error as Error).message}\n`);
	}
}

function json(res: http.ServerResponse, body: string): void {
	res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
}

export function parseSnapshotQuery(p: URLSearchParams): SnapshotQuery {
	const by = p.get('by') ?? 'process';
	const sort = p.get('sort') ?? 'timeWait';
	if (!(GROUPINGS as readonly string[]).includes(by)) throw new BadQuery(`by=${by}: one of ${GROUPINGS.join(', ')}`);
	if (!(SORT_KEYS as readonly string[]).includes(sort)) throw new BadQuery(`sort=${sort}: one of ${SORT_KEYS.join(', ')}`);
	return {
		by: by as Grouping,
		sort: sort as SortKey,
		windowMs: optionalInt(p, 'windowMs') ?? 1000,
		filter: p.get('filter') ?? undefined,
		maxRows: optionalInt(p, 'maxRows'),
		maxDestinations: optionalInt(p, 'maxDestinations'),
		maxVictims: optionalInt(p, 'maxVictims'),
		view: parseView(p),
	};
}

function parseView(p: URLSearchParams): ViewFilter | undefined {
	const view: ViewFilter = {};
	const netns = p.get('netns');
	if (netns !== null) {
		const list = netns.split(',');
		if (!list.every((n) => /^\d+$/.test(n))) throw new BadQuery(`netns=${netns}: inode numbers, comma-separated`);
		view.netns = list.map(Number);
	}
	const pid = optionalInt(p, 'pid');
	if (pid !== undefined) view.pid = pid;
	const comm = p.get('comm');
	if (comm !== null) view.comm = comm;
	const port = optionalInt(p, 'port');
	if (port !== undefined) {
		if (port < 1 || port > 65535) throw new BadQuery(`port=${port}: 1-65535`);
		view.port = port;
	}
	const family = p.get('family');
	if (family !== null) {
		if (family !== '4' && family !== '6') throw new BadQuery(`family=${family}: 4 or 6`);
		view.family = family === '4' ? 4 : 6;
	}
	return Object.keys(view).length ? view : undefined;
}

function optionalInt(p: URLSearchParams, name: string): number | undefined {
	const v = p.get(name);
	if (v === null) return undefined;
	if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new BadQuery(`${name}=${v}: a whole number`);
	return Number(v);
}
