/*
 * cat_bytes.c - a marvelo executable job in C: copies fixed-size blocks, heads included, from
 * its inputs to its outputs (output k gets input k mod the number of inputs).
 *
 * Pipes: bytes with block_size N; the job has head: true with head_size H (or no heads: H 0).
 *
 *   {"id": 4, "exec": {"path": "./cat_bytes", "mode": "fd",
 *                      "params": ["--block-size", "4096", "--head-size", "1"],
 *                      "dependencies": "cat_bytes"},
 *    "inputs": [103], "outputs": [104], "head": true}
 *   build: cc -O2 -o cat_bytes cat_bytes.c
 *
 * The adapter starts it as `./cat_bytes --block-size 4096 --head-size 1 -i 3 -o 4`: in fd mode
 * the stream values are inherited file descriptors; a value that is not a number is opened as a
 * path (fifo mode). Each round reads one block (head, then block_size bytes) from every input and
 * writes them out. Output is buffered and flushed before every read that may block, so blocks
 * leave as soon as the program waits, without a write per block. It ends (status 0) when an input
 * ends at a block boundary, and fails (status 1) when an input ends inside a block.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXSTREAMS 64
#define BUFSIZE (256 * 1024)

struct in {
	int fd;
	const char *name;
	unsigned char *buf;
	size_t start, end; /* buffered bytes: buf[start:end] */
	long long offset;  /* bytes consumed so far */
};

struct out {
	int fd;
	unsigned char *buf;
	size_t len;
};

static struct in ins[MAXSTREAMS];
static struct out outs[MAXSTREAMS];
static int nin, nout;

static void die(const char *msg, const char *name) {
	fprintf(stderr, "cat_bytes: %s: %s\n", name, msg);
	exit(1);
}

static int open_stream(const char *value, int flags) {
	const char *p = value;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*value != '\0' && *p == '\0')
		return atoi(value); /* fd mode: an inherited descriptor */
	int fd = open(value, flags); /* fifo mode: a named pipe */
	if (fd < 0)
		die(strerror(errno), value);
	return fd;
}

static void flush_out(struct out *o) {
	size_t done = 0;
	while (done < o->len) {
		ssize_t n = write(o->fd, o->buf + done, o->len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die(strerror(errno), "write");
		}
		done += (size_t)n;
	}
	o->len = 0;
}

static void flush_all(void) {
	for (int k = 0; k < nout; k++)
		flush_out(&outs[k]);
}

/* take returns a pointer to the next n bytes of input r, reading as needed; NULL at a clean end
 * of stream (no byte of them available). A stream that ends inside them is an error. */
static unsigned char *take(struct in *r, size_t n, int at_block_start) {
	while (r->end - r->start < n) {
		if (r->start > 0) { /* keep what is buffered at the front */
			memmove(r->buf, r->buf + r->start, r->end - r->start);
			r->end -= r->start;
			r->start = 0;
		}
		flush_all(); /* about to wait: send what is ready */
		ssize_t m = read(r->fd, r->buf + r->end, BUFSIZE - r->end);
		if (m < 0) {
			if (errno == EINTR)
				continue;
			die(strerror(errno), r->name);
		}
		if (m == 0) {
			if (r->end == r->start && at_block_start)
				return NULL;
			fprintf(stderr, "cat_bytes: %s: stream ends inside a block at byte %lld\n", r->name,
			        r->offset + (long long)(r->end - r->start));
			exit(1);
		}
		r->end += (size_t)m;
	}
	unsigned char *p = r->buf + r->start;
	r->start += n;
	r->offset += (long long)n;
	return p;
}

static void put(struct out *o, const unsigned char *p, size_t n) {
	if (o->len + n > BUFSIZE)
		flush_out(o);
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

int main(int argc, char **argv) {
	size_t block = 0, head = 0;
	signal(SIGPIPE, SIG_DFL);
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc) {
			fprintf(stderr, "cat_bytes: %s needs a value\n", argv[i]);
			return 2;
		}
		if (strcmp(argv[i], "--block-size") == 0) {
			block = (size_t)atol(argv[++i]);
		} else if (strcmp(argv[i], "--head-size") == 0) {
			head = (size_t)atol(argv[++i]);
		} else if (strcmp(argv[i], "-i") == 0 && nin < MAXSTREAMS) {
			ins[nin].name = argv[++i];
			ins[nin].fd = open_stream(argv[i], O_RDONLY);
			ins[nin].buf = malloc(BUFSIZE);
			nin++;
		} else if (strcmp(argv[i], "-o") == 0 && nout < MAXSTREAMS) {
			outs[nout].fd = open_stream(argv[++i], O_WRONLY);
			outs[nout].buf = malloc(BUFSIZE);
			nout++;
		} else {
			fprintf(stderr, "cat_bytes: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	if (block < 1 || block + head > BUFSIZE || head > 4 || nin < 1) {
		fprintf(stderr, "usage: cat_bytes --block-size N [--head-size 0..4] -i IN... [-o OUT...]\n");
		return 2;
	}
	unsigned char *blk[MAXSTREAMS];
	long long rounds = 0;
	for (;;) {
		for (int k = 0; k < nin; k++) {
			if (!(blk[k] = take(&ins[k], head + block, 1)))
				goto end;
		}
		/* take may move buffered data of an input only while reading that input, so the
		 * pointers of this round stay valid: each input is read once per round. */
		for (int k = 0; k < nout; k++)
			put(&outs[k], blk[k % nin], head + block);
		rounds++;
	}
end:
	flush_all();
	for (int k = 0; k < nout; k++)
		close(outs[k].fd);
	fprintf(stderr, "cat_bytes: %lld blocks\n", rounds);
	return 0;
}
