/**
 * The Prometheus text exposition format (version 0.0.4), written directly into one string: a
 * family's `# HELP` and `# TYPE` lines, then its samples, `name{label="value",…} value`.
 *
 * Why not a client library: a scrape of the agent renders about two hundred samples once a second,
 * code that runs too rarely for V8 to optimise it, so a scrape costs what each object it builds
 * costs. prom-client built a labels object, a hash string and a value record per sample and scrape;
 * its rendering was most of the scrape handler's time in a perf profile of `serve` at 10
 * connections/s. Here a sample is one string concatenation, a family's two header lines are made once
 * per process, and a label set written on many samples (a group's, on its twenty-odd series) is
 * formatted once a scrape (labels(), sampleLabelled()): a scrape's garbage is what makes V8 scavenge,
 * and a scavenge in the middle of one moves the exposition built so far to the old space
 * (docs/counting-in-the-kernel.md, "What fed the old space").
 *
 * Escaping (the format's rules): in HELP text, backslash and newline; in label values, backslash,
 * double quote and newline. Values: +Inf, -Inf and NaN spelled as Prometheus parses them.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** Label names and values in the order they are written. */
export type Labels = Readonly<Record<string, string | number>>;

export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Each family's HELP and TYPE lines, by name: the same few dozen families every scrape. */
const headers = new Map<string, { type: MetricType; help: string; lines: string }>();

export class ExpositionWriter {
	#text = '';

	/** Starts a family: its samples follow (none is allowed: the family is then only described). */
	family(name: string, type: MetricType, help: string): this {
		let h = headers.get(name);
		if (!h || h.type !== type || h.help !== help) headers.set(name, (h = { type, help, lines: `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n` }));
		this.#text += h.lines;
		return this;
	}

	/** One sample; `name` is the family's, or for a histogram its _bucket, _sum or _count. */
	sample(name: string, labels: Labels | undefined, value: number): this {
		if (labels) return this.sampleLabelled(name, formatLabels(labels), value);
		this.#text += `${name} ${formatValue(value)}\n`;
		return this;
	}

	/** `labels` as a sample writes them between the braces (escaped), for sampleLabelled(). */
	labels(labels: Labels): string {
		return formatLabels(labels);
	}

	/** One sample whose labels labels() formatted; `more`, when given, is a further label set formatted alike, after them. */
	sampleLabelled(name: string, formatted: string, value: number, more?: string): this {
		this.#text += `${name}{${more === undefined ? formatted : formatted ? `${formatted},${more}` : more}} ${formatValue(value)}\n`;
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
