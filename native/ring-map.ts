/**
 * The memory of a BPF_MAP_TYPE_RINGBUF map, mapped into this process (kernel/bpf/ringbuf.c,
 * ringbuf_map_mmap): page 0 holds the consumer position and is the only writable part; the next
 * page holds the producer position; the data area follows and is mapped twice in a row, so a record
 * that wraps around the end can be read as one contiguous range.
 */
import { mmapShared, munmap, pageSize, type Mapping } from './libc.js';

export interface RingViews {
	/** [0] is consumer_pos: advanced by the reader (Atomics.store). */
	readonly consumerPos: BigInt64Array;
	/** [0] is producer_pos: advanced by the kernel (Atomics.load). */
	readonly producerPos: BigInt64Array;
	/** Producer page followed by the data area mapped twice: read records at dataOffset + (pos & mask). */
	readonly memory: ArrayBuffer;
	readonly dataOffset: number;
	/** max_entries of the map: the size of one copy of the data area, a power of two. */
	readonly dataBytes: number;
}

export class RingMap {
	#consumer: Mapping | undefined;
	#producer: Mapping | undefined;
	readonly views: RingViews;

	/**
	 * Maps ring buffer map `fd` whose max_entries is `dataBytes`. Throws NativeError when mmap fails
	 * (and leaves nothing mapped).
	 */
	constructor(fd: number, dataBytes: number) {
		const page = pageSize();
		const consumer = mmapShared(fd, page, 0, true);
		let producer: Mapping;
		try {
			producer = mmapShared(fd, page + 2 * dataBytes, page, false);
		} catch (error) {
			munmap(consumer);
			throw error;
		}
		this.#consumer = consumer;
		this.#producer = producer;
		this.views = {
			consumerPos: new BigInt64Array(consumer.view, 0, 1),
			producerPos: new BigInt64Array(producer.view, 0, 1),
			memory: producer.view,
			dataOffset: page,
			dataBytes,
		};
	}

	/**
	 * Unmaps both regions. Idempotent. The caller guarantees that nothing touches `views` afterwards:
	 * reading unmapped memory kills the process with SIGSEGV.
	 */
	close(): void {
		if (this.#producer) munmap(this.#producer);
		if (this.#consumer) munmap(this.#consumer);
		this.#producer = undefined;
		this.#consumer = undefined;
	}
}
