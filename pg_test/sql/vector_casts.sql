-- vector: casts from and to arrays, and between vector and halfvec.
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
-- arrays to vector
--
SELECT ARRAY[1,2,3]::vector;
SELECT ARRAY[1.0,2.5,3.0]::vector;
SELECT ARRAY[1,2,3]::real[]::vector;
SELECT ARRAY[1,2,3]::double precision[]::vector;
SELECT ARRAY[1,2,3]::numeric[]::vector;
SELECT '{1,2,3}'::real[]::vector;
SELECT '{1,2,3}'::real[]::vector(3);
SELECT '{1,2,3}'::real[]::vector(2);
SELECT '{1,2,3}'::integer[]::vector(2);
SELECT '{1,2,3}'::double precision[]::vector(4);
SELECT '{1,2,3}'::numeric[]::vector(2);
-- conversions round to the nearest float4
SELECT ARRAY[2147483647, -2147483648, 16777217]::vector;
SELECT '{0.1,1.23456789,1e-46,-1e-46}'::double precision[]::vector;
SELECT '{0.1,1.23456789,3.4028235e38}'::numeric[]::vector;
SELECT '{-0,1e-45,3.4028235e38}'::real[]::vector;
SELECT array_fill(0.5, ARRAY[16000])::vector = array_fill(0.5::real, ARRAY[16000])::vector AS same;
-- NULL array, NULL elements
SELECT NULL::real[]::vector IS NULL AS is_null;
SELECT '{1,NULL}'::integer[]::vector;
SELECT '{NULL}'::real[]::vector;
SELECT '{1,NULL,3}'::double precision[]::vector;
SELECT '{NULL,NULL}'::numeric[]::vector;
-- multi-dimensional and empty arrays
SELECT '{{1,2},{3,4}}'::integer[]::vector;
SELECT '{{1}}'::real[]::vector;
SELECT '{{1,NULL}}'::real[]::vector;
SELECT '{}'::real[]::vector;
SELECT ARRAY[]::integer[]::vector;
SELECT '{}'::numeric[]::vector(3);
-- non-finite elements
SELECT '{NaN}'::real[]::vector;
SELECT '{1,Infinity}'::real[]::vector;
SELECT '{-Infinity}'::double precision[]::vector;
SELECT '{NaN}'::numeric[]::vector;
SELECT '{Infinity}'::numeric[]::vector;
-- float8 beyond the float4 range becomes infinite, like in pgvector
SELECT '{4e38,-4e38}'::double precision[]::vector;
SELECT '{1,1e300}'::double precision[]::vector;
-- too many elements
SELECT array_fill(1, ARRAY[16001])::vector;
SELECT array_fill(1::float8, ARRAY[16001])::vector(3);
SELECT array_to_vector(array_agg(n), 16001, false) FROM generate_series(1, 16001) n;
SELECT vector_dims(array_to_vector(array_agg(n), 16000, false)) FROM generate_series(1, 16000) n;
-- the cast functions can be called directly with a typmod
SELECT array_to_vector('{1,2}'::real[], 2, true);
SELECT array_to_vector('{1,2}'::real[], 3, true);
SELECT array_to_vector('{1,2}'::real[], -1, true);
-- errors raised by Postgres' numeric to float4 conversion (shown with their SQLSTATE)
SELECT q, pg_temp.try(q) AS result FROM (VALUES
    ($$SELECT '{1e39}'::numeric[]::vector$$),
    ($$SELECT '{-1e39}'::numeric[]::vector$$),
    ($$SELECT '{1e-50}'::numeric[]::vector$$)
) t(q);
-- SQLSTATEs
SELECT q, pg_temp.try(q) AS result FROM (VALUES
    ($$SELECT '{1,NULL}'::real[]::vector$$),
    ($$SELECT '{NULL}'::numeric[]::vector$$),
    ($$SELECT '{{1,2}}'::real[]::vector$$),
    ($$SELECT '{}'::real[]::vector$$),
    ($$SELECT '{NaN}'::real[]::vector$$),
    ($$SELECT '{Infinity}'::real[]::vector$$),
    ($$SELECT '{4e38}'::float8[]::vector$$),
    ($$SELECT '{1,2}'::integer[]::vector(3)$$),
    ($$SELECT array_fill(1, ARRAY[16001])::vector$$)
) t(q);

