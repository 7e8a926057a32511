/**
 * Reports replayed from committed captures (recorded by scripts/make-fixtures from real workloads):
 * golden output in all three formats, the facts each capture is known to hold, advice that follows
 * the sysctls in the capture, and captures that are damaged in every way a file can be.
 * UPDATE_GOLDEN=1 rewrites the golden files (review the diff).
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { CAPTURE_VERSION, encodeEnd, encodeFrame, encodePreamble, encodeWalk, PREAMBLE_BYTES, CaptureError, type CaptureHeader, type CaptureTrailer } from '../../src/capture/format.js';
import { parseCapture, readCaptureFile, type Capture } from '../../src/capture/reader.js';
import { renderReport, reportCommand } from '../../src/commands/report.js';
import { PassThrough } from 'node:stream';
import { EVENT_FIELDS, EVENT_SIZE } from '../../src/event/layout.generated.js';
import { replayCapture } from '../../src/report/from-capture.js';
import type { Report } from '../../src/report/report.js';

const dir = path.join(import.meta.dirname, '../fixtures');
const capturePath = (name: string) => path.join(dir, 'captures', `${name}.twtcap`);
const replay = (capture: Capture, file: string) => replayCapture(capture, { by: 'process', top: 10, file, cgroupPath: () => undefined });
const fromFile = (name: string) => replay(readCaptureFile(capturePath(name)), `${name}.twtcap`);

for (const name of ['exhaustion', 'server-closes']) {
	for (const format of ['table', 'json', 'markdown'] as const) {
		test(`${name}: the ${format} report equals its golden file`, (t) => {
			const out = renderReport(fromFile(name), format);
			const golden = path.join(dir, 'reports', `${name}.${format === 'markdown' ? 'md' : format === 'json' ? 'json' : 'txt'}`);
			if (process.env.UPDATE_GOLDEN) fs.writeFileSync(golden, out);
			t.is(out, fs.readFileSync(golden, 'utf8'));
		});
	}
}

test('replay is deterministic: the same capture twice gives the same report', (t) => {
	t.deepEqual(fromFile('exhaustion'), fromFile('exhaustion'));
});

test('exhaustion: offenders ranked by TIME_WAIT, the EADDRNOTAVAIL and EADDRINUSE victims linked to them', (t) => {
	const r = fromFile('exhaustion');
	t.true(r.complete);
	t.deepEqual(r.offenders.slice(0, 2).map((o) => [o.comm, o.side, o.timeWaitEntries, o.peakTimeWait]), [['batch-job', 'client', 60, 60], ['api-client', 'client', 40, 40]]);
	const connect = r.victims.find((v) => v.call === 'connect')!;
	t.like(connect, { comm: 'api-client', errno: 'EADDRNOTAVAIL', failures: 1 });
	t.deepEqual(connect.heldBy.map((h) => [h.offenderRank, h.portsHeld]), [[1, 60], [2, 40]], 'the 100-port range was held 60 + 40');
	t.like(r.victims.find((v) => v.call === 'bind'), { errno: 'EADDRINUSE' });
	t.like(r.destinations[0], { peakPortsInUse: 100, portsUsable: 100 });
	const ids = r.offenders[0]!.advice.map((a) => a.id);
	t.deepEqual(ids, ['fix-application', 'widen-port-range', 'time-wait-is-fixed', 'tcp-tw-reuse', 'more-source-addresses']);
	t.regex(r.offenders[0]!.advice[1]!.title, /from 40000-40099 to 40000-65535/);
	t.regex(r.summary, /batch-job \(pid \d+\) made 60 % of 100 TIME_WAIT/);
});

test('server-closes: the server that closes first is the offender, side server; no port-range advice for it', (t) => {
	const r = fromFile('server-closes');
	const web = r.offenders.find((o) => o.comm === 'web' && o.side === 'server')!;
	t.is(web.timeWaitEntries, 80);
	t.deepEqual(web.advice.map((a) => a.id), ['fix-application', 'time-wait-is-fixed']);
	t.regex(web.advice[1]!.detail, /tcp_fin_timeout was lowered to 30 s here: that did not shorten TIME_WAIT/);
	const client = r.offenders.find((o) => o.comm === 'batch-job')!;
	t.is(client.timeWaitEntries, 40);
	t.regex(client.advice.find((a) => a.id === 'tcp-tw-reuse')!.title, /already 1/);
});

/** The capture with every walk's settings changed by `edit` (the model and the advice read them from walks). */
function withSettings(capture: Capture, edit: (s: Capture['items'][number] & { type: 'walk' }) => void): Capture {
	const items = capture.items.map((i) => {
		if (i.type !== 'walk') return i;
		const copy = { ...i, walk: { ...i.walk, settings: { ...i.walk.settings } } };
		edit(copy);
		return copy;
	});
	return { ...capture, items };
}

