/**
 * The container image, built and run as an operator would: scripts/build-image makes it from the
 * packed tarball; its contents are checked (libbpf1 and the tarball's files, no toolchain package);
 * then Debian's podman runs it with the DaemonSet's settings, read from daemonset.yaml (host network
 * and pids, read-only root, only the unit's four capabilities, its hostPath mounts). Its serve answers /healthz, counts a churner's TIME_WAIT in a
 * namespace of the host as `ss` does, and `twtrace top` on the host attaches to it through the
 * mounted agent socket.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageVersion } from '../../src/tracer/preflight.js';
import { runCommand } from '../../testbed/children.js';
import { podmanOptionsOfDaemonSet, unitCapabilities } from '../helpers/deploy.js';
import { bpfTest, cli, root, which } from '../helpers/env.js';
import { valueOf } from '../helpers/exposition.js';
import { createPair, settledTimeWait } from '../../testbed/netns.js';
import { runClient, startServer } from '../helpers/processes.js';
import { freePort, scrape, until } from '../helpers/serve.js';

const tag = 'localhost/twtrace:test';

const run = (cmd: string, args: string[], env = process.env) => runCommand(cmd, args, { cwd: root, env, timeoutMs: 300_000 });

/** This process's soft limit on open files: the container gets the same, never more (see below). */
function openFilesLimit(): number {
	return Number(/^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'))![1]);
}

/** Installed packages, from the image's dpkg database. */
function dpkgPackages(rootfs: string): Set<string> {
	const status = fs.readFileSync(path.join(rootfs, 'var/lib/dpkg/status'), 'utf8');
	return new Set(status.split('\n\n').filter((s) => /^Status: install ok installed$/m.test(s)).map((s) => /^Package: (\S+)/m.exec(s)![1]!));
}

bpfTest('the container image: built from the tarball with no toolchain in it, podman runs serve with the unit\'s capabilities and it counts a churner', async (t) => {
	t.timeout(600_000);
	for (const tool of ['podman', 'debootstrap', 'runc']) t.true(which(tool), `${tool} is installed (scripts/setup --tests installs it)`);
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-image-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	// --ignore-scripts: prepack would rebuild dist/ under the other tests' feet; `npm test` has just built it.
	const tarball = execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: root, encoding: 'utf8' }).trim().split('\n').pop()!;
	const started = Date.now();
	const build = await run(path.join(root, 'scripts/build-image'), ['--tarball', path.join(dir, tarball), '--tag', tag]);
	t.is(build.code, 0, build.stderr);
	t.teardown(() => void run('podman', ['rmi', '--force', tag]));
	const [name, size] = build.stdout.trim().split(' ');
	t.is(name, tag);
	t.log(`built ${tag} in ${((Date.now() - started) / 1000).toFixed(0)} s: ${(Number(size) / 1e6).toFixed(0)} MB`);
	// Debian minbase with libbpf1 (~76 MB) plus Node.js (~100 MB) plus twtrace (~10 MB).
	t.true(Number(size) < 250e6, `the image is ${size} bytes`);
	t.is((await run('podman', ['image', 'inspect', '--format', '{{index .Labels "org.opencontainers.image.version"}}', tag])).stdout.trim(), packageVersion());

	// Its files, read from the image itself.
	const mount = await run('podman', ['image', 'mount', tag]);
	t.is(mount.code, 0, mount.stderr);
	t.teardown(() => void run('podman', ['image', 'unmount', tag]));
	const rootfs = mount.stdout.trim();
	t.is(fs.readlinkSync(path.join(rootfs, 'usr/local/bin/twtrace')), '../lib/node_modules/twtrace/dist/src/cli.js');
	const pkg = path.join(rootfs, 'usr/local/lib/node_modules/twtrace');
	for (const f of ['build/twtrace.bpf.o', 'build/open-sockets.bpf.o', 'node_modules/koffi/package.json', 'deploy/systemd/twtrace.service']) t.true(fs.existsSync(path.join(pkg, f)), `${f} is installed`);
	t.deepEqual(['src', 'test', 'bench', 'bpf', 'native'].filter((d) => fs.existsSync(path.join(pkg, d))), [], 'no sources or tests');
	t.true(fs.readdirSync(path.join(rootfs, 'usr/lib')).some((d) => fs.existsSync(path.join(rootfs, 'usr/lib', d, 'libbpf.so.1'))), 'libbpf.so.1 is in the image');
	const packages = dpkgPackages(rootfs);
	t.true(packages.has('libbpf1'));
	t.deepEqual(['clang', 'llvm', 'gcc', 'cpp', 'make', 'bpftool', 'libbpf-dev', 'libc6-dev', 'binutils', 'nodejs', 'npm'].filter((p) => [...packages].some((q) => new RegExp(`^${p}(-[0-9.]+)?$`).test(q))), [], 'no toolchain package');
	for (const f of ['usr/bin/clang', 'usr/bin/gcc', 'usr/bin/cc', 'usr/sbin/bpftool', 'usr/include/bpf']) t.false(fs.existsSync(path.join(rootfs, f)), `${f} is absent`);

	// Run it as the DaemonSet does. Two settings are for this machine and harmless elsewhere:
	// --runtime runc: Debian 12's crun refuses hosts with hybrid cgroups whose v2 hierarchy has
	// controllers ("cgroups in hybrid mode not supported"); and the ulimits: rootful podman asks the
	// runtime to raise the open-files and process limits to its own maximum, which needs
	// CAP_SYS_RESOURCE, and lowering them never does.
	const pair = createPair();
	t.teardown(() => pair.remove());
	const sockets = path.join(dir, 'run-twtrace');
	fs.mkdirSync(sockets, { mode: 0o750 });
	const port = await freePort();
	const container = `twt-image-test-${process.pid}`;
	const caps = unitCapabilities();
	const start = await run('podman', ['--runtime', 'runc', 'run', '--detach', '--name', container,
		...podmanOptionsOfDaemonSet({ '/run/twtrace': sockets }),
		'--ulimit', `nofile=${openFilesLimit()}:${openFilesLimit()}`, '--ulimit', 'nproc=4096:4096',
		tag, 'serve', '--listen', `127.0.0.1:${port}`, '--netns', String(pair.clientInode), '--walk-interval', '1s']);
	t.is(start.code, 0, start.stderr);
	t.teardown(() => void run('podman', ['rm', '--force', '--time', '0', container]));
	const logs = async () => (await run('podman', ['logs', container])).stderr;
	const url = `http://127.0.0.1:${port}`;
	await until('/healthz of the container', 30_000, async () => ((await (await fetch(`${url}/healthz`)).text()).trim() === 'ok' ? true : undefined))
		.catch(async (error: Error) => { throw new Error(`${error.message}; its log:\n${await logs()}`); });

	// Exactly the unit's capabilities, effective in the container's process.
	const pid = (await run('podman', ['inspect', '--format', '{{.State.Pid}}', container])).stdout.trim();
	const capEff = BigInt('0x' + /^CapEff:\s*(\w+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
	t.is(capEff.toString(2).replace(/0/g, '').length, caps.length, `CapEff ${capEff.toString(16)}`);

	const server = await startServer(pair.server, '0.0.0.0', 7970, 'wait-close', 20);
	const client = await runClient(pair.client, pair.serverAddr, 7970, 'close-first', 20);
	await server.done;
	const held = await settledTimeWait(pair);
	t.is(held, 20, 'ss: the churner holds 20 TIME_WAIT');
	const { samples } = await until('the churner\'s 20 TIME_WAIT in the container\'s metrics', 20_000, async () => {
		const s = await scrape(url);
		return valueOf(s.samples, 'twtrace_timewait_sockets', { comm: 'tcp-scenario' }) === held && valueOf(s.samples, 'twtrace_namespace_timewait_sockets', { netns: String(pair.clientInode) }) === held ? s : undefined;
	});
	t.is(valueOf(samples, 'twtrace_namespaces_unwalked'), 0, 'setns into the namespace worked from the container');

	// The host's twtrace attaches to the container's agent through the mounted socket: pids are the host's.
	const top = await run(process.execPath, [cli, 'top', '--json', '--once'], { ...process.env, TWTRACE_AGENT_SOCKET: path.join(sockets, 'agent.sock') });
	t.is(top.code, 0, top.stderr);
	const snapshot = JSON.parse(top.stdout) as { source: string; rows: { pid: number; timeWait: number }[] };
	t.regex(snapshot.source, /^agent pid \d+/);
	t.like(snapshot.rows.find((r) => r.pid === client.pid), { timeWait: held });

	// SIGTERM (podman stop): a clean exit, nothing lost, the socket removed.
	t.is((await run('podman', ['stop', '--time', '15', container])).code, 0);
	t.is((await run('podman', ['inspect', '--format', '{{.State.ExitCode}}', container])).stdout.trim(), '0', await logs());
	t.regex(await logs(), /; 0 lost \(/);
	t.false(fs.existsSync(path.join(sockets, 'agent.sock')));
});
