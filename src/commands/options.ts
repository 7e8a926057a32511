/**
 * Option parsers and the filter options every tracing command shares (trace now; top, record and
 * serve later). Parsers throw commander's InvalidArgumentError, which commander reports as
 * "error: option '--port <port>' argument '70000' is invalid. 70000 is not a port (1-65535)" and exit 2.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { ALL_KINDS, type EventKindName } from '../event/kinds.js';
import { DEFAULT_AGENT_SOCKET } from '../agent/wire.js';
import type { FilterOptions } from '../source/filters.js';

const MAX_PID = 4_194_304; // PID_MAX_LIMIT on 64-bit (include/linux/threads.h)

export function parsePort(value: string): number {
	const n = Number(value);
	if (!/^\d+$/.test(value) || n < 1 || n > 65535) throw new InvalidArgumentError(`${value} is not a port (1-65535).`);
	return n;
}

/** The port `twtrace serve` listens on unless told otherwise. */
export const DEFAULT_METRICS_PORT = 9979;

/**
 * --listen: "HOST:PORT", "[IPv6]:PORT" or a bare PORT (loopback). ":PORT", which Go exporters read
 * as every interface, is refused: exposing the metrics beyond this host must be written out.
 */
export function parseListen(value: string): { host: string; port: number } {
	const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d+)$/.exec(value.trim()) ?? /^()()(\d+)$/.exec(value.trim());
	if (!m) throw new InvalidArgumentError(`${value} is not HOST:PORT (examples: 127.0.0.1:${DEFAULT_METRICS_PORT}, 0.0.0.0:${DEFAULT_METRICS_PORT}, [::1]:${DEFAULT_METRICS_PORT}).`);
	const port = Number(m[3]);
	if (port > 65535) throw new InvalidArgumentError(`${m[3]} is not a port (0-65535; 0 picks a free one).`);
	const host = m[1] ?? m[2]!;
	if (host === '' && /:/.test(value)) {
		throw new InvalidArgumentError(`${value} leaves the address out: write 127.0.0.1:${port} (this host only) or 0.0.0.0:${port} (every interface).`);
	}
	return { host: host || '127.0.0.1', port };
}

export function parsePid(value: string): number {
	const n = Number(value);
	if (!/^\d+$/.test(value) || n < 1 || n > MAX_PID) throw new InvalidArgumentError(`${value} is not a process id (1-${MAX_PID}).`);
	return n;
}

/** The kernel keeps 15 bytes of a command name (TASK_COMM_LEN 16, with the NUL): a longer --comm never matches. */
export const COMM_BYTES = 15;

export function parseComm(value: string): string {
	if (value === '') throw new InvalidArgumentError('is empty.');
	const bytes = Buffer.byteLength(value);
	if (bytes > COMM_BYTES) {
		const cut = Buffer.from(value).subarray(0, COMM_BYTES).toString('utf8').replace(/\uFFFD$/, '');
		throw new InvalidArgumentError(`${value} is ${bytes} bytes; the kernel keeps the first ${COMM_BYTES} of a command name (TASK_COMM_LEN), so it could never match. Use --comm ${cut}`);
	}
	return value;
}

export function parseCount(value: string): number {
	const n = Number(value);
	if (!/^\d+$/.test(value) || n < 1 || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`${value} is not a positive whole number.`);
	return n;
}

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "500ms", "10s", "5m", "1h", or plain seconds ("30") → milliseconds. */
export function parseDuration(value: string): number {
	const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
	const ms = m ? Number(m[1]) * DURATION_UNITS_MS[m[2] ?? 's']! : NaN;
	if (!m || !(ms > 0)) throw new InvalidArgumentError(`${value} is not a duration (examples: 500ms, 10s, 5m, 1h).`);
	return Math.round(ms);
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** "8M", "256K", "16MiB", "1G", bytes → bytes. */
function parseBytes(value: string, examples: string): number {
	const m = /^(\d+)\s*([kmg]?)(?:i?b)?$/i.exec(value.trim());
	const bytes = m ? Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]! : NaN;
	if (!m || !Number.isSafeInteger(bytes)) throw new InvalidArgumentError(`${value} is not a size (examples: ${examples}).`);
	return bytes;
}

