/** A shell in a detached tmux session, to drive `twtrace top` as a person would and read its screen. */
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { cli } from './env.js';

export const tmux = (...args: string[]) => execFileSync('tmux', args, { encoding: 'utf8' });

export async function waitForScreen(session: string, match: RegExp, timeoutMs: number): Promise<string> {
	const until = Date.now() + timeoutMs;
	let screen = '';
	while (Date.now() < until) {
		screen = tmux('capture-pane', '-p', '-t', session);
		if (match.test(screen)) return screen;
		await new Promise((r) => setTimeout(r, 200));
	}
	throw new Error(`screen never matched ${match}:\n${screen}`);
}

export function startShell(t: ExecutionContext, dir: string): string {
	const session = `twt-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
	tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '40', 'bash', '--norc', '--noprofile');
	t.teardown(() => {
		try {
			tmux('kill-session', '-t', session);
		} catch {
			// already gone
		}
	});
	tmux('send-keys', '-t', session, `cd ${dir} && PS1='$ ' && clear`, 'Enter');
	return session;
}

/** Runs top in the shell between two `stty -g` snapshots; the marker line tells its exit status. */
export function runTop(session: string, args: string): void {
	tmux('send-keys', '-t', session, `stty -g > before; echo BEFORE-TOP; ${process.execPath} ${cli} top ${args}; echo "TOP-EXITED-$?"; stty -g > after`, 'Enter');
}

