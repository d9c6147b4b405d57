/*
 * loadgen: the benchmarks' HTTP/1.1 load generator (compiled by bench/_load.py with cc -O2).
 *
 * Python builds and signs every request before the clock starts and writes them to a file;
 * this tool only sends them and times the answers, so the client costs the server (they
 * share the machine's cores) as little CPU as possible: no parsing beyond the status line,
 * Content-Length, Transfer-Encoding and ETag, no copies of bodies it sends or receives.
 *
 * Usage: loadgen CONNECTIONS REQUESTS_FILE HOST:PORT [HOST:PORT...]
 *
 * REQUESTS_FILE: the 4 bytes "GLG1", then for each request (little-endian)
 *   u32 head_len, u64 gen_len, u64 seed, then head_len bytes: the request line, the headers
 *   and the start of the body (all of a small body), sent as they are; then gen_len bytes
 *   of generated body: 1 MiB chunks of one random pool, each chunk's first 16 bytes
 *   replaced by (seed, chunk number), so that every 1 MiB block of every request is
 *   distinct (no deduplication) and incompressible, at no generating cost.
 *
 * CONNECTIONS keep-alive connections (connection k to the k-th address, round robin: a
 * cluster's nodes share the load) each take the next unsent request when their answer is
 * complete, until every request is answered (request i is sent once, in order of i).
 *
 * Output (stdout), one line per answered request, in completion order:
 *   R <index> <status> <latency_us> <body_bytes> <etag or ->
 * (status 0: the connection failed; it is reopened for the next request), then
 *   T <requests> <elapsed_us> <user_cpu_us> <system_cpu_us>
 * where elapsed runs from the first byte sent to the last answer, and the CPU times are
 * this process's own (the client's share of the machine).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MIB (1u << 20)
#define HDR_MAX (64 * 1024)
#define RECV_BUF (1u << 20)

typedef struct {
    const char *head;
    uint32_t head_len;
    uint64_t gen_len;
    uint64_t seed;
} request_t;

enum body_mode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_EOF };
enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER };

typedef struct {
    int fd;
    int target;
    long req; /* index of the request in progress, -1 when idle */
    int sending;
    uint64_t head_sent, gen_sent;
    unsigned char prefix[16];
    /* the answer */
    char hdr[HDR_MAX];
    size_t hdr_len;
    int hdr_done, status, is_head, close_after;
    enum body_mode mode;
    uint64_t body_left, body_bytes;
    enum chunk_state cstate;
    char cline[128];
    size_t cline_len;
    char etag[96];
    struct timespec t0;
} conn_t;

static request_t *requests;
static long n_requests, next_request, answered;
static unsigned char *pool;
static struct sockaddr_in *targets;
static int epfd;
static char *recv_buf;

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)size);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) die("read requests");
    fclose(f);
    if (size < 4 || memcmp(data, "GLG1", 4) != 0) {
        fprintf(stderr, "%s: not a loadgen request file\n", path);
        exit(2);
    }
    long cap = 1024, pos = 4;
    requests = malloc(sizeof(request_t) * (size_t)cap);
    while (pos < size) {
        if (pos + 20 > size) {
            fprintf(stderr, "%s: truncated record\n", path);
            exit(2);
        }
        if (n_requests == cap) {
            cap *= 2;
            requests = realloc(requests, sizeof(request_t) * (size_t)cap);
        }
        request_t *r = &requests[n_requests++];
        memcpy(&r->head_len, data + pos, 4);
        memcpy(&r->gen_len, data + pos + 4, 8);
        memcpy(&r->seed, data + pos + 12, 8);
        r->head = data + pos + 20;
        pos += 20 + r->head_len;
        if (pos > size) {
            fprintf(stderr, "%s: truncated request\n", path);
            exit(2);
        }
    }
}

static void make_pool(void) {
    pool = malloc(MIB);
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)now_us();
    for (size_t i = 0; i < MIB; i += 8) { /* xorshift64*: incompressible enough */
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t v = x * 0x2545f4914f6cdd1dull;
        memcpy(pool + i, &v, 8);
    }
}

static void watch(conn_t *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, op, c->fd, &ev) != 0) die("epoll_ctl");
}

static void open_conn(conn_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&targets[c->target], sizeof targets[0]) != 0)
        die("connect");
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static void record(conn_t *c, int status) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t us = (t1.tv_sec - c->t0.tv_sec) * 1000000 + (t1.tv_nsec - c->t0.tv_nsec) / 1000;
    printf("R %ld %d %lld %llu %s\n", c->req, status, (long long)us,
           (unsigned long long)c->body_bytes, c->etag[0] ? c->etag : "-");
    answered++;
    c->req = -1;
}

