/**
 * Checks, before touching BPF, everything that commonly fails, and turns each failure into a
 * TwtraceError that says what to do. The order matters: each check assumes the previous ones passed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as bpf from '../../native/libbpf.js';
import { missingBtf, missingLibbpf, missingObject, needsPrivileges, noRingbuf } from '../errors.js';

/** include/uapi/linux/capability.h */
const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;
const CAP_BPF = 39n;

const VMLINUX_BTF = '/sys/kernel/btf/vmlinux';

/** The package root (two levels above dist/src/tracer or src/tracer). */
export function packageRoot(): string {
	let dir = path.dirname(fileURLToPath(import.meta.url));
	// stat, not access(2) (existsSync): access() checks with the real uid and without capabilities,
	// so a process allowed in by CAP_DAC_READ_SEARCH would not find its own package.
	while (!fs.statSync(path.join(dir, 'package.json'), { throwIfNoEntry: false })) {
		const parent = path.dirname(dir);
		if (parent === dir) throw new Error('package.json not found above ' + fileURLToPath(import.meta.url));
		dir = parent;
	}
	return dir;
}

/** twtrace's version, from its package.json. */
export function packageVersion(): string {
	return (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

export function defaultObjectPath(): string {
	return path.join(packageRoot(), 'build', 'twtrace.bpf.o');
}

/** The optional object of the process socket walk (likely owners), beside the tracer's. */
export function openSocketsObjectPath(objectPath = defaultObjectPath()): string {
	return path.join(path.dirname(objectPath), 'open-sockets.bpf.o');
}

/** CapEff of this process, from /proc/self/status. */
export function effectiveCapabilities(status = fs.readFileSync('/proc/self/status', 'utf8')): bigint {
	const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
	return m ? BigInt('0x' + m[1]) : 0n;
}

/** tp_btf programs need CAP_BPF + CAP_PERFMON (Linux 5.8+), or CAP_SYS_ADMIN on any kernel. */
export function hasBpfPrivileges(capEff: bigint): boolean {
	const has = (cap: bigint) => ((capEff >> cap) & 1n) === 1n;
	return has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON));
}

/** Throws the first TwtraceError that applies. `command` is used in the hint ("sudo twtrace trace"). */
export function preflight(command: string, objectPath: string): void {
	if (!fs.existsSync(objectPath)) throw missingObject(objectPath);
	try {
		bpf.ensureLibbpf();
	} catch (cause) {
		throw missingLibbpf(cause);
	}
	if (!hasBpfPrivileges(effectiveCapabilities())) throw needsPrivileges(command);
	if (!fs.existsSync(VMLINUX_BTF)) throw missingBtf();
	if (bpf.probeMapType(bpf.BPF_MAP_TYPE_RINGBUF) !== 1) throw noRingbuf(os.release());
}
