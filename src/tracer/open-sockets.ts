/**
 * Walks of the sockets processes hold open (build/open-sockets.bpf.o, iter/task_file): the evidence for
 * likely owners of TIME_WAIT sockets older than twtrace, and the process part of open-socket walks
 * (pipeline/open-walks.ts). Optional: a kernel without the programs' helpers (bpf_sock_from_file,
 * Linux 5.11) only loses the inference and those walks, and says why.
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
	/** dump_open_tcp's: the same sockets as struct twt_sock records. */
	readonly #tcpLink: bpf.Handle;
	#closed = false;

	private constructor(object: bpf.Handle, link: bpf.Handle, tcpLink: bpf.Handle) {
		this.#object = object;
		this.#link = link;
		this.#tcpLink = tcpLink;
	}

	/** Loads and attaches, or says why it cannot (then there is no inference, and nothing else changes). */
	static open(objectPath: string): OpenSocketWalker | { error: string } {
		if (!fs.existsSync(objectPath)) return { error: `${path.basename(objectPath)} not built` };
		let object: bpf.Handle | undefined;
		try {
			object = bpf.objectOpen(objectPath);
			bpf.objectLoad(object);
			const link = bpf.programAttach(bpf.findProgram(object, 'dump_open_sockets'), 'iter/task_file');
			try {
				return new OpenSocketWalker(object, link, bpf.programAttach(bpf.findProgram(object, 'dump_open_tcp'), 'iter/task_file'));
			} catch (error) {
				bpf.linkDestroy(link);
				throw error;
			}
		} catch (error) {
			if (object) bpf.objectClose(object);
			return { error: `the process socket walk does not load here (needs Linux ≥ 5.11): ${(error as Error).message}` };
		}
	}

	/** Every TCP socket every process holds open now, listening ones included. */
	async walk(): Promise<OpenSocket[]> {
		return this.#closed ? [] : decodeOpenSockets(await readAll(this.#link));
	}

	/**
	 * The same sockets as struct twt_sock records (cookie, 4-tuple, state), of every namespace; one
	 * per process holding the socket (a forked server's may come more than once).
	 */
	async walkTcp(): Promise<Buffer> {
		return this.#closed ? Buffer.alloc(0) : readAll(this.#tcpLink);
	}

	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		bpf.linkDestroy(this.#link);
		bpf.linkDestroy(this.#tcpLink);
		bpf.objectClose(this.#object);
	}
}

/** Reads a new iterator over `link` to its end, giving the event loop back between reads. */
async function readAll(link: bpf.Handle): Promise<Buffer> {
	const fd = bpf.iterCreate(link);
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
	return Buffer.concat(chunks);
}
