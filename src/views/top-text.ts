/**
 * `top` as lines of text: a header (namespaces, the worst destination, warnings, losses) and the
 * sorted table with a TIME_WAIT sparkline per row. The same lines go to the full-screen view (with
 * colour) and to a pipe (without). Pure: returns strings.
 */
import { endpoint } from '../event/endpoint.js';
import { printable } from './printable.js';
import { holderLabel, type DestinationRow, type NamespaceRow, type Row, type Snapshot, type VictimRow } from '../model/snapshot.js';
import type { TopContext } from './top-json.js';
import { eventsLost } from '../model/losses.js';

export interface Paint {
	bold: (s: string) => string;
	dim: (s: string) => string;
	red: (s: string) => string;
	yellow: (s: string) => string;
	inverse: (s: string) => string;
}

const id = (s: string) => s;
export const PLAIN: Paint = { bold: id, dim: id, red: id, yellow: id, inverse: id };
export const ANSI: Paint = {
	bold: (s) => `\x1b[1m${s}\x1b[22m`,
	dim: (s) => `\x1b[2m${s}\x1b[22m`,
	red: (s) => `\x1b[31m${s}\x1b[39m`,
	yellow: (s) => `\x1b[33m${s}\x1b[39m`,
	inverse: (s) => `\x1b[7m${s}\x1b[27m`,
};

const SORT_TITLES: Record<Snapshot['sort'], string> = {
	timeWait: 'TIME_WAIT held',
	timeWaitPerSec: 'TIME_WAIT/s',
	connectsPerSec: 'connects/s',
	resetsPerSec: 'resets/s',
	connectFailuresPerSec: 'connect failures/s',
};

const SPARK = '▁▂▃▄▅▆▇█';
const SPARK_WIDTH = 20;

/** 60 samples → 20 characters (3 s each, the maximum), scaled to the row's own peak. */
export function sparkline(history: readonly number[], width = SPARK_WIDTH): string {
	const per = Math.ceil(history.length / width);
	const cells: number[] = [];
	for (let i = 0; i < history.length; i += per) cells.push(Math.max(...history.slice(i, i + per)));
	const peak = Math.max(...cells);
	if (peak === 0) return ' '.repeat(cells.length);
	return cells.map((v) => (v === 0 ? ' ' : SPARK[Math.min(SPARK.length - 1, Math.floor((v / peak) * (SPARK.length - 1e-9)))])).join('');
}

export function formatRate(n: number): string {
	if (n === 0) return '0';
	if (n < 10) return n.toFixed(1);
	if (n < 100_000) return Math.round(n).toLocaleString('en-US');
	return `${(n / 1000).toFixed(0)}k`;
}

export function formatDuration(seconds: number): string {
	if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
	if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
	return `${(seconds / 3600).toFixed(1)} h`;
}

const int = (n: number) => n.toLocaleString('en-US');

export interface HeaderState {
	paused?: boolean;
	filter?: string;
	home?: number;
}

export function headerLines(s: Snapshot, ctx: TopContext, state: HeaderState, paint: Paint): string[] {
	const lines: string[] = [];
	const clock = new Date((s.atUs + ctx.epochOffsetUs) / 1000).toISOString().slice(11, 19);
	lines.push(paint.bold(`twtrace top  ${clock}  up ${formatDuration(s.uptimeMs / 1000)}  by ${s.by}, sorted by ${SORT_TITLES[s.sort]}, every ${ctx.intervalMs / 1000} s${ctx.source ? `  [${ctx.source}]` : ''}`) +
		(state.paused ? paint.inverse(' PAUSED ') : '') + (state.filter ? `  filter: ${state.filter}` : ''));
	for (const n of s.namespaces.slice(0, 4)) lines.push(namespaceLine(n, ctx, state.home, paint));
	if (s.namespaces.length > 4) lines.push(paint.dim(`  … ${s.namespaces.length - 4} more namespaces`));
	const worst = s.destinations[0];
	if (worst) {
		lines.push(destinationLine(worst, paint));
		if (worst.usedRatio > 0.5) {
			lines.push(paint.yellow(`  WARNING: over half the port range towards ${endpoint(worst.daddr, worst.dport)} is in use: connect() now scans the range for a free port (much slower), and fails with EADDRNOTAVAIL when none is left`));
		}
	}
	lines.push(lossLine(s, ctx, paint));
	return lines;
}

