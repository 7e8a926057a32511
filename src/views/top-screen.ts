/**
 * What the keys of `top`'s full-screen view do, and what the screen shows. A state machine with no
 * I/O: keys in, the new state and an action out; state and snapshot in, lines out.
 */
import { GROUPINGS, type Grouping } from '../model/groups.js';
import { SORT_KEYS, type Snapshot, type SortKey } from '../model/snapshot.js';
import { clipVisible, headerLines, tableLines, victimLines, type Paint } from './top-text.js';
import type { TopContext } from './top-json.js';

export interface ScreenState {
	by: Grouping;
	sort: SortKey;
	paused: boolean;
	filter: string;
	/** Text being typed after '/', until Enter (apply) or Escape (cancel). */
	editing: string | undefined;
	help: boolean;
	/** Replaying a capture (top --replay): n steps one interval, + and - change the speed. */
	replay?: boolean;
}

export type KeyAction = 'quit' | 'redraw' | 'refresh' | 'step' | 'faster' | 'slower' | 'none';

export const HELP = [
	'twtrace top — keys',
	'',
	'  q, Ctrl-C   quit (the terminal is restored)',
	'  s           next sort: TIME_WAIT held, TIME_WAIT/s, connects/s, resets/s, connect failures/s',
	'  g           next grouping: process, comm, cgroup, workload (unit, container, pod), netns, dest',
	'  p           pause the display (twtrace keeps counting)',
	'  /           filter rows: type part of a comm, pid, destination or cgroup, Enter; empty clears',
	'  ?           this help; any key returns',
	'  replay only (--replay FILE): p pauses the capture\'s clock, n or space steps one interval, + and - double or halve the speed',
	'',
	'Columns: TW-HELD TIME_WAIT sockets held now · TW/s entering TIME_WAIT · CONN/s outgoing connects ·',
	'RST/s resets · FAIL connect()/bind() failures since start · SIDE the end that closes first (holds the',
	'TIME_WAIT) · LIFE connection lifetime · TIME_WAIT 60s the last minute of TIME_WAIT held.',
	'"(before start)": sockets that were already in TIME_WAIT when twtrace started; "(events lost)": sockets',
	'that entered TIME_WAIT since, whose events a full ring lost. VICTIMS: connect()/bind() that failed for',
	'want of a port in the last minute, and who holds that pool\'s ports.',
];

function next<T>(list: readonly T[], current: T): T {
	return list[(list.indexOf(current) + 1) % list.length]!;
}

export function handleKey(state: ScreenState, key: string): KeyAction {
	if (state.editing !== undefined) {
		if (key === '\r' || key === '\n') {
			state.filter = state.editing.trim();
			state.editing = undefined;
			return 'refresh';
		}
		if (key === '\x1b') state.editing = undefined;
		else if (key === '\x7f' || key === '\b') state.editing = state.editing.slice(0, -1);
		else if (key === '\x03') return 'quit';
		else if (key >= ' ' && key.length === 1) state.editing += key;
		return 'redraw';
	}
	if (state.help) {
		state.help = false;
		return key === 'q' || key === '\x03' ? 'quit' : 'redraw';
	}
	switch (key) {
		case 'q': case 'Q': case '\x03': return 'quit';
		case 's': state.sort = next(SORT_KEYS, state.sort); return 'refresh';
		case 'g': state.by = next(GROUPINGS, state.by); return 'refresh';
		case 'p': state.paused = !state.paused; return 'redraw';
		case '/': state.editing = ''; return 'redraw';
		case '?': case 'h': state.help = true; return 'redraw';
		case 'n': case ' ': return state.replay ? 'step' : 'none';
		case '+': case '=': return state.replay ? 'faster' : 'none';
		case '-': return state.replay ? 'slower' : 'none';
		default: return 'none';
	}
}

/** The screen: header, table to fit, and a status line (filter being typed, or the key reminder). */
export function screenLines(state: ScreenState, s: Snapshot, ctx: TopContext, paint: Paint, size: { rows: number; columns: number }, home?: number): string[] {
	if (state.help) return HELP.map((l) => l.slice(0, size.columns));
	const header = headerLines(s, ctx, { paused: state.paused, filter: state.filter, home, width: size.columns }, paint).map((l) => clipVisible(l, size.columns));
	const status = state.editing !== undefined
		? `filter: ${state.editing}█   (Enter apply, Esc cancel)`
		: paint.dim(state.replay ? 'q quit · p pause · n step · + faster · - slower · s sort · g group · / filter · ? help' : 'q quit · s sort · g group · p pause · / filter · ? help');
	const victims = victimLines(s, paint, 3).map((l) => clipVisible(l, size.columns));
	const room = Math.max(1, size.rows - header.length - victims.length - 3);
	return [...header, ...victims, '', ...tableLines(s, ctx, paint, room, size.columns), status];
}
