-- The hnsw access method's SQL surface: options, limits, plans, NULL and zero vectors,
-- every operator class, index maintenance commands. Recall on real data is tested in
-- pg_test/python/test_recall.py.
SET client_min_messages = warning;
-- Small tables: HNSW with ef_search >= rows visits everything reachable, so results must
-- equal the exact order.
SET hnsw.ef_search = 100;

CREATE TABLE t (id int PRIMARY KEY, v vector(3));
INSERT INTO t VALUES (1, '[1,1,1]'), (2, '[2,2,2]'), (3, '[1,1,2]'), (4, NULL), (5, '[0,0,0]'), (6, '[-1,2,0]');

-- options
CREATE INDEX ON t USING hnsw (v vector_l2_ops) WITH (m = 1);
CREATE INDEX ON t USING hnsw (v vector_l2_ops) WITH (m = 101);
CREATE INDEX ON t USING hnsw (v vector_l2_ops) WITH (ef_construction = 3);
CREATE INDEX ON t USING hnsw (v vector_l2_ops) WITH (ef_construction = 1001);
CREATE INDEX ON t USING hnsw (v vector_l2_ops) WITH (m = 16, ef_construction = 31);
CREATE INDEX ON t USING hnsw (v vector_l2_ops) WITH (nonexistent = 1);
CREATE INDEX ON t USING hnsw (v);
CREATE INDEX t_l2 ON t USING hnsw (v vector_l2_ops) WITH (m = 4, ef_construction = 8);
SELECT reloptions FROM pg_class WHERE relname = 't_l2';

-- the planner uses the index for ORDER BY distance LIMIT, and only then
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM t ORDER BY v <-> '[1,1,1]' LIMIT 3;
EXPLAIN (COSTS OFF) SELECT id FROM t WHERE v = '[1,1,1]';
EXPLAIN (COSTS OFF) SELECT id FROM t ORDER BY v <=> '[1,1,1]' LIMIT 3;
-- NULL rows are not indexed (ties in any order: the build links on several threads)
SELECT * FROM (SELECT id, v <-> '[1,1,1]' AS d FROM t ORDER BY v <-> '[1,1,1]' LIMIT 10) s ORDER BY d, id;
-- a NULL query folds to ORDER BY NULL: no index needed, every row in any order
EXPLAIN (COSTS OFF) SELECT id FROM t ORDER BY v <-> NULL LIMIT 10;
SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> NULL LIMIT 10) s;
-- dimension mismatch between the query and the index
SELECT id FROM t ORDER BY v <-> '[1,1]' LIMIT 1;
-- inserts after the build, and ef_search
INSERT INTO t VALUES (7, '[1,1,1.5]'), (8, NULL);
SELECT id FROM t ORDER BY v <-> '[1,1,1.4]' LIMIT 3;
-- a scan goes on past ef_search when the executor wants more rows (hnsw.iterative_scan),
-- or stops there when told to
SET hnsw.ef_search = 1;
SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> '[1,1,1.4]' LIMIT 5) s;
SET hnsw.iterative_scan = off;
SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> '[1,1,1.4]' LIMIT 5) s;
SET hnsw.iterative_scan = foo;
RESET hnsw.iterative_scan;
SHOW hnsw.iterative_scan;
SET hnsw.max_scan_tuples = 2;
SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> '[1,1,1.4]' LIMIT 5) s;
RESET hnsw.max_scan_tuples;
-- and stops when its walk holds more than work_mem x hnsw.scan_mem_multiplier (pgvector's
-- setting): 10 rows in 5000 pass the filter, far from the query in 32 dimensions, so the walk
-- holds more than 64kB before it finds them
CREATE TABLE tm (id int, v vector(32));
SELECT setseed(0.5);
INSERT INTO tm SELECT i, (SELECT array_agg(random()) FROM generate_series(1, 32) d WHERE i > 0) FROM generate_series(1, 5000) i;
CREATE INDEX ON tm USING hnsw (v vector_l2_ops);
SET enable_seqscan = off;
SET hnsw.iterative_scan = relaxed_order;
SET hnsw.ef_search = 40;
SET work_mem = '64kB';
SELECT count(*) < 10 AS stopped_early FROM (SELECT id FROM tm WHERE id % 500 = 0 ORDER BY v <-> (SELECT v FROM tm WHERE id = 1) LIMIT 10) s;
SET hnsw.scan_mem_multiplier = 1000;
SELECT count(*) AS found FROM (SELECT id FROM tm WHERE id % 500 = 0 ORDER BY v <-> (SELECT v FROM tm WHERE id = 1) LIMIT 10) s;
SET hnsw.scan_mem_multiplier = 0;
SET hnsw.scan_mem_multiplier = 1001;
RESET hnsw.scan_mem_multiplier;
SHOW hnsw.scan_mem_multiplier;
RESET work_mem;
RESET hnsw.iterative_scan;
RESET enable_seqscan;
SET hnsw.ef_search = 1;
DROP TABLE tm;
SET hnsw.ef_search = 0;
SET hnsw.ef_search = 1001;
BEGIN;
SET LOCAL hnsw.ef_search = 2;
SHOW hnsw.ef_search;
COMMIT;
SHOW hnsw.ef_search;
RESET hnsw.ef_search;
SHOW hnsw.ef_search;
SET hnsw.ef_search = 100;
-- deleted rows are never returned after VACUUM, and the scan still finds the live ones
DELETE FROM t WHERE id IN (1, 3);
VACUUM t;
SELECT id FROM t ORDER BY v <-> '[1,1,1.1]' LIMIT 3;
DROP INDEX t_l2;

