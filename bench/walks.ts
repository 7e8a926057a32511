/**
 * `sudo npm run bench:walks`: what a socket walk costs in the kernel, side by side with `ss`, which
 * reads the same table through sock_diag, and what a suspect check costs (a sock_diag lookup of one
 * socket by its 4-tuple, pipeline/suspect-check.ts). twtrace walks each namespace every
 * --walk-interval (a full walk: 64 bytes a socket), whose cost grows with the TIME_WAIT held; every
 * second it looks up the few closes that wait too long, whose cost does not.
 *
 *   sudo npm run bench:walks [-- --seconds 30 --rounds 5]
 *
 * A namespace pair, bench/churn at full rate for --seconds (over a million TIME_WAIT sockets at 40k
 * connections/s), then, while they are all still in TIME_WAIT (60 s), --rounds interleaved rounds of:
 * a full walk; the walk an agent makes beside the kernel's counts (a session attached and counting
 * before the churn: every timewait socket is visited, none copied, pipeline/live-pipeline.ts
 * walksLeaveCounted); 100 lookups of sockets the walk found; `ss -tan state time-wait | wc -l`; and
 * `ss -tan exclude time-wait | wc -l`, a sock_diag dump whose state mask leaves TIME_WAIT out (what
 * the kernel's own dump costs when it skips what the counts stand for: it still visits every socket of
 * the hash table); the open-socket walk that replaces the walk beside counts once it found no
 * timewait socket of its own (src/pipeline/open-walks.ts: the sockets every process holds, by
 * iter/task_file, and the closes in flight; no timewait socket visited); and the floor of any walk of
 * the table, an iter/tcp program that copies nothing (bench/walk-floor.ts). Prints min and median of each, and per socket. Run it as a whole: the
 * sockets expire a minute after the churn.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { defaultObjectPath } from '../src/tracer/preflight.js';
import { TraceSession } from '../src/tracer/session.js';
import { NamespaceWalker, WALK_CHUNK_BYTES } from '../src/tracer/namespaces.js';
import type { SocketKey } from '../src/tracer/sock-diag.js';
import { SOCK_FIELDS as F, SOCK_SIZE } from '../src/event/layout.generated.js';
import { WALK_TRAILER_STATE } from '../src/event/sock.js';
import { monotonicUs } from '../src/tracer/host.js';
import { inNetns, readIteratorChunk } from '../native/iter.js';
import { root } from './tracers.js';
import { timeWaitSockets } from './proc.js';
import { pairWithRoom, startLoad } from './steady.js';
import { OpenSocketWalker } from '../src/tracer/open-sockets.js';
import { openSocketsObjectPath } from '../src/tracer/preflight.js';
import { openSocketRecords } from '../src/pipeline/open-walks.js';
import { WalkFloor } from './walk-floor.js';

const { values: opts } = parseArgs({ options: { seconds: { type: 'string', default: '30' }, rounds: { type: 'string', default: '5' } } });
const seconds = Number(opts.seconds);
const rounds = Number(opts.rounds);
if (!(seconds >= 1 && seconds <= 45) || !(rounds >= 1 && rounds <= 50)) {
	console.error('bench:walks: --seconds 1 to 45 (the sockets must outlive the measurements), --rounds 1 to 50');
	process.exit(2);
}
if (process.getuid?.() !== 0) {
	console.error('bench:walks: needs root (BPF and network namespaces): sudo npm run bench:walks');
	process.exit(1);
}

/** Sockets a suspect check looks up, timed together. */
const LOOKUPS = 100;

