/**
 * The agent as a source: snapshots of its model (narrowed to the filters asked, when it may), and
 * its flight recorder's last minutes as a capture. Nothing is loaded here; members of the twtrace
 * group need no root.
 */
import type { AgentClient } from '../agent/client.js';
import type { AgentInfo, CaptureWindow, SnapshotQuery, SnapshotReply } from '../agent/wire.js';
import { CaptureError } from '../capture/format.js';
import { parseCapture, type Capture } from '../capture/reader.js';
import type { ViewFilter } from '../model/view-filter.js';
import { formatBytes } from '../views/bytes.js';
import { formatDuration } from '../views/duration.js';
import { agentLabel, type ChosenAgent } from './agent-choice.js';
import type { Source } from './source.js';

export class AgentSource implements Source {
	readonly kind = 'agent';
	readonly client: AgentClient;
	readonly info: AgentInfo;
	/** The tracing filters the agent narrows its model to, when any were asked. */
	readonly view: ViewFilter | undefined;

	constructor(agent: ChosenAgent) {
		this.client = agent.client;
		this.info = agent.info;
		this.view = agent.view;
	}

	label(): string {
		return agentLabel(this.info, this.view);
	}

	reply(query: SnapshotQuery): Promise<SnapshotReply> {
		return this.client.snapshot(this.view ? { ...query, view: this.view } : query);
	}

	/** The agent walks on its own schedule, and its counts follow every event in between: nothing to do. */
	async settle(): Promise<void> {}

	/** What the recorder held as it served the last window (its reply says), for shortfall(). */
	#window: CaptureWindow | undefined;

	/** The flight recorder's last `lastMs` (all it holds when undefined), as the bytes of a capture file. */
	async captureBytes(lastMs: number | undefined): Promise<Buffer> {
		const { bytes, window } = await this.client.capture(lastMs);
		this.#window = window;
		return bytes;
	}

	/** The same, read. Throws CaptureError (naming the agent's recorder) when it cannot be. */
	async capture(lastMs: number | undefined): Promise<Capture> {
		const bytes = await this.captureBytes(lastMs);
		try {
			return parseCapture(bytes);
		} catch (error) {
			if (error instanceof CaptureError) throw error.of(`the flight recorder of the ${this.label()}`, 'Report it: the agent served a capture this twtrace cannot read');
			throw error;
		}
	}

	/**
	 * Why the window of the last `askedMs` served last holds less than that (what the recorder held as
	 * it served it; from an agent that does not say, its info read again); undefined when it holds it
	 * all, or none was asked.
	 */
	async shortfall(askedMs: number | undefined): Promise<RecorderShortfall | undefined> {
		return askedMs === undefined ? undefined : recorderShortfall(this.#window ?? await this.client.info(), askedMs);
	}

	async close(): Promise<undefined> {
		return undefined;
	}
}

/** A window from the flight recorder shorter than asked: how much it holds, and why. */
export interface RecorderShortfall {
	heldSeconds: number;
	askedSeconds: number;
	/** Why, in words, with what to change: "the agent started 2 min ago", "its 64 MiB (serve --recorder-size) …". */
	because: string;
	/** One line for stderr: "the flight recorder holds only the last 4 min of the 10 min asked for: …". */
	message: string;
}

/**
 * Whether a window of the last `askedMs` from the flight recorder `info` describes holds less
 * (more than a second short), and why: the agent has not run that long, or a bound of the recorder
 * (its age, --recorder; its bytes, --recorder-size) dropped the older frames. Pure.
 */
export function recorderShortfall(info: Pick<AgentInfo, 'uptimeSeconds' | 'recorder'>, askedMs: number): RecorderShortfall | undefined {
	const askedSeconds = askedMs / 1000;
	const { spanSeconds, maxSeconds, maxBytes, droppedBy } = info.recorder;
	if (spanSeconds >= askedSeconds - 1) return undefined;
	// Keeping counts, what fills it is the counts of the busy (process, destination) pairs and the walks' open connections.
	const filler = info.recorder.keeps === 'counts' ? 'with the counts and walks it keeps' : 'at this rate of events';
	const because = droppedBy === 'size'
		? `its ${formatBytes(maxBytes)} (serve --recorder-size) fill that fast ${filler}; a larger --recorder-size keeps more`
		: droppedBy === 'age'
			? `it keeps ${formatDuration(maxSeconds)} (serve --recorder)`
			: `the agent started ${formatDuration(info.uptimeSeconds)} ago`;
	return {
		heldSeconds: spanSeconds, askedSeconds, because,
		message: `the flight recorder holds only the last ${formatDuration(spanSeconds)} of the ${formatDuration(askedSeconds)} asked for: ${because}`,
	};
}