/** A ring buffer size: a power of two of at least 4 KiB (the BPF ring buffer rule). */
export function parseRingSize(value: string): number {
	const bytes = parseBytes(value, '4M, 256K');
	if (bytes < 4096 || bytes > 1024 ** 3 || (bytes & (bytes - 1)) !== 0) {
		throw new InvalidArgumentError(`${value} must be a power of two between 4K and 1G (the kernel's ring buffer rule).`);
	}
	return bytes;
}

/** A file size bound (record --max-size): at least 64 KiB, room for a header and a walk. */
export function parseFileSize(value: string): number {
	const bytes = parseBytes(value, '200M, 1G');
	if (bytes < 64 * 1024) throw new InvalidArgumentError(`${value} is too small: at least 64K.`);
	return bytes;
}

export function parseKinds(value: string): EventKindName[] {
	const kinds = value.split(',').map((k) => k.trim()).filter(Boolean);
	const unknown = kinds.filter((k) => !(ALL_KINDS as readonly string[]).includes(k));
	if (kinds.length === 0 || unknown.length > 0) {
		throw new InvalidArgumentError(`unknown kind ${unknown.join(', ') || '(empty)'}; choose from ${ALL_KINDS.join(', ')}.`);
	}
	return kinds as EventKindName[];
}

function collect(value: string, previous: string[] | undefined): string[] {
	return [...(previous ?? []), ...value.split(',').filter(Boolean)];
}

export type { FilterOptions };

export const DEFAULT_RING_BYTES = 8 * 1024 * 1024;

/**
 * Adds the filters shared by every tracing command. Filters other than --comm run in the kernel.
 * `kinds`: offer --kind (trace); commands that model whole connections need every kind.
 */
export function addFilterOptions(cmd: Command, { kinds = true, ringBytes = DEFAULT_RING_BYTES } = {}): Command {
	cmd
		.option('--pid <pid>', 'only sockets owned or closed by this process (thread group id)', parsePid)
		.option('--comm <name>', 'only events blamed on processes with this command name (exact, up to 15 characters)', parseComm)
		.option('--netns <inode|path>', 'only sockets in this network namespace: an inode, /run/netns/NAME, NAME or /proc/PID/ns/net; repeatable, up to 8', collect)
		.option('--port <port>', 'only sockets whose local or remote port is this', parsePort);
	if (kinds) cmd.option('--kind <kinds>', `only these kinds, comma-separated: ${ALL_KINDS.join(', ')}`, parseKinds);
	return cmd
		.addOption(new Option('--family <family>', 'only IPv4 or IPv6').choices(['4', '6']))
		.option('--ring-size <bytes>', 'BPF ring buffer size, a power of two', parseRingSize, ringBytes)
		.option('-v, --verbose', 'print libbpf and verifier messages');
}

/** A refresh or walk interval: at least 100 ms. */
export function parseInterval(value: string): number {
	const ms = parseDuration(value);
	if (ms < 100) throw new InvalidArgumentError(`${value} is too short: at least 100ms.`);
	return ms;
}

/** "20", "20 %" → 20. */
export function parsePercent(value: string): number {
	const n = Number(value.replace(/\s*%$/, ''));
	if (!/^\d+(\.\d+)?\s*%?$/.test(value) || n > 100) throw new InvalidArgumentError(`${value} is not a percentage (0-100).`);
	return n;
}

/** --standalone and --agent-socket, for the commands that can answer from the agent. */
export function addAgentOptions(cmd: Command): Command {
	return cmd
		.option('--standalone', 'trace here even when an agent runs (loads the BPF programs; needs root)')
		.option('--agent-socket <path>', `the agent's socket (default ${DEFAULT_AGENT_SOCKET}, or $TWTRACE_AGENT_SOCKET)`);
}

/** libbpf's and the verifier's messages on stderr, with --verbose. */
export function verboseLog(opts: { verbose?: boolean }, io: { stderr: NodeJS.WritableStream }): ((line: string) => void) | undefined {
	return opts.verbose ? (line) => io.stderr.write(`${line}\n`) : undefined;
}
