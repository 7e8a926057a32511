/**
 * The tracing filters a command is given (--netns, --pid, --comm, --port, --family, --kind), in the
 * forms each side takes: the kernel's (Filters, with namespace names turned into inodes), the
 * model's share of them (what it applies to walked sockets), a capture header's, a view of the
 * agent's model. One place, so that every command reads them alike.
 */
import type { EventKindName } from '../event/kinds.js';
import type { CaptureHeader } from '../capture/format.js';
import { usageError } from '../errors.js';
import type { ModelOptions } from '../model/churn-model.js';
import type { ViewFilter } from '../model/view-filter.js';
import { netnsInode } from '../tracer/host.js';
import type { Filters } from '../tracer/tracer.js';

/** The filters as given on the command line (commands/options.ts addFilterOptions). */
export interface FilterOptions {
	pid?: number;
	comm?: string;
	netns?: string[];
	port?: number;
	kind?: EventKindName[];
	family?: '4' | '6';
	ringSize: number;
	verbose?: boolean;
}

/** Turns flag values into kernel filters; a bad --netns is a usage error (exit 2). */
export function resolveFilters(opts: Partial<FilterOptions>): Filters {
	const netns: number[] = [];
	for (const arg of opts.netns ?? []) {
		try {
			netns.push(netnsInode(arg));
		} catch (error) {
			throw usageError(`--netns ${(error as Error).message}`, 'List namespaces with: ip netns list, or lsns -t net');
		}
	}
	if (netns.length > 8) throw usageError(`--netns: at most 8 network namespaces (got ${netns.length})`);
	return {
		netns,
		pid: opts.pid,
		port: opts.port,
		kinds: opts.kind ?? [],
		family: opts.family === '4' ? 4 : opts.family === '6' ? 6 : undefined,
	};
}

/** The tracing filters given, by flag: the agent's model and a capture were made without them. */
export function tracingFilters(opts: Partial<FilterOptions>): string[] {
	const given: string[] = [];
	if (opts.pid !== undefined) given.push('--pid');
	if (opts.comm !== undefined) given.push('--comm');
	if (opts.netns?.length) given.push('--netns');
	if (opts.port !== undefined) given.push('--port');
	if (opts.family !== undefined) given.push('--family');
	return given;
}

/** The tracing filters asked for, resolved, as a view of a model built without them (the agent's). */
export function askedView(opts: Partial<FilterOptions>): ViewFilter {
	const { netns, family } = resolveFilters({ netns: opts.netns, family: opts.family });
	const view: ViewFilter = {};
	if (netns.length) view.netns = netns;
	if (opts.pid !== undefined) view.pid = opts.pid;
	if (opts.comm !== undefined) view.comm = opts.comm;
	if (opts.port !== undefined) view.port = opts.port;
	if (family !== undefined) view.family = family;
	return view;
}

/** The filters the model applies itself, to sockets found by walks (the kernel filters the events). */
export function modelFilters(opts: Pick<FilterOptions, 'pid' | 'comm' | 'port'>, filters: Filters): Pick<ModelOptions, 'comm' | 'pid' | 'port' | 'family'> {
	return { comm: opts.comm, pid: opts.pid, port: opts.port, family: filters.family };
}

/** The filters a capture's header names (as given: an incomplete capture is not mistaken for all of the host). */
export function captureFilters(filters: Filters, opts: Pick<FilterOptions, 'pid' | 'comm' | 'port'>): CaptureHeader['filters'] {
	return {
		netns: filters.netns,
		...(opts.pid !== undefined ? { pid: opts.pid } : {}),
		...(opts.comm !== undefined ? { comm: opts.comm } : {}),
		...(opts.port !== undefined ? { port: opts.port } : {}),
		...(filters.family !== undefined ? { family: filters.family } : {}),
	};
}
