/**
 * Whether a command answers from the running agent or traces by itself. The agent is used when it
 * answers on its socket, unless --standalone, or tracing filters ask for a model the agent does not
 * keep (its model is the one `serve` was started with). Says which on stderr, once.
 */
import { AgentClient } from '../agent/client.js';
import { agentSocketPath } from '../agent/socket.js';
import type { AgentInfo } from '../agent/wire.js';
import type { FilterOptions } from './options.js';
import type { Io } from './trace.js';

export interface AgentChoiceOptions {
	standalone?: boolean;
	agentSocket?: string;
}

export interface ChosenAgent {
	client: AgentClient;
	info: AgentInfo;
}

/** Filters that change what is traced: the agent's model was built without them. */
export function tracingFilters(opts: Partial<FilterOptions>): string[] {
	const given: string[] = [];
	if (opts.pid !== undefined) given.push('--pid');
	if (opts.comm !== undefined) given.push('--comm');
	if (opts.netns?.length) given.push('--netns');
	if (opts.port !== undefined) given.push('--port');
	if (opts.family !== undefined) given.push('--family');
	return given;
}

/** The agent to use, or undefined to trace here (the reason is printed when an agent was there). */
export async function chooseAgent(command: string, opts: AgentChoiceOptions & Partial<FilterOptions>, io: Io): Promise<ChosenAgent | undefined> {
	if (opts.standalone) return undefined;
	const found = await AgentClient.find(agentSocketPath(opts.agentSocket));
	if (!found.client) {
		if (opts.verbose) io.stderr.write(`twtrace: ${command}: ${found.why}: tracing here\n`);
		return undefined;
	}
	const filters = tracingFilters(opts);
	if (filters.length) {
		io.stderr.write(`twtrace: ${command}: ${filters.join(', ')} given: tracing here with them (the agent's model has none); --standalone says so without this note\n`);
		return undefined;
	}
	return { client: found.client, info: found.info };
}

/** "agent pid 1234, up 3.2 h": for headers. */
export function agentLabel(info: AgentInfo): string {
	return `agent pid ${info.pid}, up ${formatSpan(info.uptimeSeconds * 1000)}`;
}

/** 600000 → "10 min", 90000 → "90 s", 11520000 → "3.2 h". */
export function formatSpan(ms: number): string {
	const s = ms / 1000;
	return s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
}
