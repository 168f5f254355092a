//! `#[pg_test]`s of the SQL types inside Postgres (the full SQL surface, with expected output,
//! is in pg_test/sql/vector_*.sql and halfvec_*.sql).

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn text_round_trip_is_exact() {
        // Shortest-decimal output reads back to the same float4 bits.
        let same = Spi::get_one::<bool>(
            "SELECT bool_and(v::text::vector = v) FROM (
                SELECT (SELECT array_agg((random() - 0.5) * 10 ^ (random() * 60 - 30)) FROM generate_series(1, 64) WHERE g > 0)::vector AS v
                FROM generate_series(1, 200) g) s",
        )
        .unwrap()
        .unwrap();
        assert!(same);
    }

    #[pg_test]
    fn binary_layout_is_pgvectors() {
        let hex = Spi::get_one::<String>("SELECT encode(vector_send('[1,-2]'), 'hex')").unwrap().unwrap();
        // int16 dims, int16 unused, then big-endian float4s.
        assert_eq!(hex, "00020000".to_string() + "3f800000" + "c0000000");
        let hex = Spi::get_one::<String>("SELECT encode(halfvec_send('[1,-2]'), 'hex')").unwrap().unwrap();
        assert_eq!(hex, "00020000".to_string() + "3c00" + "c000");
    }

    #[pg_test]
    fn distances_match_their_definitions() {
        let row = Spi::get_three::<f64, f64, f64>(
            "SELECT '[1,2,3]'::vector <-> '[4,6,3]', '[1,2,3]'::vector <#> '[4,6,3]', '[1,2,3]'::vector <+> '[4,6,3]'",
        )
        .unwrap();
        assert_eq!(row, (Some(5.0), Some(-25.0), Some(7.0)));
        let cos = Spi::get_one::<f64>("SELECT '[1,0]'::vector <=> '[0,1]'").unwrap().unwrap();
        assert!((cos - 1.0).abs() < 1e-12);
        let half = Spi::get_one::<f64>("SELECT '[1,2,3]'::halfvec <-> '[4,6,3]'").unwrap().unwrap();
        assert_eq!(half, 5.0);
    }

    #[pg_test]
    fn casts_between_types_and_arrays() {
        let v = Spi::get_one::<String>("SELECT ARRAY[1, 2.5, -3]::real[]::vector::halfvec::vector::text").unwrap().unwrap();
        assert_eq!(v, "[1,2.5,-3]");
        let a = Spi::get_one::<Vec<f32>>("SELECT '[0.5,1]'::vector::real[]").unwrap().unwrap();
        assert_eq!(a, vec![0.5, 1.0]);
    }

    #[pg_test(error = "NaN not allowed in vector")]
    fn nan_is_rejected() {
        Spi::run("SELECT '[1,NaN]'::vector").unwrap();
    }

    #[pg_test(error = "different vector dimensions 2 and 3")]
    fn operands_must_have_equal_dimensions() {
        Spi::run("SELECT '[1,2]'::vector <-> '[1,2,3]'").unwrap();
    }

    #[pg_test(error = "\"70000\" is out of range for type halfvec")]
    fn halfvec_range_is_checked() {
        Spi::run("SELECT '[70000]'::halfvec").unwrap();
    }

    #[pg_test]
    fn avg_runs_in_parallel_and_agrees() {
        Spi::run("CREATE TABLE agg AS SELECT ARRAY[i % 7, i % 11, 1]::vector AS v FROM generate_series(1, 30000) i").unwrap();
        Spi::run(
            "SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0;
             SET LOCAL min_parallel_table_scan_size = 0; SET LOCAL max_parallel_workers_per_gather = 2",
        )
        .unwrap();
        let plan = Spi::connect(|c| {
            c.select("EXPLAIN (COSTS OFF) SELECT avg(v) FROM agg", None, &[])
                .unwrap()
                .map(|r| r.get::<String>(1).unwrap().unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        });
        assert!(plan.contains("Partial Aggregate"), "{plan}");
        let parallel = Spi::get_one::<String>("SELECT avg(v)::text FROM agg").unwrap().unwrap();
        Spi::run("SET LOCAL max_parallel_workers_per_gather = 0").unwrap();
        let serial = Spi::get_one::<String>("SELECT avg(v)::text FROM agg").unwrap().unwrap();
        assert_eq!(parallel, serial);
        // avg(i % 7) = 90000 / 30000, avg(i % 11) = 149991 / 30000
        assert_eq!(serial, "[3,4.9997,1]");
    }
}
