/**
 * Whether a command answers from the running agent or traces by itself. The agent is used when it
 * answers on its socket, unless --standalone. Tracing filters (--netns, --pid, --comm, --port,
 * --family) are answered from the agent's model, narrowed to what they ask (model/view-filter.ts),
 * when the agent's own filters cover them (an agent with none covers all) and the command can show
 * a narrowed model (top, doctor); otherwise the command traces here and says why in one line.
 */
import { AgentClient } from '../agent/client.js';
import { agentSocketPath } from '../agent/socket.js';
import type { AgentInfo } from '../agent/wire.js';
import { describeFilters, isNarrowing, type ViewFilter } from '../model/view-filter.js';
import { formatDuration } from '../views/duration.js';
import type { Io } from '../io.js';
import { askedView, tracingFilters, type FilterOptions } from './filters.js';

export interface AgentChoiceOptions {
	standalone?: boolean;
	agentSocket?: string;
}

export interface ChosenAgent {
	client: AgentClient;
	info: AgentInfo;
	/** The tracing filters asked for, to narrow the agent's model with; undefined: none. */
	view?: ViewFilter;
}

/**
 * Why a model built with the agent's filters cannot answer `asked`: a filter of the agent's that
 * the question does not stay within (it left those sockets out). Undefined when it can.
 */
export function whyAgentCannotAnswer(agent: AgentInfo['filters'], asked: ViewFilter): string | undefined {
	if (agent.netns.length) {
		const outside = (asked.netns ?? []).filter((n) => !agent.netns.includes(n));
		if (!asked.netns?.length || outside.length) {
			const what = outside.length ? `--netns ${outside.join(' ')} is` : 'other namespaces are';
			return `the agent traces only --netns ${agent.netns.join(' ')}; ${what} outside them`;
		}
	}
	const same = (name: string, theirs: string | number | null, ours: string | number | undefined) =>
		theirs === null || String(theirs) === String(ours) ? undefined : `the agent traces only --${name} ${theirs}${ours === undefined ? '' : `, not ${ours}`}`;
	return same('pid', agent.pid, asked.pid) ?? same('comm', agent.comm, asked.comm) ?? same('port', agent.port, asked.port) ?? same('family', agent.family, asked.family);
}

export interface ChooseOptions {
	/** The command shows a snapshot, which the agent narrows to the filters asked (top, doctor). */
	narrows?: boolean;
}

/** The agent to use, or undefined to trace here (the reason is printed when an agent was there). */
export async function chooseAgent(command: string, opts: AgentChoiceOptions & Partial<FilterOptions>, io: Io, { narrows = false }: ChooseOptions = {}): Promise<ChosenAgent | undefined> {
	if (opts.standalone) return undefined;
	const found = await AgentClient.find(agentSocketPath(opts.agentSocket));
	if (!found.client) {
		if (opts.verbose) io.stderr.write(`twtrace: ${command}: ${found.why}: tracing here\n`);
		return undefined;
	}
	const filters = tracingFilters(opts);
	if (!filters.length) return { client: found.client, info: found.info };
	if (!narrows) {
		io.stderr.write(`twtrace: ${command}: ${filters.join(', ')} given: tracing here with them (the agent's flight recorder is not narrowed by them); --standalone says so without this note\n`);
		return undefined;
	}
	const view = askedView(opts);
	const why = whyAgentCannotAnswer(found.info.filters, view);
	if (why) {
		io.stderr.write(`twtrace: ${command}: ${why}: tracing here (--standalone says so without this note)\n`);
		return undefined;
	}
	return { client: found.client, info: found.info, ...(isNarrowing(view) ? { view } : {}) };
}

/** "agent pid 1234, up 3.2 h", and the filters it answers with ("; --netns 4026532177"): for headers. */
export function agentLabel(info: AgentInfo, view?: ViewFilter): string {
	return `agent pid ${info.pid}, up ${formatDuration(info.uptimeSeconds)}${isNarrowing(view) ? `; ${describeFilters(view)}` : ''}`;
}
