/**
 * The floor of a socket walk: bench/floor.bpf.c's floor_walk, an iter/tcp program that copies nothing,
 * read over each of some network namespaces. What the kernel's iterator alone takes to visit every
 * socket there, to set beside twtrace's walks of the same namespaces (bench:walks; the steady state of
 * `npm run bench`, under the same load).
 */
import fs from 'node:fs';
import path from 'node:path';
import * as bpf from '../native/libbpf.js';
import { inNetns, readIteratorChunk } from '../native/iter.js';
import { root } from './tracers.js';

export interface FloorWalk { ms: number; sockets: number }

export class WalkFloor {
	readonly #object = bpf.objectOpen(path.join(root, 'build/floor.bpf.o'));
	readonly #link: bpf.Handle;
	readonly #buf = Buffer.alloc(4096);

	constructor() {
		try {
			for (const name of ['floor_primary', 'floor_fallback']) bpf.programSetAutoload(bpf.findProgram(this.#object, name), false);
			bpf.objectLoad(this.#object);
			this.#link = bpf.programAttach(bpf.findProgram(this.#object, 'floor_walk'), 'iter/tcp');
		} catch (error) {
			bpf.objectClose(this.#object);
			throw error;
		}
	}

	/** One walk of each namespace (paths such as /run/netns/NAME), one after the other: their time and the sockets visited. */
	walk(netnsPaths: readonly string[]): FloorWalk {
		const fds: number[] = [];
		try {
			for (const p of netnsPaths) {
				const nsFd = fs.openSync(p, 'r');
				try {
					fds.push(inNetns(nsFd, () => bpf.iterCreate(this.#link)));
				} finally {
					fs.closeSync(nsFd);
				}
			}
			let sockets = 0;
			const t0 = process.hrtime.bigint();
			for (const fd of fds) {
				// The program writes one u64 at the iterator's end: the sockets it visited.
				for (let n; (n = readIteratorChunk(fd, this.#buf)) > 0;) sockets += n >= 8 ? Number(this.#buf.readBigUInt64LE(n - 8)) : 0;
			}
			return { ms: Number(process.hrtime.bigint() - t0) / 1e6, sockets };
		} finally {
			for (const fd of fds) fs.closeSync(fd);
		}
	}

	close(): void {
		bpf.linkDestroy(this.#link);
		bpf.objectClose(this.#object);
	}
}
