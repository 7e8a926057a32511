/**
 * The byte order of the records and map values the BPF programs write and read: the host's (BPF
 * runs in the kernel, in its native order). Read once here, so that every encoder and decoder of
 * bpf/twtrace.h's structs agrees on it, instead of each assuming little-endian. A DataView
 * defaults to big-endian: pass this to every get and set.
 */
import os from 'node:os';

export const HOST_LITTLE_ENDIAN = os.endianness() === 'LE';

/** A NUL-terminated C string of at most `bytes.length` bytes (a `char comm[16]`), as UTF-8. */
export function cString(bytes: Uint8Array): string {
	const end = bytes.indexOf(0);
	return Buffer.from(bytes.buffer, bytes.byteOffset, end < 0 ? bytes.length : end).toString('utf8');
}
