/*
 * twill-wg-run DIR PROGRAM [ARG...]: runs PROGRAM (wireguard-go) with DIR
 * mounted over /var/run/wireguard, in a mount namespace of its own.
 *
 * Why: wireguard-go puts its UAPI socket at /var/run/wireguard/<dev>.sock
 * and watches that path (it exits when the file goes), and the device is
 * flannel-wg on every node. Nodes that share one filesystem — network
 * namespaces on one machine (tests, the lab), or containers sharing /run —
 * would take each other's socket. twilld gives each network namespace its
 * own DIR (/run/twill/wireguard-<netns inode>) and finds the socket there;
 * the bind mount is private to wireguard-go, nobody else sees it.
 *
 * It execs PROGRAM, so PROGRAM keeps this process's PID. Exits 126 when
 * the namespace or the mount cannot be made, 127 when PROGRAM cannot run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const SOCKET_DIR = "/var/run/wireguard";

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s DIR PROGRAM [ARG...]\n", argv[0]);
		return 2;
	}
	/* The mount point must exist in the shared view; wireguard-go would make it anyway. */
	if (mkdir(SOCKET_DIR, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "twill-wg-run: mkdir %s: %s\n", SOCKET_DIR, strerror(errno));
		return 126;
	}
	if (unshare(CLONE_NEWNS) != 0) {
		fprintf(stderr, "twill-wg-run: unshare(CLONE_NEWNS): %s\n", strerror(errno));
		return 126;
	}
	/* Private first, so the bind mount below never propagates back to the host's view. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		fprintf(stderr, "twill-wg-run: making / private: %s\n", strerror(errno));
		return 126;
	}
	if (mount(argv[1], SOCKET_DIR, NULL, MS_BIND, NULL) != 0) {
		fprintf(stderr, "twill-wg-run: bind %s over %s: %s\n", argv[1], SOCKET_DIR, strerror(errno));
		return 126;
	}
	execvp(argv[2], argv + 2);
	fprintf(stderr, "twill-wg-run: cannot run %s: %s\n", argv[2], strerror(errno));
	return 127;
}
