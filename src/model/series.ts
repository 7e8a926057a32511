/**
 * Bounded label sets for exported metrics: at most `maxSeries` groups get a series of their own,
 * everything else is summed into one "other" series. Pure: time comes in as CLOCK_MONOTONIC µs.
 *
 * Prometheus keeps every label set it ever saw for the retention period, so a host that runs
 * thousands of short-lived processes with distinct names must not export a series per name.
 * Three rules keep the set small and still show who matters:
 * - admission: a new group gets a series while there is room, else its activity goes to "other";
 * - ageing: a series idle for `idleUs` (no events, nothing held) is removed: departed processes;
 * - promotion: groups counted in "other" are tallied per tick (a space-saving top-k sketch, so
 *   the tally is bounded too), and one at least twice as active as the quietest series older
 *   than a minute (and with 10 events or more in the tick) takes its place. A latecomer that
 *   churns hard is not hidden behind names that came first.
 *
 * A removed series' counts since the last scrape are added to "other" (fold), so no event counted
 * is lost between two scrapes: sum(rate(...)) over a metric stays exact across removals.
 */

export interface SeriesValues {
	/** Cumulative counters, a fixed width per table. */
	readonly counts: Float64Array;
	/** Cumulative counters keyed by a label value (errno names), bounded by what the key can be. */
	readonly keyed: Map<string, number>;
}

export interface Series<L> extends SeriesValues {
	readonly key: string;
	readonly labels: L;
	/** Counts as of the last scrape: what Prometheus has already seen. */
	readonly scraped: SeriesValues;
	/** Events this tick, and their decayed rate per tick (the activity series are ranked by). */
	window: number;
	score: number;
	readonly createdUs: number;
	lastActiveUs: number;
	/** Something it holds now (TIME_WAIT sockets) keeps it from ageing out. */
	holding: number;
}

export interface SeriesTableOptions<L> {
	maxSeries: number;
	/** Counters per series. */
	width: number;
	/** A series idle this long is removed. */
	idleUs: number;
	/** Labels of a group, computed once, when it gets a series. */
	labelsOf: (key: string) => L;
	otherLabels: L;
	/** Keys that always have a series of their own, beside the maxSeries (a few fixed groups). */
	reserved?: (key: string) => boolean;
}

/** Weight of the last tick in a series' score: scores follow a change of pace within a few ticks. */
const SCORE_ALPHA = 0.5;
/** A candidate takes a series' place only when this many times as active: no flapping between two. */
const PROMOTION_FACTOR = 2;
/** And only with this many events in the tick: a one-off process does not push out a quiet series. */
const PROMOTION_MIN_EVENTS = 10;
/**
 * Nor before the series has lived this long: it has been scraped a few times, and a flood of
 * short-lived names replaces at most maxSeries series a minute (each new series costs Prometheus memory).
 */
const MIN_SERIES_AGE_US = 60_000_000;
/**
 * Groups of "other" tallied per tick, at least. Space-saving finds every group with more than
 * events/capacity events in the tick, so a churner stands out even from a flood of one-off names.
 */
const MIN_CANDIDATES = 256;

export class SeriesTable<L> {
	readonly other: Series<L>;
	readonly #series = new Map<string, Series<L>>();
	/** Series of reserved keys: outside the bound, never removed (counters must not vanish). */
	readonly #reserved = new Map<string, Series<L>>();
	/** Events per group counted in "other" this tick, and the part of it inherited (space-saving). */
	readonly #candidates = new Map<string, { count: number; error: number }>();
	readonly #maxCandidates: number;
	readonly #options: SeriesTableOptions<L>;
	/** Series removed, by why. */
	readonly removed = { idle: 0, displaced: 0 };

	constructor(options: SeriesTableOptions<L>) {
		this.#options = options;
		this.#maxCandidates = Math.max(4 * options.maxSeries, MIN_CANDIDATES);
		this.other = this.#newSeries('', options.otherLabels, 0);
	}

	get size(): number {
		return this.#series.size;
	}

