/**
 * `twtrace top`'s full-screen view driven as a person would, in tmux: the table appears, keys
 * change it, and quitting (q, or SIGTERM from outside) gives the terminal back as it was: the same
 * stty settings, the main screen with the shell's text, the cursor shown.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bpfTest } from '../helpers/env.js';
import { createPair, settledTimeWait } from '../../testbed/netns.js';
import { runClient, startServer } from '../helpers/processes.js';
import { runTop, startShell, tmux, waitForScreen } from '../helpers/tmux.js';

bpfTest('top full screen in tmux: table, s/g/?/ and / keys, q and SIGTERM restore the terminal', async (t) => {
	const pair = createPair();
	t.teardown(() => pair.remove());
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-screen-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	const server = await startServer(pair.server, '0.0.0.0', 7401, 'wait-close', 200);
	await runClient(pair.client, pair.serverAddr, 7401, 'close-first', 200);
	await server.done;
	// What the kernel holds is the truth to show (see createPair on RSTs that end TIME_WAIT early).
	const held = await settledTimeWait(pair);
	t.true(held >= 194, `the workload left ${held} of 200 sockets in TIME_WAIT`);

	const session = startShell(t, dir);
	const scope = `--netns ${pair.clientInode} --netns ${pair.serverInode} --interval 500ms --walk-interval 1s`;
	runTop(session, scope);
	// The last of them may enter TIME_WAIT after the first walk: a later one (or their events) counts them.
	let screen = await waitForScreen(session, new RegExp(`\\(before start\\)\\s+${held}\\b`), 15_000);
	t.regex(screen, /by process, sorted by TIME_WAIT held/);
	t.regex(screen, /q quit · s sort · g group/);
	t.notRegex(screen, /BEFORE-TOP/, 'the shell is hidden behind the alternate screen');

	tmux('send-keys', '-t', session, 's');
	screen = await waitForScreen(session, /sorted by TIME_WAIT\/s/, 5000);
	tmux('send-keys', '-t', session, 'g');
	screen = await waitForScreen(session, /by comm, sorted by TIME_WAIT\/s/, 5000);
	t.regex(screen, /^.*COMM\s+TW-HELD/m, 'grouped by comm, the first column is COMM');
	tmux('send-keys', '-t', session, '?');
	await waitForScreen(session, /twtrace top — keys/, 5000);
	tmux('send-keys', '-t', session, 'x');
	await waitForScreen(session, /TW-HELD/, 5000);
	tmux('send-keys', '-t', session, '/', 'nomatch', 'Enter');
	// The filter applied shows in the header; the line being edited ("filter: nomatch█") is not it yet.
	screen = await waitForScreen(session, /^twtrace top.*filter: nomatch/m, 5000);
	t.regex(screen, /no TCP connection activity seen yet/, 'a filter that matches nothing empties the table');
	tmux('send-keys', '-t', session, 'q');
	screen = await waitForScreen(session, /TOP-EXITED-0/, 10_000);
	t.regex(screen, /BEFORE-TOP/, 'back on the main screen, with the shell\'s text');
	t.notRegex(screen, /TW-HELD/);
	await new Promise((r) => setTimeout(r, 300));
	t.is(fs.readFileSync(path.join(dir, 'after'), 'utf8'), fs.readFileSync(path.join(dir, 'before'), 'utf8'), 'stty settings restored after q');

	// SIGTERM from outside, as a supervisor would send it.
	tmux('send-keys', '-t', session, 'clear', 'Enter');
	runTop(session, scope);
	await waitForScreen(session, /TW-HELD/, 15_000);
	const shellPid = tmux('list-panes', '-t', session, '-F', '#{pane_pid}').trim();
	const topPid = execFileSync('pgrep', ['-P', shellPid, '-f', 'cli.js top'], { encoding: 'utf8' }).trim();
	process.kill(Number(topPid), 'SIGTERM');
	screen = await waitForScreen(session, /TOP-EXITED-0/, 10_000);
	t.regex(screen, /twtrace: \d+ events received/, 'the closing summary is printed after the screen is restored');
	await new Promise((r) => setTimeout(r, 300));
	t.is(fs.readFileSync(path.join(dir, 'after'), 'utf8'), fs.readFileSync(path.join(dir, 'before'), 'utf8'), 'stty settings restored after SIGTERM');
});
