/**
 * The one way `top`, `doctor`, `report` and `record` open their source (source.ts): a capture when
 * asked, else the running agent when it answers and may answer, else this host traced here. The
 * agent-or-standalone choice is made here once, and said on stderr when it is not the agent's.
 */
import type { TwtraceError } from '../errors.js';
import type { Io } from '../io.js';
import { AgentSource } from './agent-source.js';
import { chooseAgent, type AgentChoiceOptions } from './agent-choice.js';
import type { FilterOptions } from './filters.js';
import { LiveSource, type LiveSourceOptions } from './live-source.js';
import { ReplaySource } from './replay-source.js';
import type { Source } from './source.js';

export interface OpenOptions {
	/** Replay this capture file instead of watching the host (top --replay). */
	replay?: { file: string; partial?: boolean };
	/**
	 * The command shows snapshots, which the agent narrows to the tracing filters asked (top,
	 * doctor); otherwise tracing filters make the command trace here.
	 */
	narrows?: boolean;
	/** `may` (the default): the agent when it answers; `never`: trace here; or the agent, else `required` is thrown. */
	agent?: 'may' | 'never' | { required: TwtraceError };
	/** How to trace here, when the agent is not used. */
	live?: LiveSourceOptions;
}

/** The source for `command`: a replay when asked, else the agent when it answers and may, else a live one here. */
export async function openSource(command: string, opts: AgentChoiceOptions & Partial<FilterOptions>, io: Io, want: OpenOptions): Promise<Source> {
	if (want.replay) return ReplaySource.open(want.replay.file, { partial: want.replay.partial });
	const policy = want.agent ?? 'may';
	const agent = policy === 'never' ? undefined : await chooseAgent(command, opts, io, { narrows: want.narrows });
	if (agent) return new AgentSource(agent);
	if (typeof policy === 'object') throw policy.required;
	if (!want.live) throw new Error(`${command}: no live source to fall back on`);
	return LiveSource.open(command, opts, want.live);
}
