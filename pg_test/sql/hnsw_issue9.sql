-- Regression tests for issue 9 (wrong answers found in review).

-- 1. Array conditions with no non-NULL element match nothing (`op ANY('{}')` is false,
-- `op ANY('{NULL}')` is NULL), `&&` an empty array is false, `@>` an empty array is true.
-- Every key type, every filter_strategy, against a sequential scan.
CREATE TABLE i9 (id int, v vector(3), i int4, b int8, s int2, f bool, d date, ts timestamptz,
                 t text, u uuid, ia int4[], la int8[], ta text[]);
INSERT INTO i9
SELECT g, ARRAY[g % 7, g % 5, g % 3]::vector, g % 10, g % 10, (g % 10)::int2, g % 2 = 0,
       date '2024-01-01' + g % 10, timestamptz '2024-01-01 00:00+00' + (g % 10) * interval '1 day',
       'tag' || (g % 10), md5((g % 10)::text)::uuid,
       CASE WHEN g % 9 = 0 THEN '{}' WHEN g % 9 = 1 THEN '{NULL}' ELSE ARRAY[g % 10, NULL] END,
       CASE WHEN g % 9 = 0 THEN '{}' ELSE ARRAY[(g % 10)::int8] END,
       CASE WHEN g % 9 = 0 THEN '{}' ELSE ARRAY['w' || (g % 10)] END
FROM generate_series(1, 300) g;
INSERT INTO i9 (id, v) VALUES (301, '[1,1,1]');
CREATE INDEX i9_scalar ON i9 USING hnsw (v vector_l2_ops, i, b, s, f, d, ts, t, u);
CREATE INDEX i9_arrays ON i9 USING hnsw (v vector_l2_ops, ia, la, ta);
ANALYZE i9;
-- The rows a query returns through the index and through a sequential scan, and whether the
-- index was used.
CREATE FUNCTION i9_compare(cond text, strategy text, lim int DEFAULT 400)
RETURNS TABLE (via_index boolean, idx int[], seq int[]) LANGUAGE plpgsql AS $$
DECLARE q text := 'SELECT id FROM i9 WHERE ' || cond || ' ORDER BY v <-> ''[1,2,1]'' LIMIT ' || lim;
        plan text;
BEGIN
    PERFORM set_config('hnsw.filter_strategy', strategy, true);
    PERFORM set_config('hnsw.ef_search', '400', true);
    PERFORM set_config('enable_seqscan', 'off', true);
    PERFORM set_config('enable_indexscan', 'on', true);
    via_index := false;
    FOR plan IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        via_index := via_index OR plan ~ 'Index Scan using i9_';
    END LOOP;
    EXECUTE 'SELECT array_agg(id ORDER BY id) FROM (' || q || ') s' INTO idx;
    PERFORM set_config('enable_indexscan', 'off', true);
    PERFORM set_config('enable_seqscan', 'on', true);
    EXECUTE 'SELECT array_agg(id ORDER BY id) FROM (' || q || ') s' INTO seq;
    PERFORM set_config('enable_indexscan', 'on', true);
    PERFORM set_config('enable_seqscan', 'off', true);
    RETURN NEXT;
