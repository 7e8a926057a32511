/**
 * koffi declarations of the libc calls twtrace uses: mmap for the ring buffer, poll to notice a
 * closed stdout pipe, and the formatting helpers behind libbpf's log and error messages.
 */
import koffi from 'koffi';
import os from 'node:os';

export type Pointer = unknown;

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MAP_FAILED = 0xffffffffffffffffn; // (void *)-1: koffi returns it as a pointer, not null
const POLLERR = 0x008;
const POLLHUP = 0x010;

/** Kernel structs (bpf_attr, bpf_prog_info, struct pollfd) are in the host's byte order. */
const HOST_LE = os.endianness() === 'LE';

/** Reads a kernel u64 / u32 / s16 at `at` of `buf`, in host byte order. */
export const hostU64 = (buf: Buffer, at = 0): bigint => (HOST_LE ? buf.readBigUInt64LE(at) : buf.readBigUInt64BE(at));
export const hostU32 = (buf: Buffer, at = 0): number => (HOST_LE ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
const hostS16 = (buf: Buffer, at: number): number => (HOST_LE ? buf.readInt16LE(at) : buf.readInt16BE(at));
/** Writes a kernel u32 / s32 at `at` of `buf`, in host byte order. */
export const setHostU32 = (buf: Buffer, value: number, at = 0): void => void (HOST_LE ? buf.writeUInt32LE(value, at) : buf.writeUInt32BE(value, at));
const setHostS32 = (buf: Buffer, value: number, at: number): void => void (HOST_LE ? buf.writeInt32LE(value, at) : buf.writeInt32BE(value, at));

interface Libc {
	mmap: (addr: null, length: number, prot: number, flags: number, fd: number, offset: number) => Pointer;
	munmap: (addr: Pointer, length: number) => number;
	poll: (fds: Buffer, nfds: number, timeoutMs: number) => number;
	vsnprintf: (buf: Buffer, size: number, fmt: Pointer, ap: Pointer) => number;
	strerror: (errno: number) => string;
	getpagesize: () => number;
	setns: (fd: number, nstype: number) => number;
	socket: (domain: number, type: number, protocol: number) => number;
	send: (fd: number, buf: Buffer, len: number, flags: number) => number;
	recv: (fd: number, buf: Buffer, len: number, flags: number) => number;
}

let cache: Libc | undefined;

export function libc(): Libc {
	if (cache) return cache;
	const lib = koffi.load('libc.so.6');
	cache = {
		mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)'),
		munmap: lib.func('int munmap(void *addr, size_t length)'),
		poll: lib.func('int poll(_Inout_ uint8_t *fds, unsigned long nfds, int timeout)'),
		vsnprintf: lib.func('int vsnprintf(_Out_ uint8_t *buf, size_t size, void *fmt, void *ap)'),
		strerror: lib.func('const char *strerror(int errnum)'),
		getpagesize: lib.func('int getpagesize()'),
		setns: lib.func('int setns(int fd, int nstype)'),
		socket: lib.func('int socket(int domain, int type, int protocol)'),
		send: lib.func('long send(int fd, const uint8_t *buf, size_t len, int flags)'),
		recv: lib.func('long recv(int fd, _Out_ uint8_t *buf, size_t len, int flags)'),
	};
	return cache;
}

/** A failed native call: `op` names it, `errno` is positive. */
export class NativeError extends Error {
	constructor(readonly op: string, readonly errno: number, detail = '') {
		super(`${op}: ${errnoMessage(errno)}${detail ? ` (${detail})` : ''}`);
		this.name = 'NativeError';
	}
}

const errnoNames = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

/** "operation not permitted (EPERM)" for 1, in the words of strerror(3). */
export function errnoMessage(errno: number): string {
	const name = errnoNames.get(errno);
	return `${libc().strerror(errno).toLowerCase()}${name ? ` (${name})` : ''}`;
}

/** errno of the call that just failed (libbpf int calls also return -errno). */
export function lastError(op: string, ret?: number): NativeError {
	const errno = koffi.errno() || (ret !== undefined && ret < 0 ? -ret : 0) || os.constants.errno.EIO;
	return new NativeError(op, errno);
}

export interface Mapping {
	readonly address: Pointer;
	readonly bytes: number;
	/** External memory: valid only until munmap(). */
	readonly view: ArrayBuffer;
}

export function pageSize(): number {
	return libc().getpagesize();
}

/** mmap(NULL, bytes, PROT_READ[|PROT_WRITE], MAP_SHARED, fd, offset). Throws NativeError. */
export function mmapShared(fd: number, bytes: number, offset: number, writable: boolean): Mapping {
	const address = libc().mmap(null, bytes, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, offset);
	if (address === null || koffi.address(address) === MAP_FAILED) throw lastError(`mmap ${bytes} bytes of fd ${fd}`);
	return { address, bytes, view: koffi.view(address, bytes) };
}

/** munmap. The caller guarantees that no view of the mapping is reachable any more. */
export function munmap(m: Mapping): void {
	libc().munmap(m.address, m.bytes);
}

/**
 * True when `fd` is the write end of a pipe whose reader has gone (poll reports POLLERR, see
 * fs/pipe.c pipe_poll), so `twtrace trace | head` can stop even while no events arrive. False for
 * terminals and files. Non-blocking.
 */
export function isWriteEndOrphaned(fd: number): boolean {
	const pfd = Buffer.alloc(8); // struct pollfd { int fd; short events; short revents; }
	setHostS32(pfd, fd, 0);
	if (libc().poll(pfd, 1, 0) <= 0) return false;
	return (hostS16(pfd, 6) & (POLLERR | POLLHUP)) !== 0;
}

