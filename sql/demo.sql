-- The demo that .ci/setup runs: a table of vectors and a nearest-neighbour query.
\set ECHO queries
DROP TABLE IF EXISTS hnsw_demo;
CREATE EXTENSION IF NOT EXISTS hnsw_ext;
CREATE TABLE hnsw_demo (id bigserial PRIMARY KEY, embedding vector(3));
INSERT INTO hnsw_demo (embedding) VALUES ('[1,2,3]'), ('[4,5,6]'), ('[1,1,1]'), ('[0,2,3.5]');
SELECT id, embedding, embedding <-> '[1,2,3]' AS l2, embedding <=> '[1,2,3]' AS cosine
FROM hnsw_demo ORDER BY embedding <-> '[1,2,3]' LIMIT 3;