/* Takes the next request, if any; returns 0 when there is none left. */
static int start_next(conn_t *c) {
    if (next_request >= n_requests) return 0;
    c->req = next_request++;
    c->sending = 1;
    c->head_sent = c->gen_sent = 0;
    c->hdr_len = 0;
    c->hdr_done = c->status = c->close_after = 0;
    c->body_bytes = 0;
    c->etag[0] = 0;
    const request_t *r = &requests[c->req];
    c->is_head = r->head_len >= 5 && memcmp(r->head, "HEAD ", 5) == 0;
    clock_gettime(CLOCK_MONOTONIC, &c->t0);
    watch(c, EPOLLOUT, EPOLL_CTL_MOD);
    return 1;
}

static void reopen(conn_t *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    open_conn(c);
}

static void finish(conn_t *c, int status) {
    int close_it = c->close_after || status == 0;
    record(c, status);
    if (close_it) reopen(c);
    if (!start_next(c)) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}

/* Sends what the socket takes; 1 when the whole request is sent. */
static int send_some(conn_t *c) {
    const request_t *r = &requests[c->req];
    for (;;) {
        struct iovec iov[3];
        int n = 0;
        if (c->head_sent < r->head_len) {
            iov[n].iov_base = (void *)(r->head + c->head_sent);
            iov[n++].iov_len = r->head_len - c->head_sent;
        }
        if (c->gen_sent < r->gen_len) {
            uint64_t chunk = c->gen_sent / MIB, off = c->gen_sent % MIB;
            uint64_t end = r->gen_len - chunk * MIB < MIB ? r->gen_len - chunk * MIB : MIB;
            memcpy(c->prefix, &r->seed, 8);
            memcpy(c->prefix + 8, &chunk, 8);
            if (off < 16) {
                uint64_t upto = end < 16 ? end : 16;
                iov[n].iov_base = c->prefix + off;
                iov[n++].iov_len = upto - off;
                if (end > 16) {
                    iov[n].iov_base = pool + 16;
                    iov[n++].iov_len = end - 16;
                }
            } else {
                iov[n].iov_base = pool + off;
                iov[n++].iov_len = end - off;
            }
        }
        if (n == 0) return 1;
        ssize_t sent = writev(c->fd, iov, n);
        if (sent < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return -1;
        }
        uint64_t left = (uint64_t)sent;
        uint64_t head_part = r->head_len - c->head_sent;
        if (head_part > left) head_part = left;
        c->head_sent += head_part;
        c->gen_sent += left - head_part;
    }
}

