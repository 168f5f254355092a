-- Planner cost (issue 9, item 15): high-dimensional vectors live out of line in the table's
-- TOAST relation, which the planner leaves out of a sequential scan's cost; the index must
-- still win ORDER BY ... LIMIT 10 on a few thousand rows, and tiny tables keep their seq scan.
CREATE FUNCTION plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        RETURN NEXT regexp_replace(line, '''\[[^]]*\]''', '''[...]''', 'g');
    END LOOP;
END $$;
CREATE TABLE wide (id int, v vector(1536));
INSERT INTO wide
SELECT i, (SELECT array_agg(sin(i * 7919 + j)::real ORDER BY j) FROM generate_series(1, 1536) j)::vector
FROM generate_series(1, 2000) i;
CREATE INDEX wide_v_idx ON wide USING hnsw (v vector_l2_ops);
ANALYZE wide;
SELECT v AS q FROM wide WHERE id = 7 \gset
SELECT plan_of(format('SELECT id FROM wide ORDER BY v <-> %L LIMIT 10', :'q'));
SELECT id FROM wide ORDER BY v <-> :'q' LIMIT 1;
SELECT plan_of(format('SELECT id FROM wide WHERE id < 1000 ORDER BY v <-> %L LIMIT 10', :'q'));
-- tiny tables: a seq scan and a sort are exact and cheap there
CREATE TABLE narrow_few (id int, v vector(1536));
INSERT INTO narrow_few SELECT id, v FROM wide WHERE id <= 20;
CREATE INDEX ON narrow_few USING hnsw (v vector_l2_ops);
ANALYZE narrow_few;
SELECT plan_of(format('SELECT id FROM narrow_few ORDER BY v <-> %L LIMIT 10', :'q'));
CREATE TABLE small3 (id int, v vector(3));
INSERT INTO small3 SELECT i, ARRAY[i % 5, i % 3, i]::real[]::vector FROM generate_series(1, 30) i;
CREATE INDEX ON small3 USING hnsw (v vector_l2_ops);
ANALYZE small3;
EXPLAIN (COSTS OFF) SELECT id FROM small3 ORDER BY v <-> '[1,1,1]' LIMIT 10;
DROP TABLE wide, narrow_few, small3;
DROP FUNCTION plan_of(text);
