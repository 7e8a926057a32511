/**
 * The agent as a source: snapshots of its model (narrowed to the filters asked, when it may), and
 * its flight recorder's last minutes as a capture. Nothing is loaded here; members of the twtrace
 * group need no root.
 */
import type { AgentClient } from '../agent/client.js';
import type { AgentInfo, SnapshotQuery, SnapshotReply } from '../agent/wire.js';
import { CaptureError } from '../capture/format.js';
import { parseCapture, type Capture } from '../capture/reader.js';
import type { ViewFilter } from '../model/view-filter.js';
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

	/** The flight recorder's last `lastMs` (all it holds when undefined), as the bytes of a capture file. */
	captureBytes(lastMs: number | undefined): Promise<Buffer> {
		return this.client.capture(lastMs);
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

	async close(): Promise<undefined> {
		return undefined;
	}
}
