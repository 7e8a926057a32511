/**
 * The house's layout, checked on the import graph of src/ and native/ (README, "Design notes":
 * layers): dependencies point one way, so there is no circle; commands only wire (they reach the
 * host through sources, never tracer/ or capture/ themselves); tracer/ and capture/ know nothing of
 * the model; views see models, not the machinery; and no module grows past 400 lines.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { root } from '../helpers/env.js';

const MAX_LINES = 400;

/** Every module of src/ and native/, by path from the root, with the modules it imports. */
function importGraph(): Map<string, string[]> {
	const graph = new Map<string, string[]>();
	const walk = (dir: string): void => {
		for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
			const rel = path.join(dir, entry.name);
			if (entry.isDirectory()) walk(rel);
			else if (rel.endsWith('.ts')) {
				const text = fs.readFileSync(path.join(root, rel), 'utf8');
				const imports = [...text.matchAll(/^(?:import|export)\s[^;]*?from '(\.[^']+)';/gms)].map((m) =>
					path.normalize(path.join(path.dirname(rel), m[1]!)).replace(/\.js$/, '.ts'));
				graph.set(rel, imports);
			}
		}
	};
	walk('src');
	walk('native');
	return graph;
}

const graph = importGraph();
const layer = (file: string) => file.split(path.sep).slice(0, 2).join('/');

test('the graph is what it seems: every import resolves to a module', (t) => {
	t.true(graph.size > 50);
	for (const [file, imports] of graph) for (const i of imports) t.true(graph.has(i), `${file} imports ${i}, which is not a module`);
});

test('no import circle', (t) => {
	const state = new Map<string, 'visiting' | 'done'>();
	const circles: string[] = [];
	const visit = (file: string, trail: string[]): void => {
		if (state.get(file) === 'done') return;
		if (state.get(file) === 'visiting') {
			circles.push([...trail.slice(trail.indexOf(file)), file].join(' → '));
			return;
		}
		state.set(file, 'visiting');
		for (const i of graph.get(file) ?? []) visit(i, [...trail, file]);
		state.set(file, 'done');
	};
	for (const file of graph.keys()) visit(file, []);
	t.deepEqual(circles, []);
});

/** Layers a layer must not import from (README's layer picture). */
const FORBIDDEN: Record<string, string[]> = {
	'src/commands': ['src/tracer', 'src/capture', 'native', 'src/pipeline'],
	'src/tracer': ['src/model', 'src/pipeline', 'src/source', 'src/agent', 'src/views', 'src/commands'],
	'src/capture': ['src/model', 'src/pipeline', 'src/source', 'src/agent', 'src/views', 'src/commands', 'src/tracer', 'native'],
	'src/event': ['src/model', 'src/tracer', 'src/capture', 'src/pipeline', 'native'],
	'src/facts': ['src/event', 'src/model', 'src/tracer', 'src/capture', 'src/pipeline', 'native'],
	'src/model': ['src/tracer', 'src/capture', 'src/pipeline', 'src/source', 'src/agent', 'src/views', 'src/commands', 'native'],
	'src/views': ['src/tracer', 'src/capture', 'src/pipeline', 'src/source', 'src/commands', 'native'],
	'src/pipeline': ['src/source', 'src/commands', 'src/views'],
	'src/source': ['src/commands'],
};

test('each layer imports only from the layers below it', (t) => {
	const broken: string[] = [];
	for (const [file, imports] of graph) {
		const banned = FORBIDDEN[layer(file)] ?? [];
		for (const i of imports) if (banned.some((b) => i === `${b}.ts` || i.startsWith(`${b}/`))) broken.push(`${file} → ${i}`);
	}
	t.deepEqual(broken, []);
});

test(`no module under src/ is over ${MAX_LINES} lines`, (t) => {
	const long = [...graph.keys()].filter((f) => f.startsWith('src/') && !f.endsWith('.generated.ts'))
		.map((f) => [f, fs.readFileSync(path.join(root, f), 'utf8').split('\n').length - 1] as const)
		.filter(([, n]) => n > MAX_LINES).map(([f, n]) => `${f}: ${n}`);
	t.deepEqual(long, []);
});