	/** The series of `key`: its own (made if there is room), or "other". Counts `events` of activity. */
	seriesFor(key: string, nowUs: number, events = 1): Series<L> {
		let s = this.#series.get(key) ?? this.#reservedSeries(key, nowUs);
		if (!s && this.#series.size < this.#options.maxSeries) s = this.#admit(key, nowUs);
		if (!s) {
			this.#tallyCandidate(key, events);
			s = this.other;
		}
		s.window += events;
		if (nowUs > s.lastActiveUs) s.lastActiveUs = nowUs;
		return s;
	}

	/** The series `key` is counted in, without counting activity (gauges: held sockets). */
	peek(key: string, nowUs: number): Series<L> {
		return this.#series.get(key) ?? this.#reservedSeries(key, nowUs) ?? (this.#series.size < this.#options.maxSeries ? this.#admit(key, nowUs) : this.other);
	}

	/** The series of a reserved key (made at first use, kept for good), or undefined for any other. */
	#reservedSeries(key: string, nowUs: number): Series<L> | undefined {
		if (!this.#options.reserved?.(key)) return undefined;
		let s = this.#reserved.get(key);
		if (!s) this.#reserved.set(key, (s = this.#newSeries(key, this.#options.labelsOf(key), nowUs)));
		return s;
	}

	*series(): IterableIterator<Series<L>> {
		yield* this.#series.values();
		yield* this.#reserved.values();
		yield this.other;
	}

	/**
	 * Once per tick (a second): scores the tick's activity, removes series idle for idleUs that hold
	 * nothing, then promotes the busiest groups of "other". `holding` must be current.
	 */
	tick(nowUs: number): void {
		for (const s of this.series()) {
			s.score = s.score * (1 - SCORE_ALPHA) + s.window * SCORE_ALPHA;
			s.window = 0;
			// Deleting the entry being visited is safe in a Map iteration; "other" is never removed.
			if (s !== this.other && !this.#reserved.has(s.key) && s.holding === 0 && s.lastActiveUs <= nowUs - this.#options.idleUs) this.#remove(s, 'idle');
		}
		// Ranked by the events a candidate surely had: its count less what it inherited.
		const candidates = [...this.#candidates].map(([key, c]) => [key, c.count - c.error] as const)
			.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
		this.#candidates.clear();
		for (const [key, events] of candidates) {
			if (events <= 0) break;
			if (this.#series.has(key)) continue; // admitted since (peek() found room): keep its counts
			if (this.#series.size >= this.#options.maxSeries) {
				const weakest = this.#weakest(nowUs);
				if (!weakest || events < Math.max(PROMOTION_FACTOR * weakest.score, PROMOTION_MIN_EVENTS)) break;
				this.#remove(weakest, 'displaced');
			}
			this.#admit(key, nowUs).score = events;
		}
	}

	/** Records what Prometheus has now seen: a later removal folds only what came after. */
	markScraped(): void {
		for (const s of this.series()) copyValues(s, s.scraped);
	}

	#admit(key: string, nowUs: number): Series<L> {
		const s = this.#newSeries(key, this.#options.labelsOf(key), nowUs);
		this.#series.set(key, s);
		return s;
	}

	#newSeries(key: string, labels: L, nowUs: number): Series<L> {
		const width = this.#options.width;
		return {
			key, labels,
			counts: new Float64Array(width), keyed: new Map(),
			scraped: { counts: new Float64Array(width), keyed: new Map() },
			window: 0, score: 0, createdUs: nowUs, lastActiveUs: nowUs, holding: 0,
		};
	}

	/** The admitted series least active, among those old enough and holding nothing. */
	#weakest(nowUs: number): Series<L> | undefined {
		let weakest: Series<L> | undefined;
		for (const s of this.#series.values()) {
			if (s.holding > 0 || s.createdUs > nowUs - MIN_SERIES_AGE_US) continue;
			if (!weakest || s.score < weakest.score) weakest = s;
		}
		return weakest;
	}

	#remove(s: Series<L>, why: 'idle' | 'displaced'): void {
		// What Prometheus has not scraped yet moves to "other"; what it has seen stays with the old series.
		const other = this.other;
		for (let i = 0; i < s.counts.length; i++) other.counts[i]! += s.counts[i]! - s.scraped.counts[i]!;
		for (const [k, n] of s.keyed) {
			const unseen = n - (s.scraped.keyed.get(k) ?? 0);
			if (unseen) other.keyed.set(k, (other.keyed.get(k) ?? 0) + unseen);
		}
		this.#series.delete(s.key);
		this.removed[why]++;
	}

	#tallyCandidate(key: string, events: number): void {
		const c = this.#candidates.get(key);
		if (c) {
			c.count += events;
			return;
		}
		if (this.#candidates.size < this.#maxCandidates) {
			this.#candidates.set(key, { count: events, error: 0 });
			return;
		}
		// Space-saving (Metwally et al., 2005): the new key replaces the least counted one and inherits
		// its count as possible error, so no group with more than events/capacity events is missed.
		let minKey = '';
		let min = Infinity;
		for (const [k, e] of this.#candidates) if (e.count < min) [minKey, min] = [k, e.count];
		this.#candidates.delete(minKey);
		this.#candidates.set(key, { count: min + events, error: min });
	}
}

function copyValues(from: SeriesValues, to: SeriesValues): void {
	to.counts.set(from.counts);
	for (const [k, n] of from.keyed) to.keyed.set(k, n);
}
