-- halfvec: casts from and to arrays (vector <-> halfvec is in vector_casts).
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
-- arrays to halfvec
--
SELECT ARRAY[1,2,3]::halfvec;
SELECT ARRAY[1.0,2.5,3.0]::halfvec;
SELECT ARRAY[1,2,3]::real[]::halfvec;
SELECT ARRAY[1,2,3]::double precision[]::halfvec;
SELECT ARRAY[1,2,3]::numeric[]::halfvec;
SELECT '{1,2,3}'::real[]::halfvec(3);
SELECT '{1,2,3}'::real[]::halfvec(2);
SELECT '{1,2,3}'::integer[]::halfvec(4);
-- conversions round to the nearest half
SELECT ARRAY[2049, 2051, 65504, -65519]::halfvec;
SELECT '{0.1,1.23456,1e-8,-1e-8,6e-8}'::real[]::halfvec;
SELECT '{0.1,1.23456,1e-8,-1e-8,6e-8}'::double precision[]::halfvec;
SELECT '{0.1,1.23456,1e-8,-1e-8,6e-8}'::numeric[]::halfvec;
-- out of the half range: the message shows the float4 value
SELECT ARRAY[1,65520]::halfvec;
SELECT ARRAY[-70000]::halfvec;
SELECT '{65520,-65520}'::real[]::halfvec;
SELECT '{1e10}'::real[]::halfvec;
SELECT '{1e10}'::double precision[]::halfvec;
SELECT '{123456.7}'::numeric[]::halfvec;
-- float8 beyond the float4 range becomes infinite, like in pgvector
SELECT '{4e38}'::double precision[]::halfvec;
-- NULLs, shape, non-finite values
SELECT NULL::real[]::halfvec IS NULL AS is_null;
SELECT '{1,NULL}'::integer[]::halfvec;
SELECT '{NULL}'::real[]::halfvec;
SELECT '{{1,2},{3,4}}'::real[]::halfvec;
SELECT '{}'::real[]::halfvec;
SELECT '{NaN}'::real[]::halfvec;
SELECT '{-Infinity}'::double precision[]::halfvec;
SELECT '{Infinity}'::numeric[]::halfvec;
-- all elements are converted before any is checked, so the range error comes first
SELECT '{NaN,70000}'::real[]::halfvec;
SELECT array_fill(1, ARRAY[16001])::halfvec;
SELECT vector_dims(array_fill(1, ARRAY[16000])::halfvec);
SELECT array_to_halfvec('{1,2}'::real[], 3, true);
SELECT q, pg_temp.try(q) AS result FROM (VALUES
    ($$SELECT '{1,NULL}'::real[]::halfvec$$),
    ($$SELECT '{{1}}'::real[]::halfvec$$),
    ($$SELECT '{}'::real[]::halfvec$$),
    ($$SELECT '{NaN}'::real[]::halfvec$$),
    ($$SELECT '{70000}'::real[]::halfvec$$),
    ($$SELECT '{1e39}'::numeric[]::halfvec$$),
    ($$SELECT '{1,2}'::real[]::halfvec(3)$$),
    ($$SELECT array_fill(1, ARRAY[16001])::halfvec$$)
) t(q);

-- assignment casts into halfvec columns
CREATE TABLE halfvec_casts_t (id int, h halfvec(3));
INSERT INTO halfvec_casts_t VALUES (1, ARRAY[1,2,3]);
INSERT INTO halfvec_casts_t VALUES (2, ARRAY[0.1,0.2,0.3]);
INSERT INTO halfvec_casts_t VALUES (3, '{4,5,6}'::real[]);
INSERT INTO halfvec_casts_t VALUES (4, '{7,8,9}'::double precision[]);
INSERT INTO halfvec_casts_t VALUES (5, ARRAY[1,2]);
INSERT INTO halfvec_casts_t VALUES (5, ARRAY[1,2,100000]);
SELECT * FROM halfvec_casts_t ORDER BY id;

--
-- halfvec to real[] (assignment)
--
SELECT '[1,2,3]'::halfvec::real[];
SELECT '[0.1,65504,-0,6e-8]'::halfvec::real[];
SELECT pg_typeof('[1]'::halfvec::real[]);
CREATE TABLE halfvec_casts_arr (a real[]);
INSERT INTO halfvec_casts_arr SELECT h FROM halfvec_casts_t WHERE id = 2;
SELECT * FROM halfvec_casts_arr;
SELECT h::real[]::halfvec = h AS round_trip FROM halfvec_casts_t;
SELECT cardinality(array_fill(7, ARRAY[16000])::halfvec::real[]);
-- it is not implicit (unlike vector to real[])
CREATE FUNCTION pg_temp.first(a real[]) RETURNS real LANGUAGE sql AS 'SELECT a[1]';
SELECT pg_temp.first('[1.5,2]'::vector);
SELECT pg_temp.first('[1.5,2]'::halfvec);
SELECT pg_temp.first('[1.5,2]'::halfvec::real[]);

DROP TABLE halfvec_casts_t, halfvec_casts_arr;
