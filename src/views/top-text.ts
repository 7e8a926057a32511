/**
 * `top` as lines of text: a header (namespaces, the worst destination, warnings, losses) and the
 * sorted table with a TIME_WAIT sparkline per row. The same lines go to the full-screen view (with
 * colour) and to a pipe (without). Pure: returns strings.
 */
import { endpoint } from '../event/endpoint.js';
import { formatDuration } from './duration.js';
import { printable } from './printable.js';
import { holderLabel, type DestinationRow, type NamespaceRow, type VictimRow } from '../model/port-rows.js';
import type { Row, Snapshot } from '../model/snapshot.js';
import type { TopContext } from './top-json.js';
import { eventsLost } from '../facts/losses.js';

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

const int = (n: number) => n.toLocaleString('en-US');

export interface HeaderState {
	paused?: boolean;
	filter?: string;
	home?: number;
	/** Columns available: lines give up their least useful parts first to fit. */
	width?: number;
}

/** Characters a line shows (colour codes take none). */
export function visibleLength(line: string): number {
	return line.replace(/\x1b\[[0-9;]*m/g, '').length;
}

/** The first of `candidates` (most complete first) that fits in `width`, else the last. */
function firstFitting(candidates: string[], width: number): string {
	return candidates.find((c) => visibleLength(c) <= width) ?? candidates[candidates.length - 1]!;
}

export function headerLines(s: Snapshot, ctx: TopContext, state: HeaderState, paint: Paint): string[] {
	const lines: string[] = [];
	const clock = new Date((s.atUs + ctx.epochOffsetUs) / 1000).toISOString().slice(11, 19);
	lines.push(paint.bold(`twtrace top  ${clock}  up ${formatDuration(s.uptimeMs / 1000)}  by ${s.by}, sorted by ${SORT_TITLES[s.sort]}, every ${ctx.intervalMs / 1000} s${ctx.source ? `  [${ctx.source}]` : ''}`) +
		(state.paused ? paint.inverse(' PAUSED ') : '') + (state.filter ? `  filter: ${state.filter}` : ''));
	const width = state.width ?? Infinity;
	for (const n of s.namespaces.slice(0, 4)) lines.push(namespaceLine(n, ctx, state.home, paint, width));
	if (s.namespaces.length > 4) lines.push(paint.dim(`  … ${s.namespaces.length - 4} more namespaces`));
	const worst = s.destinations[0];
	if (worst) {
		lines.push(destinationLine(worst, paint, width));
		if (worst.usedRatio > 0.5) {
			const dest = endpoint(worst.daddr, worst.dport);
			lines.push(paint.yellow(firstFitting([
				`  WARNING: over half the port range towards ${dest} is in use: connect() now scans the range for a free port (much slower), and fails with EADDRNOTAVAIL when none is left`,
				`  WARNING: over half the ports to ${dest} in use: connect() slows, then fails (EADDRNOTAVAIL)`,
				`  WARNING: over half the ports in use: connect() slows, then fails`,
			], width)));
		}
	}
	lines.push(lossLine(s, ctx, paint));
	return lines;
}

function namespaceLine(n: NamespaceRow, ctx: TopContext, home: number | undefined, paint: Paint, width: number): string {
	const st = n.settings;
	const name = `netns ${n.netns}${n.netns === home ? ' (host)' : n.name ? ` (${printable(n.name)})` : ''}`;
	if (!st) {
		const why = ctx.unwalked.get(n.netns);
		return `${name}: TIME_WAIT ${int(n.timeWait)} (modelled${why ? `; not walked: ${why}` : ''})`;
	}
	const max = st.maxTimeWaitBuckets;
	// A filtered model sees part of the namespace: its total is then the last walk's (dated beside it).
	let tw = `TIME_WAIT ${int(n.timeWait)}${n.timeWaitFrom === 'walk' ? ' at the last walk' : ''}`;
	if (max) tw += ` / ${int(max)} max`;
	if (max && n.timeWait > 0.8 * max) tw = paint.red(tw);
	// Parts by how much they matter: the least go first when the line is too long.
	const parts: { text: string; rank: number }[] = [
		{ text: tw, rank: 9 },
		{ text: `ports ${st.portRange.low}-${st.portRange.high} (${int(n.portsUsable ?? 0)})`, rank: 7 },
		{ text: `tw_reuse ${st.twReuse ?? '?'}`, rank: 3 },
		{ text: `fin_timeout ${st.finTimeoutSec} s`, rank: 1 },
	];
	if (n.overflowSinceStart) {
		parts.push({ text: paint.red(`TIME_WAIT overflow ${int(n.overflowSinceStart)} since start (tcp_max_tw_buckets reached: sockets closed without TIME_WAIT)`), rank: 5 });
		parts.push({ text: paint.red(`overflow ${int(n.overflowSinceStart)}`), rank: 8 });
	}
	if (n.walkedAgoMs !== null) parts.push({ text: paint.dim(`walked ${(n.walkedAgoMs / 1000).toFixed(0)} s ago: ${int(n.walkedTimeWait ?? 0)}`), rank: 2 });
	const line = (minRank: number) => {
		const kept = parts.filter((p) => p.rank >= minRank);
		// The long overflow text, or its short form when that is all there is room for.
		const long = kept.some((p) => p.rank === 5);
		return `${name}: ${kept.filter((p) => !(long && p.rank === 8)).map((p) => p.text).join(' · ')}`;
	};
	return firstFitting([0, 2, 3, 4, 6, 8, 9].map(line), width);
}

/** The worst destination; when short of width it keeps the ports in use and the time left, and drops the rest first. */
function destinationLine(d: DestinationRow, paint: Paint, width: number): string {
	const pct = Math.round(d.usedRatio * 100);
	const warn = (text: string) => (d.usedRatio > 0.5 ? paint.yellow(text) : text);
	const used = warn(`${int(d.portsInUse)}/${int(d.portsUsable)} ports in use (${pct} %)`);
	const usedShort = warn(`${int(d.portsInUse)}/${int(d.portsUsable)} ports (${pct} %)`);
	const eta = d.secondsToExhaustion === null ? 'sustainable at this rate' : d.secondsToExhaustion === 0 ? paint.red('EXHAUSTED') : paint.red(`exhausted in ${formatDuration(d.secondsToExhaustion)}`);
	const etaShort = d.secondsToExhaustion === null ? 'sustainable' : eta;
	const dest = endpoint(d.daddr, d.dport);
	const now = `now ${formatRate(d.currentRate)}/s`;
	const sustainable = `sustainable ${formatRate(d.sustainableRate)}/s`;
	return firstFitting([
		`worst destination: ${d.saddr} → ${dest} (netns ${d.netns}): ${used} · ${sustainable} · ${now} · ${eta}`,
		`worst destination ${dest}: ${used} · ${eta} · ${now} · ${sustainable}`,
		`worst destination ${dest}: ${used} · ${eta} · ${now}`,
		`worst ${dest}: ${usedShort} · ${etaShort} · ${now}`,
		`worst ${dest}: ${usedShort} · ${etaShort}`,
	], width);
}

function lossLine(s: Snapshot, ctx: TopContext, paint: Paint): string {
	const d = ctx.drops;
	const lost = eventsLost(d);
	const parts = [`lost ${int(lost)} events (ring full ${int(d.ringFull)}, skipped runs ${int(d.missedRuns)})`];
	if (d.mapFull) parts.push(`${int(d.mapFull)} unattributed (map full)`);
	if (d.walkMissed) parts.push(`${int(d.walkMissed)} TIME_WAIT entries the kernel did not report, found later and recovered`);
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

/** After the command name of a process that has exited. */
const EXITED = ' (exited)';

const COLUMNS = {
	process: { title: 'PID', width: 8, value: (r: Row) => String(r.pid || '-') },
	comm: { title: 'COMM', width: 16, value: (r: Row) => r.comm },
	// The workload (unit, container, pod) a cgroup belongs to reads better than its path, which a
	// container id makes too long to show whole.
	cgroup: { title: 'CGROUP', width: 32, value: (r: Row, ctx: TopContext) => r.workload ?? ctx.cgroupPath(r.cgroupId!) ?? String(r.cgroupId) },
	workload: { title: 'WORKLOAD', width: 32, value: (r: Row) => r.workload ?? r.key },
	netns: { title: 'NETNS', width: 11, value: (r: Row) => String(r.netns) },
	dest: { title: 'DEST', width: 24, value: (r: Row) => r.dest ?? '' },
} as const;

interface Column {
	title: string;
	width: number;
	align: 'left' | 'right';
	cell: (r: Row) => string;
	/** Columns are dropped lowest first when the width is short; undefined: always shown. */
	drop?: number;
}

/** The last column (TOP DEST) keeps at least this many characters before columns are dropped for it. */
const MIN_LAST_COLUMN = 16;

/**
 * The table, as wide as `width`: when it is short, the columns that matter least go first (the
 * sparkline, p99, resets/s, p50, the side), so what is left keeps whole numbers instead of
 * losing its last columns to the edge.
 */
export function tableLines(s: Snapshot, ctx: TopContext, paint: Paint, maxRows = Infinity, width = Infinity): string[] {
	const key = COLUMNS[s.by];
	const fails = (r: Row) => Object.values(r.connectFailures).reduce((a, b) => a + b, 0) + r.bindFailures;
	const all: Column[] = [
		{ title: key.title, width: key.width, align: 'left', cell: (r) => clip(printable(key.value(r, ctx)), key.width) },
		...(s.by !== 'comm' ? [{ title: 'COMM', width: 16, align: 'left' as const, cell: (r: Row) => clip(printable(r.comm), r.exited ? 16 - EXITED.length : 16) + (r.exited ? EXITED : '') }] : []),
		{ title: 'TW-HELD', width: 8, align: 'right', cell: (r) => int(r.timeWait) },
		{ title: 'TW/s', width: 7, align: 'right', cell: (r) => formatRate(r.timeWaitPerSec) },
		{ title: 'CONN/s', width: 7, align: 'right', cell: (r) => formatRate(r.connectsPerSec), drop: 6 },
		{ title: 'RST/s', width: 6, align: 'right', cell: (r) => formatRate(r.resetsPerSec), drop: 3 },
		{ title: 'FAIL', width: 5, align: 'right', cell: (r) => (fails(r) ? String(fails(r)) : '-'), drop: 7 },
		{ title: 'SIDE', width: 6, align: 'left', cell: (r) => r.side, drop: 5 },
		// ≤: the kernel's buckets' bounds (an agent's model, a window of counts), not exact lifetimes.
		{ title: 'LIFE p50', width: 9, align: 'right', cell: (r) => upTo(r, ms(r.lifetimeP50Ms)), drop: 4 },
		{ title: 'p99', width: 9, align: 'right', cell: (r) => upTo(r, ms(r.lifetimeP99Ms)), drop: 2 },
		{ title: 'TIME_WAIT 60s', width: SPARK_WIDTH, align: 'left', cell: (r) => sparkline(r.history), drop: 1 },
	];
	const columns = fitColumns(all, width);
	const pad = (c: Column, text: string) => (c.align === 'left' ? text.padEnd(c.width) : text.padStart(c.width));
	const head = [...columns.map((c) => pad(c, c.title)), 'TOP DEST'].join(' ');
	const lines = [paint.inverse(clip(head, width).padEnd(Math.min(width, Math.max(head.length, 80))))];
	for (const r of s.rows.slice(0, maxRows)) {
		const line = clip([...columns.map((c) => pad(c, c.cell(r))), printable(r.topDest)].join(' '), width);
		lines.push(fails(r) ? paint.red(line) : line);
		// Inferred, on lines of their own: never a number in another row's columns.
		for (const l of r.likely ?? []) {
			lines.push(paint.yellow(clip(printable(`  ↳ likely ${l.comm} (pid ${l.pid}): ${int(l.timeWait)} of these TIME_WAIT; ${l.evidence}`), width)));
		}
	}
	if (s.rows.length === 0) lines.push(paint.dim('  (no TCP connection activity seen yet)'));
	return lines;
}

/** The columns that fit in `width` with room for the last one, dropping the lowest `drop` first. */
function fitColumns(all: Column[], width: number): Column[] {
	let kept = [...all];
	const used = () => kept.reduce((n, c) => n + c.width + 1, 0) + MIN_LAST_COLUMN;
	const order = all.filter((c) => c.drop !== undefined).sort((a, b) => a.drop! - b.drop!);
	for (const c of order) {
		if (used() <= width) break;
		kept = kept.filter((k) => k !== c);
	}
	return kept;
}

const upTo = (r: Row, text: string) => (r.lifetimeUpTo && text !== '-' ? `≤${text}` : text);

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
