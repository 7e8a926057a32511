/** How losses are added up wherever they are shown (trace's summary, top, serve). Pure. */
import type { DropCounts } from '../tracer/tracer.js';

/** Events that never reached user space or could not be read: map_full only loses an owner, not the event. */
export function eventsLost(d: Pick<DropCounts, 'ringFull' | 'missedRuns'> & { decodeErrors: number }): number {
	return d.ringFull + d.missedRuns + d.decodeErrors;
}
