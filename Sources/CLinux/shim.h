#ifndef CERTGATE_CLINUX_SHIM_H
#define CERTGATE_CLINUX_SHIM_H

// Linux headers that Swift's Glibc module does not bring in.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

// accept4 is declared by glibc only under _GNU_SOURCE, which the Glibc module does not set.
extern int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);

// Also _GNU_SOURCE-only: names event-loop threads for top, gdb and perf.
#include <pthread.h>
extern int pthread_setname_np(pthread_t thread, const char *name);


#include <malloc.h>

/// glibc gives every thread that allocates its own heap (up to 8 per core); for a server
/// whose workers all allocate, two arenas hold the same work in less memory.
static inline void certgate_limit_malloc_arenas(int count) {
    mallopt(M_ARENA_MAX, count);
}

#endif
