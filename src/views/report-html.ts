/**
 * A Report as one self-contained HTML file for the postmortem ticket (`--format html`): the same
 * summary, tables and advice as the text report (the same cells: report-text.ts), then plots on the
 * capture's time axis (report/timeline.ts): TIME_WAIT held by the top offenders, ports in use
 * against usable ports for the worst destinations with the moment each ran out marked, and the
 * victims' failures. Drawn in the browser by uPlot, inlined with its stylesheet: the file fetches
 * nothing, so it opens the same from a ticket, a mail or an air-gapped laptop.
 *
 * After drawing, the page sets `window.twtracePlots` (per plot: series drawn, points, points with a
 * value): what test/integration/report-html.test.ts checks in a real browser.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { labelOf, type Report } from '../report/report.js';
import { DEST_HEADER, destCells, heading, likelyLines, lossLine, namespaceLine, OFFENDER_HEADER, offenderCells, VICTIM_HEADER, victimCells } from './report-text.js';

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
/** Text inside <script>: nothing in it may close the element. */
const scriptSafe = (s: string) => s.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');

let uplot: { js: string; css: string } | undefined;
function uplotAssets(): { js: string; css: string } {
	if (!uplot) {
		const require = createRequire(import.meta.url);
		const dist = (file: string) => fs.readFileSync(require.resolve(`uplot/dist/${file}`), 'utf8');
		uplot = { js: dist('uPlot.iife.min.js'), css: dist('uPlot.min.css') };
	}
	return uplot;
}

