-- Workload of test-sqlite3.sh: `sqlite3 DB < sqlite-workload.sql`.
-- 200000 rows made by a recursive CTE, two indexes, queries (aggregates,
-- index ranges, GROUP BY, a join, a window function), an update, a delete
-- and a VACUUM. Every line printed starts with a label; test-sqlite3.sh
-- computes the expected value of several of them on its own.
.bail on
PRAGMA cache_size = -32000;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, s TEXT NOT NULL, v REAL, pad TEXT);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200000)
INSERT INTO t
SELECT i, (i * 7919) % 10007,
       printf('%s-%05d', substr('abcdefghijkl', i % 10 + 1, 3), i % 50000),
       i * 0.5,
       hex(i * i) || substr('xyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyz', 1, i % 31)
FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_s ON t(s);
SELECT 'count', count(*) FROM t;
SELECT 'sum_k', sum(k) FROM t;
SELECT 'distinct_k', count(DISTINCT k) FROM t;
SELECT 'k_range', count(*), sum(id) FROM t WHERE k BETWEEN 100 AND 200;
SELECT 'top_k', k, count(*) FROM t GROUP BY k ORDER BY count(*) DESC, k LIMIT 3;
SELECT 's_eq', group_concat(id, ',') FROM (SELECT id FROM t WHERE s = 'cde-00042' ORDER BY id);
SELECT 's_range', count(*) FROM t WHERE s >= 'bcd-01000' AND s < 'bcd-02000';
SELECT 'window', sum(r) FROM (SELECT row_number() OVER (PARTITION BY k ORDER BY id) AS r FROM t);
UPDATE t SET v = v * 2, pad = upper(pad) WHERE id % 7 = 0;
DELETE FROM t WHERE id % 11 = 0;
SELECT 'after_delete', count(*), sum(id) FROM t;
SELECT 'sum_v2', CAST(sum(v) * 2 AS INTEGER) FROM t;
CREATE TABLE u AS SELECT k, count(*) AS c, sum(id) AS sid FROM t GROUP BY k;
SELECT 'join', count(*), sum(u.c) FROM t JOIN u USING (k) WHERE u.c > 17;
SELECT 'pad', max(length(pad)), sum(length(pad)) FROM t;
SELECT 'integrity', * FROM pragma_integrity_check;
VACUUM;
SELECT 'after_vacuum', count(*), sum(k) FROM t;
SELECT 'order', id, k, s FROM t ORDER BY s DESC, id LIMIT 5;
SELECT 'glob', count(*) FROM t WHERE pad GLOB '*ZXY*';
SELECT 'like', count(*) FROM t WHERE pad LIKE '%zxy%';
