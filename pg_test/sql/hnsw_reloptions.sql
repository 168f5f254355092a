-- Index options are checked when they are set (CREATE INDEX, ALTER INDEX), and never make
-- planning fail (issue 9, item 5: ALTER INDEX ... SET (m = 40) broke every ordered query).
CREATE TABLE ro (id int, v vector(3));
INSERT INTO ro SELECT i, ARRAY[i % 11, i % 7, i % 3]::real[]::vector FROM generate_series(1, 200) i;
CREATE INDEX ro_idx ON ro USING hnsw (v vector_l2_ops);
CREATE FUNCTION try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN '22023: ' || SQLERRM;
END $$;
SELECT try('ALTER INDEX ro_idx SET (m = 40)');
SELECT try('CREATE INDEX ON ro USING hnsw (v vector_l2_ops) WITH (m = 40)');
SELECT try('CREATE INDEX ON ro USING hnsw (v vector_l2_ops) WITH (ef_construction = 20)');
SELECT try('ALTER INDEX ro_idx SET (m = 40, ef_construction = 80)');
SELECT reloptions FROM pg_class WHERE relname = 'ro_idx';
SELECT try('ALTER INDEX ro_idx SET (ef_construction = 79)');
SELECT try('ALTER INDEX ro_idx RESET (ef_construction)');
SELECT try('ALTER INDEX ro_idx SET (m = 101)');
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM ro ORDER BY v <-> '[1,1,1]' LIMIT 3;
SELECT count(*) FROM (SELECT id FROM ro ORDER BY v <-> '[1,1,1]' LIMIT 3) s;
-- Options stored before this check existed may break the rule: queries still plan (the cost
-- estimate reads the built graph's m), and only a rebuild reports the problem.
UPDATE pg_class SET reloptions = '{m=40}' WHERE relname = 'ro_idx';
EXPLAIN (COSTS OFF) SELECT id FROM ro ORDER BY v <-> '[1,1,1]' LIMIT 3;
SELECT count(*) FROM (SELECT id FROM ro ORDER BY v <-> '[1,1,1]' LIMIT 3) s;
SELECT try('REINDEX INDEX ro_idx');
SELECT try('ALTER INDEX ro_idx RESET (m)');
SELECT try('REINDEX INDEX ro_idx');
SELECT reloptions FROM pg_class WHERE relname = 'ro_idx';
-- quantization: 'none' or 'sq8'; the built index keeps what it was built with until REINDEX.
SELECT try('CREATE INDEX ro_q ON ro USING hnsw (v vector_l2_ops) WITH (quantization = sq9)');
SELECT try('CREATE INDEX ro_q ON ro USING hnsw (v vector_l2_ops) WITH (quantization = sq8)');
SELECT try('ALTER INDEX ro_q SET (quantization = rabitq)');
SELECT try('ALTER INDEX ro_q SET (quantization = none)');
SELECT reloptions FROM pg_class WHERE relname = 'ro_q';
SELECT hnsw_walk_size('ro_q') < pg_relation_size('ro_q') AS walk_is_part;
SELECT id, v <-> '[1,1,1]' AS d FROM ro ORDER BY v <-> '[1,1,1]', id LIMIT 3;
SELECT try('REINDEX INDEX ro_q');
SELECT hnsw_walk_size('ro_q') = pg_relation_size('ro_q') - 8192 AS all_but_meta;
SELECT hnsw_walk_size('ro');
RESET enable_seqscan;
DROP TABLE ro;
DROP FUNCTION try(text);
