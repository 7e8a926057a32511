/*
 * churn: a TCP connection churn generator for twtrace's benchmark. One process serves, another
 * connects as fast as it can (or at a set rate), each connection opened and closed at once, so the
 * kernel makes one TIME_WAIT socket per connection on the side that closes first.
 *
 *   churn server ADDR PORT NPORTS MODE THREADS SECONDS
 *   churn client ADDR PORT NPORTS MODE THREADS SECONDS [MAX_CONNECTIONS [RATE_PER_S]]
 *
 * MODE: client-close  the client closes right after connect(); the server closes on EOF
 *                     (TIME_WAIT on the client, the common ephemeral-port exhaustion case)
 *       server-close  the server closes right after accept(); the client closes on EOF
 *                     (TIME_WAIT on the server)
 *       linger0       the client closes with SO_LINGER {1,0}: an RST, no TIME_WAIT anywhere
 *
 * Ports PORT .. PORT+NPORTS-1 spread the 4-tuples over several destinations, as a real client
 * talking to several backends would. Both sides stop by themselves: the client after SECONDS or
 * MAX_CONNECTIONS (0: no limit), the server SECONDS after its start (or when signalled); an alarm
 * kills either one 30 s after that, whatever happens. Each prints one JSON line of results.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS 64
#define MAX_THREADS 64
#define MAX_ERRNO 134

enum mode { CLIENT_CLOSE, SERVER_CLOSE, LINGER0 };

struct config {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	int family;
	int port;
	int nports;
	enum mode mode;
	int threads;
	double seconds;
	long max_connections; /* 0: no limit */
	double rate_per_s;    /* 0: as fast as possible */
};

static struct config cfg;
static atomic_long connections;
static atomic_long errors_by_errno[MAX_ERRNO + 1];
static atomic_int stopping;
static int listeners[MAX_PORTS];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "churn: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void usage(void)
{
	fprintf(stderr, "usage: churn server|client ADDR PORT NPORTS client-close|server-close|linger0 THREADS SECONDS "
			"[MAX_CONNECTIONS [RATE_PER_S]]\n");
	exit(2);
}

static void on_stop_signal(int sig)
{
	(void)sig;
	atomic_store(&stopping, 1);
}

static void set_port(struct sockaddr_storage *ss, int port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static void count_error(int err)
{
	atomic_fetch_add(&errors_by_errno[err > 0 && err <= MAX_ERRNO ? err : 0], 1);
}

/* Reads until EOF or an error (an RST in linger0 mode), then closes. */
static void drain_and_close(int fd)
{
	char buf[256];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
}

static void *server_thread(void *arg)
{
	long index = (long)arg;
	int ep = epoll_create1(0);
	struct epoll_event ev, events[256];

	if (ep < 0)
		die("epoll_create1");
	/* Listener i belongs to thread i % threads: no two threads accept on one socket. */
	for (int i = index; i < cfg.nports; i += cfg.threads) {
		ev.events = EPOLLIN;
		ev.data.u64 = (1ULL << 32) | (unsigned)listeners[i];
		if (epoll_ctl(ep, EPOLL_CTL_ADD, listeners[i], &ev) < 0)
			die("epoll_ctl listener");
	}
	for (;;) {
		int n = epoll_wait(ep, events, 256, 100);

		/* Once stopping, serve until idle for 100 ms: closing a listener with connections still
		 * queued would reset them, and an RST kills the client's TIME_WAIT socket early. */
		if (n == 0 && atomic_load(&stopping))
			break;

		for (int i = 0; i < n; i++) {
			int fd = (int)(events[i].data.u64 & 0xffffffffu);

			if (!(events[i].data.u64 >> 32)) {
				drain_and_close(fd); /* a connection: the client's FIN (or RST) arrived */
				continue;
			}
			for (;;) {
				int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK);

				if (c < 0) {
					if (errno != EAGAIN && errno != EINTR)
						count_error(errno);
					break;
				}
				atomic_fetch_add(&connections, 1);
				if (cfg.mode == SERVER_CLOSE) {
					close(c); /* the server closes first */
					continue;
				}
				ev.events = EPOLLIN | EPOLLRDHUP;
				ev.data.u64 = (unsigned)c;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0)
					die("epoll_ctl connection");
			}
		}
	}
	close(ep);
	return NULL;
}

