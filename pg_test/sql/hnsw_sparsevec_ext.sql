-- hnsw indexes on sparsevec beyond pgvector's hnsw_sparsevec file: the four operator classes
-- against exact scans, the 1,000 non-zeros limit, no quantization, NULL and zero vectors,
-- inserts after the build, VACUUM and the checker, a filter column.
\set SHOW_CONTEXT never

-- 400 vectors of 1 to 20 non-zeros spread over 100,000 dimensions (indices ascending:
-- the j-th in j*1000+1 .. j*1000+1000), a category for the filter column
CREATE TABLE spv (id int, v sparsevec(100000), cat int);
INSERT INTO spv SELECT i,
    ('{' || (SELECT string_agg((j * 1000 + (i * 7 + j * 13) % 1000 + 1)::text || ':' || ((i * j) % 7 + 1)::text, ',' ORDER BY j)
             FROM generate_series(1, 1 + i % 20) j) || '}/100000')::sparsevec,
    i % 4
FROM generate_series(1, 400) i;
INSERT INTO spv VALUES (0, '{}/100000', 0), (-1, NULL, 1);
CREATE TEMP TABLE q (n int, v sparsevec(100000));
INSERT INTO q VALUES (1, '{1001:1,2002:3,3003:2,5001:1,9999:4}/100000'), (2, '{1008:7,2034:1}/100000'), (3, '{99999:1}/100000');

-- Every class: the 10 nearest through the index have the distances an exact scan finds
-- (the same distance functions), for each query.
CREATE FUNCTION same_as_exact(op text) RETURNS TABLE (n int, same boolean) LANGUAGE plpgsql AS $$
DECLARE r record; got float8[]; want float8[];
BEGIN
    FOR r IN SELECT * FROM q ORDER BY q.n LOOP
        SET LOCAL enable_seqscan = off;
        EXECUTE format('SELECT array_agg(d) FROM (SELECT v %s $1 AS d FROM spv ORDER BY v %s $1 LIMIT 10) x', op, op) INTO got USING r.v;
        SET LOCAL enable_seqscan = on;
        SET LOCAL enable_indexscan = off;
        EXECUTE format('SELECT array_agg(d) FROM (SELECT v %s $1 AS d FROM spv WHERE v IS NOT NULL ORDER BY v %s $1 LIMIT 10) x', op, op) INTO want USING r.v;
        SET LOCAL enable_indexscan = on;
        n := r.n; same := got = want;
        RETURN NEXT;
    END LOOP;
END $$;

CREATE INDEX s_l2 ON spv USING hnsw (v sparsevec_l2_ops);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM spv ORDER BY v <-> '{1:1}/100000' LIMIT 5;
RESET enable_seqscan;
SELECT * FROM same_as_exact('<->');
-- the zero vector is indexed under L2 (it is the nearest to a query near the origin)
SET enable_seqscan = off;
SELECT id FROM spv ORDER BY v <-> '{99999:0.001}/100000' LIMIT 1;
-- NULL is not indexed: 401 rows through the index (relaxed order: strict order skips rows a
-- later round finds nearer than one already returned)
SET hnsw.iterative_scan = relaxed_order;
SELECT count(*) FROM (SELECT id FROM spv ORDER BY v <-> '{1:1}/100000') x;
RESET hnsw.iterative_scan;
-- a query of other dimensions: the operator's error
SELECT id FROM spv ORDER BY v <-> '{1:1}/3' LIMIT 1;
\echo :LAST_ERROR_SQLSTATE
RESET enable_seqscan;
DROP INDEX s_l2;

CREATE INDEX s_ip ON spv USING hnsw (v sparsevec_ip_ops);
SELECT * FROM same_as_exact('<#>');
DROP INDEX s_ip;

CREATE INDEX s_l1 ON spv USING hnsw (v sparsevec_l1_ops);
SELECT * FROM same_as_exact('<+>');
DROP INDEX s_l1;

-- cosine: the zero vector has no direction, so it is not indexed (as for vector_cosine_ops);
-- a zero query orders nothing and returns every indexed row
CREATE INDEX s_cos ON spv USING hnsw (v sparsevec_cosine_ops);
SELECT * FROM same_as_exact('<=>');
SET enable_seqscan = off;
SET hnsw.iterative_scan = relaxed_order;
SELECT count(*), count(*) FILTER (WHERE id = 0) AS zero FROM (SELECT id FROM spv ORDER BY v <=> '{1:1}/100000') x;
SELECT count(*) FROM (SELECT id FROM spv ORDER BY v <=> '{}/100000') x;
RESET hnsw.iterative_scan;
RESET enable_seqscan;

-- inserts after the build (a new zero vector is left out again), then the same answers
INSERT INTO spv SELECT i,
    ('{' || (SELECT string_agg((j * 1000 + (i * 11 + j * 17) % 1000 + 1)::text || ':' || ((i + j) % 5 + 1)::text, ',' ORDER BY j)
             FROM generate_series(1, 1 + i % 30) j) || '}/100000')::sparsevec,
    i % 4
