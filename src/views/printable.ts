/**
 * Text from outside twtrace (a command name a process chose with prctl, a capture's hostname and
 * filters, a cgroup path) printed to a terminal: control characters would be executed by it (an
 * escape sequence can retitle the window, move the cursor or hide lines). They are shown as \xNN.
 */

// C0 controls but tab and newline, DEL, and the C1 controls (ESC-less CSI in UTF-8 terminals).
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

export function printable(s: string): string {
	return s.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
