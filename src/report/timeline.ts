/**
 * What the HTML report plots, on the capture's time axis: TIME_WAIT held per group, ports in use per
 * destination beside the usable ports, and the victims' failures per target. ReportBuilder samples
 * it once per second of event time (the same samples its peaks come from) and counts each failure.
 *
 * Bounded whatever the capture's length: at most MAX_POINTS per series, older points merged in
 * pairs as the capture grows (the step doubles; a gauge keeps the larger of the pair, so a peak is
 * never smoothed away, failures add up), and at most MAX_SERIES series of each kind (the first
 * seen; the report's tables still count every group). Pure: time comes in as whole seconds of
 * CLOCK_MONOTONIC.
 */

/** Points per series: a plot's width in pixels is about this. */
export const MAX_POINTS = 600;
/** Series of each kind followed. */
export const MAX_SERIES = 200;

export interface Timeline {
	/** Seconds between points (1, or a power of two once the capture outgrew MAX_POINTS). */
	stepSeconds: number;
	/** Each point's start, ms since the epoch. */
	timesMs: number[];
	/** The report's top offenders that held TIME_WAIT, in rank order: TIME_WAIT held (null: no sample in that step). */
	offenders: { rank: number; label: string; held: (number | null)[] }[];
	/** The worst destinations: ports in use and usable; when in use first reached usable (or the first EADDRNOTAVAIL). */
	destinations: { label: string; inUse: (number | null)[]; usable: (number | null)[]; exhaustedAtMs: number | null }[];
	/** Failures for want of a port per step, by target ("connect 10.0.0.1:80 EADDRNOTAVAIL"). */
	failures: { label: string; counts: number[] }[];
}

type Merge = 'max' | 'sum';

/** Series of one kind, keyed; each an array of points from the first sampled second. */
class SeriesSet {
	readonly byKey = new Map<string, (number | null)[]>();
	readonly #merge: Merge;

	constructor(merge: Merge) {
		this.#merge = merge;
	}

	/** The series of `key`, made when there is room; undefined beyond MAX_SERIES. */
	series(key: string): (number | null)[] | undefined {
		let s = this.byKey.get(key);
		if (!s && this.byKey.size < MAX_SERIES) this.byKey.set(key, (s = []));
		return s;
	}

	set(key: string, index: number, value: number): void {
		const s = this.series(key);
		if (!s) return;
		while (s.length <= index) s.push(null);
		const old = s[index];
		s[index] = old === null || old === undefined ? value : this.#merge === 'max' ? Math.max(old, value) : old + value;
	}

	/** Every series merged in pairs: point i becomes points 2i and 2i+1. */
	halve(): void {
		for (const [key, s] of this.byKey) {
			const out: (number | null)[] = [];
			for (let i = 0; i < s.length; i += 2) {
				const a = s[i] ?? null;
				const b = i + 1 < s.length ? s[i + 1] ?? null : null;
				out.push(a === null ? b : b === null ? a : this.#merge === 'max' ? Math.max(a, b) : a + b);
			}
			this.byKey.set(key, out);
		}
	}
}

export class TimelineRecorder {
	readonly held = new SeriesSet('max');
	readonly inUse = new SeriesSet('max');
	readonly usable = new SeriesSet('max');
	readonly failures = new SeriesSet('sum');
	/** First second in which a destination's ports in use reached its usable ports. */
	readonly exhaustedSecond = new Map<string, number>();
	#firstSecond: number | undefined;
	#lastSecond = -Infinity;
	#stepSeconds = 1;

	/** The point `second` falls in, merging older points when it is past MAX_POINTS. */
	#index(second: number): number {
		this.#firstSecond ??= second;
		const at = Math.max(second, this.#firstSecond); // a late event counts in the first point
		while (Math.floor((at - this.#firstSecond) / this.#stepSeconds) >= MAX_POINTS) {
			for (const set of [this.held, this.inUse, this.usable, this.failures]) set.halve();
			this.#stepSeconds *= 2;
		}
		this.#lastSecond = Math.max(this.#lastSecond, at);
		return Math.floor((at - this.#firstSecond) / this.#stepSeconds);
	}

	/** TIME_WAIT held per group key at `second`. */
	sampleHeld(second: number, held: ReadonlyMap<string, number>): void {
		const i = this.#index(second);
		for (const [key, n] of held) if (n > 0 || this.held.byKey.has(key)) this.held.set(key, i, n);
	}

	/**
	 * Ports in use and usable towards a destination at `second`; `usable` undefined while the
	 * namespace's port range is not known yet (before its first walk): a gap, not a guess.
	 */
	sampleDestination(second: number, key: string, inUse: number, usable: number | undefined): void {
		if (inUse === 0 && !this.inUse.byKey.has(key)) return;
		const i = this.#index(second);
		this.inUse.set(key, i, inUse);
		if (usable === undefined) return;
		this.usable.set(key, i, usable);
		if (usable > 0 && inUse >= usable && !this.exhaustedSecond.has(key)) this.exhaustedSecond.set(key, second);
	}

	/** One failure for want of a port at `second`, by target. */
	failure(second: number, target: string): void {
		this.failures.set(target, this.#index(second), 1);
	}

	/**
	 * The timeline for the report: `offenders` and `destinations` pick and name the series to plot
	 * (keys as sampled), `failureTargets` the failures; `epochOffsetUs` turns seconds into dates.
	 */
	build(epochOffsetUs: number, offenders: { key: string; rank: number; label: string }[], destinations: { key: string; label: string; firstFailureSecond?: number }[], failureTargets?: number): Timeline {
		const first = this.#firstSecond ?? 0;
		const points = this.#firstSecond === undefined ? 0 : Math.floor((this.#lastSecond - first) / this.#stepSeconds) + 1;
		const ms = (second: number) => Math.round((second * 1e6 + epochOffsetUs) / 1000);
		const padded = <T>(s: readonly T[] | undefined, fill: T): T[] => Array.from({ length: points }, (_, i) => s?.[i] ?? fill);
		const failures = [...this.failures.byKey].map(([label, s]) => ({ label, counts: padded(s, null).map((n) => n ?? 0) }))
			.sort((a, b) => sum(b.counts) - sum(a.counts) || a.label.localeCompare(b.label)).slice(0, failureTargets ?? 5);
		return {
			stepSeconds: this.#stepSeconds,
			timesMs: Array.from({ length: points }, (_, i) => ms(first + i * this.#stepSeconds)),
			offenders: offenders.map(({ key, rank, label }) => ({ rank, label, held: padded(this.held.byKey.get(key), null) })),
			destinations: destinations.map(({ key, label, firstFailureSecond }) => {
				const exhausted = this.exhaustedSecond.get(key) ?? firstFailureSecond;
				return { label, inUse: padded(this.inUse.byKey.get(key), null), usable: padded(this.usable.byKey.get(key), null), exhaustedAtMs: exhausted === undefined ? null : ms(exhausted) };
			}),
			failures,
		};
	}
}

const sum = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0);
