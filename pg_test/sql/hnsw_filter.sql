-- Filter columns: key columns after the vector, answered inside the index scan.
SET hnsw.filter_strategy = exact;
SET enable_seqscan = off;
CREATE TABLE items (id int, v vector(3), cat int, big int8, small int2, flag bool, day date,
                    at timestamptz, tag text, u uuid, labels int4[], words text[]);
INSERT INTO items
SELECT i, ARRAY[i % 17, i % 13, i % 7]::vector, i % 10, i * 1000000000::int8, (i % 5)::int2, i % 2 = 0,
       date '2024-01-01' + i % 30, timestamptz '2024-01-01 00:00+00' + i * interval '1 hour',
       'tag' || (i % 7), md5((i % 4)::text)::uuid, ARRAY[i % 20, 100 + i % 50], ARRAY['w' || (i % 3), 'x' || (i % 5)]
FROM generate_series(1, 1000) i;
INSERT INTO items VALUES (1001, '[1,1,1]', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE INDEX items_filter_idx ON items USING hnsw (v vector_l2_ops, cat, big, small, flag, day, at, tag, u);
CREATE INDEX items_labels_idx ON items USING hnsw (v vector_l2_ops, labels, words);
ANALYZE items;
SELECT hnsw_index_check('items_filter_idx') ~ 'OK$' AS ok;
SELECT hnsw_index_check('items_labels_idx') ~ 'OK$' AS ok;

-- Every operator is an index condition; the results equal a sequential scan's.
CREATE FUNCTION same_as_seqscan(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE a int[]; b int[]; plan text;
BEGIN
    EXECUTE 'EXPLAIN (COSTS OFF) ' || q INTO plan;
    EXECUTE 'SELECT array_agg(id) FROM (' || q || ') s' INTO a;
    SET LOCAL enable_indexscan = off; SET LOCAL enable_seqscan = on;
    EXECUTE 'SELECT array_agg(id) FROM (' || q || ') s' INTO b;
    SET LOCAL enable_indexscan = on; SET LOCAL enable_seqscan = off;
    RETURN CASE WHEN a IS NOT DISTINCT FROM b THEN 'same ' || coalesce(array_length(a, 1), 0) || ' rows'
                ELSE 'DIFFERENT: ' || a::text || ' vs ' || b::text END;
END $$;
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE cat = 3 ORDER BY v <-> '[3,3,3]' LIMIT 5;
SELECT same_as_seqscan($$SELECT id FROM items WHERE cat = 3 ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE cat IN (1, 2) AND tag = 'tag3' ORDER BY v <-> '[3,3,3]' LIMIT 5;
SELECT same_as_seqscan($$SELECT id FROM items WHERE cat IN (1, 2) AND tag = 'tag3' ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE cat <> 3 AND cat < 7 AND cat >= 2::int8 ORDER BY v <-> '[3,3,3]' LIMIT 5;
SELECT same_as_seqscan($$SELECT id FROM items WHERE cat <> 3 AND cat < 7 AND cat >= 2::int8 ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
SELECT same_as_seqscan($$SELECT id FROM items WHERE big > 500000000000 AND small <= 1 ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
SELECT same_as_seqscan($$SELECT id FROM items WHERE small = ANY('{1,3}'::int8[]) ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
SELECT same_as_seqscan($$SELECT id FROM items WHERE cat > ANY('{7,8}') ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
SELECT same_as_seqscan($$SELECT id FROM items WHERE flag = false AND day = '2024-01-05' ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
SELECT same_as_seqscan($$SELECT id FROM items WHERE at < '2024-01-02 00:00+00' ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
SELECT same_as_seqscan($$SELECT id FROM items WHERE tag > 'tag4' ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
SELECT same_as_seqscan($$SELECT id FROM items WHERE tag IN ('tag1', 'tag6') ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
SELECT same_as_seqscan($$SELECT id FROM items WHERE u = md5('2')::uuid ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE labels && '{5}' ORDER BY v <-> '[3,3,3]' LIMIT 5;
SELECT same_as_seqscan($$SELECT id FROM items WHERE labels && '{5,7}' ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
SELECT same_as_seqscan($$SELECT id FROM items WHERE labels @> '{5,105}' ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
SELECT same_as_seqscan($$SELECT id FROM items WHERE words @> '{w1,x2}' AND labels && '{1,2,3}' ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
-- No row matches: nothing comes back, also from the graph walk.
SELECT same_as_seqscan($$SELECT id FROM items WHERE cat = 42 ORDER BY v <-> '[3,3,3]', id LIMIT 5$$);
SET hnsw.filter_strategy = graph;
SELECT count(*) FROM (SELECT id FROM items WHERE cat = 42 ORDER BY v <-> '[3,3,3]' LIMIT 5) s;
-- A NULL filter value never matches; IS NULL is no index condition (a Filter).
SELECT count(*) FROM (SELECT id FROM items WHERE cat = NULL ORDER BY v <-> '[1,1,1]' LIMIT 5) s;
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE cat IS NULL ORDER BY v <-> '[1,1,1]' LIMIT 5;
SELECT id FROM items WHERE cat IS NULL ORDER BY v <-> '[1,1,1]' LIMIT 5;
-- Without ORDER BY the filter still applies (an unordered index scan, forced).
SET hnsw.filter_strategy = auto;
SELECT count(*) FROM items WHERE cat = 3 AND tag = 'tag1';
RESET enable_seqscan;

-- Inserts, deletes and VACUUM keep the filter values right.
UPDATE items SET cat = 42 WHERE id IN (7, 8);
SET enable_seqscan = off;
SELECT id, cat FROM items WHERE cat = 42 ORDER BY v <-> '[3,3,3]' LIMIT 5;
DELETE FROM items WHERE cat = 3;
VACUUM items;
SELECT count(*) FROM (SELECT id FROM items WHERE cat = 3 ORDER BY v <-> '[3,3,3]' LIMIT 5) s;
INSERT INTO items (id, v, cat, tag) SELECT 2000 + i, ARRAY[i, i, i]::vector, 3, 'new' FROM generate_series(1, 20) i;
SELECT id FROM items WHERE cat = 3 AND tag = 'new' ORDER BY v <-> '[3,3,3]' LIMIT 3;
SELECT hnsw_index_check('items_filter_idx') ~ 'OK$' AS ok;
RESET enable_seqscan;

-- The planner weighs the filter's selectivity: a btree on the filter column (and a sort) when a
-- handful of rows match, the hnsw index when many do; a query without LIMIT never uses hnsw.
CREATE TABLE sel (id int, v vector(4), wide int, narrow int);
INSERT INTO sel SELECT i, ARRAY[i % 11, i % 13, i % 17, i % 19]::vector, i % 10, i % 2000 FROM generate_series(1, 20000) i;
CREATE INDEX sel_hnsw ON sel USING hnsw (v vector_l2_ops, wide, narrow);
CREATE INDEX sel_narrow ON sel (narrow);
CREATE INDEX sel_wide ON sel (wide);
ANALYZE sel;
EXPLAIN (COSTS OFF) SELECT id FROM sel WHERE narrow = 7 ORDER BY v <-> '[1,2,3,4]' LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM sel WHERE wide = 7 ORDER BY v <-> '[1,2,3,4]' LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM sel WHERE wide = 7 ORDER BY v <-> '[1,2,3,4]';
DROP TABLE sel;

-- Errors, each with its SQLSTATE.
CREATE INDEX ON items USING hnsw (cat, v vector_l2_ops);
\echo :LAST_ERROR_SQLSTATE
CREATE INDEX ON items USING hnsw (v vector_l2_ops, v);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE other (v vector(3), f float8, fa float8[], a int, b int, c int, d int, e int, g int, h int, i int);
CREATE INDEX ON other USING hnsw (v vector_l2_ops, f);
\echo :LAST_ERROR_SQLSTATE
CREATE INDEX ON other USING hnsw (v vector_l2_ops, fa);
\echo :LAST_ERROR_SQLSTATE
CREATE INDEX ON other USING hnsw (v vector_l2_ops, a, b, c, d, e, g, h, i, a);
\echo :LAST_ERROR_SQLSTATE
DROP TABLE other;
DROP TABLE items;
DROP FUNCTION same_as_seqscan(text);
