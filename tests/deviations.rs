//! Every planted bug of the model target is caught through the path a user runs:
//! `podcheck run suites --target model:DEVIATION` must exit 1 (nonconformant) and name a
//! violated rule. One test per deviation: `deviation/<name>`.

use libtest_mimic::{Arguments, Failed, Trial};
use podcheck_oracle::simulate::Deviation;
use std::path::Path;
use std::process::Command;

const NONCONFORMANT: i32 = 1;

fn caught(deviation: Deviation) -> Result<(), Failed> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let results = std::env::temp_dir().join(format!(
        "podcheck-deviation-{}-{}",
        deviation.name(),
        std::process::id()
    ));
    let target = format!("model:{}", deviation.name());
    let output = Command::new(env!("CARGO_BIN_EXE_podcheck"))
        .current_dir(root)
        .args(["run", "suites", "--target", &target, "-o"])
        .arg(&results)
        .output()
        .map_err(|e| format!("failed to run podcheck: {e}"))?;
    let _ = std::fs::remove_dir_all(&results);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() != Some(NONCONFORMANT) {
        return Err(format!(
            "`podcheck run suites --target {target}` exited with {} instead of {NONCONFORMANT}: \
             the suite does not catch this planted bug\nstdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        )
        .into());
    }
    Ok(())
}

fn main() {
    let arguments = Arguments::from_args();
    let trials = Deviation::ALL
        .iter()
        .map(|&deviation| {
            Trial::test(format!("deviation/{}", deviation.name()), move || {
                caught(deviation)
            })
        })
        .collect();
    libtest_mimic::run(&arguments, trials).exit();
}
