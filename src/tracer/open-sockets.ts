/**
 * Walks of the sockets processes hold open (build/open-sockets.bpf.o, iter/task_file): the evidence for
 * likely owners of TIME_WAIT sockets older than twtrace. Optional: a kernel without the program's
 * helpers (bpf_sock_from_file, Linux 5.11) only loses the inference, and says why.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as bpf from '../../native/libbpf.js';
import { readIteratorChunk } from '../../native/iter.js';
import { decodeOpenSockets, type OpenSocket } from '../event/open-sockets.js';

/** Read this much at a time, giving the event loop back between reads. */
const CHUNK_BYTES = 256 << 10;

export class OpenSocketWalker {
	readonly #object: bpf.Handle;
	readonly #link: bpf.Handle;
	#closed = false;

	private constructor(object: bpf.Handle, link: bpf.Handle) {
		this.#object = object;
		this.#link = link;
	}

	/** Loads and attaches, or says why it cannot (then there is no inference, and nothing else changes). */
	static open(objectPath: string): OpenSocketWalker | { error: string } {
		if (!fs.existsSync(objectPath)) return { error: `${path.basename(objectPath)} not built` };
		let object: bpf.Handle | undefined;
		try {
			object = bpf.objectOpen(objectPath);
			bpf.objectLoad(object);
			const link = bpf.programAttach(bpf.findProgram(object, 'dump_open_sockets'), 'iter/task_file');
			return new OpenSocketWalker(object, link);
		} catch (error) {
			if (object) bpf.objectClose(object);
			return { error: `the process socket walk does not load here (needs Linux ≥ 5.11): ${(error as Error).message}` };
		}
	}

	/** Every TCP socket every process holds open now, listening ones included. */
	async walk(): Promise<OpenSocket[]> {
		if (this.#closed) return [];
		const fd = bpf.iterCreate(this.#link);
		const chunks: Buffer[] = [];
		try {
			const buf = Buffer.allocUnsafe(CHUNK_BYTES);
			for (;;) {
				const n = readIteratorChunk(fd, buf);
				if (n === 0) break;
				chunks.push(Buffer.from(buf.subarray(0, n)));
				await new Promise((resolve) => setImmediate(resolve));
			}
		} finally {
			fs.closeSync(fd);
		}
		return decodeOpenSockets(Buffer.concat(chunks));
	}

	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		bpf.linkDestroy(this.#link);
		bpf.objectClose(this.#object);
	}
}
