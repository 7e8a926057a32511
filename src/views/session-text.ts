/**
 * The closing line of everything that traced (trace, top, record, report, serve): what was seen,
 * and everything that was lost, always, even when zero. Pure.
 */
import { eventsLost, type SessionSummary } from '../facts/losses.js';

/**
 * The closing line: what was seen and everything that was lost, always, even when zero. `printed`:
 * events written to stdout; `readerLeft`: stdout's reader went away (`| head`), so how many of them
 * it read is not known here, and the line does not claim they were shown.
 */
export function sessionSummaryLine(s: SessionSummary, printed?: number, readerLeft = false): string {
	const lost = eventsLost(s);
	const written = printed === undefined ? '' : readerLeft
		? `${printed.toLocaleString('en-US')} events written before stdout's reader left, `
		: `${printed.toLocaleString('en-US')} events shown, `;
	const seen = `${written}${s.events.toLocaleString('en-US')} ${printed === undefined ? 'events ' : ''}received`;
	return `twtrace: ${seen} in ${s.seconds.toFixed(1)} s; ` +
		`${lost.toLocaleString('en-US')} lost (ring full ${s.ringFull}, skipped runs ${s.missedRuns}, undecodable ${s.decodeErrors}); ` +
		`${s.mapFull} unattributed (map full), ${s.ownerMissing} without a known owner (opened before twtrace started)` +
		(s.walkMissed ? `; ${s.walkMissed} time_wait missed by the kernel's tracepoint, found later and recovered` : '') +
		(s.unwitnessed ? `; ${s.unwitnessed} active closes unwitnessed (closing map full)` : '') +
		(s.nestedRecovered ? `; ${s.nestedRecovered} nested transitions recovered by the fallback program` : '');
}
