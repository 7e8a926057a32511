/**
 * The exposition writer on its own: the format's escaping and value spellings, read back by the
 * tests' parser and, where Debian's prometheus package is installed, by promtool.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { ExpositionWriter, escapeLabelValue, formatValue } from '../../src/views/exposition.js';
import { parseExposition } from '../helpers/exposition.js';
import { toolTest } from '../helpers/env.js';

const AWKWARD = 'a "quoted" back\\slash\nand a newline';

function awkward(): string {
	return new ExpositionWriter()
		.family('t_awkward_total', 'counter', 'Help with a back\\slash\nand a newline')
		.sample('t_awkward_total', { comm: AWKWARD, netns: 4026531840 }, 3)
		.family('t_values', 'gauge', 'Every spelling of a value')
		.sample('t_values', { which: 'inf' }, Infinity)
		.sample('t_values', { which: 'minus_inf' }, -Infinity)
		.sample('t_values', { which: 'nan' }, NaN)
		.sample('t_values', { which: 'fraction' }, 0.25)
		.sample('t_values', { which: 'numeric', bound: 0.005 }, 7)
		.family('t_empty', 'gauge', 'A family with no sample yet')
		.family('t_single', 'gauge', 'No labels')
		.sample('t_single', undefined, 42)
		.text();
}

test('label values are escaped (backslash, quote, newline) and read back as they were, in the order given', (t) => {
	const text = awkward();
	t.true(text.includes('t_awkward_total{comm="a \\"quoted\\" back\\\\slash\\nand a newline",netns="4026531840"} 3\n'));
	const [sample] = parseExposition(text).filter((s) => s.name === 't_awkward_total');
	t.deepEqual(sample, { name: 't_awkward_total', labels: { comm: AWKWARD, netns: '4026531840' }, value: 3 });
	t.is(escapeLabelValue('plain'), 'plain');
});

test('HELP escapes backslash and newline; every family has its HELP and TYPE, samples or not', (t) => {
	const text = awkward();
	t.true(text.includes('# HELP t_awkward_total Help with a back\\\\slash\\nand a newline\n# TYPE t_awkward_total counter\n'));
	t.true(text.includes('# HELP t_empty A family with no sample yet\n# TYPE t_empty gauge\n# HELP t_single'));
	t.true(text.includes('\nt_single 42\n'));
});

test('values are spelled as Prometheus parses them: +Inf, -Inf, NaN, plain numbers, numeric labels as numbers', (t) => {
	t.deepEqual([Infinity, -Infinity, NaN, 0.25, 3600, 1e-3].map(formatValue), ['+Inf', '-Inf', 'NaN', '0.25', '3600', '0.001']);
	const values = Object.fromEntries(parseExposition(awkward()).filter((s) => s.name === 't_values').map((s) => [s.labels.which, s.value]));
	t.deepEqual(values, { inf: Infinity, minus_inf: -Infinity, nan: NaN, fraction: 0.25, numeric: 7 });
	t.true(awkward().includes('t_values{which="numeric",bound="0.005"} 7\n'));
});

toolTest(['promtool'], 'promtool check metrics accepts the awkward exposition', (t) => {
	t.notThrows(() => execFileSync('promtool', ['check', 'metrics'], { input: awkward(), encoding: 'utf8' }));
});

test('a label set formatted once writes the samples that formatting it each time writes', (t) => {
	const [group, side] = [{ comm: AWKWARD, cgroup: '/a', netns: 4026531840 }, { side: 'client' }];
	const each = new ExpositionWriter().family('t_total', 'counter', 'Both ways')
		.sample('t_total', { ...group, ...side }, 1).sample('t_total', group, 2).sample('t_total', side, 3).text();
	const w = new ExpositionWriter().family('t_total', 'counter', 'Both ways');
	const once = w.sampleLabelled('t_total', w.labels(group), 1, w.labels(side)).sampleLabelled('t_total', w.labels(group), 2)
		.sampleLabelled('t_total', w.labels({}), 3, w.labels(side)).text();
	t.is(once, each);
	t.is(parseExposition(once).length, 3);
});