END $$;
CREATE TEMP TABLE i9_conds (cond text);
INSERT INTO i9_conds VALUES
    ($$i = ANY('{}')$$), ($$i <> ANY('{}')$$), ($$i < ANY('{}')$$), ($$i >= ANY('{NULL}')$$),
    ($$i = ANY(ARRAY[NULL]::int[])$$), ($$i <> ANY(ARRAY[NULL]::int[])$$), ($$i IN (NULL, NULL)$$),
    ($$i = ANY('{3,NULL}')$$), ($$i <> ANY('{3,NULL}')$$), ($$i > ANY('{NULL,7}')$$),
    ($$b = ANY('{}')$$), ($$b <> ANY('{NULL}')$$), ($$b = ANY('{2,NULL}'::int8[])$$),
    ($$s = ANY('{}')$$), ($$s <> ANY('{}'::int8[])$$), ($$s < ANY('{NULL,4}'::int4[])$$),
    ($$f = ANY('{}')$$), ($$f <> ANY('{NULL}')$$), ($$f = ANY('{true,NULL}')$$),
    ($$d = ANY('{}')$$), ($$d <> ANY('{NULL}')$$), ($$d IN ('2024-01-03', NULL)$$),
    ($$ts = ANY('{}')$$), ($$ts > ANY('{NULL}')$$), ($$ts <> ANY('{2024-01-02 00:00+00,NULL}')$$),
    ($$t = ANY('{}')$$), ($$t <> ANY('{}'::text[])$$), ($$t < ANY('{}')$$), ($$t = ANY('{NULL}')$$),
    ($$t <> ANY(ARRAY[NULL]::text[])$$), ($$t IN (NULL, NULL)$$), ($$t = ANY('{tag3,NULL}')$$),
    ($$t <> ANY('{tag3,NULL}')$$), ($$t > ANY('{NULL,tag7}')$$),
    ($$u = ANY('{}')$$), ($$u <> ANY('{}')$$), ($$u = ANY('{NULL}')$$),
    ($$u = ANY(ARRAY[md5('4')::uuid, NULL])$$), ($$u <> ANY(ARRAY[md5('4')::uuid, NULL])$$),
    ($$ia && '{}'$$), ($$ia @> '{}'$$), ($$ia && '{NULL}'$$), ($$ia @> '{NULL}'$$),
    ($$ia && '{3,NULL}'$$), ($$ia @> '{3,NULL}'$$), ($$ia @> '{3}'$$),
    ($$la && '{}'$$), ($$la @> '{}'$$), ($$la && '{NULL}'$$), ($$la @> '{4}'$$),
    ($$ta && '{}'$$), ($$ta @> '{}'$$), ($$ta @> '{NULL}'$$), ($$ta && '{w5,NULL}'$$),
    ($$ia @> '{}' AND ta && '{w1,w2}'$$);
-- Every condition is an index condition, and the index returns exactly the sequential scan's
-- rows (all of them: LIMIT and ef_search are above the table's size).
SELECT cond, strategy, via_index, idx, seq
FROM i9_conds, unnest('{auto,graph,exact}'::text[]) strategy, i9_compare(cond, strategy)
WHERE NOT via_index OR idx IS DISTINCT FROM seq;
-- The conditions that match nothing, and those that match something: both kinds are here.
SELECT count(*) FILTER (WHERE seq IS NULL) AS empty, count(*) FILTER (WHERE seq IS NOT NULL) AS nonempty
FROM i9_conds, i9_compare(cond, 'exact');
-- The query of the report.
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM i9 WHERE t <> ANY('{}'::text[]) ORDER BY v <-> '[0,0,0]' LIMIT 5) s;
RESET enable_seqscan;
DROP TABLE i9;

-- 2. A VACUUM that deletes the entry point picks a new one among every live element, also one
-- whose only live row is in its TID list (equal vectors share an element; the first three
-- rows are kept in the element, more in TID lists).
CREATE TABLE i9e (id int, v vector(2));
INSERT INTO i9e SELECT g, ARRAY[g, g]::vector FROM generate_series(1, 20) g WHERE g <> 5;
INSERT INTO i9e SELECT 100 + g, '[5,5]' FROM generate_series(1, 4) g;
CREATE INDEX i9e_idx ON i9e USING hnsw (v vector_l2_ops);
DELETE FROM i9e WHERE id < 104;
VACUUM i9e;
SET enable_seqscan = off;
SELECT id FROM i9e ORDER BY v <-> '[5,5]' LIMIT 1;
SELECT id FROM i9e ORDER BY v <-> '[1,1]' LIMIT 5;
SET hnsw.filter_strategy = exact;
SELECT id FROM i9e ORDER BY v <-> '[5,5]' LIMIT 1;
RESET hnsw.filter_strategy;
RESET enable_seqscan;
SELECT hnsw_index_check('i9e_idx') ~ 'OK$' AS ok;
-- The same with a filter column, searched with every strategy.
CREATE TABLE i9f (id int, v vector(2), c int);
INSERT INTO i9f SELECT g, ARRAY[g, g]::vector, 1 FROM generate_series(1, 20) g WHERE g <> 5;
INSERT INTO i9f SELECT 100 + g, '[5,5]', 1 FROM generate_series(1, 4) g;
CREATE INDEX i9f_idx ON i9f USING hnsw (v vector_l2_ops, c);
DELETE FROM i9f WHERE id < 104;
VACUUM i9f;
SET enable_seqscan = off;
SET hnsw.filter_strategy = graph;
SELECT id FROM i9f WHERE c = 1 ORDER BY v <-> '[5,5]' LIMIT 1;
SET hnsw.filter_strategy = auto;
SELECT id FROM i9f WHERE c = 1 ORDER BY v <-> '[5,5]' LIMIT 1;
SET hnsw.filter_strategy = exact;
SELECT id FROM i9f WHERE c = 1 ORDER BY v <-> '[5,5]' LIMIT 1;
RESET hnsw.filter_strategy;
RESET enable_seqscan;
SELECT hnsw_index_check('i9f_idx') ~ 'OK$' AS ok;
DROP TABLE i9e, i9f;

