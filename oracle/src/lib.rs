//! podcheck's oracle: scenarios, the rules catalogue, the reference model of the kubelet's
//! Pod and container lifecycle, predictions and the checker.
//!
//! Pure and deterministic: no I/O beyond reading a scenario file on request, no clock,
//! no async runtime.

pub mod behaviour;
pub mod check;
pub mod derive;
pub mod duration;
pub mod errors;
pub mod fields;
pub mod plan;
pub mod predict;
pub mod probes;
pub mod rules;
pub mod scenario;
pub mod simulate;
pub mod trace;
pub mod trace_faults;
pub mod validation;

pub use behaviour::{Behaviour, Run};
pub use check::{check, Outcome, Verdict, Violation};
pub use duration::SpecDuration;
pub use errors::{FieldError, ScenarioError};
pub use predict::{predict, PredictError, Prediction};
pub use rules::RuleId;
pub use scenario::{RestartPolicy, Scenario};
pub use trace::{
    ActionRecord, ActionResult, Observation, PodEvent, PodMetadata, Snapshot, TimingProfile, Trace,
};
pub use trace_faults::{check_reported, TargetFault};
