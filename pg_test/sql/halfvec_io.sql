-- halfvec: text input and output, type modifiers, and every input error with its SQLSTATE.
-- Elements are IEEE half floats: input is parsed as float4 and rounded to the nearest half
-- (ties to even), output prints the shortest float4 decimal of the half value.
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
-- text input
--
SELECT '[1,2,3]'::halfvec;
SELECT '[-1,-2.5,3.25]'::halfvec;
SELECT '[1.,2.,3.]'::halfvec;
SELECT ' [ 1,  2 ,    3  ] '::halfvec;
SELECT E' \t\n\r\x0b\f[ \t\n\r\x0b\f1 \t\n\r\x0b\f, \t\n\r\x0b\f2 \t\n\r\x0b\f] \t\n\r\x0b\f'::halfvec;
SELECT '[+1,-0,.5,1e2,1E-2,2.5e+3,-7.5E+1]'::halfvec;

--
-- half-precision rounding is visible in the output
--
SELECT '[1.23456]'::halfvec;
SELECT '[0.1,0.2,0.3,-0.7,3.14159,1000.6]'::halfvec;
SELECT '[0.0001,6.1e-5,0.33333334,0.6666667]'::halfvec;
-- integers above 2048 are rounded to even
SELECT '[2048,2049,2050,2051,4097]'::halfvec;
-- the largest half is 65504; up to 65519.99 rounds down to it
SELECT '[65504,-65504,65519,-65519.99]'::halfvec;
-- subnormals: the smallest half is 2^-24 = 5.96e-8, half of it rounds to zero
SELECT '[6e-8,3e-8,2.9e-8,1e-8,-1e-8,6.1035156e-5]'::halfvec;
SELECT '[1e-46,-1e-46]'::halfvec;
SELECT '[-0,0]'::halfvec;
-- round trip through text is exact
SELECT h::text::halfvec = h AS round_trip, h::text AS text
FROM (VALUES ('[0.099975586,65504,5.9604645e-08,-0.33325195]'::halfvec)) t(h);
SELECT vector_dims('[1,2,3]'::halfvec);
SELECT pg_typeof('[1]'::halfvec);

--
-- bad text input
--
SELECT '[NaN,1]'::halfvec;
SELECT '[Infinity,1]'::halfvec;
SELECT '[-Infinity,1]'::halfvec;
SELECT '[inf]'::halfvec;
SELECT '[]'::halfvec;
SELECT '[ ]'::halfvec;
SELECT ''::halfvec;
SELECT '['::halfvec;
SELECT '[ '::halfvec;
SELECT '[,'::halfvec;
SELECT '[,]'::halfvec;
SELECT '[1,]'::halfvec;
SELECT '[1a]'::halfvec;
SELECT '[hello,1]'::halfvec;
SELECT '[1,,3]'::halfvec;
SELECT '[1, ,3]'::halfvec;
SELECT '[1 2]'::halfvec;
SELECT '[1,2,3'::halfvec;
SELECT '1,2,3'::halfvec;
SELECT '{1,2,3}'::halfvec;
SELECT '[1,2,3]9'::halfvec;
SELECT '[1] [2]'::halfvec;
-- out of the range of half
SELECT '[65520]'::halfvec;
SELECT '[65520,-65520]'::halfvec;
SELECT '[1,-70000]'::halfvec;
SELECT '[1e5]'::halfvec;
SELECT '[4e38,1]'::halfvec;
SELECT '[1e39]'::halfvec;
-- more than 16000 dimensions
SELECT ('[' || repeat('1,', 16000) || '1]')::halfvec;
SELECT vector_dims(('[' || repeat('1,', 15999) || '1]')::halfvec);
SELECT array_fill(1, ARRAY[16001])::halfvec;