--
-- assignment casts: arrays are stored into vector columns without an explicit cast
--
CREATE TABLE vector_casts_t (id int, v vector(3));
INSERT INTO vector_casts_t VALUES (1, ARRAY[1,2,3]);
INSERT INTO vector_casts_t VALUES (2, ARRAY[1.5,2.5,3.5]);
INSERT INTO vector_casts_t VALUES (3, '{4,5,6}'::real[]);
INSERT INTO vector_casts_t VALUES (4, '{7,8,9}'::double precision[]);
INSERT INTO vector_casts_t SELECT 5, ARRAY[i, i + 1, i + 2] FROM generate_series(10, 10) i;
INSERT INTO vector_casts_t VALUES (6, ARRAY[1,2]);
INSERT INTO vector_casts_t VALUES (6, '{1,2,3,4}'::real[]);
INSERT INTO vector_casts_t VALUES (6, '{1,NULL,3}'::real[]);
UPDATE vector_casts_t SET v = ARRAY[0,0,0] WHERE id = 5;
SELECT * FROM vector_casts_t ORDER BY id;
-- but not implicitly in expressions
SELECT ARRAY[1,2,3] <-> '[1,2,3]'::vector;
SELECT l2_distance(ARRAY[1,2,3]::vector, '[1,2,4]');

--
-- vector to real[] (implicit)
--
SELECT '[1,2,3]'::vector::real[];
SELECT '[1e-30,-0,0.1,3.4028235e+38]'::vector::real[];
SELECT pg_typeof('[1]'::vector::real[]);
SELECT array_length(v::real[], 1), (v::real[])[2] FROM (VALUES ('[1.5,2.5,3.5]'::vector)) t(v);
SELECT cardinality(array_fill(7, ARRAY[16000])::vector::real[]);
CREATE TABLE vector_casts_arr (a real[]);
INSERT INTO vector_casts_arr VALUES ('[1,2,3]'::vector);
SELECT * FROM vector_casts_arr;
SELECT v::real[]::vector = v AS round_trip
FROM (VALUES ('[0.1,-0,1e-45,3.4028235e+38,-1.1754944e-38]'::vector)) t(v);
SELECT NULL::vector::real[] IS NULL AS is_null;

--
-- vector <-> halfvec
--
SELECT '[1,2,3]'::vector::halfvec;
SELECT '[1,2,3]'::vector::halfvec(3);
SELECT '[1,2,3]'::vector::halfvec(2);
-- rounding to half precision
SELECT '[0.1,1.23456,-3.14159,1000.6]'::vector::halfvec;
SELECT '[65504,-65504,65519,-65519]'::vector::halfvec;
SELECT '[1e-8,-1e-8,6e-8,3e-8,2.9e-8]'::vector::halfvec;
SELECT '[65520]'::vector::halfvec;
SELECT '[1,-70000]'::vector::halfvec;
SELECT '[3e38]'::vector::halfvec;
SELECT '[1,2,3]'::halfvec::vector;
SELECT '[1,2,3]'::halfvec::vector(3);
SELECT '[1,2,3]'::halfvec::vector(2);
SELECT '[0.1,65504,-0]'::halfvec::vector;
SELECT vector_dims(array_fill(1, ARRAY[16000])::vector::halfvec::vector);
-- vector to halfvec is implicit, halfvec to vector is an assignment cast
CREATE TABLE vector_casts_h (h halfvec(3));
INSERT INTO vector_casts_h VALUES ('[1.5,2.5,0.1]'::vector);
INSERT INTO vector_casts_h VALUES ('[1,2]'::vector);
INSERT INTO vector_casts_h VALUES ('[1,2,70000]'::vector);
SELECT h FROM vector_casts_h;
INSERT INTO vector_casts_t SELECT 7, h FROM vector_casts_h;
SELECT * FROM vector_casts_t WHERE id = 7;
SELECT l2_distance('[0,0]'::halfvec, '[3,4]'::vector);
SELECT q, pg_temp.try(q) AS result FROM (VALUES
    ($$SELECT '[65520]'::vector::halfvec$$),
    ($$SELECT '[1,2]'::vector::halfvec(3)$$),
    ($$SELECT '[1,2]'::halfvec::vector(3)$$)
) t(q);

DROP TABLE vector_casts_t, vector_casts_arr, vector_casts_h;
