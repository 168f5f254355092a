-- Installation: the reserved `hnsw.` settings prefix and a relocatable extension (both as in
-- pgvector). The relocation part runs in a database of its own, so that the shared regression
-- database keeps hnsw_ext in public.
\set SHOW_CONTEXT never

-- The library loads with the first use of a type. From then on, an unknown hnsw.* name is an
-- error (a typo would otherwise be a silently ignored placeholder setting).
SELECT '[1,2,3]'::vector;
SET hnsw.ef_serach = 100;
SET hnsw.no_such_setting TO on;
SET LOCAL hnsw.ef_serach = 100;
SELECT set_config('hnsw.ef_serach', '100', false);
SET hnsw.ef_search = 100;
SHOW hnsw.ef_search;
RESET hnsw.ef_search;
-- pgvector's hnsw.* settings all exist, so code written for pgvector that sets them still works
SELECT name, setting, min_val, max_val FROM pg_settings
WHERE name IN ('hnsw.ef_search', 'hnsw.iterative_scan', 'hnsw.max_scan_tuples', 'hnsw.scan_mem_multiplier') ORDER BY name;
SET hnsw.scan_mem_multiplier = 2;
SHOW hnsw.scan_mem_multiplier;
SET hnsw.scan_mem_multiplier = 0;
RESET hnsw.scan_mem_multiplier;
-- ivfflat.* is not reserved (hnsw_ext has no ivfflat): a pgvector client's SET stays harmless
SET ivfflat.probes = 10;
RESET ivfflat.probes;

\set regress_db :DBNAME
SET client_min_messages = warning;
DROP DATABASE IF EXISTS hnsw_install_reloc;
RESET client_min_messages;
CREATE DATABASE hnsw_install_reloc;
\c hnsw_install_reloc
SELECT relocatable FROM pg_available_extension_versions WHERE name = 'hnsw_ext';
CREATE SCHEMA s;
CREATE EXTENSION hnsw_ext SCHEMA s;
SELECT extname, extnamespace::regnamespace FROM pg_extension WHERE extname = 'hnsw_ext';
-- Nothing of the extension lands in public.
SELECT count(*) FROM pg_type WHERE typname IN ('vector', 'halfvec') AND typnamespace = 'public'::regnamespace;

-- schema not on search_path: everything qualified
CREATE TABLE t (id int, e s.vector(3), h s.halfvec(3));
INSERT INTO t SELECT i, ARRAY[i, 2 * i, 1]::real[], ARRAY[i, 1, 1]::real[] FROM generate_series(1, 20) i;
CREATE INDEX t_e_l2 ON t USING hnsw (e s.vector_l2_ops) WITH (m = 4, ef_construction = 16);
CREATE INDEX t_h_cos ON t USING hnsw (h s.halfvec_cosine_ops);
CREATE INDEX t_e_half ON t USING hnsw ((e::s.halfvec(3)) s.halfvec_l1_ops) WHERE id > 2;
SELECT indexdef FROM pg_indexes WHERE tablename = 't' ORDER BY indexname;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM t ORDER BY e OPERATOR(s.<->) '[3,6,1]' LIMIT 3;
SELECT id FROM t ORDER BY e OPERATOR(s.<->) '[3,6,1]' LIMIT 3;
SELECT id FROM t ORDER BY h OPERATOR(s.<=>) '[5,1,1]' LIMIT 1;
SELECT id FROM t WHERE id > 2 ORDER BY e::s.halfvec(3) OPERATOR(s.<+>) '[3,6,1]' LIMIT 2;
RESET enable_seqscan;
SELECT s.avg(e), s.sum(h) FROM t;
SELECT s.l2_distance(e, '[0,0,0]'), s.vector_dims(h), e::real[] FROM t WHERE id = 1;
SELECT '[1,2]'::s.vector OPERATOR(s.+) '[3,4]', '{1,2}'::int[]::s.vector, '[1,2]'::s.vector::s.halfvec;
SELECT count(*) FROM t WHERE e OPERATOR(s.=) '[1,2,1]';
-- filter columns: their operator classes (DEFAULT for hnsw) live in s too
CREATE TABLE f (id int, cat int, tags text[], e s.vector(3));
INSERT INTO f SELECT i, i % 3, ARRAY['a' || (i % 4)], ARRAY[i, 2 * i, 1]::real[] FROM generate_series(1, 300) i;
CREATE INDEX f_idx ON f USING hnsw (e s.vector_l2_ops, cat, tags);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM f WHERE cat = 1 AND tags && ARRAY['a1'] ORDER BY e OPERATOR(s.<->) '[3,6,1]' LIMIT 3;
SELECT id FROM f WHERE cat = 1 AND tags && ARRAY['a1'] ORDER BY e OPERATOR(s.<->) '[3,6,1]' LIMIT 3;
RESET enable_seqscan;
SELECT s.hnsw_index_check('f_idx') ~ 'OK$' AS check_ok;
-- unqualified names do not resolve without the schema on search_path
SELECT '[1,2]'::vector;

-- schema on search_path: unqualified, as clients write it
SET search_path = public, s;
SET enable_seqscan = off;
SELECT id FROM t ORDER BY e <-> '[3,6,1]' LIMIT 3;
SELECT avg(e)::halfvec, '[1,2]'::vector + '[3,4]', array_to_vector('{1,2}'::real[], 2, true) FROM t;
RESET enable_seqscan;
RESET search_path;

-- ALTER EXTENSION SET SCHEMA moves every object; tables and indexes keep working
CREATE SCHEMA s2;
ALTER EXTENSION hnsw_ext SET SCHEMA s2;
SELECT DISTINCT typnamespace::regnamespace FROM pg_type WHERE typname IN ('vector', 'halfvec', '_vector', '_halfvec');
SELECT count(*) FROM pg_opclass WHERE opcnamespace = 's'::regnamespace;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname IN ('e', 'h') ORDER BY attname;
INSERT INTO t VALUES (21, '[3,6,1.1]', '[1,1,1]');
SET enable_seqscan = off;
SELECT id FROM t ORDER BY e OPERATOR(s2.<->) '[3,6,1]' LIMIT 3;
SELECT id FROM t WHERE id > 2 ORDER BY e::s2.halfvec(3) OPERATOR(s2.<+>) '[3,6,1]' LIMIT 2;
RESET enable_seqscan;
CREATE INDEX t_e_ip ON t USING hnsw (e s2.vector_ip_ops);
REINDEX TABLE t;
SELECT s2.sum(e) FROM t;
SET client_min_messages = warning;
DROP EXTENSION hnsw_ext CASCADE;
RESET client_min_messages;
SELECT count(*) FROM pg_type WHERE typname IN ('vector', 'halfvec');

\c :regress_db
DROP DATABASE hnsw_install_reloc;