--
-- type modifiers
--
SELECT '[1,2,3]'::halfvec(3);
SELECT '[1,2,3]'::halfvec(2);
SELECT '[1,2,3]'::halfvec::halfvec(2);
SELECT '[1,2,3]'::halfvec(3)::halfvec(4);
SELECT '[1]'::halfvec(16000);
SELECT '[1,2,3]'::halfvec(0);
SELECT '[1,2,3]'::halfvec(-1);
SELECT '[1,2,3]'::halfvec(16001);
SELECT '[1,2,3]'::halfvec(3, 2);
SELECT unnest('{"[1,2,3]", "[4,5,6]"}'::halfvec[]);
SELECT '{"[1,2,3]"}'::halfvec(2)[];
CREATE TABLE halfvec_io_bad (h halfvec(0));
CREATE TABLE halfvec_io_bad (h halfvec(16001));

CREATE TABLE halfvec_io_t (id int, h halfvec(3));
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'halfvec_io_t'::regclass AND attname = 'h';
INSERT INTO halfvec_io_t VALUES (1, '[1,2,3]');
INSERT INTO halfvec_io_t VALUES (2, '[1,2]');
INSERT INTO halfvec_io_t VALUES (2, '[1,2,3,4]'::halfvec);
INSERT INTO halfvec_io_t VALUES (2, '[0.1,0.2,70000]');
INSERT INTO halfvec_io_t VALUES (2, ' [ 0.1 , 0.2 , 0.3 ] ');
UPDATE halfvec_io_t SET h = '[1,2]' WHERE id = 1;
SELECT * FROM halfvec_io_t ORDER BY id;
DROP TABLE halfvec_io_t;

--
-- SQLSTATEs
--
SELECT q, pg_temp.try(q) AS result FROM (VALUES
    ($$SELECT '[1a]'::halfvec$$),
    ($$SELECT '1,2'::halfvec$$),
    ($$SELECT '[1]x'::halfvec$$),
    ($$SELECT '[NaN]'::halfvec$$),
    ($$SELECT '[-Infinity]'::halfvec$$),
    ($$SELECT '[]'::halfvec$$),
    ($$SELECT '[1,2]'::halfvec(3)$$),
    ($$SELECT '[65520]'::halfvec$$),
    ($$SELECT '[-1e39]'::halfvec$$),
    ($$SELECT ('[' || repeat('1,', 16000) || '1]')::halfvec$$),
    ($$SELECT '[1]'::halfvec(0)$$),
    ($$SELECT '[1]'::halfvec(16001)$$),
    ($$SELECT '[1]'::halfvec(1, 1)$$),
    ($$SELECT '[1]'::halfvec('a')$$)
) t(q);

--
-- operands of every binary operator and distance function must have the same dimensions
--
SELECT q, pg_temp.try(q) AS result FROM (VALUES
    ($$SELECT '[1,2]'::halfvec <-> '[3]'$$),
    ($$SELECT '[1,2]'::halfvec <#> '[3]'$$),
    ($$SELECT '[1,2]'::halfvec <=> '[3]'$$),
    ($$SELECT '[1,2]'::halfvec <+> '[3]'$$),
    ($$SELECT '[1,2]'::halfvec + '[3]'$$),
    ($$SELECT '[1,2]'::halfvec - '[3]'$$),
    ($$SELECT '[1,2]'::halfvec * '[3]'$$),
    ($$SELECT l2_distance('[1,2]'::halfvec, '[3]')$$),
    ($$SELECT halfvec_l2_squared_distance('[1,2]'::halfvec, '[3]')$$),
    ($$SELECT inner_product('[1,2]'::halfvec, '[3]')$$),
    ($$SELECT halfvec_negative_inner_product('[1,2]'::halfvec, '[3]')$$),
    ($$SELECT cosine_distance('[1,2]'::halfvec, '[3]')$$),
    ($$SELECT l1_distance('[1]'::halfvec, '[1,2,3]')$$),
    ($$SELECT '[1,2]'::halfvec || '[3]'$$),
    ($$SELECT '[1,2]'::halfvec < '[3]'$$)
) t(q);