function table(header: string[], rows: string[][]): string {
	if (rows.length === 0) return '<p class="none">None.</p>';
	const th = header.map((h) => `<th>${esc(h)}</th>`).join('');
	return `<table><thead><tr>${th}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

function advice(r: Report): string {
	// The first offender's advice open, the others' a click away: the plots stay near the top.
	const blocks = r.offenders.slice(0, 3).filter((o) => o.timeWaitEntries > 0).map((o, i) => {
		const steps = o.advice.map((a) => `<li><strong>${esc(a.title)}.</strong> ${esc(a.detail)}` +
			(a.commands.length ? `<pre>${esc(a.commands.map((c) => `$ ${c}`).join('\n'))}</pre>` : '') + '</li>').join('');
		return `<details${i === 0 ? ' open' : ''}><summary><h3>#${o.rank} ${esc(labelOf(o, r.by))}</h3></summary><ol>${steps}</ol></details>`;
	});
	return blocks.join('') || '<p class="none">No TIME_WAIT churn: nothing to remedy.</p>';
}

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 20px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; } h3 { font-size: 15px; }
.summary { font-size: 16px; padding: 10px 14px; background: #fff4e5; border-left: 4px solid #e67e22; }
.incomplete { padding: 8px 14px; background: #fdecea; border-left: 4px solid #c0392b; }
.source, .none, .note { color: #555; }
table { border-collapse: collapse; margin: 8px 0; } th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; white-space: nowrap; }
pre { background: #f6f6f6; padding: 6px 10px; overflow-x: auto; }
.plot { margin: 12px 0 24px; }
details > summary { cursor: pointer; } details > summary h3 { display: inline; }`;

/** Draws the plots from the embedded timeline; sets window.twtracePlots. Runs in the browser. */
const DRAW = `(() => {
	const data = JSON.parse(document.getElementById('twtrace-timeline').textContent);
	const palette = ['#d62728', '#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
	const xs = data.timesMs.map((t) => t / 1000);
	const drawn = {};
	const width = () => Math.max(480, Math.min(1160, document.body.clientWidth - 16));
	const markers = (marks) => ({ hooks: { draw: [(u) => {
		const ctx = u.ctx;
		for (const m of marks) {
			const x = u.valToPos(m.atMs / 1000, 'x', true);
			ctx.save();
			ctx.strokeStyle = m.color; ctx.fillStyle = m.color; ctx.lineWidth = 2; ctx.setLineDash([6, 4]);
			ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
			ctx.font = '12px sans-serif'; ctx.fillText(m.label, x + 4, u.bbox.top + 14);
			ctx.restore();
		}
	}] } });
	function plot(id, title, yLabel, series, plugins, empty) {
		const el = document.getElementById(id);
		if (xs.length === 0 || series.length === 0) {
			el.textContent = empty;
			drawn[id] = { series: 0, points: 0, values: [] };
			return;
		}
		new uPlot({
			title, width: width(), height: 300, plugins,
			scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
			axes: [{}, { label: yLabel, size: 70 }],
			series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, dash: s.dash, spanGaps: true,
				fill: s.fill, paths: s.bars ? uPlot.paths.bars({ size: [0.8, 30] }) : undefined }))],
		}, [xs, ...series.map((s) => s.values)], el);
		drawn[id] = { series: series.length, points: xs.length, values: series.map((s) => s.values.filter((v) => v !== null).length) };
	}
	plot('plot-held', 'TIME_WAIT held by the top offenders', 'sockets',
		data.offenders.map((o, i) => ({ label: '#' + o.rank + ' ' + o.label, values: o.held, color: palette[i % palette.length] })), [],
		'No TIME_WAIT held during the capture.');
	const dests = data.destinations;
	plot('plot-ports', 'Ports in use against usable ports (dashed), worst destinations', 'ports',
		dests.flatMap((d, i) => [
			{ label: d.label + ' in use', values: d.inUse, color: palette[i % palette.length] },
			{ label: d.label + ' usable', values: d.usable, color: palette[i % palette.length], dash: [8, 6] },
		]),
		[markers(dests.filter((d) => d.exhaustedAtMs !== null).map((d, i) => ({ atMs: d.exhaustedAtMs, label: 'ports ran out: ' + d.label, color: '#c0392b' })))],
		'No destination held ports during the capture.');
	plot('plot-failures', 'Failures for want of a port, per ' + data.stepSeconds + ' s', 'failures',
		data.failures.map((f, i) => ({ label: f.label, values: f.counts, color: palette[(i + 3) % palette.length], fill: palette[(i + 3) % palette.length] + '99', bars: true })), [],
		'No connect() or bind() failed for want of a port.');
	window.twtracePlots = drawn;
})();`;

export function reportHtml(r: Report): string {
	const { js, css } = uplotAssets();
	const likely = likelyLines(r);
	const body = [
		`<h1>TIME_WAIT churn report: ${esc(r.source.host)}</h1>`,
		`<p class="source">${esc(heading(r))}</p>`,
		r.complete ? '' : `<p class="incomplete"><strong>Incomplete capture:</strong> ${esc(r.incomplete ?? '')}. Figures cover only what it holds.</p>`,
		`<p class="summary">${esc(r.summary)}</p>`,
		'<h2>Remediation</h2>', advice(r),
		'<h2>Over time</h2>',
		`<p class="note">One point per ${r.timeline.stepSeconds} s${r.timeline.stepSeconds > 1 ? ' (the most held in each step; failures summed)' : ''}.</p>`,
		'<div id="plot-held" class="plot"></div><div id="plot-ports" class="plot"></div><div id="plot-failures" class="plot"></div>',
		`<h2>Offenders</h2><p>By ${esc(r.by)}, ranked by TIME_WAIT entered: ${r.totals.timeWaitEntries.toLocaleString('en-US')} in all, ${r.totals.connections.toLocaleString('en-US')} connections.</p>`,
		table(OFFENDER_HEADER, r.offenders.map((o) => offenderCells(o, r.by))),
		likely.length ? `<ul>${likely.map((l) => `<li>${esc(l)}</li>`).join('')}</ul>` : '',
		'<h2>Victims</h2><p>connect() or bind() calls that failed for want of a port, and who held the ports at that moment.</p>',
		table(VICTIM_HEADER, r.victims.map(victimCells)),
		'<h2>Destinations</h2>', table(DEST_HEADER, r.destinations.map(destCells)),
		'<h2>Namespaces</h2>', r.namespaces.length ? `<ul>${r.namespaces.map((ns) => `<li>${esc(namespaceLine(ns))}</li>`).join('')}</ul>` : '<p class="none">None walked.</p>',
		`<p class="note">${esc(lossLine(r))}.</p>`,
	].join('\n');
	const timeline = JSON.stringify(r.timeline).replace(/</g, '\\u003c');
	return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>twtrace report: ${esc(r.source.host)}, ${esc(r.source.startedAt)}</title>
<style>${css}${STYLE}</style></head>
<body>
${body}
<script type="application/json" id="twtrace-timeline">${timeline}</script>
<script>${scriptSafe(js)}</script>
<script>${DRAW}</script>
</body></html>
`;
}
