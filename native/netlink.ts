/**
 * A NETLINK_SOCK_DIAG socket and its one request-reply: how twtrace asks the kernel about one socket
 * by its 4-tuple (what `ss` does for whole tables, sock_diag(7)). A netlink socket answers for the
 * network namespace it was created in (its creator's): open it inside the namespace (native/iter.ts
 * inNetns). The kernel answers a request before send() returns (netlink_unicast to the kernel runs
 * the handler in the sender's context), so the reply is read without waiting.
 */
import fs from 'node:fs';
import { lastError, libc } from './libc.js';

const AF_NETLINK = 16;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_SOCK_DIAG = 4;
const MSG_DONTWAIT = 0x40;

/** A sock_diag socket of the calling thread's network namespace. Throws NativeError. */
export function openSockDiag(): number {
	const fd = libc().socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0) throw lastError('open sock_diag socket');
	return fd;
}

/**
 * Sends one netlink message (`request`, its header included; the kernel is the peer of an unbound
 * netlink socket) and reads the reply into `reply`: its length in bytes. Throws NativeError.
 */
export function sockDiagExchange(fd: number, request: Buffer, reply: Buffer): number {
	if (libc().send(fd, request, request.length, 0) < 0) throw lastError('sock_diag send');
	const n = libc().recv(fd, reply, reply.length, MSG_DONTWAIT);
	if (n < 0) throw lastError('sock_diag recv');
	return n;
}

export function closeSockDiag(fd: number): void {
	fs.closeSync(fd);
}
