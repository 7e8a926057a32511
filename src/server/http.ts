/**
 * The HTTP side of `twtrace serve`: GET /metrics (the exposition), GET /healthz (liveness and
 * readiness), and a short index at /. Nothing else is served; only GET and HEAD are allowed.
 * Binding failures become TwtraceErrors that say what to do.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { TwtraceError } from '../errors.js';

export interface ListenAddress {
	host: string;
	/** 0: any free port (the one chosen is in MetricsServer.url). */
	port: number;
}

export interface Routes {
	/** The exposition, written whole while the request waits (nothing in it waits for I/O). */
	metrics(): { body: string; contentType: string };
	/** 200 while the tracer runs; 503 once it stops. */
	health(): { ok: boolean; body: string };
}

export const portInUseMessage = 'is already in use';

/** "127.0.0.1:9979", "[::1]:9979" */
export function formatAddress({ host, port }: ListenAddress): string {
	return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function listenError(address: ListenAddress, error: NodeJS.ErrnoException): TwtraceError {
	const where = formatAddress(address);
	switch (error.code) {
		case 'EADDRINUSE':
			return new TwtraceError(`cannot listen on ${where}: the port ${portInUseMessage}`,
				`Find who holds it: ss -ltnp 'sport = :${address.port}'. Or choose another: --listen ${formatAddress({ ...address, port: address.port + 1 })}`, 1, { cause: error });
		case 'EADDRNOTAVAIL':
			return new TwtraceError(`cannot listen on ${where}: ${address.host} is not an address of this host`,
				'Use 127.0.0.1 (this host only), an address from `ip -br addr`, or 0.0.0.0 (every interface)', 1, { cause: error });
		case 'EACCES':
			return new TwtraceError(`cannot listen on ${where}: ports below 1024 need CAP_NET_BIND_SERVICE`, 'Choose a port above 1023', 1, { cause: error });
		case 'ENOTFOUND':
		case 'EAI_AGAIN':
			return new TwtraceError(`cannot listen on ${where}: ${address.host} does not resolve`, 'Give an IP address, e.g. --listen 127.0.0.1:9979', 1, { cause: error });
		default:
			return new TwtraceError(`cannot listen on ${where}: ${error.message}`, '', 1, { cause: error });
	}
}

const INDEX = `twtrace serve: TCP TIME_WAIT churn and ephemeral-port headroom per process, for Prometheus.

  /metrics   the metrics (Prometheus text format)
  /healthz   200 while tracing
`;

export class MetricsServer {
	readonly #server: http.Server;
	readonly url: string;

	private constructor(server: http.Server, url: string) {
		this.#server = server;
		this.url = url;
	}

	/** Binds, or throws a TwtraceError saying why not. */
	static async listen(address: ListenAddress, routes: Routes): Promise<MetricsServer> {
		const server = http.createServer((req, res) => handle(req, res, routes));
		// A scraper that connects and never sends must not hold a socket for ever.
		server.headersTimeout = 10_000;
		server.requestTimeout = 30_000;
		await new Promise<void>((resolve, reject) => {
			server.once('error', (error: NodeJS.ErrnoException) => reject(listenError(address, error)));
			server.listen({ host: address.host, port: address.port }, resolve);
		});
		const bound = server.address() as AddressInfo;
		return new MetricsServer(server, `http://${formatAddress({ host: bound.address, port: bound.port })}`);
	}

	/** Stops accepting and closes every connection, idle or not (Prometheus keeps them alive). */
	async close(): Promise<void> {
		const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
		this.#server.closeAllConnections();
		await closed;
	}
}

function handle(req: http.IncomingMessage, res: http.ServerResponse, routes: Routes): void {
	const path = (req.url ?? '/').split('?')[0];
	if (req.method !== 'GET' && req.method !== 'HEAD') {
		res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('only GET and HEAD\n');
		return;
	}
	try {
		if (path === '/metrics') {
			const { body, contentType } = routes.metrics();
			res.writeHead(200, { 'Content-Type': contentType }).end(req.method === 'HEAD' ? undefined : body);
		} else if (path === '/healthz') {
			const { ok, body } = routes.health();
			res.writeHead(ok ? 200 : 503, { 'Content-Type': 'text/plain' }).end(body);
		} else if (path === '/') {
			res.writeHead(200, { 'Content-Type': 'text/plain' }).end(INDEX);
		} else {
			res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
		}
	} catch (error) {
		res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`twtrace: ${(error as Error).message}\n`);
	}
}
