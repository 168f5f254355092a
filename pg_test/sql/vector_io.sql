-- vector: text input and output, type modifiers, and every input error with its SQLSTATE.
\set SHOW_CONTEXT never

-- Runs a statement and returns its first column as text, or "SQLSTATE: message" if it fails,
-- so that the error code is part of the expected output.
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
SELECT '[1,2,3]'::vector;
SELECT '[-1,-2.5,3.25]'::vector;
SELECT '[1.,2.,3.]'::vector;
SELECT ' [ 1,  2 ,    3  ] '::vector;
-- all six whitespace characters are allowed around brackets, commas and numbers
SELECT E' \t\n\r\x0b\f[ \t\n\r\x0b\f1 \t\n\r\x0b\f, \t\n\r\x0b\f2 \t\n\r\x0b\f] \t\n\r\x0b\f'::vector;
-- other characters are not whitespace
SELECT left(pg_temp.try($$SELECT E'[1,\x012]'::vector$$), 5) AS sqlstate,
       left(pg_temp.try($$SELECT E'[1,\u00a02]'::vector$$), 5) AS sqlstate_nbsp;
SELECT '[+1,-0,.5,1e2,1E-2,2.5e+3,-7.5E+1]'::vector;
SELECT '[1.5e38,-1.5e38,1.5e+38,1.5e-38,-1.5e-38]'::vector;
SELECT '[0000001.0000,00]'::vector;

--
-- output: shortest decimal that reads back as the same float4, as float4out prints it
--
SELECT '[1e-30,1e+30,1e30,-1e-30,-1e30]'::vector;
SELECT '[0.1,0.2,0.3,0.7]'::vector;
SELECT '[1.23456789,1.2345678,123456789,16777217]'::vector;
SELECT '[100000,1000000,0.0001,0.00001]'::vector;
SELECT '[3.4028235e38,-3.4028235e38,1.17549435e-38,1e-45]'::vector;
-- float4 underflow is not an error: too small values round to (signed) zero, like strtof
SELECT '[1e-46,-1e-46,1e-40]'::vector;
SELECT '[-0,0]'::vector;
-- the output of every element agrees with float4out (real[] output)
SELECT v::text = translate(v::real[]::text, '{}', '[]') AS same_as_float4out
FROM (VALUES ('[1e-30,1e+30,0.1,1.2345679,123456789,3.4028235e38,1e-45,-0,65504.01]'::vector)) t(v);
-- round trip through text is exact
SELECT v::text::vector = v AS round_trip, v::text = w AS text
FROM (VALUES ('[0.1,0.2,0.30000001,3.1415927,2.7182817,1e-45,3.4028235e+38]'::vector,
              '[0.1,0.2,0.3,3.1415927,2.7182817,1e-45,3.4028235e+38]')) t(v, w);
SELECT vector_dims('[1,2,3]'::vector);
SELECT pg_typeof('[1]'::vector);

--
-- bad text input
--
SELECT '[NaN,1]'::vector;
SELECT '[nan]'::vector;
SELECT '[Infinity,1]'::vector;
SELECT '[-Infinity,1]'::vector;
SELECT '[inf]'::vector;
SELECT '[-inf]'::vector;
SELECT '[+inf]'::vector;
SELECT '[]'::vector;
SELECT '[ ]'::vector;
SELECT ''::vector;
SELECT ' '::vector;
SELECT '['::vector;
SELECT '[ '::vector;
SELECT '[,'::vector;
SELECT '[,]'::vector;
SELECT '[1,]'::vector;
SELECT '[,1]'::vector;
SELECT '[1a]'::vector;
SELECT '[hello,1]'::vector;
SELECT '[1,,3]'::vector;
SELECT '[1, ,3]'::vector;
SELECT '[1 2]'::vector;
SELECT '[1;2]'::vector;
SELECT '[1,2,3'::vector;
SELECT '[1,2,3 '::vector;
SELECT '1,2,3'::vector;
SELECT '1,2,3]'::vector;
SELECT '(1,2,3)'::vector;
SELECT '{1,2,3}'::vector;
SELECT '[[1,2]]'::vector;
SELECT '[1,2,3]9'::vector;
SELECT '[1,2,3],'::vector;
SELECT '[1]]'::vector;
SELECT '[1] [2]'::vector;
-- out of the range of float4
SELECT '[1e39]'::vector;
SELECT '[-1e39,1]'::vector;
SELECT '[4e38,1]'::vector;
SELECT '[1,3.5e38]'::vector;
-- more than 16000 dimensions
SELECT ('[' || repeat('1,', 16000) || '1]')::vector;
SELECT vector_dims(('[' || repeat('1,', 15999) || '1]')::vector);
SELECT array_fill(1, ARRAY[16001])::vector;
SELECT vector_dims(array_fill(1.5::real, ARRAY[16000])::vector);

