/*
 * fmt.c - the few formatting primitives the statistics and reports need.
 * Nothing here allocates or calls stdio: it must work before the allocator
 * is initialised and while it holds its own locks.
 */
#include <string.h>
#include <unistd.h>

#include "fmt.h"

void bm_buf_mem(struct bm_buf *b, char *buf, size_t cap)
{
    b->buf = buf;
    b->cap = cap;
    b->len = 0;
    b->total = 0;
    b->fd = -1;
    b->sink = NULL;
    b->ctx = NULL;
    if (cap)
        buf[0] = '\0';
}

void bm_buf_fd(struct bm_buf *b, int fd, char *scratch, size_t cap)
{
    bm_buf_mem(b, scratch, cap);
    b->fd = fd;
}

void bm_buf_sink(struct bm_buf *b, void (*sink)(void *, const char *, size_t), void *ctx,
                 char *scratch, size_t cap)
{
    bm_buf_fd(b, 0, scratch, cap);
    b->sink = sink;
    b->ctx = ctx;
}

static void flush(struct bm_buf *b)
{
    if (b->sink) {
        if (b->len)
            b->sink(b->ctx, b->buf, b->len);
        b->total += b->len;
        b->len = 0;
        return;
    }
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = write(b->fd, b->buf + off, b->len - off);
        if (n <= 0)
            break;              /* nowhere to report a failed report */
        off += (size_t)n;
    }
    b->total += b->len;
    b->len = 0;
}

size_t bm_buf_finish(struct bm_buf *b)
{
    if (b->fd >= 0) {
        flush(b);
        return b->total;
    }
    return b->len;
}

static void put(struct bm_buf *b, const char *s, size_t n)
{
    if (b->fd >= 0) {
        while (n) {
            if (b->len == b->cap)
                flush(b);
            size_t k = b->cap - b->len < n ? b->cap - b->len : n;
            memcpy(b->buf + b->len, s, k);
            b->len += k;
            s += k;
            n -= k;
        }
        return;
    }
    if (b->cap && b->len < b->cap - 1) {
        size_t room = b->cap - 1 - b->len;
        size_t k = n < room ? n : room;
        memcpy(b->buf + b->len, s, k);
        b->buf[b->len + k] = '\0';
    }
    b->len += n;
}

void bm_puts(struct bm_buf *b, const char *s) { put(b, s, strlen(s)); }
void bm_putn(struct bm_buf *b, const char *s, size_t n) { put(b, s, n); }
void bm_putc(struct bm_buf *b, char c) { put(b, &c, 1); }

static void pad(struct bm_buf *b, int n)
{
    while (n-- > 0)
        put(b, " ", 1);
}

void bm_putsw(struct bm_buf *b, const char *s, int width)
{
    int n = (int)strlen(s);
    if (width > 0)
        pad(b, width - n);
    put(b, s, (size_t)n);
    if (width < 0)
        pad(b, -width - n);
}

void bm_putu(struct bm_buf *b, uint64_t v, int width)
{
    char tmp[24];
    int i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    pad(b, width - (int)(sizeof tmp - i));
    put(b, tmp + i, sizeof tmp - i);
}

void bm_puti(struct bm_buf *b, int64_t v, int width)
{
    char tmp[24];
    int i = sizeof tmp;
    uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    pad(b, width - (int)(sizeof tmp - i));
    put(b, tmp + i, sizeof tmp - i);
}

void bm_putx(struct bm_buf *b, uint64_t v)
{
    char tmp[20];
    int i = sizeof tmp;
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    tmp[--i] = 'x';
    tmp[--i] = '0';
    put(b, tmp + i, sizeof tmp - i);
}

void bm_putmilli(struct bm_buf *b, int64_t v, int width)
{
    char tmp[32];
    struct bm_buf t;
    bm_buf_mem(&t, tmp, sizeof tmp);
    uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
    if (v < 0)
        bm_putc(&t, '-');
    bm_putu(&t, u / 1000, 0);
    bm_putc(&t, '.');
    bm_putc(&t, (char)('0' + (u / 100) % 10));
    bm_putc(&t, (char)('0' + (u / 10) % 10));
    bm_putc(&t, (char)('0' + u % 10));
    bm_putsw(b, tmp, width);
}