function namespaceLine(n: NamespaceRow, ctx: TopContext, home: number | undefined, paint: Paint): string {
	const st = n.settings;
	const name = `netns ${n.netns}${n.netns === home ? ' (host)' : ''}`;
	if (!st) {
		const why = ctx.unwalked.get(n.netns);
		return `${name}: TIME_WAIT ${int(n.timeWait)} (modelled${why ? `; not walked: ${why}` : ''})`;
	}
	const max = st.maxTimeWaitBuckets;
	let tw = `TIME_WAIT ${int(n.timeWait)}`;
	if (max) tw += ` / ${int(max)} max`;
	if (max && n.timeWait > 0.8 * max) tw = paint.red(tw);
	const parts = [tw,
		`ports ${st.portRange.low}-${st.portRange.high} (${int(n.portsUsable ?? 0)})`,
		`tw_reuse ${st.twReuse ?? '?'}`,
		`fin_timeout ${st.finTimeoutSec} s`];
	if (n.overflowSinceStart) parts.push(paint.red(`TIME_WAIT overflow ${int(n.overflowSinceStart)} since start (tcp_max_tw_buckets reached: sockets closed without TIME_WAIT)`));
	if (n.walkedAgoMs !== null) parts.push(paint.dim(`walked ${(n.walkedAgoMs / 1000).toFixed(0)} s ago: ${int(n.walkedTimeWait ?? 0)}`));
	return `${name}: ${parts.join(' · ')}`;
}

function destinationLine(d: DestinationRow, paint: Paint): string {
	const pct = Math.round(d.usedRatio * 100);
	const used = `${int(d.portsInUse)}/${int(d.portsUsable)} ports in use (${pct} %)`;
	const eta = d.secondsToExhaustion === null ? 'sustainable at this rate' : d.secondsToExhaustion === 0 ? paint.red('EXHAUSTED') : paint.red(`exhausted in ${formatDuration(d.secondsToExhaustion)}`);
	return `worst destination: ${d.saddr} → ${endpoint(d.daddr, d.dport)} (netns ${d.netns}): ${d.usedRatio > 0.5 ? paint.yellow(used) : used} · ` +
		`sustainable ${formatRate(d.sustainableRate)}/s · now ${formatRate(d.currentRate)}/s · ${eta}`;
}

function lossLine(s: Snapshot, ctx: TopContext, paint: Paint): string {
	const d = ctx.drops;
	const lost = eventsLost(d);
	const parts = [`lost ${int(lost)} events (ring full ${int(d.ringFull)}, skipped runs ${int(d.missedRuns)})`];
	if (d.mapFull) parts.push(`${int(d.mapFull)} unattributed (map full)`);
	if (d.walkMissed) parts.push(`${int(d.walkMissed)} TIME_WAIT entries the kernel did not report, recovered by walks`);
	if (d.unwitnessed) parts.push(`${int(d.unwitnessed)} closes unwitnessed (closing map full)`);
	if (s.overflow.owners || s.overflow.timeWait) parts.push(`over twtrace's bounds: ${int(s.overflow.owners)} owners merged into (other), ${int(s.overflow.timeWait)} TIME_WAIT untracked`);
	const line = parts.join(' · ');
	return lost || d.mapFull || d.unwitnessed || s.overflow.owners || s.overflow.timeWait ? paint.red(line) : paint.dim(line);
}

/**
 * The victims panel: who failed for want of a port in the last minute, with which errno, towards
 * what, and who holds that pool's ports now. Empty when nobody failed.
 */
export function victimLines(s: Snapshot, paint: Paint, maxVictims = 5): string[] {
	if (!s.victims.length) return [];
	const lines = [paint.red(paint.bold(`VICTIMS: ${s.victims.length} process${s.victims.length > 1 ? 'es' : ''} failed for want of a port in the last minute`))];
	for (const v of s.victims.slice(0, maxVictims)) lines.push(victimLine(v, s.atUs));
	if (s.victims.length > maxVictims) lines.push(paint.dim(`  … ${s.victims.length - maxVictims} more`));
	return lines;
}

