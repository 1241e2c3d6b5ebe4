//! Scenario text, as given or drawn from `podcheck::hostile::HostileScenario`, with
//! line-level edits: whatever `predict` accepts must pass on the model under every timing
//! drawn (`podcheck::selfcheck`), and no input may panic or hang (libFuzzer's `-timeout`).
//! The input format is `podcheck::hostile::FuzzInput`; docs/fuzzing.md says how to run it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use podcheck::hostile::FuzzInput;
use podcheck::selfcheck::check_scenario_text;

fuzz_target!(|data: &[u8]| {
    let text = FuzzInput::from_bytes(data).text();
    if let Err(broken) = check_scenario_text("fuzz.yaml", &text) {
        panic!("{broken}");
    }
});
