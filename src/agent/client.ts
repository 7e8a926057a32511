/**
 * The client side of the agent's API, for `top`, `doctor`, `report` and `record`: finds a running
 * agent (or says why there is none) and asks it for snapshots and capture data. A socket nobody
 * answers on (an agent that was killed) counts as no agent; one the user may not open is an error
 * that says how to get access, not a silent fallback that would then fail for want of root.
 */
import http from 'node:http';
import { TwtraceError } from '../errors.js';
import { AGENT_GROUP, API_VERSION, CAPTURE_WINDOW_HEADER, decodeSnapshotReply, snapshotQueryString, type AgentInfo, type CaptureWindow, type SnapshotQuery, type SnapshotReply } from './wire.js';

/** An agent that takes longer than this to answer is treated as absent (a hung agent must not hang `top`). */
const CONNECT_TIMEOUT_MS = 2000;
/** A capture of 15 minutes may be large: this long to fetch it. */
const CAPTURE_TIMEOUT_MS = 60_000;

export type AgentLookup = { client: AgentClient; info: AgentInfo } | { client: undefined; why: string };

export class AgentClient {
	readonly socketPath: string;

	constructor(socketPath: string) {
		this.socketPath = socketPath;
	}

	/**
	 * The agent on `socketPath`, or why there is none (no socket, nobody answering). Throws a
	 * TwtraceError when the socket is there but the user may not use it, or the agent speaks
	 * another API version.
	 */
	static async find(socketPath: string): Promise<AgentLookup> {
		const client = new AgentClient(socketPath);
		let info: AgentInfo;
		try {
			info = await client.info();
		} catch (error) {
			const code = (error as NodeJS.ErrnoException).code;
			if (code === 'ENOENT') return { client: undefined, why: `no agent (${socketPath} does not exist)` };
			if (code === 'ECONNREFUSED') return { client: undefined, why: `no agent answers on ${socketPath} (left by one that stopped)` };
			if (code === 'EACCES' || code === 'EPERM') {
				throw new TwtraceError(`the agent's socket ${socketPath} is for root and the ${AGENT_GROUP} group`,
					`Run with sudo, or ask for the group: sudo usermod -aG ${AGENT_GROUP} $USER (then log in again). --standalone runs without the agent (as root).`, 1, { cause: error });
			}
			if (error instanceof TwtraceError) throw error;
			return { client: undefined, why: `the agent on ${socketPath} did not answer: ${(error as Error).message}` };
		}
		if (info.api !== API_VERSION) {
			throw new TwtraceError(`the agent on ${socketPath} speaks API ${info.api}, this twtrace ${API_VERSION} (agent ${info.version})`,
				'Use the twtrace of the same version as the agent, or --standalone');
		}
		return { client, info };
	}

	/** The agent's info now (its uptime, its flight recorder's span). */
	async info(): Promise<AgentInfo> {
		return JSON.parse((await this.#get('/v1/info', CONNECT_TIMEOUT_MS)).toString('utf8')) as AgentInfo;
	}

	async snapshot(query: SnapshotQuery): Promise<SnapshotReply> {
		return decodeSnapshotReply((await this.#get(`/v1/snapshot?${snapshotQueryString(query)}`, CONNECT_TIMEOUT_MS)).toString('utf8'));
	}

	/**
	 * The flight recorder's last `lastMs` (all it holds when undefined), as the bytes of a capture file,
	 * and what the recorder held as it served them (undefined from an agent that does not say).
	 */
	async capture(lastMs: number | undefined): Promise<{ bytes: Buffer; window: CaptureWindow | undefined }> {
		let header: string | undefined;
		const bytes = await this.#get(`/v1/capture${lastMs === undefined ? '' : `?lastMs=${Math.round(lastMs)}`}`, CAPTURE_TIMEOUT_MS, (h) => (header = h[CAPTURE_WINDOW_HEADER] as string | undefined));
		let window: CaptureWindow | undefined;
		try {
			window = header === undefined ? undefined : JSON.parse(header) as CaptureWindow;
		} catch {
			window = undefined; // not what this twtrace's agents send: ask /v1/info instead
		}
		return { bytes, window };
	}

	#get(path: string, timeoutMs: number, onHeaders?: (headers: http.IncomingHttpHeaders) => void): Promise<Buffer> {
		return new Promise((resolve, reject) => {
			const req = http.get({ socketPath: this.socketPath, path, timeout: timeoutMs }, (res) => {
				onHeaders?.(res.headers);
				const chunks: Buffer[] = [];
				res.on('data', (c: Buffer) => chunks.push(c));
				res.on('error', reject);
				res.on('end', () => {
					const body = Buffer.concat(chunks);
					if (res.statusCode === 200) resolve(body);
					else reject(new TwtraceError(`the agent on ${this.socketPath} refused ${path}: ${res.statusCode} ${body.toString('utf8').trim()}`));
				});
			});
			req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
			req.on('error', reject);
		});
	}
}
