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
import { describeView, isNarrowing, type ViewFilter } from '../model/view-filter.js';
import type { FilterOptions } from './options.js';
import { resolveFilters, type Io } from './trace.js';

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

/** Filters that change what is traced, as given on the command line. */
export function tracingFilters(opts: Partial<FilterOptions>): string[] {
	const given: string[] = [];
	if (opts.pid !== undefined) given.push('--pid');
	if (opts.comm !== undefined) given.push('--comm');
	if (opts.netns?.length) given.push('--netns');
	if (opts.port !== undefined) given.push('--port');
	if (opts.family !== undefined) given.push('--family');
	return given;
}

/** The tracing filters asked for, resolved (namespace names to inodes), as a view of a model. */
export function askedView(opts: Partial<FilterOptions>): ViewFilter {
	const { netns } = resolveFilters({ netns: opts.netns, ringSize: 0 });
	const view: ViewFilter = {};
	if (netns.length) view.netns = netns;
	if (opts.pid !== undefined) view.pid = opts.pid;
	if (opts.comm !== undefined) view.comm = opts.comm;
	if (opts.port !== undefined) view.port = opts.port;
	if (opts.family !== undefined) view.family = opts.family === '4' ? 4 : 6;
	return view;
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
	return `agent pid ${info.pid}, up ${formatSpan(info.uptimeSeconds * 1000)}${isNarrowing(view) ? `; ${describeView(view)}` : ''}`;
}

/** 600000 → "10 min", 90000 → "90 s", 11520000 → "3.2 h". */
export function formatSpan(ms: number): string {
	const s = ms / 1000;
	return s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
}
