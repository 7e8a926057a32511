/**
 * The `listeners` map's keys and values (struct twt_listener_key, struct twt_listener in
 * bpf/twtrace.h): who called listen() on a port of a namespace. The loader reads it at each walk for
 * the owners of listening ports. Pure; the offsets come from the generated layout.
 */
import { LISTENER_FIELDS as V, LISTENER_KEY_FIELDS as K, LISTENER_KEY_SIZE, LISTENER_SIZE } from './layout.generated.js';
import { cString, HOST_LITTLE_ENDIAN } from './host-order.js';

/** The process that called listen() on a port. */
export interface ListenerOwner {
	pid: number;
	/** Its command name, up to 15 bytes (TASK_COMM_LEN). */
	comm: string;
}

export { LISTENER_SIZE };

/** The key of (netns, port), in host byte order. */
export function encodeListenerKey(netns: number, port: number, little = HOST_LITTLE_ENDIAN): Buffer {
	const key = Buffer.alloc(LISTENER_KEY_SIZE);
	const v = new DataView(key.buffer, key.byteOffset, key.byteLength);
	v.setUint32(K.netns.offset, netns, little);
	v.setUint32(K.port.offset, port, little);
	return key;
}

/** A struct twt_listener's owner; undefined when `value` is shorter than the struct. */
export function decodeListener(value: Uint8Array, little = HOST_LITTLE_ENDIAN): ListenerOwner | undefined {
	if (value.byteLength < LISTENER_SIZE) return undefined;
	const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
	return {
		pid: v.getUint32(V.pid.offset, little),
		comm: cString(value.subarray(V.comm.offset, V.comm.offset + V.comm.size)),
	};
}
