/*
 * The control socket between twilld and twill-dataplane.
 *
 * Frames, both ways: a u32 (little endian) length of what follows, then
 * u8 kind, u8 status (replies: 0 ok, 1 error), u16 zero, u32 (LE) request
 * id, payload. Node's net module has only stream Unix sockets, hence the
 * length prefix.
 *
 *   twilld -> dataplane                        dataplane -> twilld
 *   ATTACH  args, NUL-separated (args.h)       REPLY {pid, socket, attaches, adopted, mismatch?, info}
 *   SET_PEERS u32 LE [subnet, len, ip, port]*  REPLY (empty)
 *   COUNTERS                                   REPLY {txPackets, ...}
 *   STOP / DESTROY                             REPLY, then the program exits
 *   DETACH u32 LE grace ms                     REPLY
 *   CRASH (fault injection)                    (SIGSEGV)
 *                                              COUNTERS event, every second: heartbeat and last words
 *                                              FATAL event {message}: the engine gave up; exit 70 follows
 * Error replies carry {code, message}.
 *
 * The first ATTACH makes a connection the controller; only the controller
 * may do anything but attach. A second twilld's ATTACH is refused (EBUSY)
 * while a controller is attached and has not detached. An ATTACH whose
 * config differs from the running engine's still attaches, with
 * `adopted: false` and what differs: the caller then stops this dataplane
 * and starts one with its own config.
 */
#ifndef TWILL_CONTROL_H
#define TWILL_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane.h"
#include "peers.h"

#define FRAME_HEADER 12
#define FRAME_MAX (64u << 20) /* 4M peers: far beyond any cluster */

enum request_kind { REQ_ATTACH = 1, REQ_SET_PEERS = 2, REQ_COUNTERS = 3, REQ_STOP = 4, REQ_DESTROY = 5, REQ_DETACH = 6, REQ_CRASH = 7 };
enum message_kind { MSG_REPLY = 0x81, MSG_COUNTERS = 0x82, MSG_FATAL = 0x83 };

/* Accepts pending connections (beyond MAX_CONNS, they are closed at once). */
void control_accept(struct dataplane *dp);
/* Reads from connection `i` and handles every complete request; closes it on EOF or a protocol error. */
void control_read(struct dataplane *dp, int i);
/* Sends one frame; 0, or -1 when the peer is gone or stopped reading for a second. */
int control_send(int fd, uint8_t kind, uint8_t status, uint32_t id, const void *payload, size_t len);
/* Builds a peer table from wire quadruples; NULL on a bad length or no memory. */
struct peer_table *peers_from_wire(const uint8_t *buf, size_t len);

#endif
