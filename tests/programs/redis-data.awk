# The known data set of test-redis.sh, in three forms (awk -v mode=...):
#   mode=resp    the writes, as a RESP stream for `redis-cli --pipe` (db 1)
#   mode=read    redis-cli commands reading every key back (one per line)
#   mode=expect  what redis-cli prints for mode=read
# Keys: STRINGS strings mine:N (10 to 500 bytes), BIGS big:N of 200 KB,
# HASHES hashes of 50 fields, LISTS lists of 100 elements, SETS sets of 50
# members. Values are made of [0-9a-z-] only, so each fits on one line.

function value(i, len,    s, p) {
    p = sprintf("%d-%x-", (i * 2654435761) % 1000003, i)
    s = p
    while (length(s) < len)
        s = s s
    return substr(s, 1, len)
}

function resp(n, a,    i, out) {
    out = "*" n "\r\n"
    for (i = 1; i <= n; i++)
        out = out "$" length(a[i]) "\r\n" a[i] "\r\n"
    printf "%s", out
    ncmd++
}

BEGIN {
    STRINGS = 50000; BIGS = 20; HASHES = 200; LISTS = 100; SETS = 100
    if (mode == "resp") {
        a[1] = "SELECT"; a[2] = "1"; resp(2, a)
        for (i = 0; i < STRINGS; i++) {
            a[1] = "SET"; a[2] = "mine:" i; a[3] = value(i, 10 + (i * 7919) % 491); resp(3, a)
        }
        for (i = 0; i < BIGS; i++) {
            a[1] = "SET"; a[2] = "big:" i; a[3] = value(i + 7, 200000); resp(3, a)
        }
        for (h = 0; h < HASHES; h++) {
            split("", a); a[1] = "HSET"; a[2] = "hash:" h; n = 2
            for (f = 0; f < 50; f++) { a[++n] = "f" f; a[++n] = value(h * 50 + f, 20 + f) }
            resp(n, a)
        }
        for (l = 0; l < LISTS; l++) {
            split("", a); a[1] = "RPUSH"; a[2] = "list:" l; n = 2
            for (e = 0; e < 100; e++) a[++n] = value(l * 100 + e, 5 + e % 30)
            resp(n, a)
        }
        for (s = 0; s < SETS; s++) {
            split("", a); a[1] = "SADD"; a[2] = "set:" s; n = 2
            for (m = 0; m < 50; m++) a[++n] = "m" s "-" m
            resp(n, a)
        }
        exit
    }
    # mode read / expect
    for (i = 0; i < STRINGS; i += 500) {
        cmd = "MGET"
        for (j = i; j < i + 500 && j < STRINGS; j++) {
            cmd = cmd " mine:" j
            if (mode == "expect") print value(j, 10 + (j * 7919) % 491)
        }
        if (mode == "read") print cmd
    }
    for (i = 0; i < BIGS; i++) {
        if (mode == "read") print "GET big:" i
        else print value(i + 7, 200000)
    }
    for (h = 0; h < HASHES; h++) {
        cmd = "HMGET hash:" h
        for (f = 0; f < 50; f++) {
            cmd = cmd " f" f
            if (mode == "expect") print value(h * 50 + f, 20 + f)
        }
        if (mode == "read") print cmd
    }
    for (l = 0; l < LISTS; l++) {
        if (mode == "read") print "LRANGE list:" l " 0 -1"
        else for (e = 0; e < 100; e++) print value(l * 100 + e, 5 + e % 30)
    }
    for (s = 0; s < SETS; s++) {
        if (mode == "read") print "SORT set:" s " ALPHA"
        else {
            # the members sorted as strings
            split("", mem)
            for (k = 0; k < 50; k++) mem[k] = "m" s "-" k
            for (x = 0; x < 50; x++)
                for (y = x + 1; y < 50; y++)
                    if (mem[y] < mem[x]) { t = mem[x]; mem[x] = mem[y]; mem[y] = t }
            for (k = 0; k < 50; k++) print mem[k]
        }
    }
    if (mode == "read") print "DBSIZE"
    else print STRINGS + BIGS + HASHES + LISTS + SETS
}
