/**
 * A Report as text: a plain table for the terminal (`--format table`) and Markdown to paste into
 * an incident document (`--format markdown`). Both show the same sections in the same order:
 * summary, offenders, victims, destinations, namespaces, advice, losses. The cells are shared with
 * the HTML report (report-html.ts).
 */
import { endpoint } from '../event/endpoint.js';
import { formatDuration } from './duration.js';
import { labelOf, type Offender, type Report, type Victim } from '../report/report.js';
import { printable } from './printable.js';

const n = (v: number) => Math.round(v).toLocaleString('en-US');
const rate = (v: number) => (v >= 100 ? n(v) : String(Math.round(v * 10) / 10));
const pct = (v: number) => `${Math.round(v * 100)} %`;
const ms = (v: number | undefined) => (v === undefined ? '-' : v >= 100 ? n(v) : String(v));

export function heading(r: Report): string {
	const src = r.source.kind === 'capture' ? `capture ${r.source.file}` : r.source.kind === 'agent' ? `the flight recorder of the ${r.source.file}` : 'live';
	return `${src} from ${r.source.host} (Linux ${r.source.kernel}), started ${r.source.startedAt}, ${formatDuration(r.source.seconds)}; filters: ${r.source.filters}`;
}

export function offenderCells(o: Offender, by: Report['by']): string[] {
	return [
		String(o.rank), labelOf(o, by), o.side, n(o.connections), n(o.timeWaitEntries), pct(o.timeWaitShare), n(o.peakTimeWait),
		`${rate(o.connectRateAvg)} / ${rate(o.connectRatePeak)}`,
		o.lifetimeMs ? (o.lifetimeMs.upTo ? `≤ ${ms(o.lifetimeMs.p50)} / ≤ ${ms(o.lifetimeMs.p99)}` : `${ms(o.lifetimeMs.p50)} / ${ms(o.lifetimeMs.p99)}`) : '-',
		o.topDestinations[0]?.peer ?? '-',
	];
}
export const OFFENDER_HEADER = ['#', 'OFFENDER', 'SIDE', 'CONNECTIONS', 'TIME_WAIT', 'SHARE', 'PEAK HELD', 'CONN/s avg / peak', 'LIFE ms p50 / p99', 'TOP DESTINATION'];

/** Inferred owners, apart from the table's exact numbers. */
export function likelyLines(r: Report): string[] {
	return r.offenders.flatMap((o) => (o.likely ?? []).map((l) =>
		`#${o.rank} ${o.comm}: likely ${l.comm} (pid ${l.pid}), up to ${n(l.peakTimeWait)} held (inferred: ${l.evidence})`));
}