test('advice follows the capture\'s sysctls: port range, tcp_tw_reuse, timestamps, fin_timeout, overflow', (t) => {
	const base = readCaptureFile(capturePath('exhaustion'));
	const wide = replay(withSettings(base, (w) => (w.walk.settings.portRange = { low: 1024, high: 65535 })), 'x');
	t.regex(wide.offenders[0]!.advice.find((a) => a.id === 'widen-port-range')!.title, /already 1024-65535: widening cannot help further/);
	const noTs = replay(withSettings(base, (w) => Object.assign(w.walk.settings, { timestamps: 0, twReuse: 2 })), 'x');
	const reuse = noTs.offenders[0]!.advice.find((a) => a.id === 'tcp-tw-reuse')!;
	t.regex(reuse.title, /now 2: loopback only/);
	t.deepEqual(reuse.commands, ['sysctl -w net.ipv4.tcp_timestamps=1', 'sysctl -w net.ipv4.tcp_tw_reuse=1']);
	const fin = replay(withSettings(base, (w) => (w.walk.settings.finTimeoutSec = 10)), 'x');
	t.regex(fin.offenders[0]!.advice.find((a) => a.id === 'time-wait-is-fixed')!.detail, /lowered to 10 s here/);
	let walks = 0;
	const overflow = replay(withSettings(base, (w) => (w.walk.settings.timeWaitOverflow = walks++ === 0 ? 5 : 305)), 'x');
	t.regex(overflow.offenders[0]!.advice.at(-1)!.title, /dropped 300 TIME_WAIT sockets at tcp_max_tw_buckets/);
	const recycle = replay(withSettings(base, (w) => (w.walk.settings.twRecycle = 1)), 'x');
	t.regex(recycle.offenders[0]!.advice.find((a) => a.id === 'tcp-tw-reuse')!.detail, /tcp_tw_recycle is 1 on this kernel: set it to 0/);
	for (const r of [wide, noTs, fin, overflow, recycle] as Report[]) {
		for (const a of r.offenders.flatMap((o) => o.advice)) t.false(a.commands.some((c) => /tw_recycle=1/.test(c)), 'never advises tcp_tw_recycle');
	}
});

const good = () => fs.readFileSync(capturePath('exhaustion'));

