/*
 * fmt.h - text output without stdio or malloc. A bm_buf either fills a
 * caller's buffer with snprintf semantics (len counts every byte asked for,
 * the text is cut and NUL-terminated at cap) or streams to a file
 * descriptor through a small buffer on the caller's stack.
 */
#ifndef BM_FMT_H
#define BM_FMT_H

#include <stddef.h>
#include <stdint.h>

struct bm_buf {
    char *buf;
    size_t cap;
    size_t len;     /* bytes produced (snprintf-style), or pending when streaming */
    size_t total;   /* bytes produced in all, when streaming */
    int fd;         /* -1: memory buffer; >= 0: stream to fd, or to sink */
    void (*sink)(void *ctx, const char *s, size_t n);
    void *ctx;
};

void bm_buf_mem(struct bm_buf *b, char *buf, size_t cap);
void bm_buf_fd(struct bm_buf *b, int fd, char *scratch, size_t cap);
/* Stream through sink(ctx, text, n) instead of a file descriptor. */
void bm_buf_sink(struct bm_buf *b, void (*sink)(void *, const char *, size_t), void *ctx,
                 char *scratch, size_t cap);
size_t bm_buf_finish(struct bm_buf *b);   /* flush; returns bytes produced */

void bm_puts(struct bm_buf *b, const char *s);
void bm_putn(struct bm_buf *b, const char *s, size_t n);   /* n bytes of s */
void bm_putc(struct bm_buf *b, char c);
/* Right-aligned in width columns (width 0: as long as it needs). */
void bm_putu(struct bm_buf *b, uint64_t v, int width);
void bm_puti(struct bm_buf *b, int64_t v, int width);
void bm_putx(struct bm_buf *b, uint64_t v);             /* 0x... */
/* A string right-aligned (width > 0) or left-aligned (width < 0). */
void bm_putsw(struct bm_buf *b, const char *s, int width);
/* v / 1000 with three decimals, e.g. -1000 -> "-1.000", right-aligned. */
void bm_putmilli(struct bm_buf *b, int64_t v, int width);

#endif
