/**
 * The Prometheus text exposition format (version 0.0.4), written directly into one string: a
 * family's `# HELP` and `# TYPE` lines, then its samples, `name{label="value",…} value`.
 *
 * Why not a client library: a scrape of the agent renders about two hundred samples once a second,
 * code that runs too rarely for V8 to optimise it, so a scrape costs what each object it builds
 * costs. prom-client built a labels object, a hash string and a value record per sample and scrape;
 * its rendering was most of the scrape handler's time in a perf profile of `serve` at 10
 * connections/s. Here a sample is one string concatenation.
 *
 * Escaping (the format's rules): in HELP text, backslash and newline; in label values, backslash,
 * double quote and newline. Values: +Inf, -Inf and NaN spelled as Prometheus parses them.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** Label names and values in the order they are written. */
export type Labels = Readonly<Record<string, string | number>>;

export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export class ExpositionWriter {
	#text = '';

	/** Starts a family: its samples follow (none is allowed: the family is then only described). */
	family(name: string, type: MetricType, help: string): this {
		this.#text += `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
		return this;
	}

	/** One sample; `name` is the family's, or for a histogram its _bucket, _sum or _count. */
	sample(name: string, labels: Labels | undefined, value: number): this {
		this.#text += labels ? `${name}{${formatLabels(labels)}} ${formatValue(value)}\n` : `${name} ${formatValue(value)}\n`;
		return this;
	}

	text(): string {
		return this.#text;
	}
}

export function formatValue(value: number): string {
	if (value === Infinity) return '+Inf';
	if (value === -Infinity) return '-Inf';
	return Number.isNaN(value) ? 'NaN' : String(value);
}

function formatLabels(labels: Labels): string {
	let out = '';
	for (const name in labels) {
		const value = labels[name]!;
		out += `${out ? ',' : ''}${name}="${typeof value === 'number' ? formatValue(value) : escapeLabelValue(value)}"`;
	}
	return out;
}

const LABEL_SPECIAL = /[\\"\n]/;
const LABEL_SPECIAL_ALL = /[\\"\n]/g;
const HELP_SPECIAL_ALL = /[\\\n]/g;

export function escapeLabelValue(value: string): string {
	return LABEL_SPECIAL.test(value) ? value.replace(LABEL_SPECIAL_ALL, (c) => (c === '\n' ? '\\n' : `\\${c}`)) : value;
}

function escapeHelp(help: string): string {
	return help.replace(HELP_SPECIAL_ALL, (c) => (c === '\n' ? '\\n' : '\\\\'));
}
