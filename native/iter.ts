/**
 * BPF iterator reads and network namespace switches: the two calls behind `top`'s reconciliation
 * with the kernel's socket tables (iter/tcp walks the namespace of the thread that creates it).
 */
import fs from 'node:fs';
import * as bpf from './libbpf.js';
import { lastError, libc } from './libc.js';

const CLONE_NEWNET = 0x40000000;
const READ_CHUNK_BYTES = 1 << 20;

/**
 * Starts one walk of the iterator `link` and returns everything it wrote. Synchronous: the kernel
 * holds each hash bucket's lock only while copying that bucket, so a long walk does not stall it;
 * `betweenChunks` runs after each MiB read (top drains its ring there: a walk of 250k sockets takes
 * longer than an 8 MiB ring lasts at full churn).
 */
export function readIterator(link: bpf.Handle, betweenChunks?: () => void): Buffer {
	const fd = bpf.iterCreate(link);
	const chunks: Buffer[] = [];
	try {
		for (;;) {
			const chunk = Buffer.allocUnsafe(READ_CHUNK_BYTES);
			const n = fs.readSync(fd, chunk, 0, chunk.length, null);
			if (n === 0) break;
			chunks.push(n === chunk.length ? chunk : chunk.subarray(0, n));
			betweenChunks?.();
		}
	} finally {
		fs.closeSync(fd);
	}
	return Buffer.concat(chunks);
}

/**
 * Creates an iterator over `link` for reading a chunk at a time (readIteratorChunk), then closeSync.
 * iter/tcp binds the network namespace of the calling thread now (bpf_iter_init_seq_net): the reads
 * may come later, from any namespace.
 */
export function openIterator(link: bpf.Handle): number {
	return bpf.iterCreate(link);
}

/** Reads the next bytes of an iterator into `buf`; 0 at the end. Blocks only while the kernel fills it. */
export function readIteratorChunk(fd: number, buf: Buffer): number {
	return fs.readSync(fd, buf, 0, buf.length, null);
}

function setNetns(fd: number): void {
	if (libc().setns(fd, CLONE_NEWNET) !== 0) throw lastError('setns');
}

/**
 * Runs `fn` with the calling thread (Node's main thread, the only one running JavaScript) in the
 * network namespace `nsFd` refers to, and always moves it back. Needs CAP_SYS_ADMIN. While inside,
 * /proc/sys/net and /proc/thread-self/net show that namespace. `fn` must be synchronous.
 */
export function inNetns<T>(nsFd: number, fn: () => T): T {
	const home = fs.openSync('/proc/thread-self/ns/net', 'r');
	try {
		setNetns(nsFd);
		try {
			return fn();
		} finally {
			setNetns(home);
		}
	} finally {
		fs.closeSync(home);
	}
}