static void parse_head(conn_t *c, size_t end) {
    c->hdr[end] = 0;
    c->status = atoi(c->hdr + 9); /* "HTTP/1.1 200 OK" */
    c->mode = BODY_EOF;
    /* HTTP/1.0 closes after each answer unless it says keep-alive */
    if (strncmp(c->hdr, "HTTP/1.0", 8) == 0 && !strcasestr(c->hdr, "keep-alive"))
        c->close_after = 1;
    int64_t length = -1;
    int chunked = 0;
    for (char *line = strstr(c->hdr, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        char *h = line + 2;
        if (strncasecmp(h, "content-length:", 15) == 0) length = atoll(h + 15);
        else if (strncasecmp(h, "transfer-encoding:", 18) == 0 && strcasestr(h, "chunked") &&
                 strcasestr(h, "chunked") < strstr(h, "\r\n"))
            chunked = 1;
        else if (strncasecmp(h, "connection:", 11) == 0 && strncasecmp(h + 11, " close", 6) == 0)
            c->close_after = 1;
        else if (strncasecmp(h, "etag:", 5) == 0) {
            char *v = h + 5;
            while (*v == ' ') v++;
            size_t i = 0;
            while (v[i] && v[i] != '\r' && i + 1 < sizeof c->etag) {
                c->etag[i] = v[i] == ' ' ? '_' : v[i];
                i++;
            }
            c->etag[i] = 0;
        }
    }
    if (c->is_head || c->status == 204 || c->status == 304 || c->status < 200)
        c->mode = BODY_NONE;
    else if (chunked) {
        c->mode = BODY_CHUNKED;
        c->cstate = CH_SIZE;
        c->cline_len = 0;
    } else if (length >= 0) {
        c->mode = BODY_LENGTH;
        c->body_left = (uint64_t)length;
    } else
        c->close_after = 1;
}

/* Consumes body bytes; 1 when the body is complete. */
static int eat_body(conn_t *c, const char *p, size_t n) {
    if (c->mode == BODY_NONE) return 1;
    if (c->mode == BODY_EOF) {
        c->body_bytes += n;
        return 0;
    }
    if (c->mode == BODY_LENGTH) {
        size_t take = n < c->body_left ? n : (size_t)c->body_left;
        c->body_left -= take;
        c->body_bytes += take;
        return c->body_left == 0;
    }
    size_t i = 0;
    while (i < n) {
        if (c->cstate == CH_DATA) {
            size_t take = n - i < c->body_left ? n - i : (size_t)c->body_left;
            c->body_left -= take;
            c->body_bytes += take;
            i += take;
            if (c->body_left == 0) {
                c->cstate = CH_DATA_END;
                c->cline_len = 0;
            }
            continue;
        }
        char ch = p[i++];
        if (c->cline_len + 1 < sizeof c->cline) c->cline[c->cline_len++] = ch;
        if (ch != '\n') continue;
        c->cline[c->cline_len] = 0;
        int empty = c->cline_len <= 2;
        c->cline_len = 0;
        if (c->cstate == CH_DATA_END) {
            c->cstate = CH_SIZE;
        } else if (c->cstate == CH_SIZE) {
            c->body_left = strtoull(c->cline, NULL, 16);
            c->cstate = c->body_left ? CH_DATA : CH_TRAILER;
        } else if (empty) { /* CH_TRAILER: the empty line ends the message */
            return 1;
        }
    }
    return 0;
}

/* Reads what is there; 1 when the answer is complete, -1 on a broken connection. */
static int recv_some(conn_t *c) {
    for (;;) {
        ssize_t n = read(c->fd, recv_buf, RECV_BUF);
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        if (n == 0) return c->hdr_done && c->mode == BODY_EOF ? 1 : -1;
        const char *p = recv_buf;
        size_t len = (size_t)n;
        if (!c->hdr_done) {
            size_t room = HDR_MAX - 1 - c->hdr_len;
            size_t take = len < room ? len : room;
            memcpy(c->hdr + c->hdr_len, p, take);
            size_t scan_from = c->hdr_len >= 3 ? c->hdr_len - 3 : 0;
            c->hdr_len += take;
            c->hdr[c->hdr_len] = 0;
            char *end = memmem(c->hdr + scan_from, c->hdr_len - scan_from, "\r\n\r\n", 4);
            if (!end) {
                if (c->hdr_len >= HDR_MAX - 1) return -1;
                continue;
            }
            size_t head_end = (size_t)(end - c->hdr) + 4;
            size_t body_in_hdr = c->hdr_len - head_end;
            parse_head(c, head_end - 2);
            c->hdr_done = 1;
            /* the body bytes that came with the head: still in recv_buf after `take` */
            size_t consumed = take - body_in_hdr;
            p += consumed;
            len -= consumed;
        }
        if (eat_body(c, p, len)) return 1;
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s CONNECTIONS REQUESTS_FILE HOST:PORT [HOST:PORT...]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer that closes early is an error answer, not a crash */
    int n_targets = argc - 3;
    targets = calloc((size_t)n_targets, sizeof targets[0]);
    for (int i = 0; i < n_targets; i++) {
        char host[64];
        const char *colon = strrchr(argv[3 + i], ':');
        size_t hlen = colon ? (size_t)(colon - argv[3 + i]) : 0;
        if (!colon || hlen >= sizeof host) {
            fprintf(stderr, "%s: expected HOST:PORT\n", argv[3 + i]);
            return 2;
        }
        memcpy(host, argv[3 + i], hlen);
        host[hlen] = 0;
        targets[i].sin_family = AF_INET;
        targets[i].sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, host, &targets[i].sin_addr) != 1) die("address");
    }
    int n_conns = atoi(argv[1]);
    load(argv[2]);
    make_pool();
    recv_buf = malloc(RECV_BUF);
    if (n_conns < 1) n_conns = 1;
    if (n_conns > n_requests) n_conns = (int)n_requests;
    epfd = epoll_create1(0);
    conn_t *conns = calloc((size_t)(n_conns ? n_conns : 1), sizeof(conn_t));
    for (int i = 0; i < n_conns; i++) {
        conns[i].target = i % n_targets;
        conns[i].req = -1;
        open_conn(&conns[i]);
    }
    int64_t start = now_us();
    for (int i = 0; i < n_conns; i++) start_next(&conns[i]);
    struct epoll_event events[256];
    while (answered < n_requests) {
        int n = epoll_wait(epfd, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c->fd < 0 || c->req < 0) continue;
            if (c->sending) {
                int done = send_some(c);
                if (done < 0) {
                    /* The server may answer (e.g. an error) before reading the whole body. */
                    c->sending = 0;
                    watch(c, EPOLLIN, EPOLL_CTL_MOD);
                    continue;
                }
                if (done == 1) {
                    c->sending = 0;
                    watch(c, EPOLLIN, EPOLL_CTL_MOD);
                }
                continue;
            }
            int got = recv_some(c);
            if (got == 1) finish(c, c->status);
            else if (got < 0) {
                c->close_after = 1;
                finish(c, 0);
            }
        }
    }
    int64_t elapsed = now_us() - start;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("T %ld %lld %lld %lld\n", answered, (long long)elapsed,
           (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
           (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec);
    return 0;
}
