/**
 * What a new command that shows a snapshot takes (README, "Design notes": layers): its options, and
 * this much wiring. `twtrace victims` (not a shipped command) prints who failed for want of a port in
 * the last minute and who holds those ports, from the agent or from this host, like top.
 * `npm test` type-checks this file (tsconfig.test.json), so it stays true to the code it shows.
 */
import type { Command } from 'commander';
import { COMMAND_KINDS } from '../../src/event/kinds.js';
import type { Io } from '../../src/io.js';
import { openSource } from '../../src/source/open.js';
import { addAgentOptions, addFilterOptions, verboseLog, type FilterOptions } from '../../src/commands/options.js';
import type { AgentChoiceOptions } from '../../src/source/agent-choice.js';
import { PLAIN, victimLines } from '../../src/views/top-text.js';

export function registerVictims(program: Command, io: Io): void {
	const cmd = program.command('victims').description('Who failed for want of a port in the last minute, and who holds those ports.');
	addAgentOptions(cmd);
	addFilterOptions(cmd, { kinds: false }).action(async (opts: FilterOptions & AgentChoiceOptions) => {
		const source = await openSource('victims', opts, io, {
			narrows: true,
			live: { kinds: COMMAND_KINDS.doctor, model: {}, log: verboseLog(opts, io) },
		});
		try {
			await source.settle(); // a live source walks once more: the holders' counts are exact
			const reply = await source.reply({ by: 'process', sort: 'timeWait', windowMs: 1000, maxVictims: 100 });
			io.stdout.write([`${source.label()}:`, ...victimLines(reply.snapshot, PLAIN, 100)].join('\n') + '\n');
		} finally {
			await source.close();
		}
	});
}
