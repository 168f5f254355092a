-- halfvec: binary send/receive in pgvector's layout (int16 dim, int16 unused = 0, then the
-- IEEE half bits of each element, all big-endian), checked byte by byte and through COPY files.
\set SHOW_CONTEXT never

--
-- send
--
SELECT encode(halfvec_send('[1,2,3]'), 'hex');
SELECT encode(halfvec_send('[-0,0.5,65504,6e-8]'), 'hex');
SELECT encode(halfvec_send('[0.1,-2,0.33333334]'), 'hex');
SELECT length(halfvec_send(array_fill(1, ARRAY[16000])::halfvec)) = 4 + 2 * 16000 AS len_ok,
       encode(substr(halfvec_send(array_fill(1, ARRAY[16000])::halfvec), 1, 6), 'hex') AS head;

--
-- binary COPY round trip through a server-side file
--
CREATE TABLE halfvec_binary_t (id int, h halfvec(3));
INSERT INTO halfvec_binary_t VALUES (1, '[1,2,3]'), (2, '[-0,6e-8,-65504]'), (3, NULL),
    (4, '[0.1,0.2,0.3]');
COPY halfvec_binary_t TO '/tmp/hnsw_ext_regress_halfvec.bin' WITH (FORMAT binary);
CREATE TABLE halfvec_binary_u (id int, h halfvec(3));
COPY halfvec_binary_u FROM '/tmp/hnsw_ext_regress_halfvec.bin' WITH (FORMAT binary);
SELECT * FROM halfvec_binary_u ORDER BY id;
SELECT count(*) AS identical FROM halfvec_binary_t t JOIN halfvec_binary_u u USING (id)
WHERE halfvec_send(t.h) = halfvec_send(u.h);
COPY (SELECT '[1,2,3]'::halfvec) TO '/tmp/hnsw_ext_regress_halfvec.bin' WITH (FORMAT binary);
SELECT encode(pg_read_binary_file('/tmp/hnsw_ext_regress_halfvec.bin'), 'hex');
CREATE TABLE halfvec_binary_2 (h halfvec(2));
COPY halfvec_binary_2 FROM '/tmp/hnsw_ext_regress_halfvec.bin' WITH (FORMAT binary);
-- a vector column does not read halfvec bytes: 3 float4 elements need 12 bytes, the field
-- has 6
CREATE TABLE halfvec_binary_v (v vector);
COPY halfvec_binary_v FROM '/tmp/hnsw_ext_regress_halfvec.bin' WITH (FORMAT binary);
-- 16000 dimensions
CREATE TABLE halfvec_binary_any (h halfvec);
COPY (SELECT (SELECT array_agg(i % 2048 ORDER BY i) FROM generate_series(1, 16000) i)::halfvec)
    TO '/tmp/hnsw_ext_regress_halfvec.bin' WITH (FORMAT binary);
COPY halfvec_binary_any FROM '/tmp/hnsw_ext_regress_halfvec.bin' WITH (FORMAT binary);
SELECT vector_dims(h), h = (SELECT array_agg(i % 2048 ORDER BY i) FROM generate_series(1, 16000) i)::halfvec AS same
FROM halfvec_binary_any;

--
-- receive errors: hand-made field bytes read back into a halfvec column
--
-- Returns the value read back as text, or "SQLSTATE: message".
CREATE FUNCTION pg_temp.recv(payload text, typ text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    DROP TABLE IF EXISTS halfvec_binary_recv;
    EXECUTE format($q$COPY (SELECT decode(%L, 'hex')) TO '/tmp/hnsw_ext_regress_halfvec.bin' WITH (FORMAT binary)$q$, payload);
    EXECUTE format('CREATE TEMP TABLE halfvec_binary_recv (h %s)', typ);
    EXECUTE $q$COPY halfvec_binary_recv FROM '/tmp/hnsw_ext_regress_halfvec.bin' WITH (FORMAT binary)$q$;
    RETURN 'ok: ' || (SELECT h::text FROM halfvec_binary_recv);
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SET client_min_messages = warning;
SELECT payload, typ, pg_temp.recv(payload, typ) AS result FROM (VALUES
    ('000200003c004000', 'halfvec'),         -- [1,2]
    ('000200003c004000', 'halfvec(2)'),
    ('0003000000017bff8001', 'halfvec'),     -- smallest subnormal, largest, its negative
    ('000100003c0000', 'halfvec'),           -- one byte too many
    ('000200003c00', 'halfvec'),             -- one element missing
    ('0001', 'halfvec'),                     -- no unused field
    ('00000000', 'halfvec'),                 -- 0 dimensions
    ('ffff0000', 'halfvec'),                 -- -1 dimensions
    ('3e810000', 'halfvec'),                 -- 16001 dimensions
    ('000100013c00', 'halfvec'),             -- unused is not 0
    ('000100007e00', 'halfvec'),             -- NaN
    ('000100007c00', 'halfvec'),             -- Infinity
    ('00010000fc00', 'halfvec'),             -- -Infinity
    ('000200003c004000', 'halfvec(3)')       -- typmod mismatch
) t(payload, typ);
RESET client_min_messages;

--
-- text COPY round trip
--
COPY halfvec_binary_t TO '/tmp/hnsw_ext_regress_halfvec.txt';
SELECT pg_read_file('/tmp/hnsw_ext_regress_halfvec.txt');
TRUNCATE halfvec_binary_u;
COPY halfvec_binary_u FROM '/tmp/hnsw_ext_regress_halfvec.txt';
SELECT count(*) AS identical FROM halfvec_binary_t t JOIN halfvec_binary_u u USING (id)
WHERE halfvec_send(t.h) = halfvec_send(u.h);

DROP TABLE halfvec_binary_t, halfvec_binary_u, halfvec_binary_2, halfvec_binary_v, halfvec_binary_any;