--
-- type modifiers
--
SELECT '[1,2,3]'::vector(3);
SELECT '[1,2,3]'::vector(2);
SELECT '[1,2,3]'::vector(4);
SELECT '[1,2,3]'::vector::vector(3);
SELECT '[1,2,3]'::vector::vector(2);
SELECT '[1,2,3]'::vector(3)::vector(4);
SELECT ('[' || repeat('1,', 15999) || '1]')::vector(16000) IS NOT NULL AS ok;
SELECT '[1]'::vector(16000);
SELECT '[1,2,3]'::vector(0);
SELECT '[1,2,3]'::vector(-1);
SELECT '[1,2,3]'::vector(16001);
SELECT '[1,2,3]'::vector(3, 2);
SELECT unnest('{"[1,2,3]", "[4,5,6]"}'::vector[]);
SELECT '{"[1,2,3]", "[4,5,6]"}'::vector(3)[];
SELECT '{"[1,2,3]"}'::vector(2)[];
CREATE TABLE vector_io_bad (v vector(0));
CREATE TABLE vector_io_bad (v vector(16001));
CREATE TABLE vector_io_bad (v vector(1, 2));

CREATE TABLE vector_io_t (id int, v vector(3));
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'vector_io_t'::regclass AND attname = 'v';
INSERT INTO vector_io_t VALUES (1, '[1,2,3]');
INSERT INTO vector_io_t VALUES (2, '[1,2]');
INSERT INTO vector_io_t VALUES (2, '[1,2,3,4]'::vector);
INSERT INTO vector_io_t SELECT 2, '[1,2]'::vector;
INSERT INTO vector_io_t VALUES (2, ' [ 4 , 5 , 6 ] ');
UPDATE vector_io_t SET v = '[1,2]' WHERE id = 1;
UPDATE vector_io_t SET v = v || '[1]' WHERE id = 1;
SELECT * FROM vector_io_t ORDER BY id;
-- an unconstrained column takes any number of dimensions
CREATE TABLE vector_io_any (v vector);
INSERT INTO vector_io_any VALUES ('[1]'), ('[1,2]'), (array_fill(0, ARRAY[16000])::vector);
SELECT vector_dims(v) FROM vector_io_any ORDER BY 1;
DROP TABLE vector_io_t, vector_io_any;

--
-- SQLSTATEs of the errors above
--
SELECT q, pg_temp.try(q) AS result FROM (VALUES
    -- 22P02 invalid_text_representation
    ($$SELECT '[1a]'::vector$$),
    ($$SELECT '1,2'::vector$$),
    ($$SELECT '[1,2'::vector$$),
    ($$SELECT '[1]x'::vector$$),
    ($$SELECT ''::vector$$),
    -- 22000 data_exception
    ($$SELECT '[NaN]'::vector$$),
    ($$SELECT '[Infinity]'::vector$$),
    ($$SELECT '[-inf]'::vector$$),
    ($$SELECT '[]'::vector$$),
    ($$SELECT '[1,2]'::vector(3)$$),
    ($$SELECT '[1,2]'::vector::vector(3)$$),
    -- 22003 numeric_value_out_of_range
    ($$SELECT '[1e39]'::vector$$),
    ($$SELECT '[-4e38]'::vector$$),
    -- 54000 program_limit_exceeded
    ($$SELECT ('[' || repeat('1,', 16000) || '1]')::vector$$),
    -- 22023 invalid_parameter_value
    ($$SELECT '[1]'::vector(0)$$),
    ($$SELECT '[1]'::vector(16001)$$),
    ($$SELECT '[1]'::vector(1, 1)$$),
    -- a modifier that is not an integer is rejected by Postgres itself
    ($$SELECT '[1]'::vector('a')$$)
) t(q);

--
-- operands of every binary operator and distance function must have the same dimensions
--
SELECT q, pg_temp.try(q) AS result FROM (VALUES
    ($$SELECT '[1,2]'::vector <-> '[3]'$$),
    ($$SELECT '[1,2]'::vector <#> '[3]'$$),
    ($$SELECT '[1,2]'::vector <=> '[3]'$$),
    ($$SELECT '[1,2]'::vector <+> '[3]'$$),
    ($$SELECT '[1,2]'::vector + '[3]'$$),
    ($$SELECT '[1,2]'::vector - '[3]'$$),
    ($$SELECT '[1,2]'::vector * '[3]'$$),
    ($$SELECT l2_distance('[1,2]'::vector, '[3]')$$),
    ($$SELECT vector_l2_squared_distance('[1,2]'::vector, '[3]')$$),
    ($$SELECT inner_product('[1,2]'::vector, '[3]')$$),
    ($$SELECT vector_negative_inner_product('[1,2]'::vector, '[3]')$$),
    ($$SELECT cosine_distance('[1,2]'::vector, '[3]')$$),
    ($$SELECT l1_distance('[1]'::vector, '[1,2,3]')$$),
    -- concatenation and comparison accept different dimensions
    ($$SELECT '[1,2]'::vector || '[3]'$$),
    ($$SELECT '[1,2]'::vector < '[3]'$$),
    ($$SELECT '[1,2]'::vector = '[1]'$$)
) t(q);
