/**
 * A running trace: the Tracer, the decoder over its ring, batching per drain, and loss monitoring.
 * Commands give it a batch consumer and decide when to stop; nothing here writes to the terminal.
 */
import { Decoder, isDecodeFailure, type TwtEvent } from '../event/decode.js';
import { EVENT_SIZE } from '../event/layout.generated.js';
import { RecordStaging } from '../event/staging.js';
import { NO_TASK, type TaskInfo } from '../event/tasks.js';
import type { DropCounts, SessionSummary } from '../facts/losses.js';
import { Tracer, type Filters } from './tracer.js';

export interface SessionOptions {
	objectPath: string;
	filters: Filters;
	ringBytes: number;
	/** Ring drain period. */
	intervalMs?: number;
	/** How often loss counters are read. */
	dropCheckMs?: number;
	log?: (line: string) => void;
	/** Keep active closes and recover the time_wait events the kernel missed (Tracer's witness option). */
	witness?: boolean;
	/** Enable Tracer.openWalk() (socket walks); implies witness. */
	socketWalks?: boolean;
	/** Count in the kernel too (Tracer's counting option; read through tracer.counts). */
	counting?: boolean;
	/** With counting: walks leave out the timewait sockets the counters hold (Tracer's walksLeaveCounted). */
	walksLeaveCounted?: boolean;
	/** Also hand over each batch's raw records (record keeps them). */
	keepRaw?: boolean;
	/**
	 * With keepRaw: each kept record goes here as it is drained, straight from ring memory, instead
	 * of into onEvents' `raw` (the agent's flight recorder: no batch buffer copied once more).
	 */
	recordSink?: RecordSink;
	/**
	 * Hand each event to this as it is drained, as a reused view of ring memory (Decoder.at), instead
	 * of batches of objects to onEvents: no object per event, for consumers that keep nothing of it
	 * (top's and serve's model). With keepRaw, the raw records still go to onEvents, with no
	 * event objects (the agent's flight recorder).
	 */
	onEach?: (e: TwtEvent) => void;
}

/** Takes records one at a time from ring memory (pipeline/recorder.ts FlightRecorder). */
export interface RecordSink {
	/** Copies the record (EVENT_SIZE bytes, 8-byte aligned) at byte `offset` of `ring`; keeps nothing of `ring`. */
	keep(ring: Uint32Array, offset: number): void;
}

export interface SessionHandlers {
	/**
	 * A batch of events, in ring order, after each drain. The array is not reused. With keepRaw,
	 * `raw` holds the batch's records, EVENT_SIZE each, in ring order: the events' and the task
	 * records' they refer to (undecodable ones left out). A batch may hold task records only.
	 */
	onEvents: (events: TwtEvent[], raw?: Buffer) => void;
	/** New losses since the previous report, and the totals. */
	onDrops?: (delta: DropCounts & { decodeErrors: number }, total: DropCounts & { decodeErrors: number }) => void;
}

export type { SessionSummary };

/**
 * Events handed over at most this many at a time. A drain after a stall can find a full ring (55k
 * records at 8 MiB); one batch of that size made one 30 MB output string and spent more per event
 * than small ones, so falling behind made it fall further behind (measured by bench/run.ts).
 */
const MAX_BATCH_EVENTS = 1024;

export const NO_DROPS: DropCounts = { ringFull: 0, mapFull: 0, missedRuns: 0, nestedRecovered: 0, ownerMissing: 0, walkMissed: 0, unwitnessed: 0 };

export class TraceSession {
	readonly #tracer: Tracer;
	readonly #handlers: SessionHandlers;
	readonly #startedMs = Date.now();
	#batch: TwtEvent[] = [];
	/** The raw records kept since the last flush (keepRaw). */
	readonly #raw = new RecordStaging(MAX_BATCH_EVENTS * EVENT_SIZE);
	#events = 0;
	#decodeErrors = 0;
	#reported = { ...NO_DROPS, decodeErrors: 0 };
	#lastDropCheckMs = 0;
	#final: SessionSummary | undefined;
	#decoder: Decoder | undefined;

