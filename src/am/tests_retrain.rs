//! `#[pg_test]`s of the retraining of quantized indexes trained on too few rows
//! (`am::insert::retrain`): one cut short after re-encoding one page, as a crash or an ERROR
//! part way would leave it, must go on answering with codes of both generations.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::pg_sys;
    use pgrx::prelude::*;

    use hnsw_core::metric::Metric;

    use crate::am::graph::{scorer, Query};
    use crate::am::insert::retrain::retrain;
    use crate::storage::buffer::{Buffer, Lock, Logging};
    use crate::storage::element::{nblocks, Extent};
    use crate::storage::meta::RETRAIN_AT;
    use crate::storage::quant::{with_full_at, Codec};
    use crate::storage::tuple::{code_body_full, code_body_generation, vector_tuples};
    use crate::storage::Meta;

    fn with_index<T>(name: &str, f: impl FnOnce(pg_sys::Relation) -> T) -> T {
        let oid = Spi::get_one::<pg_sys::Oid>(&format!("SELECT '{name}'::regclass::oid")).unwrap().unwrap();
        // SAFETY: opened and closed here (an ERROR in between closes it at abort).
        unsafe {
            let rel = pg_sys::index_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            let out = f(rel);
            pg_sys::index_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            out
        }
    }

    fn report() -> String {
        Spi::get_one::<String>("SELECT hnsw_index_check('rq_idx')").unwrap().unwrap()
    }

    /// 16 values of row `g` (an SQL expression).
    fn row(g: &str) -> String {
        format!(
            "ARRAY[sin({g}), cos({g}), sin(2 * {g}), cos(2 * {g}), sin(3 * {g}), cos(3 * {g}), {g} % 7, {g} % 11, {g} % 13, \
             sqrt({g}), ln({g} + 1), {g} % 3, sin({g} / 10), cos({g} / 10), ({g} % 17) / 2, ({g} % 5) * 3]::real[]::vector"
        )
    }

    /// Share of the exact 10 nearest rows the index returns, over queries between the rows, at
    /// ef_search 10 (so that the walk's estimates decide).
    fn recall(queries: impl Iterator<Item = f64>) -> f64 {
        let ids = |setting: &str, q: &str| -> Vec<i32> {
            Spi::run(setting).unwrap();
            Spi::connect(|c| {
                c.select(&format!("SELECT id FROM rq ORDER BY v <-> '{q}', id LIMIT 10"), None, &[])
                    .unwrap()
                    .map(|r| r.get::<i32>(1).unwrap().unwrap())
                    .collect()
            })
        };
        let (mut hits, mut all) = (0, 0);
        for g in queries {
            let q = Spi::get_one::<String>(&format!("SELECT ({})::text", row(&g.to_string()))).unwrap().unwrap();
            let got = ids("SET hnsw.ef_search = 10; SET enable_seqscan = off", &q);
            let exact = ids("RESET enable_seqscan; SET enable_indexscan = off", &q);
            Spi::run("RESET enable_indexscan").unwrap();
            hits += got.iter().filter(|i| exact.contains(i)).count();
            all += exact.len();
        }
        hits as f64 / all as f64
    }

    /// Every code's estimated squared L2 distance to `q` (an SQL vector expression) is within
    /// what 8-bit codes allow of the exact one: each code measured with its own generation's
    /// parameters (the first ones, wide and coarse, or the retrained ones).
    fn estimates_follow_generations(q: &str) {
        let q: Vec<f32> = Spi::get_one::<String>(&format!("SELECT ({q})::text"))
            .unwrap()
            .unwrap()
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|x| x.parse().unwrap())
            .collect();
        with_index("rq_idx", |rel| {
            let meta = Meta::read(rel);
            let codec = Codec::load(rel, &meta);
            let extent = Extent::new(rel);
            let dist = scorer::<f32>(&codec, Metric::L2, Query::Scan(&q));
            let mut seen = [0usize; 2];
            for block in 1..nblocks(rel) {
                let buf = Buffer::read(rel, block, Lock::Share);
                for (_, t) in vector_tuples(buf.page()) {
                    let body = codec.body_of(&t);
                    let generation = code_body_generation(body);
                    let exact = with_full_at::<f32, _>(&extent, code_body_full(body), 16, |v| {
                        v.iter().zip(&q).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>()
                    })
                    .unwrap();
                    // Half a step of the first parameters' range (twice row 600's sqrt(600))
                    // per dimension at most.
                    let half_step = (4.0 * 600f64.sqrt() / 255.0) / 2.0;
                    let err = half_step * 4.0;
                    let bound = 2.0 * exact.sqrt() * err + err * err + 1e-3;
                    let est = f64::from(dist(body));
                    assert!((est - exact).abs() <= bound, "generation {generation}: estimate {est}, exact {exact}");
                    seen[usize::from(generation)] += 1;
                }
            }
            assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
        });
    }

    fn retrain_cut_short(quant: &str) {
        Spi::run("CREATE TABLE rq (id int, v vector(16))").unwrap();
        Spi::run(&format!("CREATE INDEX rq_idx ON rq USING hnsw (v vector_l2_ops) WITH (quantization = {quant})")).unwrap();
        // The first row trains the index: ranges of twice its largest value in every dimension.
        Spi::run(&format!("INSERT INTO rq SELECT g, {} FROM generate_series(600, 1, -1) g", row("g"))).unwrap();
        assert!(report().contains("(600 rows and inserts so far)"), "{}", report());
        with_index("rq_idx", |rel| {
            Meta::update(rel, Logging::Wal, |m| {
                m.provisional = RETRAIN_AT;
                true
            });
            retrain::<f32>(rel, Logging::Wal, 1);
        });
        let text = report();
        let left: usize = text
            .split("retrained by an insert; ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        assert!(left > 300 && left < 600 && text.ends_with("OK"), "{text}");
        if quant == "sq8" {
            estimates_follow_generations(&row("300.5"));
        }
        // Scans and inserts measure each code with its own generation's parameters.
        let r = recall((0..40).map(|i| 3.7 + 14.9 * f64::from(i)));
        assert!(r >= 0.9, "{quant}: recall@10 {r} with codes of both generations");
        Spi::run(&format!("INSERT INTO rq SELECT g, {} FROM generate_series(601, 900) g", row("g"))).unwrap();
        Spi::run("DELETE FROM rq WHERE id % 5 = 0").unwrap();
        let text = report();
        assert!(text.ends_with("OK"), "{text}");
        let r = recall((0..40).map(|i| 5.3 + 22.1 * f64::from(i)));
        assert!(r >= 0.9, "{quant}: recall@10 {r} after inserts and deletes");
    }

    #[pg_test]
    fn sq8_retraining_cut_short_answers_with_both_generations() {
        retrain_cut_short("sq8");
    }

    #[pg_test]
    fn rabitq1_retraining_cut_short_answers_with_both_generations() {
        retrain_cut_short("rabitq1");
    }
}
