/**
 * `top --replay` over a fixture capture (test/fixtures/captures/exhaustion.twtcap, recorded from
 * real processes by scripts/make-fixtures): driven in tmux as a person would (the capture's clock,
 * pause, step, speed, quit), and offline with --json, one snapshot per interval of capture time.
 */
import { runTwtrace } from '../helpers/processes.js';
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root, toolTest } from '../helpers/env.js';
import { runTop, startShell, tmux, waitForScreen } from '../helpers/tmux.js';

const fixture = path.join(root, 'test/fixtures/captures/exhaustion.twtcap');

const top = (args: string[]) => runTwtrace(['top', ...args]);

/** "1.5 s of 2.5 s" in the header: the capture time shown. */
function shownSeconds(screen: string): number {
	const m = /replay exhaustion\.twtcap ×[\d.]+, ([\d.]+) s of/.exec(screen);
	if (!m) throw new Error(`no replay clock on screen:\n${screen}`);
	return Number(m[1]);
}

toolTest(['tmux'], 'top --replay in tmux: the capture\'s clock, p pauses it, n steps one interval, + speeds it up, q restores the terminal', async (t) => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-replay-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	const session = startShell(t, dir);
	runTop(session, `--replay ${fixture} --interval 500ms --speed 0.25`);
	let screen = await waitForScreen(session, /replay exhaustion\.twtcap ×0\.25, [\d.]+ s of 2\.5 s/, 10_000);
	t.regex(screen, /n step · \+ faster/);
	tmux('send-keys', '-t', session, 'p');
	screen = await waitForScreen(session, /PAUSED/, 5000);
	const paused = shownSeconds(screen);
	await new Promise((r) => setTimeout(r, 1200));
	t.is(shownSeconds(tmux('capture-pane', '-p', '-t', session)), paused, 'paused: the capture\'s clock stands still');
	tmux('send-keys', '-t', session, 'n');
	screen = await waitForScreen(session, new RegExp(`, ${(paused + 0.5).toFixed(1)} s of`), 5000);
	tmux('send-keys', '-t', session, '+');
	screen = await waitForScreen(session, /×0\.5,/, 5000);
	// Step to the end: the churn is all there, as the report has it.
	for (let i = 0; i < 6; i++) tmux('send-keys', '-t', session, 'n');
	screen = await waitForScreen(session, /2\.5 s of 2\.5 s, ended/, 5000);
	t.regex(screen, /batch-job\s+60\b/);
	t.regex(screen, /VICTIMS: 2 processes failed/);
	tmux('send-keys', '-t', session, 'q');
	await waitForScreen(session, /TOP-EXITED-0/, 5000);
	await new Promise((r) => setTimeout(r, 300));
	t.is(fs.readFileSync(path.join(dir, 'after'), 'utf8'), fs.readFileSync(path.join(dir, 'before'), 'utf8'), 'stty settings restored');
}, true);

test('top --replay --json: one snapshot per interval of capture time, at once, to the end of the capture', async (t) => {
	const r = await top(['--replay', fixture, '--json', '--interval', '500ms']);
	t.is(r.code, 0, r.stderr);
	const snaps = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
	t.is(snaps.length, 5, '2.5 s of capture, every 0.5 s');
	t.deepEqual(snaps.map((s) => s.uptimeSeconds), [0.5, 1, 1.5, 2, 2.5]);
	const last = snaps.at(-1);
	t.like(last.rows.find((row: { comm: string }) => row.comm === 'batch-job'), { timeWait: 60 });
	t.is(last.victims.length, 2);
	t.regex(last.source, /^replay exhaustion\.twtcap ×1, 2\.5 s of 2\.5 s, ended$/);
	const again = await top(['--replay', fixture, '--json', '--interval', '500ms']);
	t.is(again.stdout, r.stdout, 'deterministic');
	const bad = await top(['--replay', fixture, '--pid', '1']);
	t.is(bad.code, 2);
	t.regex(bad.stderr, /--pid does not apply to --replay/);
});
