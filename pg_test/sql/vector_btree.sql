-- vector: comparison operators and the default btree operator class (ORDER BY, DISTINCT,
-- GROUP BY, UNIQUE, index scans). Vectors compare element by element, then by dimensions,
-- like Postgres arrays.
\set SHOW_CONTEXT never

SELECT '[1,2,3]'::vector < '[1,2,3]', '[1,2,3]'::vector <= '[1,2,3]', '[1,2,3]'::vector = '[1,2,3]',
       '[1,2,3]'::vector <> '[1,2,3]', '[1,2,3]'::vector >= '[1,2,3]', '[1,2,3]'::vector > '[1,2,3]';
SELECT '[1,2,3]'::vector < '[1,2]', '[1,2,3]'::vector <= '[1,2]', '[1,2,3]'::vector = '[1,2]',
       '[1,2,3]'::vector != '[1,2]', '[1,2,3]'::vector >= '[1,2]', '[1,2,3]'::vector > '[1,2]';
SELECT '[1,2]'::vector < '[2]', '[1,3]'::vector > '[1,2,9]', '[-0]'::vector = '[0]', '[1e-45]'::vector > '[0]';
SELECT vector_cmp('[1,2,3]', '[1,2,3]');
SELECT vector_cmp('[1,2,3]', '[0,0,0]');
SELECT vector_cmp('[0,0,0]', '[1,2,3]');
SELECT vector_cmp('[1,2]', '[1,2,3]');
SELECT vector_cmp('[1,2,3]', '[1,2]');
SELECT vector_cmp('[1,2]', '[2,3,4]');
SELECT vector_cmp('[2,3]', '[1,2,3]');
SELECT vector_cmp('[-0]', '[0]');
SELECT NULL::vector = '[1]' IS NULL AS is_null;

CREATE TABLE vector_btree_t (id int, v vector);
INSERT INTO vector_btree_t VALUES
    (1, '[1,2,3]'), (2, '[1,2]'), (3, '[0,5]'), (4, '[1,2,3]'), (5, '[-1]'), (6, '[1,2,3,0]'),
    (7, NULL), (8, '[0,5]'), (10, '[1e-45]'), (11, '[1,1.5]');
SELECT id, v FROM vector_btree_t ORDER BY v, id;
SELECT id, v FROM vector_btree_t ORDER BY v DESC NULLS LAST, id;
SELECT DISTINCT v FROM vector_btree_t ORDER BY v;
SELECT v, count(*), array_agg(id ORDER BY id) FROM vector_btree_t GROUP BY v ORDER BY v;
SELECT count(DISTINCT v) FROM vector_btree_t;
SELECT min(id), v FROM vector_btree_t WHERE v BETWEEN '[0]' AND '[1,2]' GROUP BY v ORDER BY v;
-- hash aggregation is not available (no hash opclass), sort-based grouping is used
EXPLAIN (COSTS OFF) SELECT DISTINCT v FROM vector_btree_t;

-- UNIQUE index
DELETE FROM vector_btree_t WHERE id = 4;
CREATE UNIQUE INDEX vector_btree_unique ON vector_btree_t (v);
DELETE FROM vector_btree_t WHERE id = 8;
CREATE UNIQUE INDEX vector_btree_unique ON vector_btree_t (v);
INSERT INTO vector_btree_t VALUES (12, '[1,2,3]');
-- -0 equals 0
INSERT INTO vector_btree_t VALUES (12, '[-0,5]');
INSERT INTO vector_btree_t VALUES (12, '[1,2,3,0,0]');
INSERT INTO vector_btree_t VALUES (13, NULL);
INSERT INTO vector_btree_t VALUES (14, '[1,2,3]') ON CONFLICT (v) DO NOTHING;
INSERT INTO vector_btree_t VALUES (14, '[1,2,3]') ON CONFLICT (v) DO UPDATE SET id = 100 + excluded.id;
SELECT id, v FROM vector_btree_t ORDER BY v, id;

-- index scans
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM vector_btree_t WHERE v = '[1,2,3]';
SELECT id FROM vector_btree_t WHERE v = '[1,2,3]';
EXPLAIN (COSTS OFF) SELECT id, v FROM vector_btree_t WHERE v < '[1,2]' ORDER BY v;
SELECT id, v FROM vector_btree_t WHERE v < '[1,2]' ORDER BY v;
SELECT id, v FROM vector_btree_t WHERE v >= '[1,2]' AND v <= '[1,2,3,0]' ORDER BY v DESC;
EXPLAIN (COSTS OFF) SELECT v FROM vector_btree_t ORDER BY v LIMIT 3;
SELECT v FROM vector_btree_t ORDER BY v LIMIT 3;
RESET enable_seqscan;
RESET enable_bitmapscan;

-- a bigger index, checked against the sort order of the equivalent real[] arrays
CREATE TABLE vector_btree_big AS
SELECT i, ARRAY[(i * 7919) % 101, (i * 104729) % 13, i % 3]::vector AS v FROM generate_series(1, 5000) i;
CREATE INDEX ON vector_btree_big (v);
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM vector_btree_big WHERE v < '[50,6,1]';
SELECT count(*) FROM vector_btree_big WHERE v = '[1,1,1]';
SELECT count(*), count(*) = (SELECT count(*) FROM vector_btree_big WHERE v::real[] < '{50,6,1}') AS same
FROM vector_btree_big WHERE v < '[50,6,1]';
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT bool_and(a.v <= b.v) AS sorted FROM
    (SELECT v, row_number() OVER (ORDER BY v, i) AS r FROM vector_btree_big) a JOIN
    (SELECT v, row_number() OVER (ORDER BY v, i) AS r FROM vector_btree_big) b ON b.r = a.r + 1;
SELECT array_agg(i ORDER BY v, i) = array_agg(i ORDER BY v::real[], i) AS same_order FROM vector_btree_big;

-- equality join (sum of the squared group sizes)
SELECT count(*) FROM vector_btree_big a JOIN vector_btree_big b USING (v);

DROP TABLE vector_btree_t, vector_btree_big;
