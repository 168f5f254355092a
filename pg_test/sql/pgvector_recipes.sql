-- pgvector's README recipes, as its README writes them (PG15 wants an alias on a subquery in
-- FROM, so "SELECT * FROM (...) AS s" where the README, written for PG16+, has none).
-- Answers are compared with the exact answer (the same query with the index off), since the
-- graph a multi-threaded build makes may differ from run to run.
SET hnsw.ef_search = 200;
CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(3), category_id int);
INSERT INTO items (embedding) VALUES ('[1,2,3]'), ('[4,5,6]');
SELECT * FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 5;
INSERT INTO items (id, embedding) VALUES (1, '[1,2,3]'), (2, '[4,5,6]')
    ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding;
UPDATE items SET embedding = '[1,2,3]' WHERE id = 1;
DELETE FROM items WHERE id = 1;
INSERT INTO items (embedding, category_id)
    SELECT ARRAY[sin(i), cos(i * 1.7), sin(i * 0.3)], i % 7 FROM generate_series(1, 3000) i;
ANALYZE items;
-- distances
SELECT id, embedding <-> '[3,1,2]' AS distance FROM items ORDER BY id LIMIT 3;
SELECT id, (embedding <#> '[3,1,2]') * -1 AS inner_product FROM items ORDER BY id LIMIT 3;
SELECT id, round((1 - (embedding <=> '[3,1,2]'))::numeric, 6) AS cosine_similarity FROM items ORDER BY id LIMIT 3;
SELECT AVG(embedding) FROM items WHERE id < 5;
SELECT category_id, AVG(embedding) FROM items WHERE id < 10 GROUP BY category_id ORDER BY category_id;
-- the exact answers, with the index off
CREATE TEMP TABLE exact AS SELECT 'l2' AS q, array_agg(id ORDER BY embedding <-> '[0.5,0.5,0.5]', id) AS ids
    FROM (SELECT id, embedding FROM items ORDER BY embedding <-> '[0.5,0.5,0.5]' LIMIT 5) s;
INSERT INTO exact SELECT 'cat3', array_agg(id ORDER BY embedding <-> '[3,1,2]', id)
    FROM (SELECT id, embedding FROM items WHERE category_id = 3 ORDER BY embedding <-> '[3,1,2]' LIMIT 5) s;
-- one index per operator class, with pgvector's options
CREATE INDEX items_l2 ON items USING hnsw (embedding vector_l2_ops) WITH (m = 16, ef_construction = 64);
CREATE INDEX items_ip ON items USING hnsw (embedding vector_ip_ops);
CREATE INDEX items_cos ON items USING hnsw (embedding vector_cosine_ops);
CREATE INDEX items_l1 ON items USING hnsw (embedding vector_l1_ops);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM items ORDER BY embedding <-> '[0.5,0.5,0.5]' LIMIT 5;
SELECT array_agg(id) = (SELECT ids FROM exact WHERE q = 'l2') AS same
    FROM (SELECT id FROM items ORDER BY embedding <-> '[0.5,0.5,0.5]' LIMIT 5) s;
EXPLAIN (COSTS OFF) SELECT * FROM items ORDER BY embedding <#> '[3,1,2]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT * FROM items ORDER BY embedding <=> '[3,1,2]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT * FROM items ORDER BY embedding <+> '[3,1,2]' LIMIT 5;
-- nearest neighbours of a row
EXPLAIN (COSTS OFF) SELECT * FROM items WHERE id != 1 ORDER BY embedding <-> (SELECT embedding FROM items WHERE id = 1) LIMIT 5;
SELECT count(*) FROM (SELECT * FROM items WHERE id != 1 ORDER BY embedding <-> (SELECT embedding FROM items WHERE id = 1) LIMIT 5) s;
-- rows within a distance (no index: a seq scan, as with pgvector)
SELECT count(*) FROM items WHERE embedding <-> '[3,1,2]' < 2.5;
-- query options, per session and per transaction
SET hnsw.ef_search = 100;
BEGIN;
SET LOCAL hnsw.ef_search = 300;
SHOW hnsw.ef_search;
SELECT count(*) FROM (SELECT * FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 5) s;
COMMIT;
SHOW hnsw.ef_search;
-- build options and progress
SET maintenance_work_mem = '64MB';
SET max_parallel_maintenance_workers = 1;
SELECT phase, round(100.0 * blocks_done / nullif(blocks_total, 0), 1) AS "%" FROM pg_stat_progress_create_index;
RESET maintenance_work_mem;
RESET max_parallel_maintenance_workers;
DROP INDEX items_ip, items_cos, items_l1;
-- filtering: a B-tree on the filter column, iterative scans, a partial index
CREATE INDEX ON items (category_id);
SET hnsw.iterative_scan = strict_order;
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE category_id = 3 ORDER BY embedding <-> '[3,1,2]' LIMIT 5;
SELECT array_agg(id ORDER BY d, id) = (SELECT ids FROM exact WHERE q = 'cat3') AS same
    FROM (SELECT id, embedding <-> '[3,1,2]' AS d FROM items WHERE category_id = 3 ORDER BY embedding <-> '[3,1,2]' LIMIT 5) s;
SET hnsw.iterative_scan = relaxed_order;
WITH relaxed_results AS MATERIALIZED (
    SELECT id, embedding <-> '[1,2,3]' AS distance FROM items WHERE category_id = 3 ORDER BY distance LIMIT 5
) SELECT count(*), bool_and(distance >= 0) FROM (SELECT * FROM relaxed_results ORDER BY distance + 0) s;
WITH nearest_results AS MATERIALIZED (
    SELECT id, embedding <-> '[1,2,3]' AS distance FROM items ORDER BY distance LIMIT 5
) SELECT count(*) FROM (SELECT * FROM nearest_results WHERE distance < 5 ORDER BY distance) s;
SET hnsw.max_scan_tuples = 20000;
SET hnsw.scan_mem_multiplier = 2;
RESET hnsw.iterative_scan;
RESET hnsw.max_scan_tuples;
RESET hnsw.scan_mem_multiplier;
CREATE INDEX items_cat3 ON items USING hnsw (embedding vector_l2_ops) WHERE (category_id = 3);
DROP INDEX items_l2;
EXPLAIN (COSTS OFF) SELECT * FROM items WHERE category_id = 3 ORDER BY embedding <-> '[3,1,2]' LIMIT 5;
SELECT array_agg(id) = (SELECT ids FROM exact WHERE q = 'cat3') AS same
    FROM (SELECT * FROM items WHERE category_id = 3 ORDER BY embedding <-> '[3,1,2]' LIMIT 5) s;
-- partitioning
CREATE TABLE pitems (embedding vector(3), category_id int) PARTITION BY LIST(category_id);
CREATE TABLE pitems_1 PARTITION OF pitems FOR VALUES IN (1);
CREATE TABLE pitems_2 PARTITION OF pitems FOR VALUES IN (2);
INSERT INTO pitems SELECT embedding, category_id FROM items WHERE category_id IN (1, 2);
ANALYZE pitems;
CREATE INDEX ON pitems USING hnsw (embedding vector_l2_ops);
EXPLAIN (COSTS OFF) SELECT * FROM pitems WHERE category_id = 1 ORDER BY embedding <-> '[3,1,2]' LIMIT 5;
DROP TABLE pitems;
DROP TABLE items;
-- half-precision indexing: an expression index on a vector column
CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(3));
INSERT INTO items (embedding) SELECT ARRAY[sin(i), cos(i * 1.7), sin(i * 0.3)] FROM generate_series(1, 3000) i;
ANALYZE items;
CREATE INDEX ON items USING hnsw ((embedding::halfvec(3)) halfvec_l2_ops);
EXPLAIN (COSTS OFF) SELECT * FROM items ORDER BY embedding::halfvec(3) <-> '[1,2,3]' LIMIT 5;
SELECT count(*) FROM (SELECT * FROM items ORDER BY embedding::halfvec(3) <-> '[1,2,3]' LIMIT 5) s;
DROP TABLE items;
-- half-precision vectors
CREATE TABLE items (id bigserial PRIMARY KEY, embedding halfvec(3));
INSERT INTO items (embedding) VALUES ('[1,2,3]'), ('[4,5,6]');
CREATE INDEX ON items USING hnsw (embedding halfvec_l2_ops);
SELECT id FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5;
DROP TABLE items;
-- binary quantization, with re-ranking by the full vectors (the README's
-- binary_quantize('[1,-2,3]') is ambiguous between vector and halfvec on pgvector as well:
-- the literal is cast here)
CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(3));
INSERT INTO items (embedding) SELECT ARRAY[sin(i), cos(i * 1.7), sin(i * 0.3)] FROM generate_series(1, 3000) i;
ANALYZE items;
CREATE INDEX ON items USING hnsw ((binary_quantize(embedding)::bit(3)) bit_hamming_ops);
EXPLAIN (COSTS OFF) SELECT * FROM items ORDER BY binary_quantize(embedding)::bit(3) <~> binary_quantize('[1,-2,3]'::vector) LIMIT 5;
SELECT count(*) FROM (
    SELECT * FROM (
        SELECT * FROM items ORDER BY binary_quantize(embedding)::bit(3) <~> binary_quantize('[1,-2,3]'::vector) LIMIT 20
    ) AS s ORDER BY embedding <=> '[1,-2,3]' LIMIT 5
) r;
DROP TABLE items;
-- bit vectors
CREATE TABLE items (id bigserial PRIMARY KEY, embedding bit(3));
INSERT INTO items (embedding) VALUES ('000'), ('111');
SELECT * FROM items ORDER BY embedding <~> '101' LIMIT 5;
CREATE INDEX ON items USING hnsw (embedding bit_jaccard_ops);
SELECT * FROM items ORDER BY embedding <%> '101' LIMIT 5;
DROP TABLE items;
-- subvector indexing, with re-ranking by the full vectors
CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(5));
INSERT INTO items (embedding)
    SELECT ARRAY[sin(i), cos(i * 1.7), sin(i * 0.3), cos(i * 0.1), sin(i * 2.1)] FROM generate_series(1, 3000) i;
