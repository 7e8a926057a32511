/**
 * What a network namespace's sysctls say about its ports (net.ipv4.*, per namespace since
 * net->sysctls): read by the tracer's walks, kept in captures, used by the model's arithmetic and
 * the advice. Shared by every layer, so it lives below them all. Pure.
 */

export interface PortRange {
	low: number;
	high: number;
}

/** net.ipv4.ip_local_port_range, the kernel's default (also governs IPv6). */
export const DEFAULT_PORT_RANGE: PortRange = { low: 32768, high: 60999 };

/** "32768\t60999" → range; undefined when malformed. */
export function parsePortRange(text: string): PortRange | undefined {
	const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text);
	if (!m) return undefined;
	const low = Number(m[1]);
	const high = Number(m[2]);
	return low >= 1 && high <= 65535 && low <= high ? { low, high } : undefined;
}

/** net.ipv4.ip_local_reserved_ports: "8080,9000-9010" → the listed ports. */
export function parsePortList(text: string): Set<number> {
	const ports = new Set<number>();
	for (const part of text.trim().split(',')) {
		const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
		if (!m) continue;
		const from = Number(m[1]);
		const to = Math.min(Number(m[2] ?? m[1]), 65535);
		for (let p = from; p <= to; p++) ports.add(p);
	}
	return ports;
}

export function inRange(port: number, range: PortRange): boolean {
	return port >= range.low && port <= range.high;
}

/** Ports connect() may pick: the range minus ip_local_reserved_ports. */
export function usablePorts(range: PortRange, reserved: ReadonlySet<number> = new Set()): number {
	let n = range.high - range.low + 1;
	for (const p of reserved) if (inRange(p, range)) n--;
	return n;
}

/** Per network namespace settings that change the arithmetic (read by the host probe). */
export interface NetnsSettings {
	portRange: PortRange;
	reservedPorts: ReadonlySet<number>;
	maxTimeWaitBuckets?: number;
	finTimeoutSec: number;
	twReuse?: number;
	/** tcp_tw_reuse_delay (Linux 6.13+): a TIME_WAIT socket is reused only after this many ms. */
	twReuseDelayMs?: number;
	/** tcp_tw_recycle: present only on kernels before 4.12. */
	twRecycle?: number;
	timestamps?: number;
	/** TcpExtTCPTimeWaitOverflow: timewait sockets the kernel did not create (tcp_max_tw_buckets). */
	timeWaitOverflow?: number;
}

/** {8080, 9000, 9001, 9002} → "8080,9000-9002" (the kernel's own form). */
export function portListText(ports: ReadonlySet<number>): string {
	const sorted = [...ports].sort((a, b) => a - b);
	const parts: string[] = [];
	for (let i = 0; i < sorted.length;) {
		let j = i;
		while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
		parts.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
		i = j + 1;
	}
	return parts.join(',');
}
