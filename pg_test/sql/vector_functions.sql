-- vector: operators and functions, with values that can be checked by hand.
\set SHOW_CONTEXT never

--
-- element-wise arithmetic (in float4, like pgvector)
--
SELECT '[1,2,3]'::vector + '[4,5,6]';
SELECT '[1,2,3]'::vector - '[4,5,6]';
SELECT '[1,2,3]'::vector * '[4,5,6]';
-- 0.1f + 0.2f rounds to the float4 closest to 0.3
SELECT '[0.1]'::vector + '[0.2]';
SELECT '[1]'::vector - '[1]', '[-1,2]'::vector * '[0,-0.5]', '[3e38]'::vector + '[-3e38]';
-- a subnormal product is not an underflow
SELECT '[1e-20]'::vector * '[1e-20]';
-- a zero factor gives zero without an underflow
SELECT '[0,1e-37]'::vector * '[1e-37,0]';
SELECT '[3e38]'::vector + '[3e38]';
SELECT '[-3e38]'::vector - '[3e38]';
SELECT '[1e37]'::vector * '[1e37]';
SELECT '[1e-37]'::vector * '[1e-37]';
SELECT '[1e-25,2]'::vector * '[1e-25,2]';
-- the first bad element decides the error
SELECT '[1e-30,1e30]'::vector * '[1e-30,1e30]';
SELECT '[1e30,1e-30]'::vector * '[1e30,1e-30]';
SELECT '[1,2]'::vector + '[3]';