export function victimCells(v: Victim): string[] {
	return [
		`${v.comm} (pid ${v.pid})`, `${v.call}() ${v.errno}`, v.target, n(v.failures), v.first.slice(11, 23), v.last.slice(11, 23),
		v.heldBy.map((h) => `${h.offenderRank ? `#${h.offenderRank} ` : ''}${h.label}: ${n(h.portsHeld)}`).join('; ') || '(no TIME_WAIT held by known owners)',
	];
}
export const VICTIM_HEADER = ['PROCESS', 'FAILED', 'TARGET', 'FAILURES', 'FIRST (UTC)', 'LAST (UTC)', 'PORTS HELD BY'];

export const DEST_HEADER = ['NETNS', 'SOURCE', 'DESTINATION', 'CONNECTS', 'PEAK PORTS IN USE', 'SUSTAINABLE/s', 'PEAK CONN/s', 'FAILURES'];
export function destCells(d: Report['destinations'][number]): string[] {
	return [String(d.netns), d.saddr, endpoint(d.daddr, d.dport), n(d.connects), `${n(d.peakPortsInUse)} / ${n(d.portsUsable)} (${pct(d.peakPortsInUse / Math.max(1, d.portsUsable))})`,
		rate(d.sustainableRate), rate(d.peakConnectRate), n(d.connectFailures)];
}

export function namespaceLine(ns: Report['namespaces'][number]): string {
	const s = ns.settings;
	const tw = `TIME_WAIT ${n(ns.timeWaitAtEnd)} at the ${ns.timeWaitFrom === 'walk' ? 'last walk' : 'end'} (peak ${n(ns.peakTimeWait)})` +
		(ns.walked ? '' : ', not walked: what it held before the capture is not counted');
	if (!s) return `netns ${ns.netns}: ${tw}`;
	const opt = (v: number | undefined) => (v === undefined ? 'n/a' : String(v));
	return `netns ${ns.netns}: ${tw}; ip_local_port_range ${s.portRange.low}-${s.portRange.high}; tcp_tw_reuse ${opt(s.twReuse)}; ` +
		`tcp_timestamps ${opt(s.timestamps)}; tcp_fin_timeout ${s.finTimeoutSec}; tcp_max_tw_buckets ${s.maxTimeWaitBuckets === undefined ? 'n/a' : n(s.maxTimeWaitBuckets)}` +
		(ns.timeWaitOverflow > 0 ? `; TIME_WAIT overflow ${n(ns.timeWaitOverflow)}` : '');
}

export function lossLine(r: Report): string {
	const l = r.losses;
	const parts = [
		l.ringFull && `${n(l.ringFull)} events lost (ring buffer full)`,
		l.missedRuns && `${n(l.missedRuns)} BPF runs skipped`,
		l.mapFull && `${n(l.mapFull)} sockets unattributed (owner storage full)`,
		l.unwitnessed && `${n(l.unwitnessed)} closes unwitnessed (closing map full)`,
		l.decodeErrors && `${n(l.decodeErrors)} undecodable records`,
		l.ownersMerged && `${n(l.ownersMerged)} owners merged into "(other)"`,
		l.timeWaitUntracked && `${n(l.timeWaitUntracked)} TIME_WAIT entries or victims beyond the memory bounds`,
	].filter(Boolean);
	// No owner from connect()/listen(): the socket, or only its listener, is older than the recording.
	// Such a connection is still blamed on the process that closed it, when one did.
	const owners = l.ownerMissing ? `; ${n(l.ownerMissing)} connections ended with no owner from connect() or listen() (the socket or its listener is older than the recording; blamed on their closer when seen)` : '';
	const recovered = l.walkMissed ? `; ${n(l.walkMissed)} TIME_WAIT entries the kernel did not report, found later and recovered` : '';
	const unknown = l.unreadable.length ? `; unknown: the end frame's counters are unreadable (${l.unreadable.join(', ')})` : '';
	return (parts.length ? `Losses: ${parts.join(', ')}` : 'Losses: none') + owners + recovered + unknown;
}

function table(header: string[], rows: string[][], indent = ''): string[] {
	const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
	const line = (cells: string[]) => indent + cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
	return [line(header), ...rows.map(line)];
}

function wrap(text: string, width: number, indent: string): string[] {
	const out: string[] = [];
	let line = '';
	for (const word of text.split(' ')) {
		if (line && line.length + 1 + word.length > width) {
			out.push(indent + line);
			line = word;
		} else line = line ? `${line} ${word}` : word;
	}
	if (line) out.push(indent + line);
	return out;
}

export function reportTable(r: Report): string {
	return printable(table0(r));
}

function table0(r: Report): string {
	const out: string[] = [`twtrace report: ${heading(r)}`];
	if (!r.complete) out.push(`INCOMPLETE: ${r.incomplete}. Everything below covers only what the capture holds.`);
	out.push('', r.summary, '');
	out.push(`Offenders, by ${r.by}, ranked by TIME_WAIT entered (${n(r.totals.timeWaitEntries)} in all, ${n(r.totals.connections)} connections):`);
	out.push(...(r.offenders.length ? table(OFFENDER_HEADER, r.offenders.map((o) => offenderCells(o, r.by)), '  ') : ['  none']));
	out.push(...likelyLines(r).map((l) => `  ${l}`));
	out.push('', 'Victims: connect() or bind() that failed for want of a port:');
	out.push(...(r.victims.length ? table(VICTIM_HEADER, r.victims.map(victimCells), '  ') : ['  none']));
	out.push('', 'Destinations (ports run out per source, destination address and port):');
	out.push(...(r.destinations.length ? table(DEST_HEADER, r.destinations.map(destCells), '  ') : ['  none']));
	out.push('', 'Namespaces:', ...(r.namespaces.length ? r.namespaces.map((ns) => `  ${namespaceLine(ns)}`) : ['  none walked']));
	for (const o of r.offenders.slice(0, 3)) {
		if (o.timeWaitEntries === 0) continue;
		out.push('', `Advice for #${o.rank} ${labelOf(o, r.by)}:`);
		for (const a of o.advice) {
			out.push(...wrap(`${a.step}. ${a.title}.`, 100, '  '));
			out.push(...wrap(a.detail, 100, '     '));
			for (const c of a.commands) out.push(`     $ ${c}`);
		}
	}
	out.push('', lossLine(r), '');
	return out.join('\n');
}

const md = (s: string) => s.replace(/\|/g, '\\|');

function mdTable(header: string[], rows: string[][]): string[] {
	return [`| ${header.map(md).join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(md).join(' | ')} |`)];
}

export function reportMarkdown(r: Report): string {
	return printable(markdown0(r));
}

function markdown0(r: Report): string {
	const out: string[] = [`## TIME_WAIT churn report`, '', `> ${r.summary}`, '', `*${heading(r)}.*`];
	if (!r.complete) out.push('', `**Incomplete capture:** ${r.incomplete}. Figures cover only what it holds.`);
	out.push('', `### Offenders`, '', `By ${r.by}, ranked by TIME_WAIT entered: ${n(r.totals.timeWaitEntries)} in all, ${n(r.totals.connections)} connections.`, '');
	out.push(...(r.offenders.length ? mdTable(OFFENDER_HEADER, r.offenders.map((o) => offenderCells(o, r.by))) : ['None.']));
	const likely = likelyLines(r);
	if (likely.length) out.push('', ...likely.map((l) => `- ${l}`));
	out.push('', '### Victims', '', 'connect() or bind() calls that failed for want of a port, and who held the ports at that moment.', '');
	out.push(...(r.victims.length ? mdTable(VICTIM_HEADER, r.victims.map(victimCells)) : ['None.']));
	out.push('', '### Destinations', '');
	out.push(...(r.destinations.length ? mdTable(DEST_HEADER, r.destinations.map(destCells)) : ['None.']));
	out.push('', '### Namespaces', '', ...(r.namespaces.length ? r.namespaces.map((ns) => `- ${namespaceLine(ns)}`) : ['None walked.']));
	out.push('', '### Remediation');
	for (const o of r.offenders.slice(0, 3)) {
		if (o.timeWaitEntries === 0) continue;
		out.push('', `**#${o.rank} ${md(labelOf(o, r.by))}**`, '');
		for (const a of o.advice) {
			out.push(`- **Step ${a.step}: ${md(a.title)}.** ${md(a.detail)}`);
			if (a.commands.length) out.push('  ```sh', ...a.commands.map((c) => `  ${c}`), '  ```');
		}
	}
	out.push('', `*${lossLine(r)}.*`, '');
	return out.join('\n');
}
