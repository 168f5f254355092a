-- halfvec: operators and functions, with values that can be checked by hand. Arithmetic is
-- done in float4 and rounded to half; distances accumulate in float4 and return float8.
\set SHOW_CONTEXT never

--
-- element-wise arithmetic
--
SELECT '[1,2,3]'::halfvec + '[4,5,6]';
SELECT '[1,2,3]'::halfvec - '[4,5,6]';
SELECT '[1,2,3]'::halfvec * '[4,5,6]';
-- 0.1 and 0.2 are 0.0999755859375 and 0.199951171875 as halves; their sum 0.2999267578125 lies
-- exactly between two halves and rounds to the even one, 0.2998046875
SELECT '[0.1]'::halfvec + '[0.2]';
SELECT '[2048]'::halfvec + '[1]', '[2048]'::halfvec + '[3]', '[1]'::halfvec - '[1]', '[-1,2]'::halfvec * '[0,-0.5]';
SELECT '[255]'::halfvec * '[256]', '[65504]'::halfvec - '[65504]', '[0.001]'::halfvec * '[0.001]';
SELECT '[65519]'::halfvec + '[65519]';
SELECT '[-65519]'::halfvec - '[65519]';
SELECT '[65519]'::halfvec * '[65519]';
SELECT '[256]'::halfvec * '[256]';
SELECT '[1e-7]'::halfvec * '[1e-7]';
SELECT '[1e-4,2]'::halfvec * '[1e-4,2]';
SELECT '[0,1e-7]'::halfvec * '[1e-7,0]';
SELECT '[1e-4,300]'::halfvec * '[1e-4,300]';
SELECT '[300,1e-4]'::halfvec * '[300,1e-4]';
SELECT '[1,2]'::halfvec + '[3]';

