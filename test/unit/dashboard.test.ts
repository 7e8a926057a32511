/**
 * deploy/grafana/twtrace-dashboard.json must be what scripts/gen-dashboard.ts makes from the typed
 * model (deploy/grafana/dashboard.ts) today, and hold together as Grafana lays it out.
 */
import fs from 'node:fs';
import test from 'ava';
import { DASHBOARD_FILE, dashboardJson } from '../../scripts/gen-dashboard.js';
import { dashboard } from '../../deploy/grafana/dashboard.js';

test('the dashboard JSON is regenerated from its model without drift', (t) => {
	t.is(fs.readFileSync(DASHBOARD_FILE, 'utf8'), dashboardJson(), 'run `npm run dashboard` and commit the result');
});

test('every panel has a unique id, a place within 24 columns that overlaps no other, and queries with unique refIds', (t) => {
	const panels = dashboard.panels ?? [];
	t.is(new Set(panels.map((p) => p.id)).size, panels.length);
	const cells = new Set<string>();
	for (const p of panels) {
		const g = p.gridPos!;
		t.true(g.x >= 0 && g.x + g.w <= 24, `${p.title}: x ${g.x} w ${g.w}`);
		for (let x = g.x; x < g.x + g.w; x++) {
			for (let y = g.y; y < g.y + g.h; y++) {
				t.false(cells.has(`${x},${y}`), `${p.title} overlaps another panel at ${x},${y}`);
				cells.add(`${x},${y}`);
			}
		}
		if (p.type === 'row') continue;
		const refs = ('targets' in p ? p.targets ?? [] : []).map((q) => q.refId);
		t.true(refs.length > 0, `${p.title} has queries`);
		t.is(new Set(refs).size, refs.length, `${p.title}: refIds`);
	}
});

test('the variables the queries use are defined', (t) => {
	const defined = new Set((dashboard.templating?.list ?? []).map((v) => v.name));
	const text = JSON.stringify(dashboard.panels);
	for (const [, name] of text.matchAll(/\$(?:\{)?([a-z_]+)/g)) {
		if (name!.startsWith('__')) continue; // Grafana's own: $__rate_interval
		t.true(defined.has(name!), `$${name} is not a variable of the dashboard`);
	}
});

test('the README\'s table of panels lists every panel of the dashboard, in order', (t) => {
	const readme = fs.readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
	const section = readme.slice(readme.indexOf('| row | panel | query'), readme.indexOf('No Grafana package is reachable'));
	const listed = [...section.matchAll(/^\|[^|]*\| ([^|]+) \| /gm)].map((m) => m[1]!.trim()).filter((title) => title !== 'panel' && title !== '---');
	const panels = (dashboard.panels ?? []).filter((p) => p.type !== 'row').map((p) => p.title);
	t.deepEqual(listed, panels);
});