--
-- distances (float4 accumulation, float8 result)
--
SELECT l2_distance('[0,0]'::vector, '[3,4]');
SELECT '[0,0]'::vector <-> '[3,4]';
SELECT '[1,2]'::vector <-> '[4,6]';
SELECT l2_distance('[0,0]'::vector, '[0,1]');
SELECT l2_distance('[1,1,1,1,1,1,1,1,1]'::vector, '[1,1,1,1,1,1,1,4,5]');
SELECT l2_distance('[3e38]'::vector, '[-3e38]');
SELECT vector_l2_squared_distance('[0,0]'::vector, '[3,4]');
SELECT inner_product('[1,2]'::vector, '[3,4]');
SELECT '[1,2]'::vector <#> '[3,4]';
SELECT vector_negative_inner_product('[1,2]'::vector, '[3,4]');
SELECT inner_product('[0.5,-0.25]'::vector, '[0.5,0.25]');
SELECT inner_product('[1,1,1,1,1,1,1,1,1]'::vector, '[1,2,3,4,5,6,7,8,9]');
SELECT inner_product('[3e38]'::vector, '[3e38]');
SELECT cosine_distance('[1,2]'::vector, '[2,4]');
SELECT '[1,2]'::vector <=> '[2,4]';
SELECT cosine_distance('[1,0]'::vector, '[0,2]');
SELECT cosine_distance('[1,1]'::vector, '[-1,-1]');
SELECT cosine_distance('[1,0]'::vector, '[1,1]');
SELECT cosine_distance('[1,0]'::vector, '[-1,1]');
-- kept in [0, 2] despite rounding
SELECT cosine_distance('[1,1]'::vector, '[1.1,1.1]');
SELECT cosine_distance('[1,1]'::vector, '[-1.1,-1.1]');
SELECT cosine_distance('[1,2,3,4,5,6,7,8,9]'::vector, '[1,2,3,4,5,6,7,8,9]');
SELECT cosine_distance('[1,2,3,4,5,6,7,8,9]'::vector, '[-1,-2,-3,-4,-5,-6,-7,-8,-9]');
-- a zero vector has no direction: NaN, as in pgvector
SELECT cosine_distance('[1,2]'::vector, '[0,0]');
SELECT '[0,0]'::vector <=> '[0,0]';
-- squares beyond the float4 range are summed in float8 (pgvector's float4 sums give NaN here):
-- the same direction, as a cosine index sees it
SELECT cosine_distance('[3e38]'::vector, '[3e38]');
SELECT l1_distance('[0,0]'::vector, '[3,4]');
SELECT '[0,0]'::vector <+> '[3,4]';
SELECT l1_distance('[0,0]'::vector, '[0,1]');
SELECT l1_distance('[1,2,3,4,5,6,7,8,9]'::vector, '[1,2,3,4,5,6,7,8,9]');
SELECT l1_distance('[1,2,3,4,5,6,7,8,9]'::vector, '[0,3,2,5,4,7,6,9,8]');
SELECT l1_distance('[3e38]'::vector, '[-3e38]');
-- every length from 1 to 40 (SIMD main loops and tails): v = [1,2,...,n], w = [1,1,...,1],
-- compared with closed forms (all partial sums are exact in float4)
SELECT count(*) AS lengths,
       bool_and(l2_distance(v, w) = sqrt(((n - 1) * n * (2 * n - 1) / 6)::float8)) AS l2,
       bool_and(v <-> w = l2_distance(v, w)) AS l2_op,
       bool_and(vector_l2_squared_distance(v, w) = (n - 1) * n * (2 * n - 1) / 6) AS l2_squared,
       bool_and(inner_product(v, w) = n * (n + 1) / 2) AS ip,
       bool_and(v <#> w = -(n * (n + 1) / 2)) AS ip_op,
       bool_and(l1_distance(v, w) = n * (n - 1) / 2) AS l1,
       bool_and(v <+> w = n * (n - 1) / 2) AS l1_op,
       bool_and(cosine_distance(v, v * v) >= 0 AND v <=> v = 0) AS cosine
FROM (SELECT n, (SELECT array_agg(i ORDER BY i) FROM generate_series(1, n) i)::vector AS v,
             array_fill(1, ARRAY[n])::vector AS w
      FROM generate_series(1, 40) n) t;
-- 16000 dimensions: v = [1,2,...,9,0,1,2,...] (sum 72000, sum of squares 456000), w = ones
SELECT l2_distance(v, z) AS l2, vector_l2_squared_distance(v, z) AS l2_squared,
       inner_product(v, w) AS ip, l1_distance(v, z) AS l1, v <=> (v + v) AS cosine,
       vector_norm(v) = sqrt(456000::float8) AS norm
FROM (SELECT (SELECT array_agg(i % 10 ORDER BY i) FROM generate_series(1, 16000) i)::vector AS v,
             array_fill(1, ARRAY[16000])::vector AS w,
             array_fill(0, ARRAY[16000])::vector AS z) t;

--
-- dimensions, norm, normalization
--
SELECT vector_dims('[1,2,3]'::vector);
SELECT vector_dims(array_fill(0, ARRAY[16000])::vector);
SELECT vector_norm('[3,4]');
SELECT vector_norm('[0,1]');
SELECT vector_norm('[0,0]');
SELECT vector_norm('[1,1]');
SELECT vector_norm('[-2]');
SELECT vector_norm('[3e37,4e37]')::real;
SELECT vector_norm(array_fill(1, ARRAY[16000])::vector);
SELECT l2_normalize('[3,4]'::vector);
SELECT l2_normalize('[3,0]'::vector);
SELECT l2_normalize('[0,0.1]'::vector);
SELECT l2_normalize('[-2]'::vector);
SELECT l2_normalize('[3e38]'::vector);
SELECT l2_normalize('[1e-45,1e-45]'::vector);
-- the zero vector stays zero (without signs)
SELECT l2_normalize('[0,0]'::vector);
SELECT l2_normalize('[-0,-0]'::vector);
SELECT round(vector_norm(l2_normalize('[1,2,3,4,5]'::vector))::numeric, 6);

--
-- binary_quantize: bit i is set where element i > 0
--
SELECT binary_quantize('[1,0,-1]'::vector);
SELECT binary_quantize('[0,0.1,-0.2,-0.3,0.4,0.5,0.6,-0.7,0.8,-0.9,1]'::vector);
SELECT binary_quantize('[1,2,3,-4,5,6,-7,8,1,-2,-3,4,5,-6,7,8,-1,2,3]'::vector);
SELECT binary_quantize('[-0,1e-45,-1e-45]'::vector);
SELECT pg_typeof(binary_quantize('[1]'::vector)), length(binary_quantize(array_fill(1, ARRAY[16000])::vector));
SELECT bit_count(binary_quantize(v)) FROM (SELECT (SELECT array_agg(i % 10 - 4 ORDER BY i) FROM generate_series(1, 16000) i)::vector AS v) t;

--
-- subvector(v, start, count): 1-based and clipped like substring()
--
SELECT subvector('[1,2,3,4,5]'::vector, 1, 3);
SELECT subvector('[1,2,3,4,5]'::vector, 3, 2);
SELECT subvector('[1,2,3,4,5]'::vector, 5, 1);
SELECT subvector('[1,2,3,4,5]'::vector, 1, 5);
SELECT subvector('[1,2,3,4,5]'::vector, -1, 3);
SELECT subvector('[1,2,3,4,5]'::vector, 0, 2);
SELECT subvector('[1,2,3,4,5]'::vector, 3, 9);
SELECT subvector('[1,2,3,4,5]'::vector, 3, 2147483647);
SELECT subvector('[1,2,3,4,5]'::vector, -2147483644, 2147483647);
SELECT subvector('[1,2,3,4,5]'::vector, -2147483648, 2147483647);
SELECT subvector('[1,2,3,4,5]'::vector, 1, 0);
SELECT subvector('[1,2,3,4,5]'::vector, 3, -1);
SELECT subvector('[1,2,3,4,5]'::vector, -1, 2);
SELECT subvector('[1,2,3,4,5]'::vector, 0, 1);
SELECT subvector('[1,2,3,4,5]'::vector, 6, 1);
SELECT subvector('[1,2,3,4,5]'::vector, 2147483647, 10);
SELECT subvector('[1,2,3,4,5]'::vector, 2147483647, 2147483647);
SELECT subvector('[1,2,3,4,5]'::vector, -2147483648, -2147483648);
SELECT vector_dims(subvector(array_fill(0, ARRAY[16000])::vector, 2, 16000));

--
-- concatenation
--
SELECT '[1,2,3]'::vector || '[4,5]';
SELECT '[1]'::vector || '[-0]' || '[1e-45]';
SELECT vector_dims(array_fill(0, ARRAY[8000])::vector || array_fill(1, ARRAY[8000])::vector);
SELECT array_fill(0, ARRAY[16000])::vector || '[1]';
SELECT '[1]'::vector || array_fill(0, ARRAY[16000])::vector;
SELECT array_fill(0, ARRAY[8001])::vector || array_fill(0, ARRAY[8000])::vector;

--
-- NULL arguments: every function is strict
--
SELECT NULL::vector + '[1]', '[1]'::vector <-> NULL, l2_normalize(NULL::vector) IS NULL AS n1,
       subvector('[1]'::vector, NULL, 1) IS NULL AS n2, vector_dims(NULL::vector) IS NULL AS n3;
-- pgvector's spherical distance (acos of the clamped inner product, over pi)
SELECT vector_spherical_distance('[1,0]', '[0,1]'), vector_spherical_distance('[1,0]', '[1,0]'),
       vector_spherical_distance('[1,0]', '[-1,0]'), vector_spherical_distance('[2,0]', '[2,0]');
SELECT vector_spherical_distance('[1,0]', '[1,0,0]');
