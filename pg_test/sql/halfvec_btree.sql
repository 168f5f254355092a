-- halfvec: comparison operators and the default btree operator class. Values are compared
-- after rounding to half, so inputs that round to the same half are equal.
\set SHOW_CONTEXT never

SELECT '[1,2,3]'::halfvec < '[1,2,3]', '[1,2,3]'::halfvec <= '[1,2,3]', '[1,2,3]'::halfvec = '[1,2,3]',
       '[1,2,3]'::halfvec <> '[1,2,3]', '[1,2,3]'::halfvec >= '[1,2,3]', '[1,2,3]'::halfvec > '[1,2,3]';
SELECT '[1,2,3]'::halfvec < '[1,2]', '[1,2,3]'::halfvec <= '[1,2]', '[1,2,3]'::halfvec = '[1,2]',
       '[1,2,3]'::halfvec != '[1,2]', '[1,2,3]'::halfvec >= '[1,2]', '[1,2,3]'::halfvec > '[1,2]';
SELECT '[0.1]'::halfvec = '[0.09997]', '[2048]'::halfvec = '[2049]', '[-0]'::halfvec = '[0]',
       '[6e-8]'::halfvec > '[0]', '[2e-8]'::halfvec > '[0]';
SELECT halfvec_cmp('[1,2,3]', '[1,2,3]');
SELECT halfvec_cmp('[1,2,3]', '[0,0,0]');
SELECT halfvec_cmp('[0,0,0]', '[1,2,3]');
SELECT halfvec_cmp('[1,2]', '[1,2,3]');
SELECT halfvec_cmp('[1,2,3]', '[1,2]');
SELECT halfvec_cmp('[1,2]', '[2,3,4]');
SELECT halfvec_cmp('[2,3]', '[1,2,3]');

CREATE TABLE halfvec_btree_t (id int, h halfvec);
INSERT INTO halfvec_btree_t VALUES
    (1, '[1,2,3]'), (2, '[1,2]'), (3, '[0.1,5]'), (4, '[1,2,3]'), (5, '[-1]'), (6, '[1,2,3,0]'),
    (7, NULL), (8, '[0.1,5]'), (10, '[6e-8]'), (11, '[1,1.5]');
SELECT id, h FROM halfvec_btree_t ORDER BY h, id;
SELECT id, h FROM halfvec_btree_t ORDER BY h DESC NULLS LAST, id;
SELECT DISTINCT h FROM halfvec_btree_t ORDER BY h;
SELECT h, count(*), array_agg(id ORDER BY id) FROM halfvec_btree_t GROUP BY h ORDER BY h;

-- UNIQUE index
DELETE FROM halfvec_btree_t WHERE id = 4;
CREATE UNIQUE INDEX halfvec_btree_unique ON halfvec_btree_t (h);
DELETE FROM halfvec_btree_t WHERE id = 8;
CREATE UNIQUE INDEX halfvec_btree_unique ON halfvec_btree_t (h);
INSERT INTO halfvec_btree_t VALUES (12, '[1,2,3]');
-- 0.09997 is the same half as 0.1
INSERT INTO halfvec_btree_t VALUES (12, '[0.09997,5]');
INSERT INTO halfvec_btree_t VALUES (12, '[0.09997,5.001]');
INSERT INTO halfvec_btree_t VALUES (12, '[0.09997,5.01]');
SELECT id, h FROM halfvec_btree_t ORDER BY h, id;

-- index scans
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM halfvec_btree_t WHERE h = '[1,2,3]';
SELECT id FROM halfvec_btree_t WHERE h = '[1,2,3]';
EXPLAIN (COSTS OFF) SELECT id, h FROM halfvec_btree_t WHERE h < '[1,2]' ORDER BY h;
SELECT id, h FROM halfvec_btree_t WHERE h < '[1,2]' ORDER BY h;
RESET enable_seqscan;
RESET enable_bitmapscan;

-- a bigger index, checked against the sort order of the equivalent real[] arrays
CREATE TABLE halfvec_btree_big AS
SELECT i, ARRAY[(i * 7919) % 101, (i * 104729) % 13, (i % 3) * 0.1]::halfvec AS h FROM generate_series(1, 5000) i;
CREATE INDEX ON halfvec_btree_big (h);
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*), count(*) = (SELECT count(*) FROM halfvec_btree_big WHERE h::real[] < '[50,6,0.1]'::halfvec::real[]) AS same
FROM halfvec_btree_big WHERE h < '[50,6,0.1]';
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT array_agg(i ORDER BY h, i) = array_agg(i ORDER BY h::real[], i) AS same_order FROM halfvec_btree_big;

DROP TABLE halfvec_btree_t, halfvec_btree_big;
