-- sparsevec: text and binary I/O, type modifiers, limits, every input error with its SQLSTATE,
-- casts, distance operators, norms, comparisons and the btree operator class.
-- The text form is {index:value,...}/dim with 1-based indices; zero values are not stored.
\set SHOW_CONTEXT never

-- Runs a statement and returns its first column as text, or "SQLSTATE: message" if it fails.
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE q INTO r;
    RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

--
-- text input and output
--
SELECT '{1:1.5,3:-2}/5'::sparsevec;
SELECT E' \t\n{ \t1 \n: \r2.5 ,\x0b3:\f4 } \t/ \n 4 \r'::sparsevec;
-- elements in any order come out sorted; zeros (also -0) are dropped
SELECT '{5:5,1:1,3:3}/5'::sparsevec;
SELECT '{1:0,2:-0,3:0.0,4:1}/4'::sparsevec;
SELECT '{}/1'::sparsevec, '{ }/3'::sparsevec;
-- numbers are read like float4in: signs, exponents, hex floats, subnormals
SELECT '{+1:+1,2:.5,3:1e2,4:-2.5E-3,5:0x1p3}/5'::sparsevec;
SELECT '{1:1.4e-45,2:1.17549435e-38,3:3.4028235e38}/3'::sparsevec;
-- output is the shortest decimal that reads back as the same float4
SELECT '{1:0.1,2:0.33333334,3:1.23456789,4:16777217}/4'::sparsevec;
SELECT '{1000000000:1}/1000000000'::sparsevec;
SELECT v::text::sparsevec = v AS round_trip
FROM (SELECT '{2:0.1,7:-3.4028235e38,9:1.4e-45}/10'::sparsevec AS v) s;

--
-- input errors
--
SELECT q, pg_temp.try(format('SELECT %L::sparsevec::text', q)) FROM (VALUES
    (''), ('[1,2]'), ('{'), ('{1'), ('{1:'), ('{1:1'), ('{1:1,'), ('{1:1}'), ('{1:1}/'),
    ('{1:1}/x'), ('{1:1}/2 x'), ('{1:1}/2/'), ('{1:1,}/2'), ('{,}/2'), ('{:1}/2'),
    ('{1:}/2'), ('{1 1}/2'), ('{1:1 2:2}/2'), ('{a:1}/2'), ('{1:a}/2'), ('{1.5:1}/2'),
    ('{1:1}/2.5'), ('{1:1}}/2'),
    -- values
    ('{1:NaN}/2'), ('{1:Infinity}/2'), ('{1:-inf}/2'), ('{1:4e38}/2'), ('{1:-4e38}/2'),
    ('{1:1e-46}/2'), ('{1:-1e-50,2:1}/2'), ('{1:1e99999}/1'),
    -- indices
    ('{0:1}/2'), ('{3:1}/2'), ('{-1:1}/2'), ('{1:1,1:2}/2'), ('{2:1,1:1,2:3}/3'),
    ('{2147483648:1}/2'), ('{-9999999999999999999999:1}/2'),
    -- a zero value at an illegal index is dropped before the index is checked
    ('{0:0,3:0}/2'),
    -- dimensions
    ('{}/0'), ('{}/-1'), ('{}/1000000001'), ('{}/2147483648'), ('{}/-99999999999999999999'),
    -- a bad dimension is reported before a bad index
    ('{5:1}/0')
) t(q);

-- 16,000 non-zero elements at most, counted by the commas of the text
SELECT nnz, pg_temp.try(format('SELECT l2_norm(%L::sparsevec)', lit)) FROM (
    SELECT n AS nnz, '{' || string_agg(i || ':1', ',') || '}/100000' AS lit
    FROM generate_series(15999, 16001) n, generate_series(1, n) i GROUP BY n) s ORDER BY nnz;
-- even when the extra elements are zeros
SELECT pg_temp.try(format('SELECT %L::sparsevec::text',
    '{' || string_agg(i || ':0', ',') || '}/20000')) FROM generate_series(1, 16001) i;

--
-- type modifiers
--
SELECT '{1:1}/3'::sparsevec(3);
SELECT q, pg_temp.try(q) FROM (VALUES
    ($$SELECT '{1:1}/3'::sparsevec(2)::text$$),
    ($$SELECT '{1:1}/3'::sparsevec(3, 2)::text$$),
    ($$SELECT '{1:1}/3'::sparsevec(0)::text$$),
    ($$SELECT '{1:1}/3'::sparsevec(1000000001)::text$$),
    ($$SELECT '{}/1000000000'::sparsevec(1000000000)::text$$),
    ($$SELECT '{1:1}/3'::sparsevec('a')::text$$)
) t(q);
CREATE TABLE sparsevec_t (id int, v sparsevec(4));
INSERT INTO sparsevec_t VALUES (1, '{1:1,4:4}/4');
INSERT INTO sparsevec_t VALUES (2, '{1:1}/3');
-- assignment casts from vector, halfvec and arrays honour the typmod
INSERT INTO sparsevec_t VALUES (2, '[0,2,0,0]'::vector), (3, '[0,0,3,0]'::halfvec),
    (4, ARRAY[0,0,0,4]), (5, ARRAY[0.5,0,0,0]::float8[]);
