/**
 * `twtrace top`: who churns connections, how many ports each holds in TIME_WAIT, who fails for want
 * of a port, and how long until connect() fails. Options and wiring: a source (the running agent,
 * this host traced here, or a capture replayed) and top's loop, which draws or prints its snapshots.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { TwtraceError, usageError } from '../errors.js';
import { COMMAND_KINDS } from '../event/kinds.js';
import type { Io } from '../io.js';
import { GROUPINGS, type Grouping } from '../model/groups.js';
import { SORT_KEYS, type SortKey } from '../model/snapshot.js';
import type { AgentChoiceOptions } from '../source/agent-choice.js';
import { tracingFilters } from '../source/filters.js';
import { ReplaySource } from '../source/replay-source.js';
import { openSource } from '../source/open.js';
import { addAgentOptions, addFilterOptions, DEFAULT_RING_BYTES, parseCount, parseInterval, verboseLog, type FilterOptions } from './options.js';
import { runTopLoop } from './top-loop.js';

export interface TopOptions extends FilterOptions, AgentChoiceOptions {
	by: Grouping;
	sort: SortKey;
	interval: number;
	walkInterval: number;
	once?: boolean;
	iterations?: number;
	json?: boolean;
	/** Replay this capture instead of watching the host. */
	replay?: string;
	/** Capture seconds per second of replay. */
	speed: number;
}

export async function topCommand(opts: TopOptions, io: Io): Promise<void> {
	if (opts.replay !== undefined) {
		// Filters and sources a replay does not take: the capture was filtered when it was recorded.
		const given = [...tracingFilters(opts), ...(opts.standalone ? ['--standalone'] : []), ...(opts.agentSocket !== undefined ? ['--agent-socket'] : [])];
		if (given.length) throw usageError(`${given[0]} does not apply to --replay: a capture's filters were set when it was recorded`);
	}
	const source = await openSource('top', opts, io, {
		replay: opts.replay === undefined ? undefined : { file: opts.replay, partial: true },
		narrows: true,
		// Walks at once: sockets that predate twtrace, and the namespaces' settings, before the first screen.
		// The same model as the agent's: what the kernel counts, from its counters (docs/counting-in-the-kernel.md, step 4).
		live: { kinds: COMMAND_KINDS.top, fromCounts: true, walkIntervalMs: opts.walkInterval, perEvent: true, likelyOwners: true, log: verboseLog(opts, io) },
	});
	if (source instanceof ReplaySource) {
		source.speed = opts.speed;
		if (source.incomplete) io.stderr.write(`twtrace: ${opts.replay} is incomplete (${source.incomplete}): replaying what it holds\n`);
	}
	let reason = '';
	try {
		reason = await runTopLoop(source, { by: opts.by, sort: opts.sort, intervalMs: opts.interval, once: opts.once, iterations: opts.iterations, json: opts.json }, io);
	} finally {
		const summary = await source.close();
		if (summary) io.stderr.write(summary + '\n');
	}
	if (reason.startsWith('snapshot failed')) throw new TwtraceError(`top: ${reason}`, 'Is the agent still running? systemctl status twtrace; or run twtrace top --standalone');
}

const TOP_HELP = `
Source: the running agent when there is one (its header says "[agent pid N, up …]"): it has watched
since it started, so owners are exact for sockets born hours ago, nothing is loaded here, and members of
the twtrace group need no root. --standalone traces here instead.

Filters (--netns, --pid, --comm, --port, --family): with an agent, its model is narrowed to them (the
header adds them: "[agent pid N, up …; --netns …]"), as long as the agent's own filters cover them (an
agent started without filters covers all). If they do not (the agent watches --netns A, you ask for B),
top traces here with them and says why in one line. --pid and --comm keep the sockets blamed on that
process; --port, outgoing connections to that port and accepted ones on it. Without an agent the
kernel applies them as for twtrace trace.

Keys (full screen, on a terminal): q quit · s next sort · g next grouping · p pause · / filter · ? help
Without a terminal, or with --once, --iterations or --json, snapshots are printed as text or JSON lines.

Rows: TW-HELD is TIME_WAIT sockets held now by the group; SIDE is the end that closes first, which is the
end that holds the TIME_WAIT. "(before start)" holds sockets already in TIME_WAIT when twtrace started
(on a port whose listen() twtrace saw, the listener owns them), "(events lost)" sockets that entered it
since but whose events a full ring lost; under them, "↳ likely" names who probably made them, with the
evidence (who connects to the same destination now; for a server's, who holds the listening socket of
its port): inferred, never added to anyone's count. VICTIMS lists who failed for want of a port in the last minute, and who
holds that pool's ports. The header shows each network namespace's TIME_WAIT against tcp_max_tw_buckets,
its port range, and for the worst destination the headroom: one destination sustains (usable ports / 60 s)
new connections per second.

Examples:
  twtrace top
  twtrace top --by workload
  twtrace top --replay incident.twtcap --speed 4
  twtrace top --replay incident.twtcap --json > snapshots.ndjson
  twtrace top --by comm
  twtrace top --netns /run/netns/app                      (from the agent, narrowed to that namespace)
  sudo twtrace top --standalone --netns /run/netns/app
  twtrace top --json --iterations 10 --interval 2s > top.ndjson`;

/** Adds `top` and its options to the program (program.command() copies output, exit and help settings). */
export function registerTop(program: Command, io: Io): void {
	const top = program.command('top')
		.description('Live view of TCP churn per process: TIME_WAIT held now (exact: socket tables are walked), rates, connection lifetimes, ' +
			'and for the worst destination the ports in use, the sustainable rate (usable ports / 60 s) and the time until connect() fails.')
		.addOption(new Option('--by <grouping>', 'group rows by').choices(GROUPINGS).default('process'))
		.addOption(new Option('--sort <key>', 'sort rows by').choices(SORT_KEYS).default('timeWait'))
		.option('--interval <time>', 'refresh every (rates are over the same window)', parseInterval, 1000)
		.option('--walk-interval <time>', 'check each namespace\'s TIME_WAIT count against the kernel\'s this often; walk its socket table (exact counts, timers, sockets from before start) when they differ, and every 10 intervals', parseInterval, 5000)
		.option('--once', 'print one snapshot after one interval and exit (same as --iterations 1)')
		.option('--iterations <n>', 'print n snapshots, one per interval, and exit', parseCount)
		.option('--json', 'one JSON object per snapshot, one per line; see README "top --json"')
		.option('--replay <file>', 'draw the screen from a capture (twtrace record) on its own clock instead of this host; with --json, --once or --iterations: its snapshots, one per interval of capture time, at once')
		.option('--speed <n>', 'replay: capture seconds per second (0.25, 2, 10); + and - change it', parseSpeed, 1);
	addAgentOptions(top);
	// top stops draining while it walks socket tables: a larger ring absorbs the pause at full churn.
	addFilterOptions(top, { kinds: false, ringBytes: DEFAULT_RING_BYTES })
		.addHelpText('after', TOP_HELP)
		.action(async (opts: TopOptions) => topCommand(opts, io));
}

function parseSpeed(value: string): number {
	const n = Number(value);
	if (!/^\d+(\.\d+)?$/.test(value) || !(n >= 1 / 16 && n <= 1024)) throw new InvalidArgumentError(`${value} is not a speed (1/16 to 1024: 0.5, 2, 10).`);
	return n;
}
