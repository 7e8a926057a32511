/**
 * What the benchmark reads from /proc: a process's CPU time and peak memory, whether the machine is
 * quiet, the kernel's socket counts inside a network namespace, and a description of the machine.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';

const CLOCK_TICKS_PER_S = 100; // USER_HZ on Linux x86_64 (sysconf(_SC_CLK_TCK))

/** utime + stime of a process in seconds, from /proc/PID/stat; undefined once it has gone. */
export function cpuSeconds(pid: number): number | undefined {
	try {
		const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
		// Fields after "(comm)", which may itself contain spaces: state is field 3, utime 14, stime 15.
		const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
		return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS_PER_S;
	} catch {
		return undefined;
	}
}

/** Peak resident memory (VmHWM) in MiB. */
export function peakRssMiB(pid: number): number | undefined {
	return statusMiB(pid, 'VmHWM');
}

/** Resident memory now (VmRSS) in MiB. */
export function rssMiB(pid: number): number | undefined {
	return statusMiB(pid, 'VmRSS');
}

/** A "kB" line of /proc/PID/status, in MiB; undefined once the process is gone. */
function statusMiB(pid: number, field: 'VmHWM' | 'VmRSS'): number | undefined {
	try {
		const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
		return m ? Number(m[1]) / 1024 : undefined;
	} catch {
		return undefined;
	}
}

/**
 * A process's resident memory by kind, MiB, from /proc/PID/smaps: pages of files (for node, its own
 * code and its libraries: shared with every process that maps them, yet counted in each one's RSS),
 * BPF maps mapped into it (a BPF ring buffer's data pages are mapped twice in a row, so that a record
 * that wraps reads as one, and count twice), and anonymous memory (V8's heap, buffers, malloc).
 * Undefined once the process is gone.
 */
export interface RssSplit { totalMiB: number; fileMiB: number; bpfMapsMiB: number; anonMiB: number }

export function rssSplitMiB(pid: number): RssSplit | undefined {
	let text: string;
	try {
		text = fs.readFileSync(`/proc/${pid}/smaps`, 'utf8');
	} catch {
		return undefined;
	}
	const kb = { file: 0, bpf: 0, anon: 0 };
	let kind: keyof typeof kb = 'anon';
	for (const line of text.split('\n')) {
		// A mapping's header: "start-end perms offset dev inode [name]"; its fields follow, one a line.
		const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
		if (header) {
			const name = header[1]!;
			kind = name.startsWith('/') ? 'file' : name.startsWith('anon_inode:bpf') ? 'bpf' : 'anon';
			continue;
		}
		const rss = /^Rss:\s+(\d+) kB/.exec(line);
		if (rss) kb[kind] += Number(rss[1]);
	}
	const mib = (n: number) => n / 1024;
	return { totalMiB: mib(kb.file + kb.bpf + kb.anon), fileMiB: mib(kb.file), bpfMapsMiB: mib(kb.bpf), anonMiB: mib(kb.anon) };
}

function cpuTimes(): { idle: number; total: number } {
	const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
	return { idle: f[3]! + f[4]!, total: f.reduce((a, b) => a + b, 0) };
}

/**
 * Waits until the machine is at least `idleShare` idle over a 500 ms window (the previous run's
 * stragglers, timewait cleanup in a deleted namespace, the host's own work). Gives up after
 * `timeoutMs` and returns the idle share it saw, so the report can say the round was not quiet.
 */
export async function waitQuiet(idleShare = 0.9, timeoutMs = 15_000): Promise<number> {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const a = cpuTimes();
		await new Promise((r) => setTimeout(r, 500));
		const b = cpuTimes();
		const idle = (b.idle - a.idle) / Math.max(1, b.total - a.total);
		if (idle >= idleShare || Date.now() > deadline) return idle;
	}
}

/** Timewait sockets (both substates) in a network namespace, from its /proc/net/sockstat. */
export function timeWaitSockets(netns: string): number {
	return twOf(execFileSync('ip', ['netns', 'exec', netns, 'cat', '/proc/net/sockstat'], { encoding: 'utf8' }), netns);
}

/**
 * timeWaitSockets() without blocking the event loop: a bench that times requests while it samples
 * must not stall them with its own fork and exec (the soak's scrapes are timed in this process).
 */
export async function timeWaitSocketsAsync(netns: string): Promise<number> {
	const { stdout } = await promisify(execFile)('ip', ['netns', 'exec', netns, 'cat', '/proc/net/sockstat'], { encoding: 'utf8' });
	return twOf(stdout, netns);
}

function twOf(sockstat: string, netns: string): number {
	const m = /^TCP:.* tw (\d+)/m.exec(sockstat);
	if (!m) throw new Error(`no TCP tw count in /proc/net/sockstat of ${netns}`);
	return Number(m[1]);
}

export interface MachineInfo {
	cpuModel: string;
	cpus: number;
	memoryGiB: number;
	kernel: string;
	node: string;
	bpftrace: string;
	os: string;
}

export function machineInfo(): MachineInfo {
	const osRelease = fs.readFileSync('/etc/os-release', 'utf8');
	let bpftrace = 'not installed';
	try {
		bpftrace = execFileSync('bpftrace', ['--version'], { encoding: 'utf8' }).trim();
	} catch {
		// reported as not installed
	}
	return {
		cpuModel: os.cpus()[0]?.model ?? 'unknown',
		cpus: os.cpus().length,
		memoryGiB: Math.round(os.totalmem() / 2 ** 30),
		kernel: os.release(),
		node: process.version,
		bpftrace,
		os: /^PRETTY_NAME="?([^"\n]*)/m.exec(osRelease)?.[1] ?? 'unknown',
	};
}