	/** Loads, attaches and starts draining. Throws what Tracer throws (after releasing everything). */
	constructor(options: SessionOptions, handlers: SessionHandlers) {
		this.#handlers = handlers;
		const sink: RecordSink | undefined = options.keepRaw === true ? options.recordSink ?? { keep: (ring, offset) => this.#keepRecord(ring, offset) } : undefined;
		let decoder: Decoder | undefined;
		let ringWords: Uint32Array | undefined;
		this.#tracer = new Tracer(
			{ objectPath: options.objectPath, filters: options.filters, ringBytes: options.ringBytes, log: options.log, witness: options.witness, socketWalks: options.socketWalks, counting: options.counting, walksLeaveCounted: options.walksLeaveCounted },
			options.onEach ? (offset, length) => {
				const r = decoder!.at(offset, length);
				if (sink && (r === undefined || !isDecodeFailure(r))) sink.keep(ringWords!, offset);
				if (r === undefined) return;
				if (isDecodeFailure(r)) {
					this.#decodeErrors++;
					return;
				}
				this.#events++;
				options.onEach!(r);
			} : (offset, length) => {
				const r = decoder!.decode(offset, length);
				if (r !== undefined && isDecodeFailure(r)) {
					this.#decodeErrors++;
					return;
				}
				if (sink) sink.keep(ringWords!, offset);
				if (r !== undefined && this.#batch.push(r) >= MAX_BATCH_EVENTS) this.#flush();
			},
		);
		decoder = this.#decoder = new Decoder(this.#tracer.memory);
		// Records are 8-byte aligned in the ring (BPF_RINGBUF_HDR_SZ): copied a word at a time.
		ringWords = new Uint32Array(this.#tracer.memory);
		const dropCheckMs = options.dropCheckMs ?? 1000;
		this.#tracer.reader.start({
			intervalMs: options.intervalMs ?? 10,
			afterDrain: () => {
				this.#flush();
				const now = Date.now();
				if (now - this.#lastDropCheckMs >= dropCheckMs) {
					this.#lastDropCheckMs = now;
					this.#checkDrops();
				}
			},
		});
	}

	get ringBytes(): number {
		return this.#tracer.ringBytes;
	}

	/** The task a twt_task.id names (an event's owner or closer, a counter key's owner), from the task records drained so far. */
	task(id: number): TaskInfo {
		return this.#decoder?.tasks.get(id) ?? NO_TASK;
	}

	/** Events that named a task whose record was lost (ring full) or forgotten: unattributed. */
	get unknownTasks(): number {
		return this.#decoder?.tasks.unknown ?? 0;
	}

	/** The loaded tracer, for socket walks and listener lookups. */
	get tracer(): Tracer {
		return this.#tracer;
	}

	/**
	 * Drains the ring now and delivers what it held, so that a walk that follows is not ahead of the
	 * events; `untilPaused`: stops early if the consumer pauses (RingReader.drain).
	 */
	drainNow(untilPaused = false): void {
		this.#tracer.reader.drain(untilPaused);
		this.#flush();
	}

	/** Stop draining (backpressure from a slow consumer); the kernel counts what then overflows. */
	pause(): void {
		this.#tracer.reader.pause();
	}

	resume(): void {
		this.#tracer.reader.resume();
	}

	/** Detaches the tracepoint programs and delivers what the ring holds: a last walk may follow. */
	detachTracepoints(): void {
		this.#tracer.detachTracepoints();
		this.drainNow();
	}

	/**
	 * Detaches, delivers the events still in the ring, reports final losses and returns the totals.
	 * Idempotent: later calls return the same summary.
	 */
	stop(): SessionSummary {
		if (this.#final) return this.#final;
		this.#tracer.detachTracepoints();
		this.drainNow();
		const drops = this.#checkDrops(); // after the last run, before close(): the counters map goes with the object
		this.#tracer.close();
		this.#flush();
		this.#final = {
			...drops,
			events: this.#events,
			decodeErrors: this.#decodeErrors,
			seconds: (Date.now() - this.#startedMs) / 1000,
		};
		return this.#final;
	}

	/**
	 * Copies one record out of ring memory for onEvents' `raw`; task records too: a replay needs them
	 * to know whose the events are. A word at a time: no view object nor native call per record.
	 */
	#keepRecord(ring: Uint32Array, offset: number): void {
		this.#raw.appendRecord(ring, offset);
		if (this.#raw.full) this.#flush();
	}

	#flush(): void {
		if (this.#batch.length === 0 && this.#raw.bytes === 0) return;
		const batch = this.#batch;
		this.#batch = [];
		this.#events += batch.length;
		this.#handlers.onEvents(batch, this.#raw.take());
	}

	#checkDrops(): DropCounts {
		const total = { ...this.#tracer.drops(), decodeErrors: this.#decodeErrors };
		// An event whose task record was lost (ring full) is unattributed, like one whose owner storage failed.
		total.mapFull += this.unknownTasks;
		const delta = { ...total };
		for (const k of Object.keys(delta) as (keyof typeof delta)[]) delta[k] -= this.#reported[k];
		this.#reported = total;
		if (delta.ringFull || delta.mapFull || delta.missedRuns || delta.decodeErrors || delta.walkMissed || delta.unwitnessed) this.#handlers.onDrops?.(delta, total);
		return total;
	}
}
