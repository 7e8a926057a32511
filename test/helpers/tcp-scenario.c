/*
 * tcp-scenario: scripted TCP clients and servers for twtrace's integration tests. Each run does a
 * bounded number of connections with exactly the syscalls a scenario needs, then prints one JSON
 * line with its pid and results, so tests can compare twtrace's attribution with ground truth.
 *
 *   tcp-scenario server ADDR PORT MODE N     MODE: wait-close | close-first | send-wait
 *   tcp-scenario client ADDR PORT MODE N     MODE: close-first | wait-eof | linger0 | unread |
 *                                                   fork-close | refused | exhaust | bind |
 *                                                   distinct-comms (a process per connection, named twjN)
 *
 * The server prints {"ready":true,...} once listening. Every blocking call has a timeout (alarm),
 * so a broken test cannot hang.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define TIMEOUT_S 20

static int parse_addr(const char *addr, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		*len = sizeof(*in4);
		return AF_INET;
	}
	if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof(*in6);
		return AF_INET6;
	}
	fprintf(stderr, "bad address %s\n", addr);
	exit(2);
}

static void die(const char *what)
{
	fprintf(stderr, "tcp-scenario: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Reads until EOF (or error). */
static void drain(int fd)
{
	char buf[256];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* Waits until fd has data to read, without reading it. */
static void wait_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, TIMEOUT_S * 1000) <= 0)
		die("poll");
}

static int run_server(const char *addr, int port, const char *mode, int n)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family = parse_addr(addr, port, &ss, &len);
	int one = 1, lfd, i;

	lfd = socket(family, SOCK_STREAM, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&ss, len) < 0)
		die("bind");
	if (listen(lfd, 1024) < 0)
		die("listen");
	printf("{\"ready\":true,\"pid\":%d}\n", getpid());
	fflush(stdout);
	for (i = 0; i < n; i++) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			die("accept");
		if (strcmp(mode, "wait-close") == 0) {
			drain(fd); /* the client closes first */
		} else if (strcmp(mode, "close-first") == 0) {
			if (write(fd, "hi\n", 3) != 3) /* reply, then close first */
				die("write");
		} else if (strcmp(mode, "send-wait") == 0) {
			if (write(fd, "unread\n", 7) != 7) /* data the client will not read */
				die("write");
			drain(fd);
		} else {
			fprintf(stderr, "unknown server mode %s\n", mode);
			return 2;
		}
		close(fd);
	}
	close(lfd);
	printf("{\"done\":true,\"pid\":%d,\"accepted\":%d}\n", getpid(), n);
	return 0;
}

static int run_client(const char *addr, int port, const char *mode, int n)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family = parse_addr(addr, port, &ss, &len);
	int ok = 0, failed = 0, last_errno = 0, i;
	int children[64], nchildren = 0;

	for (i = 0; i < n; i++) {
		if (strcmp(mode, "distinct-comms") == 0) {
			/* One short-lived process per connection, each with a name of its own. */
			pid_t child = fork();
			int status;

			if (child < 0)
				die("fork");
			if (child == 0) {
				char name[16];
				int cfd;

				snprintf(name, sizeof(name), "twj%d", i);
				prctl(PR_SET_NAME, name);
				cfd = socket(family, SOCK_STREAM, 0);
				_exit(cfd >= 0 && connect(cfd, (struct sockaddr *)&ss, len) == 0 && close(cfd) == 0 ? 0 : 1);
			}
			if (waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0)
				ok++;
			else
				failed++;
			continue;
		}
		int fd = socket(family, SOCK_STREAM, 0);

		if (fd < 0)
			die("socket");
		if (strcmp(mode, "bind") == 0) {
			/* bind(ADDR:PORT) without SO_REUSEADDR: EADDRINUSE while a TIME_WAIT socket holds it */
			if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
				failed++;
				last_errno = errno;
			} else {
				ok++;
			}
			close(fd);
			continue;
		}
		if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
			failed++;
			last_errno = errno;
			close(fd);
			if (strcmp(mode, "exhaust") == 0 && errno == EADDRNOTAVAIL)
				break; /* stop at the first exhaustion, as the test expects */
			continue;
		}
		ok++;
		if (strcmp(mode, "close-first") == 0 || strcmp(mode, "exhaust") == 0) {
			close(fd);
		} else if (strcmp(mode, "wait-eof") == 0) {
			drain(fd); /* the server closes first */
			close(fd);
		} else if (strcmp(mode, "linger0") == 0) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };

			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(fd);
		} else if (strcmp(mode, "unread") == 0) {
			wait_readable(fd);
			close(fd); /* unread data: the kernel sends RST (tcp_close, data_was_unread) */
		} else if (strcmp(mode, "fork-close") == 0) {
			int pipefd[2];
			pid_t child;
			char c;

			if (pipe(pipefd) < 0)
				die("pipe");
			child = fork();
			if (child < 0)
				die("fork");
			if (child == 0) {
				/* The child holds the last reference: its close() sends the FIN. */
				close(pipefd[1]);
				if (read(pipefd[0], &c, 1) < 0)
					_exit(1);
				close(fd);
				_exit(0);
			}
			close(pipefd[0]);
			close(fd); /* the parent's close drops one reference only */
			if (write(pipefd[1], "x", 1) != 1)
				die("write");
			close(pipefd[1]);
			waitpid(child, NULL, 0);
			if (nchildren < 64)
				children[nchildren++] = child;
		} else if (strcmp(mode, "refused") == 0) {
			close(fd);
		} else {
			fprintf(stderr, "unknown client mode %s\n", mode);
			return 2;
		}
	}
	printf("{\"pid\":%d,\"ok\":%d,\"failed\":%d,\"errno\":%d,\"children\":[", getpid(), ok, failed, last_errno);
	for (i = 0; i < nchildren; i++)
		printf("%s%d", i ? "," : "", children[i]);
	printf("]}\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: %s server|client ADDR PORT MODE N\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	alarm(TIMEOUT_S);
	if (strcmp(argv[1], "server") == 0)
		return run_server(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]));
	if (strcmp(argv[1], "client") == 0)
		return run_client(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]));
	fprintf(stderr, "unknown role %s\n", argv[1]);
	return 2;
}