function victimLine(v: VictimRow, nowUs: number): string {
	const call = v.call === 'connect' ? `connect() to ${v.target}` : `bind() on ${v.target}`;
	const ago = Math.max(0, Math.round((nowUs - v.lastUs) / 1_000_000));
	const held = v.holders.length
		? `held by ${v.holders.map((h) => `${holderLabel(h)} ${int(h.timeWait)}`).join(', ')}${v.heldTimeWait > sum(v.holders) ? ` (of ${int(v.heldTimeWait)} TIME_WAIT)` : ' TIME_WAIT'}`
		: 'no TIME_WAIT holder known (ports held open, or by sockets outside the walked namespaces)';
	return printable(`  ${holderLabel(v)} ${call}: ${v.errno} ×${int(v.failures)}, last ${ago} s ago (netns ${v.netns}) ← ${held}`);
}

const sum = (hs: readonly { timeWait: number }[]) => hs.reduce((a, h) => a + h.timeWait, 0);

const COLUMNS = {
	process: { title: 'PID', width: 8, value: (r: Row) => String(r.pid || '-') },
	comm: { title: 'COMM', width: 16, value: (r: Row) => r.comm },
	cgroup: { title: 'CGROUP', width: 32, value: (r: Row, ctx: TopContext) => ctx.cgroupPath(r.cgroupId!) ?? String(r.cgroupId) },
	netns: { title: 'NETNS', width: 11, value: (r: Row) => String(r.netns) },
	dest: { title: 'DEST', width: 24, value: (r: Row) => r.dest ?? '' },
} as const;

export function tableLines(s: Snapshot, ctx: TopContext, paint: Paint, maxRows = Infinity, width = Infinity): string[] {
	const key = COLUMNS[s.by];
	const showComm = s.by !== 'comm';
	const head = [key.title.padEnd(key.width), showComm ? 'COMM'.padEnd(16) : '', 'TW-HELD'.padStart(8), 'TW/s'.padStart(7), 'CONN/s'.padStart(7),
		'RST/s'.padStart(6), 'FAIL'.padStart(5), 'SIDE'.padEnd(6), 'LIFE p50'.padStart(9), 'p99'.padStart(9), 'TIME_WAIT 60s'.padEnd(SPARK_WIDTH), 'TOP DEST'].filter(Boolean).join(' ');
	const lines = [paint.inverse(clip(head, width).padEnd(Math.min(width, Math.max(head.length, 80))))];
	for (const r of s.rows.slice(0, maxRows)) {
		const fails = Object.values(r.connectFailures).reduce((a, b) => a + b, 0) + r.bindFailures;
		const cells = [
			clip(printable(key.value(r, ctx)), key.width).padEnd(key.width),
			showComm ? clip(printable(r.comm), 16).padEnd(16) : '',
			int(r.timeWait).padStart(8),
			formatRate(r.timeWaitPerSec).padStart(7),
			formatRate(r.connectsPerSec).padStart(7),
			formatRate(r.resetsPerSec).padStart(6),
			(fails ? String(fails) : '-').padStart(5),
			r.side.padEnd(6),
			ms(r.lifetimeP50Ms).padStart(9),
			ms(r.lifetimeP99Ms).padStart(9),
			sparkline(r.history).padEnd(SPARK_WIDTH),
			r.topDest,
		].filter((c, i) => i !== 1 || showComm);
		const line = clip(cells.join(' '), width);
		lines.push(fails ? paint.red(line) : line);
		// Inferred, on lines of their own: never a number in another row's columns.
		for (const l of r.likely ?? []) {
			lines.push(paint.yellow(clip(printable(`  ↳ likely ${l.comm} (pid ${l.pid}): ${int(l.timeWait)} of these TIME_WAIT; ${l.evidence}`), width)));
		}
	}
	if (s.rows.length === 0) lines.push(paint.dim('  (no TCP connection activity seen yet)'));
	return lines;
}

function ms(v: number | null): string {
	if (v === null) return '-';
	return v < 1000 ? `${v < 10 ? v.toFixed(2) : v.toFixed(1)}ms` : `${(v / 1000).toFixed(2)}s`;
}

/** Cuts a line that may hold ANSI colour codes to `width` visible characters. */
export function clipVisible(line: string, width: number): string {
	let visible = 0;
	let i = 0;
	while (i < line.length) {
		if (line[i] === '\x1b') {
			const end = line.indexOf('m', i);
			if (end < 0) break;
			i = end + 1;
			continue;
		}
		if (visible === width) return line.slice(0, i) + (line.includes('\x1b') ? '\x1b[0m' : '');
		visible++;
		i++;
	}
	return line;
}

function clip(s: string, width: number): string {
	return s.length > width ? s.slice(0, Math.max(0, width - 1)) + '…' : s;
}
