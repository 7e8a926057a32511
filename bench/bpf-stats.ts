/**
 * Where a tracer's in-kernel time goes, by the kernel's own clock: while run-time stats are on
 * (native/libbpf.ts enableRunTimeStats), every BPF program's runs and nanoseconds are counted, and
 * bpftool lists them by program id; a process's programs are the prog_id lines of its fds' fdinfo.
 * The benchmark's run-timed modes read them before and after the churn; the other modes run
 * without (the timing costs each run two clock reads, which would shift the slowdowns judged).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { enableRunTimeStats } from '../native/libbpf.js';

export interface ProgramRuns {
	name: string;
	runs: number;
	ns: number;
}

interface BpftoolProg {
	id: number;
	name?: string;
	run_cnt?: number;
	run_time_ns?: number;
}

/** Turns run-time stats on; the returned function turns them off. */
export function runTimeStats(): () => void {
	const fd = enableRunTimeStats();
	return () => fs.closeSync(fd);
}

/** The ids of the BPF programs `pid` holds an fd of (fs/bpf: fdinfo's prog_id). */
function programIds(pid: number): Set<number> {
	const ids = new Set<number>();
	for (const fd of fs.readdirSync(`/proc/${pid}/fdinfo`)) {
		let info = '';
		try {
			info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
		} catch {
			continue; // closed meanwhile
		}
		const m = /^prog_id:\s*(\d+)$/m.exec(info);
		if (m) ids.add(Number(m[1]));
	}
	return ids;
}

/** Runs and run time so far of the programs `pid` holds, by program name (bpftool prog show). */
export function programRuns(pid: number): Map<string, ProgramRuns> {
	const ids = programIds(pid);
	const progs = JSON.parse(execFileSync('bpftool', ['prog', 'show', '--json'], { maxBuffer: 64 << 20 }).toString()) as BpftoolProg[];
	const byName = new Map<string, ProgramRuns>();
	for (const p of progs) {
		if (!ids.has(p.id)) continue;
		const name = p.name ?? '?';
		const r = byName.get(name) ?? { name, runs: 0, ns: 0 };
		r.runs += p.run_cnt ?? 0;
		r.ns += p.run_time_ns ?? 0;
		byName.set(name, r);
	}
	return byName;
}

/** What each program ran between two readings, busiest first; programs that did not run are left out. */
export function runsBetween(before: Map<string, ProgramRuns>, after: Map<string, ProgramRuns>): ProgramRuns[] {
	return [...after.values()]
		.map((a) => ({ name: a.name, runs: a.runs - (before.get(a.name)?.runs ?? 0), ns: a.ns - (before.get(a.name)?.ns ?? 0) }))
		.filter((r) => r.runs > 0)
		.sort((a, b) => b.ns - a.ns);
}