const pair = pairWithRoom();
let counting: TraceSession | undefined;
let floor: WalkFloor | undefined;
let processes: OpenSocketWalker | undefined;
try {
	// Attached and counting before the churn: every timewait socket the churn makes is the counters', and its walks leave them out.
	counting = new TraceSession({
		objectPath: defaultObjectPath(), filters: { netns: [pair.clientInode], kinds: ['time_wait'] }, ringBytes: 1 << 22, witness: true, socketWalks: true,
		counting: true, walksLeaveCounted: true,
	}, { onEvents: () => {} });
	const churn = await (await startLoad(pair, { ports: 64, threads: 2 }, seconds, 0)).result();
	const held = timeWaitSockets(pair.client);
	console.log(`bench:walks: ${churn.connections.toLocaleString('en-US')} connections in ${seconds} s; ${held.toLocaleString('en-US')} TIME_WAIT sockets in the client namespace`);

	const session = new TraceSession({ objectPath: defaultObjectPath(), filters: { netns: [pair.clientInode], kinds: ['time_wait'] }, ringBytes: 1 << 22, witness: true, socketWalks: true }, { onEvents: () => {} });
	const nsFd = fs.openSync(`/run/netns/${pair.client}`, 'r');
	const buf = Buffer.allocUnsafe(WALK_CHUNK_BYTES);
	/** Up to LOOKUPS timewait sockets the first walk reads: what a suspect check looks up. */
	const suspects: SocketKey[] = [];
	/** A walk beside counts: the sockets it hands over, and the timewait sockets it left out (its trailer's count). */
	let besideCounts = { handed: 0, leftOut: 0 };
	const walkBesideCounts = (): number => {
		const fd = inNetns(nsFd, () => counting!.tracer.openWalk());
		const t0 = process.hrtime.bigint();
		let [handed, leftOut] = [0, 0];
		for (let n; (n = readIteratorChunk(fd, buf)) > 0;) {
			for (let at = 0; at + SOCK_SIZE <= n; at += SOCK_SIZE) {
				if (buf[at + F.state.offset] === WALK_TRAILER_STATE) leftOut += Number(buf.readBigUInt64LE(at + F.cookie.offset));
				else handed++;
			}
		}
		const ms = Number(process.hrtime.bigint() - t0) / 1e6;
		fs.closeSync(fd);
		besideCounts = { handed, leftOut };
		return ms;
	};
	/** Their expiry (monotonic µs): the youngest are kept, as the rounds take long enough for the oldest to expire. */
	const suspectExpiresUs: number[] = [];
	const pickSuspect = (at: number): void => {
		const expiresUs = Number(buf.readBigUInt64LE(at + F.expires_us.offset));
		let slot = suspects.length;
		if (slot === LOOKUPS) {
			slot = suspectExpiresUs.indexOf(Math.min(...suspectExpiresUs));
			if (suspectExpiresUs[slot]! >= expiresUs) return;
		}
		const bytes = (f: { offset: number; size: number }) => buf.subarray(at + f.offset, at + f.offset + f.size).slice();
		suspects[slot] = {
			cookie: buf.readBigUInt64LE(at + F.cookie.offset), family: buf.readUInt16LE(at + F.family.offset) === 10 ? 6 : 4,
			saddr: bytes(F.saddr), daddr: bytes(F.daddr), sport: buf.readUInt16LE(at + F.sport.offset), dport: buf.readUInt16LE(at + F.dport.offset), boundDevIf: 0,
		};
		suspectExpiresUs[slot] = expiresUs;
	};
	const walk = (pick = false): number => {
		const fd = inNetns(nsFd, () => session.tracer.openWalk());
		const t0 = process.hrtime.bigint();
		for (let n; (n = readIteratorChunk(fd, buf)) > 0;) {
			for (let at = 0; pick && at + SOCK_SIZE <= n; at += SOCK_SIZE) if (buf[at + F.state.offset] === 6) pickSuspect(at); // TCP_TIME_WAIT
		}
		const ms = Number(process.hrtime.bigint() - t0) / 1e6;
		fs.closeSync(fd);
		return ms;
	};
	const walker = new NamespaceWalker(session.tracer, monotonicUs);
	walker.discover();
	const lookups = (): number => {
		const t0 = process.hrtime.bigint();
		const answers = walker.lookup(pair.clientInode, [], suspects);
		const ms = Number(process.hrtime.bigint() - t0) / 1e6;
		if ('error' in answers) throw new Error(answers.error);
		const found = answers.filter((a) => a?.found && a.isTimeWait).length;
		if (found !== suspects.length) throw new Error(`lookups found ${found} of ${suspects.length} timewait sockets (the oldest to expire at ${((Math.min(...suspectExpiresUs) - monotonicUs()) / 1e6).toFixed(1)} s from now)`);
		return ms;
	};
	const opened = OpenSocketWalker.open(openSocketsObjectPath(defaultObjectPath()));
	if ('error' in opened) throw new Error(opened.error);
	processes = opened;
	const countingWalker = new NamespaceWalker(counting.tracer, monotonicUs);
	countingWalker.discover();
	/** An open-socket walk, as OpenWalks.open makes one: the sockets it hands over (of its last round). */
	let openHanded = 0;
	const openWalk = async (): Promise<number> => {
		const t0 = process.hrtime.bigint();
		const peek = countingWalker.peek(pair.clientInode);
		if ('error' in peek || peek.timeWaitKernel === undefined) throw new Error('no open-socket walk: the namespace gave no count');
		openHanded = openSocketRecords(pair.clientInode, await processes!.walkTcp(), counting!.tracer.closesInFlight()).length / SOCK_SIZE;
		return Number(process.hrtime.bigint() - t0) / 1e6;
	};
	walk(true); // the suspects: sockets in TIME_WAIT now, as a missed one would be, the youngest of them
	const ss = (filter: string) => (): number => {
		const t0 = process.hrtime.bigint();
		execFileSync('sh', ['-c', `ip netns exec ${pair.client} ss -tan ${filter} | wc -l`], { stdio: ['ignore', 'pipe', 'inherit'] });
		return Number(process.hrtime.bigint() - t0) / 1e6;
	};
	floor = new WalkFloor();
	const modes: [string, () => number | Promise<number>][] = [
		['the floor: an empty iter/tcp program (bench/floor.bpf.c floor_walk: every socket visited, nothing copied)', () => floor!.walk([`/run/netns/${pair.client}`]).ms],
		['twtrace full walk (64 bytes a socket; every --walk-interval)', walk],
		['twtrace walk beside counts (every socket visited, timewait sockets the counters hold left out)', walkBesideCounts],
		['twtrace open-socket walk (every process\'s sockets, iter/task_file, and the closes in flight: no timewait socket visited)', openWalk],
		[`twtrace suspect check: ${LOOKUPS} sockets looked up (sock_diag; each second, per close waiting too long)`, lookups],
		['ss -tan state time-wait \\| wc -l (sock_diag, the peer)', ss('state time-wait')],
		['ss -tan exclude time-wait \\| wc -l (a sock_diag dump whose state mask leaves TIME_WAIT out)', ss('exclude time-wait')],
	];
	const times = new Map<string, number[]>(modes.map(([name]) => [name, []]));
	for (let r = 0; r < rounds; r++) {
		for (let i = 0; i < modes.length; i++) {
			const [name, fn] = modes[(i + r) % modes.length]!;
			times.get(name)!.push(await fn());
		}
	}
	session.stop();
	fs.closeSync(nsFd);
	console.log(`\nthe walk beside counts handed over ${besideCounts.handed.toLocaleString('en-US')} sockets and left out ${besideCounts.leftOut.toLocaleString('en-US')} timewait sockets (its last round); the open-socket walk handed over ${openHanded.toLocaleString('en-US')}`);
	const after = timeWaitSockets(pair.client);
	console.log(`\n| walk of ${held.toLocaleString('en-US')} → ${after.toLocaleString('en-US')} TIME_WAIT sockets | ms min / median | ns a socket (median) |\n|---|---|---|`);
	for (const [name, ms] of times) {
		const sorted = [...ms].sort((a, b) => a - b);
		const median = sorted[Math.floor(sorted.length / 2)]!;
		const perSocket = name.includes('looked up') ? (median * 1e6) / LOOKUPS : (median * 1e6) / ((held + after) / 2);
		console.log(`| ${name} | ${sorted[0]!.toFixed(name.includes('looked up') ? 2 : 0)} / ${median.toFixed(name.includes('looked up') ? 2 : 0)} | ${perSocket.toFixed(0)} |`);
	}
	console.log(`\n${rounds} interleaved rounds, by \`sudo npm run bench:walks -- --seconds ${seconds} --rounds ${rounds}\` at twtrace ${execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim()}.`);
} finally {
	floor?.close();
	processes?.close();
	counting?.stop();
	pair.remove();
}
