-- vector: binary send/receive in pgvector's layout (int16 dim, int16 unused = 0, then float4
-- elements, all big-endian), checked byte by byte and through binary COPY files.
\set SHOW_CONTEXT never

--
-- send
--
SELECT encode(vector_send('[1,2,3]'), 'hex');
SELECT encode(vector_send('[-0,0.5,-2]'), 'hex');
SELECT encode(vector_send('[1e-45,3.4028235e38,0.1]'), 'hex');
SELECT length(vector_send(array_fill(1, ARRAY[16000])::vector)) = 4 + 4 * 16000 AS len_ok,
       encode(substr(vector_send(array_fill(1, ARRAY[16000])::vector), 1, 8), 'hex') AS head;

--
-- binary COPY round trip through a server-side file
--
CREATE TABLE vector_binary_t (id int, v vector(3));
INSERT INTO vector_binary_t VALUES (1, '[1,2,3]'), (2, '[-0,1e-45,-3.4028235e38]'), (3, NULL),
    (4, '[0.1,0.2,0.3]');
COPY vector_binary_t TO '/tmp/hnsw_ext_regress_vector.bin' WITH (FORMAT binary);
CREATE TABLE vector_binary_u (id int, v vector(3));
COPY vector_binary_u FROM '/tmp/hnsw_ext_regress_vector.bin' WITH (FORMAT binary);
SELECT * FROM vector_binary_u ORDER BY id;
SELECT count(*) AS identical FROM vector_binary_t t JOIN vector_binary_u u USING (id)
WHERE vector_send(t.v) = vector_send(u.v);
-- the file: header, one tuple (one field: int32 length, then the vector), trailer
COPY (SELECT '[1,2,3]'::vector) TO '/tmp/hnsw_ext_regress_vector.bin' WITH (FORMAT binary);
SELECT encode(pg_read_binary_file('/tmp/hnsw_ext_regress_vector.bin'), 'hex');
-- into a column of another typmod: the receive function checks it
CREATE TABLE vector_binary_2 (v vector(2));
COPY vector_binary_2 FROM '/tmp/hnsw_ext_regress_vector.bin' WITH (FORMAT binary);
-- and into an unconstrained column
CREATE TABLE vector_binary_any (v vector);
COPY vector_binary_any FROM '/tmp/hnsw_ext_regress_vector.bin' WITH (FORMAT binary);
SELECT * FROM vector_binary_any;
-- 16000 dimensions
COPY (SELECT v FROM (SELECT (SELECT array_agg(i * 0.25 ORDER BY i) FROM generate_series(1, 16000) i)::vector AS v) t)
    TO '/tmp/hnsw_ext_regress_vector.bin' WITH (FORMAT binary);
TRUNCATE vector_binary_any;
COPY vector_binary_any FROM '/tmp/hnsw_ext_regress_vector.bin' WITH (FORMAT binary);
SELECT vector_dims(v), v = (SELECT array_agg(i * 0.25 ORDER BY i) FROM generate_series(1, 16000) i)::vector AS same
FROM vector_binary_any;

--
-- receive errors: a binary COPY file whose field holds hand-made bytes (the bytes of a bytea
-- column are written as they are), read back into a vector column
--
-- Returns the value read back as text, or "SQLSTATE: message".
CREATE FUNCTION pg_temp.recv(payload text, typ text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    DROP TABLE IF EXISTS vector_binary_recv;
    EXECUTE format($q$COPY (SELECT decode(%L, 'hex')) TO '/tmp/hnsw_ext_regress_vector.bin' WITH (FORMAT binary)$q$, payload);
    EXECUTE format('CREATE TEMP TABLE vector_binary_recv (v %s)', typ);
    EXECUTE $q$COPY vector_binary_recv FROM '/tmp/hnsw_ext_regress_vector.bin' WITH (FORMAT binary)$q$;
    RETURN 'ok: ' || (SELECT v::text FROM vector_binary_recv);
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SET client_min_messages = warning;
SELECT payload, typ, pg_temp.recv(payload, typ) AS result FROM (VALUES
    ('000200003f80000040000000', 'vector'),       -- [1,2]
    ('000200003f80000040000000', 'vector(2)'),
    ('000100008000000000', 'vector'),             -- one byte too many
    ('000200003f800000', 'vector'),               -- one element missing
    ('0001', 'vector'),                           -- no unused field
    ('00000000', 'vector'),                       -- 0 dimensions
    ('ffff0000', 'vector'),                       -- -1 dimensions
    ('3e810000', 'vector'),                       -- 16001 dimensions
    ('000100013f800000', 'vector'),               -- unused is not 0
    ('000100007fc00000', 'vector'),               -- NaN
    ('00010000ff800000', 'vector'),               -- -Infinity
    ('000200003f80000040000000', 'vector(3)'),    -- typmod mismatch
    ('000100000000000100000000', 'vector(1)')     -- trailing garbage
) t(payload, typ);
RESET client_min_messages;

--
-- text COPY round trip
--
COPY vector_binary_t TO '/tmp/hnsw_ext_regress_vector.txt';
SELECT pg_read_file('/tmp/hnsw_ext_regress_vector.txt');
TRUNCATE vector_binary_u;
COPY vector_binary_u FROM '/tmp/hnsw_ext_regress_vector.txt';
SELECT count(*) AS identical FROM vector_binary_t t JOIN vector_binary_u u USING (id)
WHERE vector_send(t.v) = vector_send(u.v);
COPY (SELECT v FROM vector_binary_t WHERE id = 1) TO '/tmp/hnsw_ext_regress_vector.txt';
COPY vector_binary_2 FROM '/tmp/hnsw_ext_regress_vector.txt';

DROP TABLE vector_binary_t, vector_binary_u, vector_binary_2, vector_binary_any;
