-- bit: hamming_distance / <~> and jaccard_distance / <%> on Postgres's bit type
-- (pgvector's binary quantization), values that can be checked by hand.
\set SHOW_CONTEXT never

SELECT hamming_distance(B'101', B'011'), B'101' <~> B'011', B'101' <~> B'101';
SELECT jaccard_distance(B'1100', B'1000'), B'1100' <%> B'1000', B'1111' <%> B'1111';
-- nothing set in both: as far as Jaccard goes, even two strings of zeros (pgvector)
SELECT B'0000' <%> B'0000', B'1000' <%> B'0100', ''::bit varying <%> '';
SELECT hamming_distance('', '');
-- lengths around every kernel's word, block and tail boundaries
SELECT n, hamming_distance(a, b) AS hamming, jaccard_distance(a, b)::numeric(10, 8) AS jaccard,
       length(replace((a # b)::text, '0', '')) AS want_hamming
FROM (SELECT n,
             (SELECT string_agg(((i * 7) % 3 = 0)::int::text, '') FROM generate_series(1, n) i)::varbit AS a,
             (SELECT string_agg(((i * 5) % 4 = 1)::int::text, '') FROM generate_series(1, n) i)::varbit AS b
      FROM unnest(ARRAY[1, 7, 8, 9, 63, 64, 65, 511, 512, 513, 1000, 4100]) n) s
ORDER BY n;
-- bit varying arguments of the same length
SELECT hamming_distance('111', '000'::varbit(4)), jaccard_distance('1111', '0000'::varbit(5));
-- binary_quantize gives a bit(n) the operators take
SELECT binary_quantize('[1,-2,3]'::vector) <~> binary_quantize('[1,2,-3]'::vector);
SELECT binary_quantize('[1,-2,3]'::halfvec) <%> binary_quantize('[1,2,3]'::halfvec);
SELECT B'101' <~> NULL::bit, hamming_distance(NULL, B'1');

-- errors: different lengths (SQLSTATE 22000, pgvector's words)
SELECT hamming_distance('111', '00');
\echo :LAST_ERROR_SQLSTATE
SELECT B'1111' <%> B'000';
\echo :LAST_ERROR_SQLSTATE
SELECT hamming_distance('111', '0000'::varbit(4));

--
-- hnsw indexes on bit: bit_hamming_ops and bit_jaccard_ops
--
-- pgvector's binary-quantization recipe: an expression index on binary_quantize, re-ranked
-- by the full vectors. (The query literal needs its type: binary_quantize has a vector and a
-- halfvec overload, in pgvector too, so binary_quantize('[1,-2,3]') is ambiguous.)
CREATE TABLE items (id int PRIMARY KEY, embedding vector(3), category int);
INSERT INTO items SELECT i, ARRAY[sin(i), cos(i * 3), sin(i * 7) - 0.2]::vector, i % 4 FROM generate_series(1, 300) i;
CREATE INDEX items_bq ON items USING hnsw ((binary_quantize(embedding)::bit(3)) bit_hamming_ops);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT * FROM (SELECT * FROM items ORDER BY binary_quantize(embedding)::bit(3) <~> binary_quantize('[1,-2,3]'::vector) LIMIT 20) s
ORDER BY embedding <=> '[1,-2,3]' LIMIT 5;
-- 38 rows share the query's sign pattern, so which 20 come back is the walk's choice: the
-- re-ranked 5 are checked for their distances, not their ids
SELECT count(*), bool_and(binary_quantize(embedding) = binary_quantize('[1,-2,3]'::vector)) AS all_at_zero FROM (
    SELECT * FROM (SELECT * FROM items ORDER BY binary_quantize(embedding)::bit(3) <~> binary_quantize('[1,-2,3]'::vector) LIMIT 20) s
    ORDER BY embedding <=> '[1,-2,3]' LIMIT 5) r;
-- the 20 nearest by Hamming distance are all at distance 0 (the query's sign pattern)
SELECT count(*) FILTER (WHERE d = 0) AS at_zero, count(*) FROM (
    SELECT binary_quantize(embedding)::bit(3) <~> binary_quantize('[1,-2,3]'::vector) AS d FROM items
    ORDER BY binary_quantize(embedding)::bit(3) <~> binary_quantize('[1,-2,3]'::vector) LIMIT 20) s;
-- a query of another length: the operator's error
SELECT id FROM items ORDER BY binary_quantize(embedding)::bit(3) <~> B'1010' LIMIT 1;
\echo :LAST_ERROR_SQLSTATE
DROP INDEX items_bq;

-- jaccard, with a filter column: every row an exact scan finds, in the same order
CREATE TABLE b (id int, v bit(70), cat int);
INSERT INTO b SELECT i, (SELECT string_agg(((i * 7 + j * 13) % 5 < 2)::int::text, '') FROM generate_series(1, 70) j)::bit(70), i % 3
FROM generate_series(1, 500) i;
INSERT INTO b VALUES (0, NULL, 0);
CREATE INDEX b_j ON b USING hnsw (v bit_jaccard_ops, cat) WITH (m = 8, ef_construction = 32);
INSERT INTO b SELECT i, repeat('10', 35)::bit(70), i % 3 FROM generate_series(501, 520) i;
EXPLAIN (COSTS OFF) SELECT id FROM b WHERE cat = 1 ORDER BY v <%> repeat('1', 70)::bit(70) LIMIT 5;
CREATE TEMP TABLE got AS SELECT id, v <%> repeat('1', 70)::bit(70) AS d FROM b WHERE cat = 1 ORDER BY v <%> repeat('1', 70)::bit(70) LIMIT 10;
RESET enable_seqscan;
SET enable_indexscan = off;
CREATE TEMP TABLE want AS SELECT id, v <%> repeat('1', 70)::bit(70) AS d FROM b WHERE cat = 1 ORDER BY v <%> repeat('1', 70)::bit(70) LIMIT 10;
RESET enable_indexscan;
SELECT (SELECT array_agg(d ORDER BY d) FROM got) = (SELECT array_agg(d ORDER BY d) FROM want) AS same_distances;
-- VACUUM after deletes, then the checker
DELETE FROM b WHERE id % 3 = 0;
VACUUM b;
SELECT hnsw_index_check('b_j') LIKE '%OK' AS clean;
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM b ORDER BY v <~> repeat('1', 70)::bit(70) LIMIT 5) s;
SELECT count(*) FROM (SELECT id FROM b ORDER BY v <%> repeat('1', 70)::bit(70)) s;
RESET enable_seqscan;

-- refused: quantization, a bit string without a length, varbit, too many bits
CREATE INDEX ON b USING hnsw (v bit_hamming_ops) WITH (quantization = 'sq8');
\echo :LAST_ERROR_SQLSTATE
CREATE INDEX ON b USING hnsw (v bit_hamming_ops) WITH (quantization = 'rabitq1');
CREATE INDEX ON items USING hnsw (binary_quantize(embedding) bit_hamming_ops);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE vb (v varbit(8));
CREATE INDEX ON vb USING hnsw (v bit_hamming_ops);
\echo :LAST_ERROR_SQLSTATE
CREATE INDEX ON vb USING hnsw ((v::bit(64001)) bit_hamming_ops);
\echo :LAST_ERROR_SQLSTATE
DROP TABLE vb, b, items;