--
-- distances
--
SELECT l2_distance('[0,0]'::halfvec, '[3,4]');
SELECT '[0,0]'::halfvec <-> '[3,4]';
SELECT l2_distance('[0,0]'::halfvec, '[0,1]');
SELECT l2_distance('[1,1,1,1,1,1,1,1,1]'::halfvec, '[1,1,1,1,1,1,1,4,5]');
SELECT l2_distance('[65504]'::halfvec, '[-65504]');
SELECT halfvec_l2_squared_distance('[0,0]'::halfvec, '[3,4]');
SELECT inner_product('[1,2]'::halfvec, '[3,4]');
SELECT '[1,2]'::halfvec <#> '[3,4]';
SELECT halfvec_negative_inner_product('[1,2]'::halfvec, '[3,4]');
SELECT inner_product('[65504]'::halfvec, '[65504]');
SELECT inner_product('[0.1]'::halfvec, '[10]');
SELECT inner_product('[1,1,1,1,1,1,1,1,1]'::halfvec, '[1,2,3,4,5,6,7,8,9]');
SELECT cosine_distance('[1,2]'::halfvec, '[2,4]');
SELECT '[1,2]'::halfvec <=> '[2,4]';
SELECT cosine_distance('[1,0]'::halfvec, '[0,2]');
SELECT cosine_distance('[1,1]'::halfvec, '[-1,-1]');
SELECT cosine_distance('[1,0]'::halfvec, '[1,1]');
SELECT cosine_distance('[1,1]'::halfvec, '[1.1,1.1]');
SELECT cosine_distance('[1,1]'::halfvec, '[-1.1,-1.1]');
SELECT cosine_distance('[1,2,3,4,5,6,7,8,9]'::halfvec, '[1,2,3,4,5,6,7,8,9]');
SELECT cosine_distance('[1,2,3,4,5,6,7,8,9]'::halfvec, '[-1,-2,-3,-4,-5,-6,-7,-8,-9]');
SELECT cosine_distance('[1,2]'::halfvec, '[0,0]');
SELECT '[0,0]'::halfvec <=> '[0,0]';
SELECT l1_distance('[0,0]'::halfvec, '[3,4]');
SELECT '[0,0]'::halfvec <+> '[3,4]';
SELECT l1_distance('[1,2,3,4,5,6,7,8,9]'::halfvec, '[0,3,2,5,4,7,6,9,8]');
SELECT l1_distance('[65504]'::halfvec, '[-65504]');
-- every length from 1 to 40: v = [1,2,...,n], w = [1,1,...,1], compared with closed forms
SELECT count(*) AS lengths,
       bool_and(l2_distance(v, w) = sqrt(((n - 1) * n * (2 * n - 1) / 6)::float8)) AS l2,
       bool_and(v <-> w = l2_distance(v, w)) AS l2_op,
       bool_and(halfvec_l2_squared_distance(v, w) = (n - 1) * n * (2 * n - 1) / 6) AS l2_squared,
       bool_and(inner_product(v, w) = n * (n + 1) / 2) AS ip,
       bool_and(v <#> w = -(n * (n + 1) / 2)) AS ip_op,
       bool_and(l1_distance(v, w) = n * (n - 1) / 2) AS l1,
       bool_and(v <+> w = n * (n - 1) / 2) AS l1_op,
       bool_and(v <=> v = 0 AND v <=> (v + v) = 0) AS cosine
FROM (SELECT n, (SELECT array_agg(i ORDER BY i) FROM generate_series(1, n) i)::halfvec AS v,
             array_fill(1, ARRAY[n])::halfvec AS w
      FROM generate_series(1, 40) n) t;
-- 16000 dimensions: v = [1,2,...,9,0,1,2,...] (sum 72000, sum of squares 456000)
SELECT l2_distance(v, z) AS l2, halfvec_l2_squared_distance(v, z) AS l2_squared,
       inner_product(v, w) AS ip, l1_distance(v, z) AS l1, v <=> (v + v) AS cosine,
       l2_norm(v) = sqrt(456000::float8) AS norm
FROM (SELECT (SELECT array_agg(i % 10 ORDER BY i) FROM generate_series(1, 16000) i)::halfvec AS v,
             array_fill(1, ARRAY[16000])::halfvec AS w,
             array_fill(0, ARRAY[16000])::halfvec AS z) t;

--
-- dimensions, norm, normalization
--
SELECT vector_dims('[1,2,3]'::halfvec);
SELECT l2_norm('[3,4]'::halfvec);
SELECT l2_norm('[0,1]'::halfvec);
SELECT l2_norm('[0,0]'::halfvec);
SELECT l2_norm('[1,1]'::halfvec);
SELECT l2_norm('[-2]'::halfvec);
SELECT l2_norm('[0.1]'::halfvec);
SELECT l2_norm('[65504,65504]'::halfvec);
-- normalized elements are rounded to half
SELECT l2_normalize('[3,4]'::halfvec);
SELECT l2_normalize('[3,0]'::halfvec);
SELECT l2_normalize('[0,0.1]'::halfvec);
SELECT l2_normalize('[1,1]'::halfvec);
SELECT l2_normalize('[65504]'::halfvec);
SELECT l2_normalize('[65504,65504]'::halfvec);
SELECT l2_normalize('[6e-8,-6e-8]'::halfvec);
SELECT l2_normalize('[0,0]'::halfvec);
SELECT l2_normalize('[-0,-0]'::halfvec);

--
-- binary_quantize
--
SELECT binary_quantize('[1,0,-1]'::halfvec);
SELECT binary_quantize('[0,0.1,-0.2,-0.3,0.4,0.5,0.6,-0.7,0.8,-0.9,1]'::halfvec);
SELECT binary_quantize('[1,2,3,-4,5,6,-7,8,1,-2,-3,4,5,-6,7,8,-1,2,3]'::halfvec);
SELECT binary_quantize('[-0,6e-8,2e-8]'::halfvec);
SELECT pg_typeof(binary_quantize('[1]'::halfvec)), length(binary_quantize(array_fill(1, ARRAY[16000])::halfvec));

--
-- subvector
--
SELECT subvector('[1,2,3,4,5]'::halfvec, 1, 3);
SELECT subvector('[1,2,3,4,5]'::halfvec, 3, 2);
SELECT subvector('[1,2,3,4,5]'::halfvec, -1, 3);
SELECT subvector('[1,2,3,4,5]'::halfvec, 3, 9);
SELECT subvector('[1,2,3,4,5]'::halfvec, 3, 2147483647);
SELECT subvector('[1,2,3,4,5]'::halfvec, -2147483644, 2147483647);
SELECT subvector('[0.1,0.2,0.3]'::halfvec, 2, 2);
SELECT subvector('[1,2,3,4,5]'::halfvec, 1, 0);
SELECT subvector('[1,2,3,4,5]'::halfvec, 3, -1);
SELECT subvector('[1,2,3,4,5]'::halfvec, -1, 2);
SELECT subvector('[1,2,3,4,5]'::halfvec, 6, 1);
SELECT subvector('[1,2,3,4,5]'::halfvec, 2147483647, 10);

--
-- concatenation
--
SELECT '[1,2,3]'::halfvec || '[4,5]';
SELECT '[0.1]'::halfvec || '[-0]';
SELECT vector_dims(array_fill(0, ARRAY[8000])::halfvec || array_fill(1, ARRAY[8000])::halfvec);
SELECT array_fill(0, ARRAY[16000])::halfvec || '[1]';
SELECT '[1]'::halfvec || array_fill(0, ARRAY[16000])::halfvec;
-- pgvector's spherical distance (acos of the clamped inner product, over pi)
SELECT halfvec_spherical_distance('[1,0]', '[0,1]'), halfvec_spherical_distance('[1,0]', '[-1,0]'),
       halfvec_spherical_distance('[2,0]', '[2,0]');
SELECT halfvec_spherical_distance('[1,0]', '[1,0,0]');