-- 4. Cosine: norms are computed in double precision, so huge and tiny vectors keep their
-- direction (in the index and in the SQL functions), and the index agrees with a seq scan.
SELECT round(cosine_distance('[1e20,1e20,0]'::vector, '[1,1,0]')::numeric, 6) AS huge,
       round(cosine_distance('[1e-30,1e-30,0]'::vector, '[1,1,0]')::numeric, 6) AS tiny,
       round(cosine_distance('[1e-30,2e-30,0]'::vector, '[1e20,1e20,0]')::numeric, 6) AS both,
       cosine_distance('[0,0,0]'::vector, '[1,1,0]') AS zero;
SELECT vector_norm('[3e20,4e20]') AS huge_norm, vector_norm('[3e-30,4e-30]') AS tiny_norm;
SELECT l2_normalize('[3e20,4e20]'::vector) AS huge_unit, l2_normalize('[3e-30,4e-30]'::vector) AS tiny_unit;
CREATE TABLE i9c (id int, v vector(3));
INSERT INTO i9c VALUES (1, '[1e20,1e20,0]'), (2, '[1e-30,2e-30,0]'), (3, '[1,0,0]'), (4, '[-1,0,0]'),
    (5, '[3e38,0,3e38]'), (6, '[0,3e-40,1e-40]'), (7, '[0,0,0]');
CREATE INDEX i9c_idx ON i9c USING hnsw (v vector_cosine_ops);
SELECT id, round((v <=> '[1,1,0]')::numeric, 4) AS dist FROM i9c ORDER BY v <=> '[1,1,0]', id;
SET enable_seqscan = off;
SELECT id FROM i9c ORDER BY v <=> '[1,1,0]' LIMIT 6;
SELECT id FROM i9c ORDER BY v <=> '[1e-30,1e-30,0]' LIMIT 1;
RESET enable_seqscan;
SELECT hnsw_index_check('i9c_idx') ~ '6 elements .*OK$' AS ok;
DROP TABLE i9c;

-- 6. hnsw_index_check: revoked from PUBLIC, and only for owners of the table (or roles with
-- the privileges of pg_read_all_stats).
CREATE ROLE regress_hnsw_i9;
CREATE TABLE i9p (v vector(2));
INSERT INTO i9p VALUES ('[1,2]'), ('[3,4]');
CREATE INDEX i9p_idx ON i9p USING hnsw (v vector_l2_ops);
SET ROLE regress_hnsw_i9;
SELECT hnsw_index_check('i9p_idx');
RESET ROLE;
GRANT EXECUTE ON FUNCTION hnsw_index_check(regclass) TO regress_hnsw_i9;
SET ROLE regress_hnsw_i9;
SELECT hnsw_index_check('i9p_idx');
RESET ROLE;
ALTER TABLE i9p OWNER TO regress_hnsw_i9;
SET ROLE regress_hnsw_i9;
SELECT hnsw_index_check('i9p_idx') ~ 'OK$' AS ok;
RESET ROLE;
ALTER TABLE i9p OWNER TO CURRENT_USER;
GRANT pg_read_all_stats TO regress_hnsw_i9;
SET ROLE regress_hnsw_i9;
SELECT hnsw_index_check('i9p_idx') ~ 'OK$' AS ok;
RESET ROLE;
DROP TABLE i9p;
REVOKE EXECUTE ON FUNCTION hnsw_index_check(regclass) FROM regress_hnsw_i9;
DROP ROLE regress_hnsw_i9;
