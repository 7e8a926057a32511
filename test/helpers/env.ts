/**
 * Whether real-BPF tests can run here, and the rule for when they cannot: skip and say why, except
 * in CI (CI=true), where a skipped BPF test is a failure.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cli = path.join(root, 'dist/src/cli.js');
export const scenarioBin = path.join(root, 'build/tcp-scenario');
export const bpfObject = path.join(root, 'build/twtrace.bpf.o');

export function which(cmd: string): boolean {
	try {
		execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
		return true;
	} catch {
		return false;
	}
}

/** Why real-BPF tests cannot run on this machine, or undefined when they can. */
export function bpfUnavailableReason(): string | undefined {
	if (process.getuid?.() !== 0) return 'not running as root (BPF and network namespaces need it)';
	if (!fs.existsSync('/sys/kernel/btf/vmlinux')) return 'kernel has no BTF (/sys/kernel/btf/vmlinux)';
	if (!which('ip')) return 'iproute2 (ip) is not installed';
	for (const f of [bpfObject, scenarioBin, cli]) if (!fs.existsSync(f)) return `${path.relative(root, f)} is not built (run scripts/setup)`;
	return undefined;
}

const reason = bpfUnavailableReason();
const inCi = process.env.CI === 'true';

/** A serial test that needs real BPF: skipped with the reason outside CI, failed with it in CI. */
export function bpfTest(title: string, fn: (t: ExecutionContext) => Promise<void>): void {
	if (!reason) {
		test.serial(title, fn);
	} else if (inCi) {
		test.serial(title, (t) => t.fail(`BPF unavailable in CI: ${reason}`));
	} else {
		test.serial.skip(`${title} [skipped: ${reason}]`, fn);
	}
}

/**
 * A test that needs a program scripts/setup installs (promtool, prometheus): skipped with the reason
 * where it is missing, failed in CI, where setup must have installed it.
 */
export function toolTest(tools: string[], title: string, fn: (t: ExecutionContext) => Promise<void> | void, serial = false): void {
	const missing = tools.filter((tool) => !which(tool));
	const run = serial ? test.serial : test;
	if (missing.length === 0) run(title, fn);
	else if (inCi) run(title, (t) => t.fail(`${missing.join(', ')} not installed in CI (scripts/setup installs it)`));
	else run.skip(`${title} [skipped: ${missing.join(', ')} not installed; run scripts/setup]`, fn);
}