FROM generate_series(401, 600) i;
INSERT INTO spv VALUES (601, '{}/100000', 1);
SELECT * FROM same_as_exact('<=>');
-- DELETE and VACUUM: the checker finds the index sound, and scans still agree
DELETE FROM spv WHERE id % 3 = 0;
VACUUM spv;
SELECT hnsw_index_check('s_cos') ~ 'OK$' AS ok;
SELECT * FROM same_as_exact('<=>');
DROP INDEX s_cos;

-- a filter column: the rows of one category, nearest first, as an exact scan finds them
CREATE INDEX s_l2_cat ON spv USING hnsw (v sparsevec_l2_ops, cat);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM spv WHERE cat = 2 ORDER BY v <-> '{1001:1,2002:3}/100000' LIMIT 5;
CREATE TEMP TABLE got AS SELECT id, v <-> '{1001:1,2002:3}/100000' AS d FROM spv WHERE cat = 2 ORDER BY v <-> '{1001:1,2002:3}/100000' LIMIT 10;
RESET enable_seqscan;
SET enable_indexscan = off;
CREATE TEMP TABLE want AS SELECT id, v <-> '{1001:1,2002:3}/100000' AS d FROM spv WHERE cat = 2 ORDER BY v <-> '{1001:1,2002:3}/100000' LIMIT 10;
RESET enable_indexscan;
SELECT (SELECT array_agg(d ORDER BY d) FROM got) = (SELECT array_agg(d ORDER BY d) FROM want) AS same_distances,
       (SELECT bool_and(id % 4 = 2) FROM got) AS all_cat_2;
-- the exact filtered scan (it reads the bodies from the element pages) agrees too
SET hnsw.filter_strategy = exact;
SET enable_seqscan = off;
SELECT (SELECT array_agg(d) FROM (SELECT v <-> '{1001:1,2002:3}/100000' AS d FROM spv WHERE cat = 2
        ORDER BY v <-> '{1001:1,2002:3}/100000' LIMIT 10) x) = (SELECT array_agg(d ORDER BY d) FROM want) AS exact_same;
RESET enable_seqscan;
RESET hnsw.filter_strategy;
-- inserts into an index with a filter column reuse freed elements only where the body fits
DELETE FROM spv WHERE id % 5 = 0;
VACUUM spv;
INSERT INTO spv SELECT i,
    ('{' || (SELECT string_agg((j * 1000 + (i * 3 + j) % 1000 + 1)::text || ':1', ',' ORDER BY j)
             FROM generate_series(1, 1 + i % 40) j) || '}/100000')::sparsevec,
    i % 4
FROM generate_series(700, 760) i;
SELECT hnsw_index_check('s_l2_cat') ~ 'OK$' AS ok;
DROP INDEX s_l2_cat;

-- up to 1,000 non-zero elements are indexed; 1,001 is pgvector's error (54000), in a build
-- and in an insert
CREATE TABLE spv_big (v sparsevec(1001));
INSERT INTO spv_big VALUES ((array_fill(1, ARRAY[1000]) || 0)::vector::sparsevec);
CREATE INDEX big_idx ON spv_big USING hnsw (v sparsevec_l2_ops);
SELECT hnsw_index_check('big_idx') ~ 'OK$' AS ok;
INSERT INTO spv_big VALUES (array_fill(1, ARRAY[1001])::vector::sparsevec);
\echo :LAST_ERROR_SQLSTATE
SET enable_seqscan = off;
SELECT v <-> (array_fill(1, ARRAY[1001])::vector::sparsevec) AS d FROM spv_big ORDER BY v <-> (array_fill(1, ARRAY[1001])::vector::sparsevec);
RESET enable_seqscan;
DROP INDEX big_idx;
INSERT INTO spv_big VALUES (array_fill(2, ARRAY[1001])::vector::sparsevec);
CREATE INDEX big_idx ON spv_big USING hnsw (v sparsevec_ip_ops);
\echo :LAST_ERROR_SQLSTATE

-- no quantization on sparsevec (0A000); a column without dimensions cannot be indexed
CREATE INDEX ON spv USING hnsw (v sparsevec_l2_ops) WITH (quantization = 'sq8');
\echo :LAST_ERROR_SQLSTATE
CREATE INDEX ON spv USING hnsw (v sparsevec_ip_ops) WITH (quantization = 'rabitq1');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE spv_nodim (v sparsevec);
CREATE INDEX ON spv_nodim USING hnsw (v sparsevec_l2_ops);
\echo :LAST_ERROR_SQLSTATE

-- a billion dimensions: nothing is sized by them
CREATE TABLE spv_huge (v sparsevec(1000000000));
INSERT INTO spv_huge VALUES ('{1:1}/1000000000'), ('{999999999:2}/1000000000'), ('{1:1,1000000000:1}/1000000000');
CREATE INDEX huge_idx ON spv_huge USING hnsw (v sparsevec_l2_ops);
SET enable_seqscan = off;
SELECT v FROM spv_huge ORDER BY v <-> '{1000000000:1}/1000000000';
RESET enable_seqscan;
SELECT hnsw_index_check('huge_idx') ~ 'OK$' AS ok;

DROP TABLE spv, spv_big, spv_nodim, spv_huge;
DROP FUNCTION same_as_exact;
