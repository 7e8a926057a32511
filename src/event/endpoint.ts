/**
 * How an address and a port are written everywhere twtrace prints or keys them: "10.0.0.5:443",
 * and for IPv6 "[fd00::2]:443" (RFC 3986), since "fd00::2:443" cannot be read back.
 */
export function endpoint(addr: string, port: number): string {
	return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** The inverse of endpoint(). */
export function parseEndpoint(text: string): { addr: string; port: number } {
	const at = text.lastIndexOf(':');
	const addr = text.slice(0, at);
	return { addr: addr.startsWith('[') && addr.endsWith(']') ? addr.slice(1, -1) : addr, port: Number(text.slice(at + 1)) };
}
