-- bit: hamming_distance / <~> and jaccard_distance / <%> on Postgres's bit type
-- (pgvector's binary quantization), values that can be checked by hand.
\set SHOW_CONTEXT never

SELECT hamming_distance(B'101', B'011'), B'101' <~> B'011', B'101' <~> B'101';
SELECT jaccard_distance(B'1100', B'1000'), B'1100' <%> B'1000', B'1111' <%> B'1111';
-- nothing set in both: as far as Jaccard goes, even two strings of zeros (pgvector)
SELECT B'0000' <%> B'0000', B'1000' <%> B'0100', ''::bit varying <%> '';
SELECT hamming_distance('', '');
-- lengths around every kernel's word, block and tail boundaries
SELECT n, hamming_distance(a, b) AS hamming, jaccard_distance(a, b)::numeric(10, 8) AS jaccard,
       length(replace((a # b)::text, '0', '')) AS want_hamming
FROM (SELECT n,
             (SELECT string_agg(((i * 7) % 3 = 0)::int::text, '') FROM generate_series(1, n) i)::varbit AS a,
             (SELECT string_agg(((i * 5) % 4 = 1)::int::text, '') FROM generate_series(1, n) i)::varbit AS b
      FROM unnest(ARRAY[1, 7, 8, 9, 63, 64, 65, 511, 512, 513, 1000, 4100]) n) s
ORDER BY n;
-- bit varying arguments of the same length
SELECT hamming_distance('111', '000'::varbit(4)), jaccard_distance('1111', '0000'::varbit(5));
-- binary_quantize gives a bit(n) the operators take
SELECT binary_quantize('[1,-2,3]'::vector) <~> binary_quantize('[1,2,-3]'::vector);
SELECT binary_quantize('[1,-2,3]'::halfvec) <%> binary_quantize('[1,2,3]'::halfvec);
SELECT B'101' <~> NULL::bit, hamming_distance(NULL, B'1');

-- errors: different lengths (SQLSTATE 22000, pgvector's words)
SELECT hamming_distance('111', '00');
\echo :LAST_ERROR_SQLSTATE
SELECT B'1111' <%> B'000';
\echo :LAST_ERROR_SQLSTATE
SELECT hamming_distance('111', '0000'::varbit(4));
