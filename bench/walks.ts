/**
 * `sudo npm run bench:walks`: what a socket walk costs in the kernel, side by side with `ss`, which
 * reads the same table through sock_diag. twtrace walks each namespace every --walk-interval (a full
 * walk: 64 bytes a socket) and, at full churn, witness walks every few seconds (cookies only, bpf/twtrace.bpf.c
 * dump_tcp); both iterate every socket of the namespace, so their cost grows with the TIME_WAIT held.
 *
 *   sudo npm run bench:walks [-- --seconds 30 --rounds 5]
 *
 * A namespace pair, bench/churn at full rate for --seconds (over a million TIME_WAIT sockets at 40k
 * connections/s), then, while they are all still in TIME_WAIT (60 s), --rounds interleaved rounds of:
 * a full walk, a witness walk, and `ss -tan state time-wait | wc -l`. Prints min and median of each,
 * and per socket. Run it as a whole: the sockets expire a minute after the churn.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { defaultObjectPath } from '../src/tracer/preflight.js';
import { TraceSession } from '../src/tracer/session.js';
import { WALK_CHUNK_BYTES } from '../src/tracer/namespaces.js';
import { inNetns, readIteratorChunk } from '../native/iter.js';
import { root } from './tracers.js';
import { timeWaitSockets } from './proc.js';
import { pairWithRoom, startLoad } from './steady.js';

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

const pair = pairWithRoom();
try {
	const churn = await (await startLoad(pair, { ports: 64, threads: 2 }, seconds, 0)).result();
	const held = timeWaitSockets(pair.client);
	console.log(`bench:walks: ${churn.connections.toLocaleString('en-US')} connections in ${seconds} s; ${held.toLocaleString('en-US')} TIME_WAIT sockets in the client namespace`);

	const session = new TraceSession({ objectPath: defaultObjectPath(), filters: { netns: [pair.clientInode], kinds: ['time_wait'] }, ringBytes: 1 << 22, socketWalks: true }, { onEvents: () => {} });
	const nsFd = fs.openSync(`/run/netns/${pair.client}`, 'r');
	const buf = Buffer.allocUnsafe(WALK_CHUNK_BYTES);
	const walk = (cookiesOnly: boolean): number => {
		session.tracer.setWalkCookiesOnly(cookiesOnly);
		const fd = inNetns(nsFd, () => session.tracer.openWalk());
		const t0 = process.hrtime.bigint();
		while (readIteratorChunk(fd, buf) > 0);
		const ms = Number(process.hrtime.bigint() - t0) / 1e6;
		fs.closeSync(fd);
		return ms;
	};
	const ss = (): number => {
		const t0 = process.hrtime.bigint();
		execFileSync('sh', ['-c', `ip netns exec ${pair.client} ss -tan state time-wait | wc -l`], { stdio: ['ignore', 'pipe', 'inherit'] });
		return Number(process.hrtime.bigint() - t0) / 1e6;
	};
	const modes: [string, () => number][] = [
		['twtrace full walk (64 bytes a socket; every --walk-interval)', () => walk(false)],
		['twtrace witness walk (cookies only; at full churn)', () => walk(true)],
		['ss -tan state time-wait \\| wc -l (sock_diag, the peer)', ss],
	];
	const times = new Map<string, number[]>(modes.map(([name]) => [name, []]));
	for (let r = 0; r < rounds; r++) {
		for (let i = 0; i < modes.length; i++) {
			const [name, fn] = modes[(i + r) % modes.length]!;
			times.get(name)!.push(fn());
		}
	}
	session.stop();
	fs.closeSync(nsFd);
	const after = timeWaitSockets(pair.client);
	console.log(`\n| walk of ${held.toLocaleString('en-US')} → ${after.toLocaleString('en-US')} TIME_WAIT sockets | ms min / median | ns a socket (median) |\n|---|---|---|`);
	for (const [name, ms] of times) {
		const sorted = [...ms].sort((a, b) => a - b);
		const median = sorted[Math.floor(sorted.length / 2)]!;
		console.log(`| ${name} | ${sorted[0]!.toFixed(0)} / ${median.toFixed(0)} | ${((median * 1e6) / ((held + after) / 2)).toFixed(0)} |`);
	}
	console.log(`\n${rounds} interleaved rounds, by \`sudo npm run bench:walks -- --seconds ${seconds} --rounds ${rounds}\` at twtrace ${execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim()}.`);
} finally {
	pair.remove();
}
