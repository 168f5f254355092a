-- vector: avg and sum aggregates, serial and parallel.
\set SHOW_CONTEXT never

SELECT avg(v) FROM unnest(ARRAY['[1,2,3]'::vector, '[3,5,7]']) v;
SELECT sum(v) FROM unnest(ARRAY['[1,2,3]'::vector, '[3,5,7]']) v;
-- NULLs are skipped
SELECT avg(v), sum(v) FROM unnest(ARRAY['[1,2,3]'::vector, NULL, '[3,5,7]', NULL]) v;
SELECT avg(v), sum(v) FROM unnest(ARRAY[NULL, NULL]::vector[]) v;
-- no rows: NULL
SELECT avg(v), sum(v) FROM unnest(ARRAY[]::vector[]) v;
SELECT avg(v) IS NULL AS avg_null, sum(v) IS NULL AS sum_null FROM unnest(ARRAY[]::vector[]) v;
-- one row
SELECT avg(v), sum(v) FROM unnest(ARRAY['[-0.5,1e-45]'::vector]) v;
-- the mean is computed in float8 and rounded once
SELECT avg(v) FROM unnest(ARRAY['[1]'::vector, '[2]', '[2]']) v;
SELECT avg(v) FROM unnest(ARRAY['[3e38]'::vector, '[3e38]']) v;
SELECT avg(v) FROM unnest(ARRAY['[3e38,-3e38]'::vector, '[3e38,-3e38]', '[-3e38,3e38]']) v;
-- the sum is a vector, so it overflows like +
SELECT sum(v) FROM unnest(ARRAY['[3e38]'::vector, '[3e38]']) v;
-- all rows must have the same dimensions
SELECT avg(v) FROM unnest(ARRAY['[1,2]'::vector, '[3]']) v;
SELECT avg(v) FROM unnest(ARRAY['[1]'::vector, '[3,4]']) v;
SELECT sum(v) FROM unnest(ARRAY['[1,2]'::vector, '[3]']) v;
SELECT avg(v) FROM unnest(ARRAY['[1,2]'::vector, NULL, '[3,4,5]']) v;
-- 16000 dimensions
SELECT vector_dims(avg(v)), vector_dims(sum(v)), avg(v) = v, sum(v) = v + v
FROM (SELECT array_fill(0.25::real, ARRAY[16000])::vector AS v FROM generate_series(1, 2)) t
GROUP BY v;
-- the transition and final functions
SELECT vector_accum('{0}', '[1,2,3]');
SELECT vector_accum(vector_accum('{0}', '[1,2,3]'), '[4,5,6]');
SELECT vector_accum('{1,1,2}', '[1,2,3]');
SELECT vector_combine('{1,1,2}', '{2,3,4}');
SELECT vector_combine('{0}', '{2,3,4}');
SELECT vector_combine('{2,3,4}', '{0}');
SELECT vector_combine('{1,2}', '{1,2,3}');
SELECT vector_avg('{2,3,4}');
SELECT vector_avg('{0}') IS NULL AS is_null;
SELECT vector_avg('{4,1,2,3}');

--
-- GROUP BY
--
CREATE TABLE vector_agg_t (g int, v vector(2));
INSERT INTO vector_agg_t VALUES
    (1, '[1,2]'), (1, '[3,4]'), (2, '[0.5,0.25]'), (2, NULL), (3, NULL), (4, '[-1,-1]'), (4, '[1,1]');
SELECT g, avg(v), sum(v), count(v) FROM vector_agg_t GROUP BY g ORDER BY g;
SELECT avg(v), sum(v) FROM vector_agg_t;
DROP TABLE vector_agg_t;

--
-- parallel aggregation: partial states from the workers are merged with the combine functions
--
CREATE TABLE vector_agg_p (i int, v vector(3));
INSERT INTO vector_agg_p SELECT i, ARRAY[i % 7, i % 11, (i % 13) * 0.5] FROM generate_series(1, 50000) i;
ANALYZE vector_agg_p;
-- serial results
SET max_parallel_workers_per_gather = 0;
EXPLAIN (COSTS OFF) SELECT avg(v), sum(v) FROM vector_agg_p;
CREATE TEMP TABLE vector_agg_serial AS
SELECT avg(v) AS a, sum(v) AS s, (SELECT avg(v) FROM vector_agg_p WHERE i <= 3) AS a3 FROM vector_agg_p;
SELECT * FROM vector_agg_serial;
-- the same through a parallel plan
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT avg(v), sum(v) FROM vector_agg_p;
SELECT avg(v), sum(v) FROM vector_agg_p;
SELECT avg(v) = (SELECT a FROM vector_agg_serial) AS avg_same,
       sum(v) = (SELECT s FROM vector_agg_serial) AS sum_same
FROM vector_agg_p;
-- partial states that saw no rows, or only a few: the filter looks unselective to the planner
-- but only keeps i <= 3 (all in the first block, so the other processes have empty states)
EXPLAIN (COSTS OFF) SELECT avg(v), sum(v) FROM vector_agg_p WHERE i - 3 < i * 0 + 1;
SELECT avg(v), sum(v), avg(v) = (SELECT a3 FROM vector_agg_serial) AS same
FROM vector_agg_p WHERE i - 3 < i * 0 + 1;
EXPLAIN (COSTS OFF) SELECT avg(v), sum(v) FROM vector_agg_p WHERE i - 3 < i * 0 - 3;
SELECT avg(v), sum(v) FROM vector_agg_p WHERE i - 3 < i * 0 - 3;
-- grouped
SELECT i % 3 AS g, avg(v), sum(v) FROM vector_agg_p GROUP BY 1 ORDER BY 1;
-- a dimension mismatch is also found when states are combined
INSERT INTO vector_agg_p SELECT 0, '[1,2,3]' FROM generate_series(1, 10);
ALTER TABLE vector_agg_p ALTER COLUMN v TYPE vector;
INSERT INTO vector_agg_p VALUES (50001, '[1,2]');
SELECT avg(v) FROM vector_agg_p;
SELECT sum(v) FROM vector_agg_p;
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
DROP TABLE vector_agg_p;
-- state arrays are checked as pgvector checks them: one dimension, at least one element,
-- no NULLs
SELECT vector_avg('{{2,2,4,6}}');
SELECT vector_avg('{NULL,2,4,6}');
SELECT vector_avg('{}');
SELECT vector_accum('{{0}}', '[1,2,3]');
SELECT vector_accum('{NULL}', '[1,2,3]');
SELECT vector_combine('{{1,2}}', '{3,4}');
SELECT vector_combine('{1,2}', '{3,NULL}');
SELECT vector_combine('{0}', '{}');
-- a combined state's dimensions are checked, also when one side is empty; two empty states
-- (parallel workers that saw no rows) combine to an empty one, where pgvector raises
SELECT vector_combine('{0}', '{0}');
SELECT vector_combine('{0}', (SELECT array_agg(n) FROM generate_series(1, 16002) n));
SELECT vector_combine((SELECT array_agg(n) FROM generate_series(1, 16002) n), (SELECT array_agg(n) FROM generate_series(1, 16002) n));
