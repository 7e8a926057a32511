/**
 * Where a command's answers come from, behind one interface: this host traced by the command itself
 * (live-source.ts), the running agent (agent-source.ts), or a capture replayed on its own clock
 * (replay-source.ts); open.ts picks one. A command asks its source for snapshots and knows nothing
 * of BPF, sockets or files. The live source runs its own timers (walks, suspect checks, the model's
 * clock): no command drives it.
 */
import type { SnapshotQuery, SnapshotReply } from '../agent/wire.js';

export type SourceKind = 'live' | 'agent' | 'replay';

export interface Source {
	readonly kind: SourceKind;
	/** Said in headers and on stderr: "standalone", "agent pid 812, up 3.2 h; --netns …", "replay FILE ×2, 10 s of 1 min". */
	label(): string;
	/** The model as `query` asks: now (live, agent), or at the replay's point in capture time. */
	reply(query: SnapshotQuery): Promise<SnapshotReply>;
	/** Makes the counts exact now: a live source walks every namespace once more; the others already are. */
	settle(): Promise<void>;
	/** Releases it (detaches what was loaded); the closing line for stderr, when there is one. Idempotent. */
	close(): Promise<string | undefined>;
}