static void *client_thread(void *arg)
{
	long index = (long)arg;
	struct sockaddr_storage dst = cfg.addr;
	double start = now_s(), deadline = start + cfg.seconds;
	double interval_s = cfg.rate_per_s > 0 ? cfg.threads / cfg.rate_per_s : 0;
	double next = start + (interval_s * index) / cfg.threads;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct timeval rcv_timeout = { .tv_sec = 5 };
	unsigned long i = index;

	while (!atomic_load(&stopping)) {
		double t = now_s();
		int fd;

		if (t >= deadline)
			break;
		if (cfg.max_connections && atomic_load(&connections) >= cfg.max_connections)
			break;
		if (interval_s > 0) {
			if (t < next) {
				struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)((next - t) * 1e9) };

				nanosleep(&ts, NULL);
			}
			next += interval_s;
		}
		set_port(&dst, cfg.port + (int)(i++ % cfg.nports));
		fd = socket(cfg.family, SOCK_STREAM, 0);
		if (fd < 0) {
			count_error(errno);
			continue;
		}
		if (connect(fd, (struct sockaddr *)&dst, cfg.addr_len) < 0) {
			count_error(errno);
			close(fd);
			continue;
		}
		atomic_fetch_add(&connections, 1);
		switch (cfg.mode) {
		case CLIENT_CLOSE:
			close(fd);
			break;
		case SERVER_CLOSE:
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv_timeout, sizeof(rcv_timeout));
			drain_and_close(fd);
			break;
		case LINGER0:
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(fd);
			break;
		}
	}
	return NULL;
}

static void open_listeners(void)
{
	struct sockaddr_storage ss = cfg.addr;
	int one = 1;

	for (int i = 0; i < cfg.nports; i++) {
		int fd = socket(cfg.family, SOCK_STREAM | SOCK_NONBLOCK, 0);

		if (fd < 0)
			die("socket");
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		set_port(&ss, cfg.port + i);
		if (bind(fd, (struct sockaddr *)&ss, cfg.addr_len) < 0)
			die("bind");
		if (listen(fd, 4096) < 0)
			die("listen");
		listeners[i] = fd;
	}
}

static void print_results(const char *role, double seconds)
{
	long n = atomic_load(&connections);
	int first = 1;

	printf("{\"role\":\"%s\",\"pid\":%d,\"connections\":%ld,\"seconds\":%.3f,\"perSecond\":%.1f,\"errors\":{",
	       role, getpid(), n, seconds, seconds > 0 ? n / seconds : 0.0);
	for (int e = 0; e <= MAX_ERRNO; e++) {
		long c = atomic_load(&errors_by_errno[e]);

		if (c) {
			printf("%s\"%s\":%ld", first ? "" : ",", e ? strerrorname_np(e) : "other", c);
			first = 0;
		}
	}
	printf("}}\n");
	fflush(stdout);
}

static int parse_config(int argc, char **argv)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)&cfg.addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&cfg.addr;
	int server;

	if (argc < 8 || argc > 10)
		usage();
	server = strcmp(argv[1], "server") == 0;
	if (!server && strcmp(argv[1], "client") != 0)
		usage();
	memset(&cfg.addr, 0, sizeof(cfg.addr));
	if (inet_pton(AF_INET, argv[2], &in4->sin_addr) == 1) {
		cfg.family = in4->sin_family = AF_INET;
		cfg.addr_len = sizeof(*in4);
	} else if (inet_pton(AF_INET6, argv[2], &in6->sin6_addr) == 1) {
		cfg.family = in6->sin6_family = AF_INET6;
		cfg.addr_len = sizeof(*in6);
	} else {
		usage();
	}
	cfg.port = atoi(argv[3]);
	cfg.nports = atoi(argv[4]);
	if (strcmp(argv[5], "client-close") == 0)
		cfg.mode = CLIENT_CLOSE;
	else if (strcmp(argv[5], "server-close") == 0)
		cfg.mode = SERVER_CLOSE;
	else if (strcmp(argv[5], "linger0") == 0)
		cfg.mode = LINGER0;
	else
		usage();
	cfg.threads = atoi(argv[6]);
	cfg.seconds = atof(argv[7]);
	cfg.max_connections = argc > 8 ? atol(argv[8]) : 0;
	cfg.rate_per_s = argc > 9 ? atof(argv[9]) : 0;
	if (cfg.port < 1 || cfg.nports < 1 || cfg.nports > MAX_PORTS || cfg.port + cfg.nports - 1 > 65535 ||
	    cfg.threads < 1 || cfg.threads > MAX_THREADS || cfg.seconds <= 0 || cfg.seconds > 3600 ||
	    cfg.max_connections < 0 || cfg.rate_per_s < 0)
		usage();
	return server;
}

int main(int argc, char **argv)
{
	pthread_t threads[MAX_THREADS];
	int server = parse_config(argc, argv);
	double start;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_stop_signal);
	signal(SIGTERM, on_stop_signal);
	alarm((unsigned)cfg.seconds + 30); /* the last resort: never outlive the bench */
	if (server) {
		open_listeners();
		printf("{\"ready\":true,\"pid\":%d}\n", getpid());
		fflush(stdout);
	}
	start = now_s();
	for (long t = 0; t < cfg.threads; t++)
		if (pthread_create(&threads[t], NULL, server ? server_thread : client_thread, (void *)t) != 0)
			die("pthread_create");
	if (server) {
		/* Serve until signalled or SECONDS have passed. */
		while (!atomic_load(&stopping) && now_s() - start < cfg.seconds)
			usleep(50 * 1000);
		atomic_store(&stopping, 1);
	}
	for (int t = 0; t < cfg.threads; t++)
		pthread_join(threads[t], NULL);
	print_results(server ? "server" : "client", now_s() - start);
	return 0;
}
