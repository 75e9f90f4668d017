-- sqlite3 workload for the benchmark suite (bench/suite.py); @ROWS@ is
-- replaced by the number of rows.
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -65536;
CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v TEXT, n INTEGER);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < @ROWS@)
INSERT INTO t(k, v, n) SELECT printf('key-%08d', (i * 7919) % @ROWS@), hex(randomblob(20 + i % 60)), i % 1000 FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_n ON t(n, k);
SELECT count(*), sum(length(v)) FROM t;
SELECT n, count(*), max(k) FROM t GROUP BY n ORDER BY n LIMIT 5;
SELECT count(*) FROM t a JOIN t b ON a.k = b.k WHERE a.n < 50;
UPDATE t SET v = v || v WHERE n % 7 = 0;
DELETE FROM t WHERE n % 11 = 0;
SELECT count(*), sum(length(v)) FROM t;
