//! Oracle throughput: predictions, model traces and checks per second, over the restart
//! suite and over generated scenarios.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use podcheck::runner::load_cases;
use podcheck_oracle::simulate::{simulate, Seeded};
use podcheck_oracle::{check, predict, Scenario};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::hint::black_box;
use std::path::PathBuf;

fn suite() -> Vec<Scenario> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites");
    load_cases(&[dir])
        .map(|cases| cases.into_iter().map(|c| c.scenario).collect())
        .unwrap_or_default()
}

fn generated(count: usize) -> Vec<Scenario> {
    let mut runner = TestRunner::deterministic();
    let strategy = podcheck_generators::scenario();
    (0..count)
        .filter_map(|_| strategy.new_tree(&mut runner).ok().map(|t| t.current()))
        .filter(|s| predict(s).is_ok())
        .collect()
}

fn oracle(c: &mut Criterion) {
    for (label, scenarios) in [("suite", suite()), ("generated", generated(256))] {
        let mut group = c.benchmark_group(format!("oracle/{label}"));
        group.throughput(Throughput::Elements(scenarios.len() as u64));
        group.bench_function("predict", |b| {
            b.iter(|| {
                for scenario in &scenarios {
                    black_box(predict(black_box(scenario)).ok());
                }
            })
        });
        let predicted: Vec<_> = scenarios
            .iter()
            .filter_map(|s| predict(s).ok().map(|p| (s, p)))
            .collect();
        let traces: Vec<_> = predicted
            .iter()
            .map(|(s, p)| (p, simulate(s, p, &mut Seeded(1), None)))
            .collect();
        group.bench_function("check", |b| {
            b.iter(|| {
                for (prediction, trace) in &traces {
                    black_box(check(prediction, trace));
                }
            })
        });
        group.bench_function("predict+simulate+check", |b| {
            b.iter(|| {
                for scenario in &scenarios {
                    if let Ok(prediction) = predict(scenario) {
                        let trace = simulate(scenario, &prediction, &mut Seeded(1), None);
                        black_box(check(&prediction, &trace));
                    }
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, oracle);
criterion_main!(benches);
