/** Reads the Prometheus text exposition back into samples, for assertions. */

export interface Sample {
	name: string;
	labels: Record<string, string>;
	value: number;
}

/** Parses `name{a="x",b="y"} value` lines; comments and blank lines are skipped. */
export function parseExposition(text: string): Sample[] {
	const samples: Sample[] = [];
	for (const line of text.split('\n')) {
		if (!line || line.startsWith('#')) continue;
		const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
		if (!m) throw new Error(`not an exposition line: ${line}`);
		const labels: Record<string, string> = {};
		for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
			labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
		}
		const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
		samples.push({ name: m[1]!, labels, value });
	}
	return samples;
}

/** The value of the one sample of `name` whose labels include `labels`; undefined when none. */
export function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
	const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
	if (hits.length > 1) throw new Error(`${hits.length} samples of ${name} match ${JSON.stringify(labels)}`);
	return hits[0]?.value;
}