ANALYZE items;
CREATE INDEX ON items USING hnsw ((subvector(embedding, 1, 3)::vector(3)) vector_cosine_ops);
EXPLAIN (COSTS OFF) SELECT * FROM items ORDER BY subvector(embedding, 1, 3)::vector(3) <=> subvector('[1,2,3,4,5]'::vector, 1, 3) LIMIT 5;
SELECT count(*) FROM (
    SELECT * FROM (
        SELECT * FROM items ORDER BY subvector(embedding, 1, 3)::vector(3) <=> subvector('[1,2,3,4,5]'::vector, 1, 3) LIMIT 20
    ) AS s ORDER BY embedding <=> '[1,2,3,4,5]' LIMIT 5
) r;
DROP TABLE items;
-- several models' vectors in one table: a partial expression index per model
CREATE TABLE embeddings (model_id bigint, item_id bigint, embedding vector, PRIMARY KEY (model_id, item_id));
INSERT INTO embeddings SELECT 123, i, ARRAY[sin(i), cos(i * 1.7), sin(i * 0.3)] FROM generate_series(1, 1000) i;
INSERT INTO embeddings SELECT 456, i, ARRAY[sin(i), cos(i)] FROM generate_series(1, 1000) i;
ANALYZE embeddings;
CREATE INDEX ON embeddings USING hnsw ((embedding::vector(3)) vector_l2_ops) WHERE (model_id = 123);
EXPLAIN (COSTS OFF) SELECT * FROM embeddings WHERE model_id = 123 ORDER BY embedding::vector(3) <-> '[3,1,2]' LIMIT 5;
SELECT count(*) FROM (SELECT * FROM embeddings WHERE model_id = 123 ORDER BY embedding::vector(3) <-> '[3,1,2]' LIMIT 5) s;
DROP TABLE embeddings;
-- vectors stored as double precision[]
CREATE TABLE items (id bigserial PRIMARY KEY, embedding double precision[]);
INSERT INTO items (embedding) VALUES ('{1,2,3}'), ('{4,5,6}');
ALTER TABLE items ADD CHECK (vector_dims(embedding::vector) = 3);
INSERT INTO items (embedding) VALUES ('{1,2}');
CREATE INDEX ON items USING hnsw ((embedding::vector(3)) vector_l2_ops);
EXPLAIN (COSTS OFF) SELECT * FROM items ORDER BY embedding::vector(3) <-> '[3,1,2]' LIMIT 5;
SELECT id FROM items ORDER BY embedding::vector(3) <-> '[3,1,2]' LIMIT 5;
-- exact search inside a transaction; storage; concurrent builds
RESET enable_seqscan;
BEGIN;
SET LOCAL enable_indexscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM items ORDER BY embedding::vector(3) <-> '[3,1,2]' LIMIT 5;
COMMIT;
DROP TABLE items;
CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(3));
ALTER TABLE items ALTER COLUMN embedding SET STORAGE PLAIN;
INSERT INTO items (embedding) VALUES ('[1,2,3]'), ('[4,5,6]');
CREATE INDEX CONCURRENTLY items_cc ON items USING hnsw (embedding vector_l2_ops);
SELECT id FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 5;
SELECT pg_size_pretty(pg_relation_size('items_cc')) IS NOT NULL AS has_size;
DROP TABLE items;
RESET hnsw.ef_search;
