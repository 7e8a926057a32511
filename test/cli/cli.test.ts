/**
 * The command line as users meet it: usage errors in-process through run(); privileges, signals
 * and pipes by spawning the built dist/src/cli.js.
 */
import test from 'ava';
import path from 'node:path';
import os from 'node:os';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { run } from '../../src/cli.js';
import { needsPrivilegesMessage } from '../../src/errors.js';
import { bpfTest, cli } from '../helpers/env.js';
import { createPair } from '../../testbed/netns.js';
import { runClient, startServer } from '../helpers/processes.js';

async function runInProcess(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
	const stdout = new PassThrough();
	const stderr = new PassThrough();
	let out = '';
	let err = '';
	stdout.on('data', (d: Buffer) => (out += d.toString()));
	stderr.on('data', (d: Buffer) => (err += d.toString()));
	const code = await run(argv, { stdout, stderr, interrupted: new Promise(() => {}) });
	return { code, stdout: out, stderr: err };
}

for (const [argv, message] of [
	[['trace', '--bogus'], /unknown option '--bogus'/],
	[['trace', '--port', '70000'], /70000 is not a port \(1-65535\)/],
	[['trace', '--pid', 'abc'], /abc is not a process id/],
	[['trace', '--kind', 'timewait'], /unknown kind timewait; choose from/],
	[['trace', '--duration', 'soon'], /soon is not a duration/],
	[['trace', '--ring-size', '3M'], /must be a power of two/],
	[['trace', '--family', '5'], /Allowed choices are 4, 6/],
	[['trace', '--netns', '/run/netns/twtrace-no-such-ns'], /--netns \/run\/netns\/twtrace-no-such-ns: no such network namespace/],
	[['trace', '--netns', '/tmp'], /--netns \/tmp is not a network namespace \(give \/run\/netns\/NAME/],
	[['trace', '--netns', '12345'], /--netns 12345: no network namespace with this inode is in use/],
	[['trace', '--comm', 'a-very-long-command-name'], /a-very-long-command-name is 24 bytes; the kernel keeps the first 15 of a command name \(TASK_COMM_LEN\), so it could never match\. Use --comm a-very-long-com/],
	[['top', '--comm', 'x'.repeat(16)], /is 16 bytes/],
	[['record', '-o', '/nonexistent/dir/x'], /cannot write \/nonexistent\/dir\/x: \/nonexistent\/dir does not exist/],
	[['record', '-o', '/etc/hostname/x'], /cannot write \/etc\/hostname\/x: \/etc\/hostname is not a directory/],
	[['frobnicate'], /unknown command 'frobnicate'/],
	[['top', '--by', 'host'], /Allowed choices are process, comm, cgroup, workload, netns, dest/],
	[['top', '--sort', 'pid'], /Allowed choices are timeWait, /],
	[['top', '--interval', '10ms'], /10ms is too short: at least 100ms/],
	[['top', '--iterations', '0'], /0 is not a positive whole number/],
	[['top', '--kind', 'time_wait'], /unknown option '--kind'/],
	[['top', '--port', '0'], /0 is not a port/],
	[['serve', '--listen', ':9979'], /:9979 leaves the address out: write 127\.0\.0\.1:9979 \(this host only\) or 0\.0\.0\.0:9979 \(every interface\)/],
	[['serve', '--listen', '127.0.0.1:70000'], /70000 is not a port \(0-65535; 0 picks a free one\)/],
	[['serve', '--listen', 'localhost'], /localhost is not HOST:PORT/],
	[['serve', '--max-series', '0'], /0 is not a positive whole number/],
	[['serve', '--kind', 'connect'], /unknown option '--kind'/],
] as const) {
	test(`\`twtrace ${argv.join(' ')}\` is a usage error: exit 2 and a message`, async (t) => {
		const r = await runInProcess([...argv]);
		t.is(r.code, 2);
		t.regex(r.stderr, message);
		t.is(r.stdout, '');
	});
}

test('--help teaches: filters, examples and exit statuses', async (t) => {
	const r = await runInProcess(['trace', '--help']);
	t.is(r.code, 0);
	for (const s of ['--kind <kinds>', '--netns <inode|path>', '--json', '--duration', '--count', 'Examples:', 'Exit status']) t.true(r.stdout.includes(s), s);
});

/**
 * Runs the CLI without privileges. As root, every capability is dropped from the bounding set (uid 0
 * with CapEff 0 can still read a checkout that only root may enter, unlike uid 65534); otherwise the
 * current user already is unprivileged.
 */
function spawnUnprivileged(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
	const [cmd, argv] = process.getuid?.() === 0
		? ['setpriv', ['--bounding-set=-all', '--inh-caps=-all', process.execPath, cli, ...args]]
		: [process.execPath, [cli, ...args]];
	return new Promise((resolve) => {
		execFile(cmd, argv, { timeout: 20_000 }, (error, stdout, stderr) => {
			resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
		});
	});
}

for (const command of ['trace', 'top', 'serve']) {
	test(`an unprivileged user gets the privileges message and exit 1 (${command})`, async (t) => {
		const r = await spawnUnprivileged([command]);
		t.is(r.code, 1, r.stderr);
		t.true(r.stderr.includes(`twtrace: ${needsPrivilegesMessage}`), r.stderr);
		t.true(r.stderr.includes(`Try: sudo twtrace ${command}`), r.stderr);
	});
}

test('an unprivileged doctor is UNKNOWN: the Nagios line on stdout, the reason on stderr, exit 3', async (t) => {
	const r = await spawnUnprivileged(['doctor']);
	t.is(r.code, 3, r.stderr);
	t.regex(r.stdout, /^TWTRACE UNKNOWN - needs root/);
	t.true(r.stderr.includes(`twtrace: ${needsPrivilegesMessage}`), r.stderr);
});

for (const args of [['doctor', '--bogus'], ['doctor', '--warn', '500', '--crit', '100'], ['doctor', '--crit-headroom', '150']]) {
	test(`\`twtrace ${args.join(' ')}\` is UNKNOWN (exit 3), not CRITICAL`, async (t) => {
		const r = await runInProcess(args);
		t.is(r.code, 3);
		t.regex(r.stdout, /^TWTRACE UNKNOWN - /);
	});
}

for (const args of [['report'], ['report', 'x.twtcap', '--pid', '1'], ['report', '--format', 'pdf', 'x'], ['record'], ['record', '-o', 'x', '--max-size', '1K']]) {
	test(`\`twtrace ${args.join(' ')}\` is a usage error: exit 2 and a message`, async (t) => {
		const r = await runInProcess(args);
		t.is(r.code, 2);
		t.true(r.stderr.length > 0);
	});
}

test('report of a file that is not a capture: a clear error, exit 1, nothing on stdout', async (t) => {
	const r = await runInProcess(['report', fileURLToPath(import.meta.url)]);
	t.is(r.code, 1);
	t.regex(r.stderr, /not a twtrace capture \(wrong magic\)/);
	t.is(r.stdout, '');
});

test('report of a missing file names it once; an empty one is called empty', async (t) => {
	const missing = await runInProcess(['report', '/nonexistent/x.twtcap']);
	t.is(missing.code, 1);
	t.is(missing.stderr.split('/nonexistent/x.twtcap').length - 1, 1, missing.stderr);
	t.regex(missing.stderr, /^twtrace: \/nonexistent\/x\.twtcap: no such file\n/);
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-empty-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	fs.writeFileSync(path.join(dir, 'empty.twtcap'), '');
	const empty = await runInProcess(['report', path.join(dir, 'empty.twtcap')]);
	t.is(empty.code, 1);
	t.regex(empty.stderr, /empty\.twtcap: the file is empty/);
});

test('serve --help teaches: metrics, the series bound, exposure, deployment and examples', async (t) => {
	const r = await runInProcess(['serve', '--help']);
	t.is(r.code, 0);
	for (const s of ['--listen <host:port>', '(default: 127.0.0.1:9979)', '--max-series', 'twtrace_timewait_sockets', 'comm="other"', '0.0.0.0:9979',
		'deploy/systemd/twtrace.service', 'Examples:']) t.true(r.stdout.includes(s), s);
});

test('top --help teaches: keys, columns, groupings and examples', async (t) => {
	const r = await runInProcess(['top', '--help']);
	t.is(r.code, 0);
	for (const s of ['--by <grouping>', '--once', '--iterations <n>', '--json', 'Keys', 'q quit', 'TW-HELD', '(before start)', 'usable ports / 60 s', 'Examples:']) t.true(r.stdout.includes(s), s);
});

/** Starts `twtrace trace ARGS` on a fresh namespace pair, optionally piped into `shellTail`, then makes traffic. */
async function pipeline(shellTail: string, args: string[], traffic: (pair: ReturnType<typeof createPair>) => Promise<void>) {
	const pair = createPair();
	try {
		const argv = ['trace', '--netns', String(pair.clientInode), ...args];
		// With a pipeline tail, bash runs it (pipefail: the status is twtrace's unless it is 0); without, twtrace runs alone.
		const child = shellTail
			? spawn('bash', ['-c', `set -o pipefail; "${process.execPath}" "${cli}" ${argv.join(' ')} ${shellTail}`], { stdio: ['ignore', 'pipe', 'pipe'] })
			: spawn(process.execPath, [cli, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
		let stdout = '';
		let stderr = '';
		child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
		child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
		await new Promise<void>((resolve, reject) => {
			const timer = setTimeout(() => reject(new Error(`not attached: ${stderr}`)), 15_000);
			child.stderr.on('data', () => {
				if (stderr.includes('Ctrl-C to stop')) {
					clearTimeout(timer);
					resolve();
				}
			});
		});
		const started = Date.now();
		await traffic(pair);
		return { child, started, out: () => stdout, err: () => stderr, exited: once(child, 'close') as Promise<[number | null, string | null]> };
	} finally {
		setTimeout(() => pair.remove(), 100).unref();
	}
}

async function churn(pair: ReturnType<typeof createPair>, n: number, port: number): Promise<void> {
	const server = await startServer(pair.server, '0.0.0.0', port, 'wait-close', n);
	await runClient(pair.client, pair.serverAddr, port, 'close-first', n);
	await server.done;
}

bpfTest('`twtrace trace | head -5` exits promptly with status 0 once head has its lines', async (t) => {
	const p = await pipeline('| head -5', ['--no-header'], (pair) => churn(pair, 20, 7401));
	const [code] = await p.exited;
	t.is(code, 0, p.err());
	t.true(Date.now() - p.started < 3000, 'exits within 3 s');
	t.is(p.out().trim().split('\n').length, 5);
});

bpfTest('SIGTERM stops trace cleanly: exit 0, events flushed and the summary line printed', async (t) => {
	const p = await pipeline('', ['--json', '--kind', 'time_wait'], (pair) => churn(pair, 10, 7402));
	await new Promise((r) => setTimeout(r, 200));
	p.child.kill('SIGTERM');
	const [code] = await p.exited;
	t.is(code, 0, p.err());
	t.is(p.out().trim().split('\n').length, 10);
	t.regex(p.err(), /10 events shown, 10 received .* 0 lost/);
});

bpfTest('`twtrace trace | head -3` does not claim the events it wrote were shown: head printed 2 of them', async (t) => {
	const p = await pipeline('| head -3', [], (pair) => churn(pair, 20, 7404));
	const [code] = await p.exited;
	t.is(code, 0, p.err());
	t.is(p.out().trim().split('\n').length, 3, 'the header and 2 events');
	t.regex(p.err(), /twtrace: \d+ events written before stdout's reader left, \d+ received/);
	t.notRegex(p.err(), /events shown/);
});

bpfTest('a reader slower than trace loses nothing: lines still in stdout\'s buffer at SIGTERM are written before exit', async (t) => {
	const pair = createPair();
	t.teardown(() => pair.remove());
	const child = spawn(process.execPath, [cli, 'trace', '--json', '--kind', 'time_wait', '--netns', String(pair.clientInode)], { stdio: ['ignore', 'pipe', 'pipe'] });
	let stderr = '';
	child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
	const exited = once(child, 'close') as Promise<[number | null, string | null]>;
	await new Promise<void>((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error(`not attached: ${stderr}`)), 15_000);
		child.stderr.on('data', () => stderr.includes('Ctrl-C to stop') && (clearTimeout(timer), resolve()));
	});
	// Nobody reads stdout yet: far more lines than the pipe holds (64 KiB) wait in trace's own buffer.
	child.stdout.pause();
	await churn(pair, 1000, 7406);
	await new Promise((r) => setTimeout(r, 300));
	child.kill('SIGTERM');
	await new Promise((r) => setTimeout(r, 500));
	let stdout = '';
	child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
	child.stdout.resume();
	const [code] = await exited;
	t.is(code, 0, stderr);
	t.regex(stderr, /1,000 events shown, 1,000 received .* 0 lost/);
	t.is(stdout.trim().split('\n').length, 1000, 'every line shown reached the reader');
});

bpfTest('two Ctrl-C 20 ms apart: trace still stops cleanly, exit 0 and the summary line', async (t) => {
	const p = await pipeline('', ['--json', '--kind', 'time_wait'], (pair) => churn(pair, 10, 7405));
	await new Promise((r) => setTimeout(r, 200));
	p.child.kill('SIGINT');
	await new Promise((r) => setTimeout(r, 20));
	p.child.kill('SIGINT');
	const [code, signal] = await p.exited;
	t.is(signal, null, p.err());
	t.is(code, 0, p.err());
	t.regex(p.err(), /10 events shown, 10 received .* 0 lost/);
});

test('`twtrace --help | head -1` and `twtrace help trace | head -1`: the first line, no EPIPE stack trace', async (t) => {
	for (const args of ['--help', 'help trace']) {
		const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => execFile('bash', ['-c', `set -o pipefail; "${process.execPath}" "${cli}" ${args} | head -1`], (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr })));
		t.is(r.stderr, '', args);
		t.is(r.code, 0, args);
		t.regex(r.stdout, /^Usage: twtrace/);
	}
});

bpfTest('--count stops after that many events', async (t) => {
	const p = await pipeline('', ['--json', '--count', '3'], (pair) => churn(pair, 10, 7403));
	const [code] = await p.exited;
	t.is(code, 0, p.err());
	t.is(p.out().trim().split('\n').length, 3);
});