test('damaged captures are clear errors, never a report: wrong magic, future version, truncation, flipped bits', (t) => {
	const err = (bytes: Uint8Array) => t.throws(() => parseCapture(bytes), { instanceOf: CaptureError })!.message;
	t.regex(err(Buffer.from('{"kind":"time_wait"}\n')), /not a twtrace capture \(wrong magic\)/);
	const future = good();
	future.writeUInt16LE(9, 8);
	t.regex(err(future), new RegExp(`format version 9 is newer than this twtrace reads \\(${CAPTURE_VERSION}\\)`));
	t.regex(err(good().subarray(0, 30)), /truncated capture: the file ends inside its header/);
	const g = good();
	t.regex(err(g.subarray(0, g.length - 100)), /incomplete capture: the file ends inside a frame .*Report on them with --partial/);
	const flipped = good();
	flipped[flipped.length - 300]! ^= 0x10;
	t.regex(err(flipped), /a frame fails its checksum/);
	const header = good();
	header[PREAMBLE_BYTES + 5]! ^= 0x01;
	t.regex(err(header), /the header fails its checksum/);
	// The frame header's reserved bytes and the preamble's flags carry no checksum: they must be 0.
	const reserved = good();
	reserved[PREAMBLE_BYTES + reserved.readUInt32LE(12) + 2]! ^= 0x04;
	t.regex(err(reserved), /a frame header's reserved bytes are not 0 \(frame 1,/);
	const flags = good();
	flags[10]! ^= 0x01;
	t.regex(err(flags), /the header's flags are not 0/);
	t.regex(err(Buffer.alloc(0)), /^the file is empty: a recording that never wrote its header/);
	// Cut after a whole frame: no trailer.
	const c = parseCapture(good());
	t.true(c.items.length > 2);
	t.regex(err(withoutTrailer(good())), /incomplete capture: it has no end frame/);
});

/** The capture minus its end frame (the last frame). */
function withoutTrailer(bytes: Buffer): Buffer {
	let at = PREAMBLE_BYTES + bytes.readUInt32LE(12);
	let last = at;
	while (at < bytes.length) {
		last = at;
		at += 12 + bytes.readUInt32LE(at + 4);
	}
	return bytes.subarray(0, last);
}

test('an end frame whose loss counters hold any value still gives the whole report, naming the unknown counters', (t) => {
	const complete = fromFile('exhaustion');
	const withDrops = (drops: unknown) => {
		const trailer = { ...parseCapture(good()).trailer!, drops } as unknown as CaptureTrailer;
		return replay(parseCapture(Buffer.concat([withoutTrailer(good()), encodeEnd(trailer)])), 'odd-drops.twtcap');
	};
	for (const drops of [{ ringFull: 0, mapFull: 0, missedRuns: -1, ownerMissing: 0, decodeErrors: 0 }, { ringFull: 'x', mapFull: 1.5 }, {}, null]) {
		const r = withDrops(drops);
		t.true(r.complete, JSON.stringify(drops));
		t.deepEqual(r.offenders, complete.offenders, 'what was captured is all there');
		t.true(r.losses.unreadable.length > 0);
		t.true(Object.values(r.losses).every((v) => typeof v !== 'number' || v >= 0), 'no negative loss is ever shown');
		t.regex(renderReport(r, 'table'), /unknown: the end frame's counters are unreadable \(/);
	}
	t.deepEqual(withDrops({ ringFull: 0, mapFull: 0, missedRuns: -1, ownerMissing: 0, decodeErrors: 0, walkMissed: 0, unwitnessed: 0 }).losses.unreadable, ['missedRuns -1']);
});

test('a capture whose timestamps jump to 2^53 µs gives a report at once: no loop runs per second of the jump', (t) => {
	const capture = parseCapture(good());
	const header = capture.header;
	const frames: Buffer[] = [encodePreamble(header)];
	let jumped = 0;
	for (const item of capture.items) {
		if (item.type === 'walk') {
			frames.push(encodeWalk(item.walk));
			continue;
		}
		if (item.type === 'counts') throw new Error('the fixture holds no counts frames');
		const records = Buffer.from(item.records);
		// The second half of the events lands 2^53 µs (285 years) after the first: a corrupt clock.
		for (let i = 0; i < item.count; i++) {
			if (jumped++ < 200) continue;
			records.writeBigUInt64LE(BigInt(2 ** 53 - 1_000_000 + i), i * EVENT_SIZE + EVENT_FIELDS.ts_us.offset);
		}
		frames.push(encodeFrame('events', records));
	}
	frames.push(encodeEnd(capture.trailer!));
	const started = process.hrtime.bigint();
	const r = replay(parseCapture(Buffer.concat(frames)), 'jump.twtcap');
	t.true(r.offenders.length > 0);
	// Not a timing assertion: a loop per second of 2^53 µs would never end, and ava's timeout would fail it.
	t.log(`replayed in ${Number(process.hrtime.bigint() - started) / 1e6} ms`);
});

test('--partial reads a cut capture up to its last whole frame and marks the report incomplete', (t) => {
	const cut = withoutTrailer(good());
	const r = replay(parseCapture(cut, { allowPartial: true }), 'cut.twtcap');
	t.false(r.complete);
	t.regex(r.incomplete!, /no end frame/);
	t.regex(r.summary, /\[INCOMPLETE capture\]/);
	t.regex(renderReport(r, 'table'), /^INCOMPLETE: /m);
	t.is(r.offenders[0]!.timeWaitEntries, 60, 'what was captured is all there');
});

test('a frame whose checksum holds but whose content is malformed is corrupt, not partial', (t) => {
	const header = JSON.parse(good().subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + good().readUInt32LE(12)).toString()) as CaptureHeader;
	const bytes = Buffer.concat([encodePreamble(header), encodeFrame('events', Buffer.alloc(100))]);
	t.throws(() => parseCapture(bytes, { allowPartial: true }), { message: /corrupt capture: an events frame of 100 bytes/ });
	const badWalk = encodeWalk({ netns: 1, takenAtUs: 1, settings: { portRange: { low: 9, high: 5 }, reservedPorts: new Set(), finTimeoutSec: 60 }, listeners: [], sockets: new Uint8Array() });
	t.throws(() => parseCapture(Buffer.concat([encodePreamble(header), badWalk]), { allowPartial: true }), { message: /namespace settings are malformed/ });
});

test('fuzz: 2,000 random mutations of a capture give a report or a CaptureError, nothing else', (t) => {
	let seed = 12345;
	const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
	const base = good();
	let errors = 0;
	for (let i = 0; i < 2000; i++) {
		const b = Buffer.from(base);
		const mode = i % 4;
		if (mode === 0) for (let k = 0; k < 1 + random() * 8; k++) b[Math.floor(random() * b.length)] = Math.floor(random() * 256);
		const bytes = mode === 1 ? b.subarray(0, Math.floor(random() * b.length)) : mode === 2 ? Buffer.concat([b, b.subarray(0, Math.floor(random() * 500))]) : b;
		if (mode === 3) b.writeUInt32LE(Math.floor(random() * 2 ** 32), Math.floor(random() * (b.length - 4)));
		try {
			const c = parseCapture(bytes, { allowPartial: random() < 0.5 });
			replay(c, 'fuzz');
		} catch (error) {
			if (!(error instanceof CaptureError)) t.fail(`mutation ${i}: ${(error as Error).stack}`);
			errors++;
		}
	}
	t.true(errors > 1000, `${errors} of 2000 mutations were refused`);
});

test('text from a capture (hostname, filters, command names) cannot drive the terminal: control characters are shown as \\xNN', (t) => {
	const r = replay(readCaptureFile(capturePath('exhaustion')), 'exhaustion');
	r.source.host = 'web1\x1b]0;pwned\x07';
	r.source.filters = '--comm \x1b[2Jx';
	r.offenders[0]!.comm = 'evil\x9b31m';
	for (const format of ['table', 'markdown'] as const) {
		const out = renderReport(r, format);
		t.false(/[\x1b\x07\x9b]/.test(out), format);
		t.true(out.includes('web1\\x1b]0;pwned\\x07'), format);
		t.true(out.includes('--comm \\x1b[2Jx'), format);
	}
});

test('connections without an owner are not said to predate the recording: only their listener may have', (t) => {
	const r = replay(readCaptureFile(capturePath('exhaustion')), 'exhaustion');
	r.losses.ownerMissing = 300;
	const out = renderReport(r, 'table');
	t.notRegex(out, /sockets predate the recording/);
	t.regex(out, /300 connections ended with no owner from connect\(\) or listen\(\) \(the socket or its listener is older than the recording; blamed on their closer when seen\)/);
});

test('report --by cgroup names a cgroup by its workload or path, never "cgroup <id>"; --by workload groups by it', (t) => {
	const capture = readCaptureFile(capturePath('exhaustion'));
	const byCgroup = renderReport(replayCapture(capture, { by: 'cgroup', top: 10, file: 'x' }), 'table');
	t.notRegex(byCgroup, /\bcgroup \d+\b/);
	const byWorkload = replayCapture(capture, { by: 'workload', top: 10, file: 'x' });
	t.true(byWorkload.offenders.length >= 1);
	t.is(byWorkload.offenders[0]!.key, '/', 'the fixture ran in the root cgroup');
});

test('exhaustion: the timeline agrees with the tables: each offender\'s highest point is its peak held, the ports reach the peak in use and end at the usable ports, every failure is counted once', (t) => {
	const r = fromFile('exhaustion');
	const tl = r.timeline;
	t.is(tl.stepSeconds, 1);
	t.true(tl.timesMs.length >= 3, `${tl.timesMs.length} points`);
	const started = Date.parse(r.source.startedAt);
	t.true(Math.abs(tl.timesMs[0]! - started) < 2000, 'the axis starts where the capture does');
	const peak = (xs: (number | null)[]) => Math.max(...xs.map((x) => x ?? 0));
	t.deepEqual(tl.offenders.map((o) => [o.rank, peak(o.held)]), r.offenders.slice(0, tl.offenders.length).map((o) => [o.rank, o.peakTimeWait]));
	const d = tl.destinations[0]!;
	t.is(peak(d.inUse), r.destinations[0]!.peakPortsInUse);
	// The range as known at each moment: the capture's script narrowed it after the first walk.
	t.is(d.usable.at(-1), r.destinations[0]!.portsUsable);
	t.true(d.exhaustedAtMs !== null && d.exhaustedAtMs >= tl.timesMs[0]! && d.exhaustedAtMs <= tl.timesMs.at(-1)!, 'the moment the 100 ports were all in use');
	const failures = tl.failures.reduce((n, f) => n + f.counts.reduce((a, b) => a + b, 0), 0);
	t.is(failures, r.victims.reduce((n, v) => n + v.failures, 0));
	t.deepEqual(tl.failures.map((f) => f.label).sort(), ['bind 10.200.50.1:40000 EADDRINUSE', 'connect 10.200.50.2:7500 EADDRNOTAVAIL']);
});

test('report --format html to a terminal is refused before anything is read, with the redirect to use', async (t) => {
	const stdout = Object.assign(new PassThrough(), { isTTY: true });
	const io = { stdout, stderr: new PassThrough(), interrupted: new Promise<string>(() => {}) };
	const error = await t.throwsAsync(reportCommand(capturePath('exhaustion'), { format: 'html', top: 10, by: 'process', walkInterval: 5000, ringSize: 32 << 20 }, io));
	t.regex(error!.message, /--format html writes a whole web page: send it to a file/);
	t.is((error as Error & { exitCode?: number }).exitCode, 2, 'bad usage');
	t.is(stdout.read(), null, 'nothing written');
});
