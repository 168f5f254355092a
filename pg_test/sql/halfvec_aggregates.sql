-- halfvec: avg and sum aggregates, serial and parallel. avg accumulates in float8 and rounds
-- the mean to half once; sum adds halfvecs, rounding to half at every step.
\set SHOW_CONTEXT never

SELECT avg(h) FROM unnest(ARRAY['[1,2,3]'::halfvec, '[3,5,7]']) h;
SELECT sum(h) FROM unnest(ARRAY['[1,2,3]'::halfvec, '[3,5,7]']) h;
SELECT avg(h), sum(h) FROM unnest(ARRAY['[1,2,3]'::halfvec, NULL, '[3,5,7]']) h;
SELECT avg(h), sum(h) FROM unnest(ARRAY[]::halfvec[]) h;
SELECT avg(h) IS NULL AS avg_null, sum(h) IS NULL AS sum_null FROM unnest(ARRAY[NULL]::halfvec[]) h;
-- (0.0999755859375 + 0.199951171875) / 2 = 0.14996337890625 is a tie between two halves
SELECT avg(h), sum(h) FROM unnest(ARRAY['[0.1]'::halfvec, '[0.2]']) h;
SELECT avg(h) FROM unnest(ARRAY['[1]'::halfvec, '[2]', '[2]']) h;
SELECT avg(h) FROM unnest(ARRAY['[65504]'::halfvec, '[65504]']) h;
SELECT sum(h) FROM unnest(ARRAY['[65504]'::halfvec, '[65504]']) h;
-- 3000 times 1: the sum stops at 2048, where 2048 + 1 rounds back to 2048; the mean is exact
SELECT sum('[1]'::halfvec), avg('[1]'::halfvec) FROM generate_series(1, 3000);
SELECT avg(h) FROM unnest(ARRAY['[1,2]'::halfvec, '[3]']) h;
SELECT sum(h) FROM unnest(ARRAY['[1,2]'::halfvec, '[3]']) h;
SELECT vector_dims(avg(h)), vector_dims(sum(h))
FROM (SELECT array_fill(0.25::real, ARRAY[16000])::halfvec AS h FROM generate_series(1, 2)) t;
SELECT halfvec_accum('{0}', '[1,2,3]');
SELECT halfvec_accum('{1,0.5,0.25,0.125}', '[0.1,0.2,0.3]');
SELECT halfvec_accum('{1,2}', '[1,2,3]');
SELECT halfvec_accum('{}', '[1,2,3]');
SELECT halfvec_avg('{2,3,4}');
SELECT halfvec_avg('{0}') IS NULL AS is_null;

-- GROUP BY
CREATE TABLE halfvec_agg_t (g int, h halfvec(2));
INSERT INTO halfvec_agg_t VALUES (1, '[1,2]'), (1, '[3,4]'), (2, '[0.1,0.2]'), (2, NULL), (3, NULL);
SELECT g, avg(h), sum(h), count(h) FROM halfvec_agg_t GROUP BY g ORDER BY g;
DROP TABLE halfvec_agg_t;

--
-- parallel aggregation. The sums are kept small enough to be exact in half (so the order in
-- which workers add them does not matter): s has 50 ones and 10 halves.
--
CREATE TABLE halfvec_agg_p (i int, h halfvec(3), s halfvec(2));
INSERT INTO halfvec_agg_p
SELECT i, ARRAY[i % 7, i % 11, (i % 13) * 0.5], ARRAY[(i % 1000 = 0)::int, (i % 5000 = 0)::int * 0.5]
FROM generate_series(1, 50000) i;
ANALYZE halfvec_agg_p;
SET max_parallel_workers_per_gather = 0;
EXPLAIN (COSTS OFF) SELECT avg(h), sum(s) FROM halfvec_agg_p;
CREATE TEMP TABLE halfvec_agg_serial AS SELECT avg(h) AS a, sum(s) AS s, avg(s) AS sa FROM halfvec_agg_p;
SELECT * FROM halfvec_agg_serial;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT avg(h), sum(s), avg(s) FROM halfvec_agg_p;
SELECT avg(h), sum(s), avg(s) FROM halfvec_agg_p;
SELECT avg(h) = (SELECT a FROM halfvec_agg_serial) AS avg_same,
       sum(s) = (SELECT s FROM halfvec_agg_serial) AS sum_same,
       avg(s) = (SELECT sa FROM halfvec_agg_serial) AS avg_s_same
FROM halfvec_agg_p;
SELECT avg(h), sum(s) FROM halfvec_agg_p WHERE i - 3 < i * 0 + 1;
SELECT avg(h), sum(s) FROM halfvec_agg_p WHERE i - 3 < i * 0 - 3;
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
DROP TABLE halfvec_agg_p;
-- state arrays are checked as pgvector checks them: one dimension, at least one element,
-- no NULLs
SELECT halfvec_avg('{{2,2,4,6}}');
SELECT halfvec_avg('{NULL,2,4,6}');
SELECT halfvec_avg('{}');
SELECT halfvec_accum('{{0}}', '[1,2,3]');
SELECT halfvec_accum('{NULL}', '[1,2,3]');
-- halfvec_combine, pgvector's name for the combine function of avg(halfvec): vector_combine
SELECT halfvec_combine('{1,2,4}', '{2,4,6}');
SELECT halfvec_combine('{0}', '{1,2,4}');
SELECT halfvec_combine('{{1,2}}', '{3,4}');
SELECT aggcombinefn FROM pg_aggregate WHERE aggfnoid = 'avg(halfvec)'::regprocedure;
