/**
 * The release tarball, installed as a user would: `npm pack`, then `npm install -g` into a fresh
 * prefix, and the installed `twtrace` runs --version, doctor, a short top and serve in a namespace
 * with its own compiled JavaScript and BPF objects (none of the checkout's), and a PATH that holds
 * `node` and nothing else: no compiler, bpftool or other program is reachable (twtrace runs none).
 * test/package/image.test.ts shows the same on a root filesystem with no toolchain package installed at all.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageVersion } from '../../src/tracer/preflight.js';
import { runCommand, track, waitForLine } from '../../testbed/children.js';
import { bpfTest, root } from '../helpers/env.js';
import { createPair } from '../../testbed/netns.js';
import { runClient, startServer } from '../helpers/processes.js';
import { scrape, startServe, until } from '../helpers/serve.js';
import { valueOf } from '../helpers/exposition.js';

const run = (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin` }) => runCommand(cmd, args, { cwd, env });

bpfTest('the packed tarball installs into a fresh prefix and its twtrace runs --version, report --format html, doctor, top --once, top --json and serve from its own files with only node on PATH', async (t) => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-pack-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	// --ignore-scripts: prepack would rebuild dist/ in the checkout, under the other tests' feet;
	// `npm test` has just built it (scripts/setup), so the tarball holds the same files.
	const tarball = execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').pop()!;
	const files = execFileSync('tar', ['tzf', path.join(dir, tarball)], { encoding: 'utf8' }).trim().split('\n');
	for (const f of ['package/dist/src/cli.js', 'package/build/twtrace.bpf.o', 'package/build/open-sockets.bpf.o', 'package/README.md', 'package/deploy/systemd/twtrace.service', 'package/docs/playbook.md']) {
		t.true(files.includes(f), `${f} is in the tarball`);
	}
	t.deepEqual(files.filter((f) => /^package\/(test|bench|scripts|src|native|bpf)\//.test(f) || f.endsWith('.ts') || f.endsWith('.map')), [], 'no tests, bench, fixtures, sources or maps');

	const prefix = path.join(dir, 'prefix');
	const install = await run('npm', ['install', '-g', '--prefix', prefix, path.join(dir, tarball), '--prefer-offline', '--no-audit', '--no-fund'], dir);
	t.is(install.code, 0, install.stderr);
	const twtrace = path.join(prefix, 'bin', 'twtrace');
	const installed = path.join(prefix, 'lib', 'node_modules', 'twtrace');
	// From here on, a PATH with `node` only (the bin's `#!/usr/bin/env node` needs it).
	const nodeOnly = path.join(dir, 'node-only');
	fs.mkdirSync(nodeOnly);
	fs.symlinkSync(process.execPath, path.join(nodeOnly, 'node'));
	const env = { ...process.env, PATH: nodeOnly };
	t.is((await run(twtrace, ['--version'], dir, env)).stdout.trim(), packageVersion());
	// Its BPF objects are its own, not the checkout's.
	const objectPath = execFileSync(process.execPath, ['-e', `import(${JSON.stringify(path.join(installed, 'dist/src/tracer/preflight.js'))}).then((m) => console.log(m.defaultObjectPath()))`], { encoding: 'utf8' }).trim();
	t.is(objectPath, path.join(installed, 'build', 'twtrace.bpf.o'));

	// A host without libbpf.so.1 (as if libbpf1 were not installed): the package to install is named.
	const noLibbpf = await run(twtrace, ['top', '--once', '--standalone'], dir, { ...env, TWTRACE_LIBBPF: '/nonexistent/libbpf.so.1' });
	t.is(noLibbpf.code, 1);
	t.regex(noLibbpf.stderr, /^twtrace: libbpf\.so\.1 not found\n {2}Install it: apt-get install libbpf1/);

	// The HTML report finds its plotting library among the installed dependencies (uplot), not the checkout's.
	const html = await run(twtrace, ['report', path.join(root, 'test/fixtures/captures/exhaustion.twtcap'), '--format', 'html'], dir, env);
	t.is(html.code, 0, html.stderr);
	t.regex(html.stdout, /^<!doctype html>[^]*uPlot[^]*<\/html>\n$/);
	t.true(fs.existsSync(path.join(installed, 'node_modules/uplot/dist/uPlot.iife.min.js')), 'uplot installed with the package');

	const pair = createPair();
	t.teardown(() => pair.remove());
	const doctor = await run(twtrace, ['doctor', '--standalone', '--netns', String(pair.clientInode), '--sample', '300ms'], dir, env);
	t.is(doctor.code, 0, doctor.stdout + doctor.stderr);
	t.regex(doctor.stdout, /^TWTRACE OK - 0 TIME_WAIT in 1 namespace\(s\)/);
	const onceRun = await run(twtrace, ['top', '--once', '--standalone', '--netns', String(pair.clientInode)], dir, env);
	t.is(onceRun.code, 0, onceRun.stderr);
	t.regex(onceRun.stdout, /^twtrace top {2}\d\d:\d\d:\d\d/m, 'the screen, printed once');

	// top and serve from the install, both watching while a churner leaves 20 TIME_WAIT.
	const serve = await startServe(['--netns', String(pair.clientInode), '--walk-interval', '1s'], { twtrace: [twtrace], env });
	t.teardown(() => void (serve.child.exitCode === null && serve.child.kill('SIGKILL')));
	t.is(await (await fetch(`${serve.url}/healthz`)).text(), 'ok\n');
	const server = await startServer(pair.server, '0.0.0.0', 7960, 'wait-close', 20);
	const top = track(spawn(twtrace, ['top', '--json', '--iterations', '4', '--standalone', '--netns', String(pair.clientInode), '--interval', '500ms'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] }));
	let stdout = '';
	let stderr = '';
	top.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
	top.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
	const closed = once(top, 'close');
	// Churn once top is attached (it says so when its first interval starts), within its 2 s.
	await waitForLine(top, 'stderr', /a snapshot every/, 20_000);
	const client = await runClient(pair.client, pair.serverAddr, 7960, 'close-first', 20);
	await server.done;
	const [code] = (await closed) as [number | null];
	t.is(code, 0, stderr);
	const last = JSON.parse(stdout.trim().split('\n').pop()!);
	t.like(last.rows.find((r: { pid: number }) => r.pid === client.pid), { timeWait: 20 });
	await until('serve counting the churner\'s 20 TIME_WAIT', 20_000, async () => (valueOf((await scrape(serve.url)).samples, 'twtrace_timewait_sockets', { comm: 'tcp-scenario' }) === 20 ? true : undefined));
	t.is(await serve.stop(), 0, serve.stderr());
});