-- cosine: zero vectors are not indexed (no direction); a zero query has no order either, so
-- the scan returns every indexed row (in physical order), as a sort by NaN would
CREATE INDEX t_cos ON t USING hnsw (v vector_cosine_ops);
SELECT id, round((v <=> '[1,1,1]')::numeric, 6) AS d FROM t ORDER BY v <=> '[1,1,1]' LIMIT 10;
SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM t ORDER BY v <=> '[0,0,0]' LIMIT 10) s;
SELECT count(*) FROM (SELECT id FROM t ORDER BY v <=> '[0,0,0]' LIMIT 10) s;
DROP INDEX t_cos;

-- every operator class returns the exact order on a small table
CREATE TABLE s (id int, v vector(4), h halfvec(4));
INSERT INTO s SELECT i, ARRAY[sin(i), cos(i), sin(2 * i), cos(3 * i) + 1.5], ARRAY[sin(i), cos(i), sin(2 * i), cos(3 * i) + 1.5]
FROM generate_series(1, 60) i;
CREATE FUNCTION check_order(opclass text, col text, op text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    q text := '[0.3,-0.2,0.5,1.1]';
    got int[];
    want int[];
BEGIN
    EXECUTE format('CREATE INDEX s_idx ON s USING hnsw (%I %s)', col, opclass);
    SET LOCAL enable_seqscan = off;
    -- ids in (distance, id) order, so that ties cannot make equal answers look different
    EXECUTE format('SELECT array_agg(id ORDER BY d, id) FROM (SELECT id, %I %s %L AS d FROM s ORDER BY %I %s %L LIMIT 10) x', col, op, q, col, op, q) INTO got;
    SET LOCAL enable_indexscan = off;
    SET LOCAL enable_seqscan = on;
    EXECUTE format('SELECT array_agg(id ORDER BY d, id) FROM (SELECT id, %I %s %L AS d FROM s ORDER BY %I %s %L LIMIT 10) x', col, op, q, col, op, q) INTO want;
    RESET enable_indexscan;
    EXECUTE 'DROP INDEX s_idx';
    RETURN CASE WHEN got = want THEN 'ok' ELSE format('got %s want %s', got, want) END;
END $$;
SELECT opclass, check_order(opclass, col, op) FROM (VALUES
    ('vector_l2_ops', 'v', '<->'), ('vector_ip_ops', 'v', '<#>'), ('vector_cosine_ops', 'v', '<=>'), ('vector_l1_ops', 'v', '<+>'),
    ('halfvec_l2_ops', 'h', '<->'), ('halfvec_ip_ops', 'h', '<#>'), ('halfvec_cosine_ops', 'h', '<=>'), ('halfvec_l1_ops', 'h', '<+>')
) c(opclass, col, op);
-- an operator of another opclass cannot use the index
CREATE INDEX s_l2 ON s USING hnsw (v vector_l2_ops);
EXPLAIN (COSTS OFF) SELECT id FROM s ORDER BY v <=> '[1,0,0,0]' LIMIT 1;
DROP INDEX s_l2;
-- an expression index with a typmod cast
CREATE INDEX s_expr ON s USING hnsw ((v::halfvec(4)) halfvec_l2_ops);
EXPLAIN (COSTS OFF) SELECT id FROM s ORDER BY v::halfvec(4) <-> '[1,0,0,0]' LIMIT 1;
SELECT id FROM s ORDER BY v::halfvec(4) <-> '[1,0,0,0]' LIMIT 3;
DROP INDEX s_expr;

-- dimension limits
CREATE TABLE big (v vector(2001));
CREATE INDEX ON big USING hnsw (v vector_l2_ops);
CREATE TABLE bigh (v halfvec(4001));
CREATE INDEX ON bigh USING hnsw (v halfvec_l2_ops);
CREATE TABLE okh (v halfvec(4000));
CREATE INDEX okh_idx ON okh USING hnsw (v halfvec_l2_ops);
INSERT INTO okh SELECT array_fill(i, ARRAY[4000])::halfvec FROM generate_series(1, 3) i;
SELECT v <-> array_fill(2, ARRAY[4000])::halfvec AS d FROM okh ORDER BY v <-> array_fill(2, ARRAY[4000])::halfvec LIMIT 1;
CREATE TABLE untyped (v vector);
CREATE INDEX untyped_idx ON untyped USING hnsw (v vector_l2_ops);
INSERT INTO untyped VALUES ('[1,2,3]');
INSERT INTO untyped VALUES ('[1,2]');
INSERT INTO untyped SELECT array_fill(1, ARRAY[2001])::vector;
SELECT v FROM untyped ORDER BY v <-> '[1,2,3]' LIMIT 1;

-- empty tables, TRUNCATE, REINDEX, CONCURRENTLY, unlogged tables
CREATE TABLE e (id int, v vector(3));
CREATE INDEX e_idx ON e USING hnsw (v vector_l2_ops);
SELECT id FROM e ORDER BY v <-> '[1,2,3]' LIMIT 1;
INSERT INTO e VALUES (1, '[1,2,3]'), (2, '[3,2,1]');
SELECT id FROM e ORDER BY v <-> '[1,2,3]' LIMIT 2;
TRUNCATE e;
SELECT id FROM e ORDER BY v <-> '[1,2,3]' LIMIT 1;
INSERT INTO e SELECT i, ARRAY[i, i, i] FROM generate_series(1, 20) i;
REINDEX INDEX e_idx;
SELECT id FROM e ORDER BY v <-> '[5,5,5]' LIMIT 3;
DROP INDEX e_idx;
CREATE INDEX CONCURRENTLY e_idx ON e USING hnsw (v vector_l2_ops);
SELECT id FROM e ORDER BY v <-> '[5,5,5]' LIMIT 3;
REINDEX INDEX CONCURRENTLY e_idx;
SELECT id FROM e ORDER BY v <-> '[5,5,5]' LIMIT 3;
CREATE UNLOGGED TABLE u (id int, v vector(3));
INSERT INTO u SELECT i, ARRAY[i, i, i] FROM generate_series(1, 20) i;
CREATE INDEX u_idx ON u USING hnsw (v vector_l2_ops);
SELECT id FROM u ORDER BY v <-> '[5,5,5]' LIMIT 3;
CREATE TEMP TABLE tmp (id int, v vector(3));
INSERT INTO tmp SELECT i, ARRAY[i, i, i] FROM generate_series(1, 20) i;
CREATE INDEX tmp_idx ON tmp USING hnsw (v vector_l2_ops);
SELECT id FROM tmp ORDER BY v <-> '[5,5,5]' LIMIT 3;

-- access method properties
SELECT amname, amtype FROM pg_am WHERE amname = 'hnsw';
SELECT opcname FROM pg_opclass WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'hnsw') ORDER BY 1;