INSERT INTO sparsevec_t VALUES (6, '[1,2,3]'::vector);
INSERT INTO sparsevec_t VALUES (6, ARRAY[1,2,3]);
SELECT * FROM sparsevec_t ORDER BY id;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'sparsevec_t'::regclass AND attname = 'v';

--
-- casts
--
SELECT '[0,1.5,0,-3.5,0]'::vector::sparsevec, '[0,1.5,0,-3.5,0]'::halfvec::sparsevec;
SELECT '[0,0,0]'::vector::sparsevec, '[-0,0]'::halfvec::sparsevec;
SELECT '{2:1.5,4:-3.5}/5'::sparsevec::vector, '{2:1.5,4:-3.5}/5'::sparsevec::halfvec;
SELECT '{}/3'::sparsevec::vector, '{1:0.1}/1'::sparsevec::halfvec;
SELECT ARRAY[1,0,2,0]::sparsevec, ARRAY[1.5,0,-2]::real[]::sparsevec,
    ARRAY[0,1e-50,1]::float8[]::sparsevec, ARRAY[0.25,0,0]::numeric[]::sparsevec;
-- a full vector of 16000 dimensions fits (16000 non-zeros)
SELECT l2_norm(array_fill(1, ARRAY[16000])::vector::sparsevec) AS norm,
    array_fill(1, ARRAY[16000])::vector::sparsevec::vector = array_fill(1, ARRAY[16000])::vector AS same;
SELECT q, pg_temp.try(q) FROM (VALUES
    ($$SELECT '[0,1,0]'::vector::sparsevec(2)::text$$),
    ($$SELECT '{1:1}/3'::sparsevec::vector(2)::text$$),
    ($$SELECT '{1:1}/3'::sparsevec::halfvec(2)::text$$),
    ($$SELECT '{}/16001'::sparsevec::vector::text$$),
    ($$SELECT '{1:1}/16001'::sparsevec::halfvec::text$$),
    ($$SELECT '{1:65520}/1'::sparsevec::halfvec::text$$),
    ($$SELECT '{1:1e-8}/1'::sparsevec::halfvec::text$$),
    ($$SELECT '{}'::real[]::sparsevec::text$$),
    ($$SELECT '{{1,2},{3,4}}'::real[]::sparsevec::text$$),
    ($$SELECT '{1,NULL}'::real[]::sparsevec::text$$),
    ($$SELECT '{1,NaN}'::real[]::sparsevec::text$$),
    ($$SELECT '{1,-Infinity}'::real[]::sparsevec::text$$),
    ($$SELECT '{1,1e300}'::float8[]::sparsevec::text$$),
    ($$SELECT '{1,1e39}'::numeric[]::sparsevec::text$$),
    ($$SELECT ARRAY[0,0,1]::sparsevec(2)::text$$),
    ($$SELECT array_fill(1, ARRAY[16001])::sparsevec::text$$),
    ($$SELECT (array_fill(0, ARRAY[100000]) || 1)::sparsevec::text$$)
) t(q);
-- vector and halfvec convert implicitly (a distance to a vector literal), arrays do not
SELECT '{1:3}/2'::sparsevec <-> '[0,4]'::vector;
SELECT pg_temp.try($$SELECT '{1:3}/2'::sparsevec <-> ARRAY[0,4]$$);

--
-- distances
--
SELECT l2_distance('{1:3}/2'::sparsevec, '{2:4}/2'), '{1:3}/2'::sparsevec <-> '{2:4}/2',
    sparsevec_l2_squared_distance('{1:3}/2', '{2:4}/2');
SELECT inner_product('{1:1,3:3,5:5}/5'::sparsevec, '{2:4,3:6,5:-1}/5'),
    '{1:1,3:3,5:5}/5'::sparsevec <#> '{2:4,3:6,5:-1}/5',
    sparsevec_negative_inner_product('{1:1,3:3,5:5}/5', '{2:4,3:6,5:-1}/5');
SELECT cosine_distance('{1:1,2:2}/3'::sparsevec, '{1:2,2:4}/3'),
    '{1:1}/3'::sparsevec <=> '{3:1}/3', '{1:1}/3'::sparsevec <=> '{1:-5}/3';
