/**
 * BPF iterator reads and network namespace switches: the two calls behind `top`'s reconciliation
 * with the kernel's socket tables (iter/tcp walks the namespace of the thread that creates it).
 */
import fs from 'node:fs';
import { lastError, libc } from './libc.js';

const CLONE_NEWNET = 0x40000000;

/**
 * Reads the next bytes of an iterator (bpf.iterCreate) into `buf`; 0 at the end. Blocks only while
 * the kernel fills it. iter/tcp binds the network namespace of the thread that created the iterator
 * (bpf_iter_init_seq_net): the reads may come later, from any namespace.
 */
export function readIteratorChunk(fd: number, buf: Buffer): number {
	for (;;) {
		try {
			return fs.readSync(fd, buf, 0, buf.length, null);
		} catch (error) {
			if (!isVisitLimit(error)) throw error;
		}
	}
}

/**
 * A read that visited MAX_ITER_OBJECTS (1,000,000) objects without writing a byte fails with EAGAIN
 * (bpf_seq_read() in kernel/bpf/bpf_iter.c), the iterator's place kept: the next read goes on from
 * there. A walk beside counts writes nothing for the timewait sockets the counters hold, so a
 * namespace holding over a million of them in a row meets it (bench:walks did; docs/kernel-facts.md §5).
 */
function isVisitLimit(error: unknown): boolean {
	return (error as NodeJS.ErrnoException).code === 'EAGAIN';
}

/**
 * readIteratorChunk on one of libuv's threads: the kernel runs the iterator's program over each
 * socket of the read there, and the event loop serves scrapes and drains the ring meanwhile. A read
 * of a walk that leaves most sockets out (timewait sockets the counters hold) can visit a hundred
 * thousand sockets for one chunk: the soak's slow scrapes came at its walks, a few ms of them spent
 * in serve's own work (bench/RESULTS.md). `buf` must not be touched until the promise settles.
 */
export function readIteratorChunkAsync(fd: number, buf: Buffer): Promise<number> {
	return new Promise((resolve, reject) => {
		const read = () => fs.read(fd, buf, 0, buf.length, null, (error, n) => (!error ? resolve(n) : isVisitLimit(error) ? read() : reject(error)));
		read();
	});
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
