/**
 * The sources behind top, doctor, report and record (src/source/), without BPF: a capture replayed
 * on its own clock, the agent narrowed to the filters asked and its recorder's damaged capture
 * named as such, and openSource's choice (a replay when asked; the agent when required, else the
 * error the command gave).
 */
import test from 'ava';
import path from 'node:path';
import type { AgentClient } from '../../src/agent/client.js';
import { API_VERSION, type AgentInfo, type SnapshotQuery, type SnapshotReply } from '../../src/agent/wire.js';
import { CaptureError } from '../../src/capture/format.js';
import { TwtraceError } from '../../src/errors.js';
import type { Io } from '../../src/io.js';
import { AgentSource, recorderShortfall } from '../../src/source/agent-source.js';
import { ReplaySource } from '../../src/source/replay-source.js';
import { openSource } from '../../src/source/open.js';
import { root } from '../helpers/env.js';

const capture = path.join(root, 'test/fixtures/captures/exhaustion.twtcap');
const query: SnapshotQuery = { by: 'process', sort: 'timeWait', windowMs: 1000 };
const INFO: AgentInfo = {
	api: API_VERSION, version: '9.9.9', pid: 42, startedAt: new Date(0).toISOString(), uptimeSeconds: 30,
	filters: { netns: [], comm: null, pid: null, port: null, family: null },
	recorder: { frames: 0, bytes: 0, maxBytes: 0, spanSeconds: 0, maxSeconds: 0, firstAt: null, droppedBy: null },
};
const io = (): Io => ({ stdout: process.stdout, stderr: process.stderr, interrupted: new Promise(() => {}) });

test('a replay source moves on the capture\'s clock, and its label says where it is', async (t) => {
	const source = ReplaySource.open(capture);
	t.is(source.kind, 'replay');
	t.regex(source.label(), /^replay exhaustion\.twtcap ×1, 0 s of 2\.5 s$/);
	source.advance(1_000_000);
	t.regex(source.label(), /, 1 s of 2\.5 s$/);
	let held = 0;
	while (!source.ended) {
		source.advance(1_000_000);
		held = (await source.reply(query)).snapshot.rows.find((r) => r.comm === 'batch-job')?.timeWait ?? held;
	}
	t.is(held, 60, 'batch-job held 60 at the end, as the report says');
	t.regex(source.label(), /, ended$/);
	t.is(await source.close(), undefined);
});

test('a file that is not a capture is a CaptureError that names the file', (t) => {
	const error = t.throws(() => ReplaySource.open(path.join(root, 'package.json')), { instanceOf: CaptureError })!;
	t.is(error.source, path.join(root, 'package.json'));
	t.regex(error.message, /not a twtrace capture \(wrong magic\)/);
	t.regex(error.hint, /not usable as a capture/);
});

/** An agent client that answers with what a test gives it, and keeps the queries. */
function fakeAgent(captureBytes: Buffer = Buffer.alloc(0)) {
	const queries: SnapshotQuery[] = [];
	const client = {
		snapshot: async (q: SnapshotQuery) => (queries.push(q), {} as SnapshotReply),
		capture: async () => ({ bytes: captureBytes, window: undefined }),
	} as unknown as AgentClient;
	return { client, queries };
}

test('the agent source narrows every query to the filters asked, and says so in its label', async (t) => {
	const { client, queries } = fakeAgent();
	const source = new AgentSource({ client, info: INFO, view: { netns: [7], pid: 3 } });
	await source.reply(query);
	t.deepEqual(queries[0]!.view, { netns: [7], pid: 3 });
	t.is(source.label(), 'agent pid 42, up 30 s; --netns 7 --pid 3');
	const plain = new AgentSource({ client, info: INFO });
	await plain.reply(query);
	t.is(queries[1]!.view, undefined);
	t.is(plain.label(), 'agent pid 42, up 30 s');
});

test('a capture the agent serves that does not read is a CaptureError naming its flight recorder', async (t) => {
	const source = new AgentSource({ client: fakeAgent(Buffer.from('garbage')).client, info: INFO });
	const error = await t.throwsAsync(source.capture(60_000), { instanceOf: CaptureError });
	t.is(error!.source, 'the flight recorder of the agent pid 42, up 30 s');
	t.regex(error!.hint, /^Report it/);
});

test('openSource: a replay when asked; the agent when required, else the command\'s own error, before loading anything', async (t) => {
	t.is((await openSource('top', {}, io(), { replay: { file: capture } })).kind, 'replay');
	const required = new TwtraceError('--last reads the flight recorder of a running agent, and none answers');
	const noAgent = { agentSocket: '/nonexistent/twtrace-test/agent.sock' };
	t.is(await t.throwsAsync(openSource('report', noAgent, io(), { agent: { required } })), required);
	t.is(await t.throwsAsync(openSource('report', { ...noAgent, standalone: true }, io(), { agent: { required } })), required, '--standalone never uses the agent');
});

test('a window from the flight recorder shorter than asked says how much it holds, and which bound cut it', (t) => {
	const recorder = { ...INFO.recorder, maxBytes: 64 * 2 ** 20, maxSeconds: 900 };
	const at = (spanSeconds: number, droppedBy: AgentInfo['recorder']['droppedBy'], uptimeSeconds = 3600) => ({ uptimeSeconds, recorder: { ...recorder, spanSeconds, droppedBy } });
	t.is(recorderShortfall(at(600, 'size'), 600_000), undefined, 'all of it');
	t.is(recorderShortfall(at(599.5, 'size'), 600_000), undefined, 'to within a second');
	const size = recorderShortfall(at(234, 'size'), 600_000)!;
	t.like(size, { heldSeconds: 234, askedSeconds: 600 });
	t.is(size.message, 'the flight recorder holds only the last 4 min of the 10 min asked for: its 64 MiB (serve --recorder-size) fill that fast at this rate of events; a larger --recorder-size keeps more');
	const counts = recorderShortfall({ uptimeSeconds: 3600, recorder: { ...recorder, spanSeconds: 234, droppedBy: 'size', keeps: 'counts' } }, 600_000)!;
	t.regex(counts.because, /fill that fast with the counts and walks it keeps; a larger --recorder-size keeps more$/, 'keeping counts, events are not what fills it');
	t.regex(recorderShortfall(at(900, 'age'), 3_600_000)!.because, /^it keeps 15 min \(serve --recorder\)$/);
	t.is(recorderShortfall(at(20, null, 20), 300_000)!.because, 'the agent started 20 s ago');
});