SELECT cosine_distance('{}/3'::sparsevec, '{1:1}/3'), cosine_distance('{}/3'::sparsevec, '{}/3');
SELECT l1_distance('{1:1,3:3}/4'::sparsevec, '{2:-2,3:1,4:4}/4'), '{}/4'::sparsevec <+> '{4:-4}/4';
-- far apart indices in a billion dimensions
SELECT '{1:1,1000000000:2}/1000000000'::sparsevec <-> '{500000000:2}/1000000000' AS l2,
    '{1:1,1000000000:2}/1000000000'::sparsevec <#> '{1000000000:3}/1000000000' AS neg_ip;
-- sums are in float4, like pgvector's: they can overflow
SELECT inner_product('{1:3e38}/1'::sparsevec, '{1:3e38}/1'), l1_distance('{1:3e38}/1'::sparsevec, '{1:-3e38}/1'),
    cosine_distance('{1:3e38}/1'::sparsevec, '{1:3e38}/1');
-- the dense types agree
SELECT a <-> b = a::vector <-> b::vector AS l2, a <#> b = a::vector <#> b::vector AS ip,
    a <+> b = a::vector <+> b::vector AS l1, abs((a <=> b) - (a::vector <=> b::vector)) < 1e-12 AS cos
FROM (SELECT '{1:0.5,4:-2,7:3.25}/8'::sparsevec AS a, '{2:1,4:1.5,8:-0.75}/8'::sparsevec AS b) s;
SELECT q, pg_temp.try(q) FROM (VALUES
    ($$SELECT '{1:1}/2'::sparsevec <-> '{1:1}/3'$$),
    ($$SELECT '{1:1}/2'::sparsevec <#> '{1:1}/3'$$),
    ($$SELECT '{1:1}/2'::sparsevec <=> '{1:1}/3'$$),
    ($$SELECT '{1:1}/2'::sparsevec <+> '{1:1}/3'$$),
    ($$SELECT sparsevec_l2_squared_distance('{1:1}/2', '{1:1}/3')$$)
) t(q);

--
-- norms
--
SELECT l2_norm('{1:3,2:4}/2'::sparsevec), l2_norm('{}/2'::sparsevec), l2_norm('{1:3e38,2:3e38}/2'::sparsevec);
SELECT l2_normalize('{1:3,5:-4}/5'::sparsevec), l2_normalize('{}/5'::sparsevec);
-- an element that underflows to zero is dropped
SELECT l2_normalize('{1:3e38,2:1e-37,3:-1e-37}/3'::sparsevec);
SELECT l2_norm(l2_normalize('{1:0.001,3:0.002,9:0.003}/9'::sparsevec));

--
-- comparisons: the order of the dense vectors, then the number of dimensions
--
SELECT a, b, sparsevec_cmp(a, b) AS cmp, a < b AS lt, a <= b AS le, a = b AS eq, a <> b AS ne,
    a >= b AS ge, a > b AS gt, sparsevec_cmp(a, b) = sign(vector_cmp(a::vector, b::vector)) AS as_dense
FROM (VALUES
    ('{1:1,2:2}/3'::sparsevec, '{1:1,2:2}/3'::sparsevec),
    ('{1:1}/3', '{2:1}/3'),
    ('{1:-1}/3', '{2:1}/3'),
    ('{2:1}/3', '{2:-1}/3'),
    ('{}/3', '{3:1}/3'),
    ('{}/3', '{3:-1}/3'),
    ('{1:1}/2', '{1:1}/3'),
    ('{1:1}/3', '{1:1,3:1}/3'),
    ('{1:1,3:5}/3', '{1:1}/2'),
    ('{1:1,2:1}/2', '{1:1}/3'),
    ('{1:2}/1', '{1:1,2:9}/2')
) t(a, b);

--
-- btree: ORDER BY, DISTINCT, a unique index and index scans
--
CREATE TABLE sparsevec_b (v sparsevec);
INSERT INTO sparsevec_b VALUES ('{1:1}/3'), ('{}/3'), ('{2:1}/3'), ('{1:-1}/3'), ('{1:1}/2'),
    ('{}/3'), ('{1:1,3:1}/3'), (NULL), ('{3:-1}/3');
SELECT v FROM sparsevec_b ORDER BY v;
SELECT DISTINCT v FROM sparsevec_b ORDER BY v DESC;
SELECT pg_temp.try($$CREATE UNIQUE INDEX ON sparsevec_b (v)$$);
DELETE FROM sparsevec_b WHERE v = '{}/3';
CREATE UNIQUE INDEX sparsevec_b_v ON sparsevec_b (v);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT v FROM sparsevec_b WHERE v >= '{}/3' ORDER BY v;
SELECT v FROM sparsevec_b WHERE v >= '{}/3' ORDER BY v;
SELECT v FROM sparsevec_b WHERE v = '{1:1,3:1}/3';
RESET enable_seqscan;
SELECT pg_temp.try($$INSERT INTO sparsevec_b VALUES ('{1:1}/2')$$);

--
-- binary send and receive: int32 dim, int32 nnz, int32 unused, int32 0-based indices, then
-- float4 values, all big-endian
--
SELECT encode(sparsevec_send('{1:1.5,3:-2}/5'), 'hex');
SELECT encode(sparsevec_send('{}/1000000000'), 'hex');
CREATE TABLE sparsevec_c (id int, v sparsevec);
INSERT INTO sparsevec_c VALUES (1, '{1:1,3:-2.5}/3'), (2, '{}/7'), (3, NULL),
    (4, array_fill(0.5, ARRAY[16000])::sparsevec), (5, '{1000000000:1e-45}/1000000000');
COPY sparsevec_c TO '/tmp/hnsw_ext_regress_sparsevec.bin' WITH (FORMAT binary);
CREATE TABLE sparsevec_d (id int, v sparsevec);
COPY sparsevec_d FROM '/tmp/hnsw_ext_regress_sparsevec.bin' WITH (FORMAT binary);
SELECT count(*) AS identical FROM sparsevec_c c JOIN sparsevec_d d USING (id)
WHERE sparsevec_send(c.v) = sparsevec_send(d.v) AND c.v = d.v;
-- the 16000-element value is stored out of line and reads back whole
SELECT id, l2_norm(v), length(v::text) FROM sparsevec_d WHERE id = 4;
SELECT pg_column_size(v) FROM sparsevec_c WHERE id = 1;

-- Returns the value read back as text, or "SQLSTATE: message".
CREATE FUNCTION pg_temp.recv(payload text, typ text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    DROP TABLE IF EXISTS sparsevec_recv;
    EXECUTE format($q$COPY (SELECT decode(%L, 'hex')) TO '/tmp/hnsw_ext_regress_sparsevec.bin' WITH (FORMAT binary)$q$, payload);
    EXECUTE format('CREATE TEMP TABLE sparsevec_recv (v %s)', typ);
    EXECUTE $q$COPY sparsevec_recv FROM '/tmp/hnsw_ext_regress_sparsevec.bin' WITH (FORMAT binary)$q$;
    RETURN 'ok: ' || (SELECT v::text FROM sparsevec_recv);
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SET client_min_messages = warning;
SELECT payload, typ, pg_temp.recv(payload, typ) AS result FROM (VALUES
    ('00000005' || '00000002' || '00000000' || '00000000' || '00000002' || '3fc00000' || 'c0000000', 'sparsevec'),
    ('00000005' || '00000002' || '00000000' || '00000000' || '00000002' || '3fc00000' || 'c0000000', 'sparsevec(5)'),
    ('00000005' || '00000002' || '00000000' || '00000000' || '00000002' || '3fc00000' || 'c0000000', 'sparsevec(4)'),
    ('00000003' || '00000000' || '00000000', 'sparsevec'),
    -- short messages and trailing bytes
    ('00000003' || '00000000', 'sparsevec'),
    ('00000003' || '00000001' || '00000000' || '00000000', 'sparsevec'),
    ('00000003' || '00000001' || '00000000' || '00000000' || '3f80', 'sparsevec'),
    ('00000003' || '00000000' || '00000000' || '00', 'sparsevec'),
    -- header checks
    ('00000000' || '00000000' || '00000000', 'sparsevec'),
    ('3b9aca01' || '00000000' || '00000000', 'sparsevec'),
    ('00000003' || 'ffffffff' || '00000000', 'sparsevec'),
    ('00000003' || '00000004' || '00000000', 'sparsevec'),
    ('3b9aca00' || '00003e81' || '00000000', 'sparsevec'),
    ('00000003' || '00000000' || '00000001', 'sparsevec'),
    -- index checks
    ('00000003' || '00000001' || '00000000' || '00000003' || '3f800000', 'sparsevec'),
    ('00000003' || '00000001' || '00000000' || 'ffffffff' || '3f800000', 'sparsevec'),
    ('00000003' || '00000002' || '00000000' || '00000002' || '00000001' || '3f800000' || '3f800000', 'sparsevec'),
    ('00000003' || '00000002' || '00000000' || '00000001' || '00000001' || '3f800000' || '3f800000', 'sparsevec'),
    -- value checks
    ('00000003' || '00000001' || '00000000' || '00000000' || '00000000', 'sparsevec'),
    ('00000003' || '00000001' || '00000000' || '00000000' || '80000000', 'sparsevec'),
    ('00000003' || '00000001' || '00000000' || '00000000' || '7fc00000', 'sparsevec'),
    ('00000003' || '00000001' || '00000000' || '00000000' || 'ff800000', 'sparsevec')
) t(payload, typ);
RESET client_min_messages;

DROP TABLE sparsevec_t, sparsevec_b, sparsevec_c, sparsevec_d;
