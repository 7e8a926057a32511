/**
 * The agent's Unix socket: where it is, who may connect, and what to do with one left behind.
 * The socket is mode 0660 in a directory of mode 0750, both given to the `twtrace` group when there
 * is one (run as root; under systemd, Group=twtrace and RuntimeDirectory= do it instead): the API
 * names every process and peer of the host, so it is for root, the agent's user and the group
 * alone. Created with that mode (umask), never widened afterwards.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { TwtraceError } from '../errors.js';
import { AGENT_GROUP, DEFAULT_AGENT_SOCKET } from './wire.js';

/** --agent-socket, else $TWTRACE_AGENT_SOCKET, else DEFAULT_AGENT_SOCKET. */
export function agentSocketPath(option?: string): string {
	return option ?? process.env.TWTRACE_AGENT_SOCKET ?? DEFAULT_AGENT_SOCKET;
}

/** The gid of `name` from /etc/group, or undefined. */
export function groupId(name: string, groupFile = safeRead('/etc/group')): number | undefined {
	for (const line of groupFile.split('\n')) {
		const [group, , gid] = line.split(':');
		if (group === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
	}
	return undefined;
}

export const SOCKET_MODE = 0o660;
export const DIRECTORY_MODE = 0o750;

/**
 * Makes `socketPath` ready to listen on: creates its directory (root:twtrace 0750) when missing,
 * removes a socket no agent answers on, and refuses when one does or when the path is not a socket.
 */
export async function prepareSocketPath(socketPath: string): Promise<void> {
	const dir = path.dirname(socketPath);
	if (!fs.existsSync(dir)) {
		fs.mkdirSync(dir, { recursive: true, mode: DIRECTORY_MODE });
		fs.chmodSync(dir, DIRECTORY_MODE); // mkdir's mode is masked by the umask
		giveToGroup(dir);
	}
	let st: fs.Stats;
	try {
		st = fs.lstatSync(socketPath);
	} catch {
		return; // nothing there
	}
	if (!st.isSocket()) {
		throw new TwtraceError(`cannot serve the agent API on ${socketPath}: it exists and is not a socket`, 'Remove it, or choose another path: --agent-socket PATH');
	}
	if (await answers(socketPath)) {
		throw new TwtraceError(`an agent already answers on ${socketPath}`,
			'One agent per host: use it (twtrace top, doctor and report find it), or stop it first (systemctl stop twtrace). Another path: --agent-socket PATH');
	}
	fs.unlinkSync(socketPath); // left by an agent that was killed
}

/** Listens on `socketPath` with SOCKET_MODE from the first moment, then gives it to the twtrace group. */
export async function listenPrivately(server: net.Server, socketPath: string): Promise<void> {
	const old = process.umask(0o777 & ~SOCKET_MODE);
	try {
		await new Promise<void>((resolve, reject) => {
			server.once('error', reject);
			server.listen(socketPath, () => {
				server.removeListener('error', reject);
				resolve();
			});
		});
	} catch (error) {
		throw new TwtraceError(`cannot serve the agent API on ${socketPath}: ${(error as Error).message}`, 'Choose another path: --agent-socket PATH, or --no-agent-socket', 1, { cause: error });
	} finally {
		process.umask(old);
	}
	giveToGroup(socketPath);
}

/** Gives `file` to the twtrace group, as root only (an unprivileged agent's files carry its own group). */
function giveToGroup(file: string): void {
	const gid = groupId(AGENT_GROUP);
	if (gid !== undefined && process.getuid?.() === 0) fs.chownSync(file, 0, gid);
}

function answers(socketPath: string): Promise<boolean> {
	return new Promise((resolve) => {
		const s = net.connect(socketPath);
		s.once('connect', () => (s.destroy(), resolve(true)));
		s.once('error', () => resolve(false));
	});
}

function safeRead(file: string): string {
	try {
		return fs.readFileSync(file, 'utf8');
	} catch {
		return '';
	}
}
