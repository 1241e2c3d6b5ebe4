use super::*;
use crate::check::check;
use crate::predict::predict;
use crate::scenario::Scenario;
use crate::simulate::{simulate, Earliest, Latest, Seeded};
use crate::trace::TimingProfile;
use k8s_openapi::api::core::v1::{ContainerStateRunning, ContainerStateTerminated, PodCondition};

/// An init container, then an app that crashes and is restarted: every list and state the
/// checks read shows up in its trace.
const CRASHES_AFTER_INIT: &str = r#"
name: crashes-after-init
observeFor: 60s
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: crashes-after-init}
  spec:
    initContainers:
      - name: init
    containers:
      - name: app
behaviours:
  init: {then: {exit: {after: 1s, code: 0}}}
  app: {then: {exit: {after: 2s, code: 1}}}
"#;

fn model_run() -> (Prediction, Trace) {
    let scenario = Scenario::from_yaml("test", CRASHES_AFTER_INIT).expect("scenario");
    let prediction = predict(&scenario).expect("prediction");
    let trace = simulate(&scenario, &prediction, &mut Seeded(3), None);
    (prediction, trace)
}

fn time(trace: &Trace, spec_ms: i64) -> Time {
    trace.wall_at(spec_ms)
}

/// The index of the first snapshot whose `app` status shows `restartCount >= 1` and a
/// terminated last state, and that status.
fn restarted_app(trace: &mut Trace) -> (usize, &mut ContainerStatus) {
    let index = trace
        .snapshots
        .iter()
        .position(|s| {
            s.status.container_statuses.iter().flatten().any(|cs| {
                cs.name == "app"
                    && cs.restart_count >= 1
                    && cs
                        .last_state
                        .as_ref()
                        .is_some_and(|l| l.terminated.is_some())
            })
        })
        .expect("the app restarts in the model's trace");
    let cs = trace.snapshots[index]
        .status
        .container_statuses
        .iter_mut()
        .flatten()
        .find(|cs| cs.name == "app")
        .expect("app status");
    (index, cs)
}

/// Runs the sanity check on a corrupted trace, and the checker too: whatever the fault, the
/// checker must not panic on it (the harness never gives it such a trace, but a saved one
/// may be checked again).
fn fault_of(prediction: &Prediction, trace: &Trace) -> TargetFault {
    let _ = check(prediction, trace);
    check_reported(prediction, trace).expect_err("a target fault")
}

fn assert_message(fault: &TargetFault, parts: &[&str]) {
    let message = fault.to_string();
    assert!(
        message.starts_with("target fault: snapshot at +"),
        "{message}"
    );
    for part in parts {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }
}

/// Every suite case's prediction and a model trace of it, with the case's path.
fn suite_runs(choices: &mut dyn crate::simulate::Choices) -> Vec<(String, Prediction, Trace)> {
    let suites = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites");
    let mut runs = Vec::new();
    for area in std::fs::read_dir(&suites).expect("suites").flatten() {
        for file in std::fs::read_dir(area.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(scenario) = Scenario::from_file(&file.path()) else {
                continue;
            };
            let Ok(prediction) = predict(&scenario) else {
                continue;
            };
            let trace = simulate(&scenario, &prediction, choices, None);
            runs.push((file.path().display().to_string(), prediction, trace));
        }
    }
    assert!(runs.len() > 50, "only {} suite cases", runs.len());
    runs
}

#[test]
fn every_trace_the_model_allows_is_sane() {
    let runs = [
        suite_runs(&mut Earliest),
        suite_runs(&mut Latest),
        suite_runs(&mut Seeded(11)),
    ];
    for (path, prediction, trace) in runs.iter().flatten() {
        if let Err(fault) = check_reported(prediction, trace) {
            panic!("{path}: {fault}");
        }
    }
}

/// A planted bug models a runtime whose semantics are wrong, never a broken report: every
/// one of them stays a matter for the checker in every suite case.
#[test]
fn no_planted_bug_is_a_target_fault() {
    let scenarios = suite_runs(&mut Earliest);
    for deviation in crate::simulate::Deviation::ALL {
        for (path, prediction, _) in &scenarios {
            let scenario = Scenario::from_file(std::path::Path::new(path)).expect("loads");
            let trace = simulate(&scenario, prediction, &mut Seeded(2), Some(*deviation));
            if let Err(fault) = check_reported(prediction, &trace) {
                panic!("{path} under {}: {fault}", deviation.name());
            }
        }
    }
}

/// One kind of nonsense, applied everywhere in a trace: its time stamps, every container
/// status, the workload's log.
type Corruption = fn(&mut Trace, Timestamp);

fn each_status(trace: &mut Trace, change: impl Fn(&mut ContainerStatus)) {
    for snapshot in &mut trace.snapshots {
        let status = &mut snapshot.status;
        let lists = [
            &mut status.init_container_statuses,
            &mut status.container_statuses,
            &mut status.ephemeral_container_statuses,
        ];
        for cs in lists.into_iter().flatten().flatten() {
            change(cs);
        }
    }
}

fn each_state(trace: &mut Trace, change: impl Fn(&mut ContainerState)) {
    each_status(trace, |cs| {
        for state in [cs.state.as_mut(), cs.last_state.as_mut()]
            .into_iter()
            .flatten()
        {
            change(state);
        }
    });
}

const CORRUPTIONS: &[(&str, Corruption)] = &[
    ("restartCount", |trace, at| {
        // The ends of the calendar stand for the ends of the counter, the epoch for -1.
        let count = if at == Timestamp::MIN {
            i32::MIN
        } else if at == Timestamp::MAX {
            i32::MAX
        } else {
            -1
        };
        each_status(trace, |cs| cs.restart_count = count);
    }),
    ("startedAt", |trace, at| {
        each_state(trace, |state| {
            if let Some(running) = &mut state.running {
                running.started_at = Some(Time(at));
            }
            if let Some(terminated) = &mut state.terminated {
                terminated.started_at = Some(Time(at));
            }
        });
    }),
    ("finishedAt", |trace, at| {
        each_state(trace, |state| {
            if let Some(terminated) = &mut state.terminated {
                terminated.finished_at = Some(Time(at));
            }
        });
    }),
    ("pod times", |trace, at| {
        for snapshot in &mut trace.snapshots {
            snapshot.status.start_time = Some(Time(at));
            for condition in snapshot.status.conditions.iter_mut().flatten() {
                condition.last_transition_time = Some(Time(at));
            }
        }
    }),
    ("snapshot times", |trace, at| {
        for snapshot in &mut trace.snapshots {
            snapshot.at = Time(at);
        }
    }),
    ("deletionTimestamp", |trace, at| {
        for snapshot in &mut trace.snapshots {
            snapshot.metadata.deletion_timestamp = Some(Time(at));
        }
    }),
    ("log time stamps", |trace, at| {
        let ts_ms = u64::try_from(at.as_millisecond()).unwrap_or(u64::MAX);
        for lines in trace.logs.values_mut() {
            for line in lines.iter_mut() {
                if let Ok(mut event) = podcheck_wire::LogEvent::parse(line) {
                    event.ts_ms = ts_ms;
                    *line = event.to_string();
                }
            }
        }
    }),
];

/// Nonsense a target may send cannot make the checker panic (an overflow of spec times
/// computed from times at the ends of the calendar, under a small time scale), whether on
/// the whole trace or the part an early end checks.
#[test]
fn the_checker_survives_nonsense_in_every_suite_case() {
    let ends = [Timestamp::MIN, Timestamp::MAX, Timestamp::UNIX_EPOCH];
    let mut panics = Vec::new();
    for (path, prediction, trace) in suite_runs(&mut Seeded(5)) {
        for (what, corrupt) in CORRUPTIONS {
            for (at, time_scale) in ends.iter().flat_map(|at| [(*at, 1.0), (*at, 1e-6)]) {
                let mut corrupted = trace.clone();
                corrupted.timing.time_scale = time_scale;
                corrupt(&mut corrupted, at);
                let prediction = prediction.clone();
                let checked = std::panic::catch_unwind(move || {
                    let _ = check(&prediction, &corrupted);
                    let _ = check(&prediction, &corrupted.so_far(5_000));
                });
                if checked.is_err() {
                    panics.push(format!("{path}: {what} at {at}, time scale {time_scale}"));
                }
            }
        }
    }
    assert!(panics.is_empty(), "{panics:#?}");
}

#[test]
fn a_negative_restart_count_in_any_list_is_the_targets_fault() {
    let (prediction, trace) = model_run();
    let mut corrupted = trace.clone();
    let (index, cs) = restarted_app(&mut corrupted);
    cs.restart_count = -1;
    let fault = fault_of(&prediction, &corrupted);
    assert_eq!(fault.field, "status.containerStatuses[app].restartCount");
    assert_eq!(fault.at_ms, trace.spec_ms(&trace.snapshots[index].at));
    assert_message(
        &fault,
        &["status.containerStatuses[app].restartCount is -1; a restart count is never negative"],
    );

    // The init container's and an ephemeral container's lists are read alike.
    let mut corrupted = trace.clone();
    let init = corrupted
        .snapshots
        .iter_mut()
        .flat_map(|s| s.status.init_container_statuses.iter_mut().flatten())
        .last()
        .expect("an init status");
    init.restart_count = i32::MIN;
    let fault = fault_of(&prediction, &corrupted);
    assert_eq!(
        fault.field,
        "status.initContainerStatuses[init].restartCount"
    );
    assert_eq!(fault.value, i32::MIN.to_string());
}

#[test]
fn a_container_that_starts_long_before_its_pod_exists_is_the_targets_fault() {
    let (prediction, trace) = model_run();
    let mut corrupted = trace.clone();
    let (_, cs) = restarted_app(&mut corrupted);
    // What a third-party kubelet reported: a start 78 s before the pod's creation.
    cs.state = Some(ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(time(&trace, -78_000)),
        }),
        ..ContainerState::default()
    });
    let fault = fault_of(&prediction, &corrupted);
    assert_eq!(
        fault.field,
        "status.containerStatuses[app].state.running.startedAt"
    );
    assert_message(
        &fault,
        &[
            "78.0s before the pod was created",
            "a container does not start before its pod exists",
        ],
    );

    let mut corrupted = trace.clone();
    let (_, cs) = restarted_app(&mut corrupted);
    let last = cs.last_state.as_mut().and_then(|l| l.terminated.as_mut());
    last.expect("a last state").finished_at = Some(time(&trace, -10_000));
    let fault = fault_of(&prediction, &corrupted);
    assert_eq!(
        fault.field,
        "status.containerStatuses[app].lastState.terminated.finishedAt"
    );

    let mut corrupted = trace.clone();
    corrupted.snapshots[0].status.start_time = Some(time(&trace, -3_600_000));
    let fault = fault_of(&prediction, &corrupted);
    assert_eq!(fault.field, "status.startTime");

    let mut corrupted = trace.clone();
    let snapshot = corrupted.snapshots.last_mut().expect("a snapshot");
    snapshot
        .status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(PodCondition {
            type_: "Ready".to_owned(),
            status: "False".to_owned(),
            last_transition_time: Some(time(&trace, -5_000)),
            ..PodCondition::default()
        });
    let fault = fault_of(&prediction, &corrupted);
    assert_eq!(fault.field, "status.conditions[Ready].lastTransitionTime");
}

#[test]
fn a_container_that_finishes_before_it_started_is_the_targets_fault() {
    let (prediction, trace) = model_run();
    let mut corrupted = trace.clone();
    let (_, cs) = restarted_app(&mut corrupted);
    let terminated = cs
        .last_state
        .as_mut()
        .and_then(|l| l.terminated.as_mut())
        .expect("a last state");
    terminated.started_at = Some(time(&trace, 40_000));
    terminated.finished_at = Some(time(&trace, 10_000));
    let fault = fault_of(&prediction, &corrupted);
    assert_eq!(
        fault.field,
        "status.containerStatuses[app].lastState.terminated.finishedAt"
    );
    assert_message(
        &fault,
        &[
            "30.0s of wall time before its startedAt",
            "a container does not finish before it started",
        ],
    );
}

#[test]
fn times_off_by_truncation_and_a_little_skew_are_not_faults() {
    let (prediction, trace) = model_run();
    let mut skewed = trace.clone();
    let (_, cs) = restarted_app(&mut skewed);
    // The API's whole seconds: 0.9 s after creation reads as creation's second, which
    // may be 0.9 s before the harness's own time of creation; then a second of skew.
    let terminated = cs
        .last_state
        .as_mut()
        .and_then(|l| l.terminated.as_mut())
        .expect("a last state");
    terminated.started_at = Some(time(&trace, -1_900));
    terminated.finished_at = Some(time(&trace, -1_950));
    skewed.snapshots[0].status.start_time = Some(time(&trace, -1_000));
    assert_eq!(check_reported(&prediction, &skewed), Ok(()));

    // A target's own tolerance widens the slack: 5 s of it at a time scale of 0.5 is
    // 2.5 s of wall time more.
    let mut tolerant = skewed.clone();
    tolerant.timing = TimingProfile {
        time_scale: 0.5,
        tolerance_ms: 5_000,
    };
    tolerant.snapshots[0].status.start_time = Some(time(&trace, -4_400));
    assert_eq!(check_reported(&prediction, &tolerant), Ok(()));
    tolerant.snapshots[0].status.start_time = Some(time(&trace, -4_600));
    assert_eq!(
        check_reported(&prediction, &tolerant).map_err(|f| f.field),
        Err("status.startTime".to_owned())
    );
}

#[test]
fn a_container_that_never_started_may_show_the_unix_epoch_as_its_start() {
    let (prediction, trace) = model_run();
    let mut never_started = trace.clone();
    let (_, cs) = restarted_app(&mut never_started);
    cs.last_state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 128,
            reason: Some("StartError".to_owned()),
            started_at: Some(Time(Timestamp::UNIX_EPOCH)),
            finished_at: Some(time(&trace, 2_000)),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    });
    assert_eq!(check_reported(&prediction, &never_started), Ok(()));
}

#[test]
fn a_phase_that_is_no_phase_is_the_targets_fault_but_unknown_is_a_phase() {
    let (prediction, trace) = model_run();
    let mut corrupted = trace.clone();
    corrupted.snapshots[1].status.phase = Some("Runing".to_owned());
    let fault = fault_of(&prediction, &corrupted);
    assert_eq!(fault.field, "status.phase");
    assert_message(
        &fault,
        &[
            r#"status.phase is "Runing"; a pod's phase is one of Pending, Running, Succeeded, Failed, Unknown"#,
        ],
    );

    let mut unknown = trace.clone();
    unknown.snapshots[1].status.phase = Some("Unknown".to_owned());
    assert_eq!(check_reported(&prediction, &unknown), Ok(()));
    // Legal, but not what the model predicts: the checker, not the sanity check, says so.
    assert_eq!(check(&prediction, &unknown).outcome, crate::Outcome::Fail);
}

#[test]
fn a_status_of_no_container_of_the_pod_or_a_second_one_is_the_targets_fault() {
    let (prediction, trace) = model_run();
    let mut corrupted = trace.clone();
    let (index, cs) = restarted_app(&mut corrupted);
    let mut ghost = cs.clone();
    ghost.name = "ghost".to_owned();
    let statuses = corrupted.snapshots[index]
        .status
        .container_statuses
        .get_or_insert_with(Vec::new);
    statuses.push(ghost);
    let fault = fault_of(&prediction, &corrupted);
    assert_eq!(fault.field, "status.containerStatuses[ghost]");
    assert_message(
        &fault,
        &["the pod has no container of that name (its containers: app, init)"],
    );

    // The same container twice, in one list or across two.
    let mut corrupted = trace.clone();
    let (index, cs) = restarted_app(&mut corrupted);
    let twin = cs.clone();
    corrupted.snapshots[index]
        .status
        .container_statuses
        .get_or_insert_with(Vec::new)
        .push(twin.clone());
    let fault = fault_of(&prediction, &corrupted);
    assert_eq!(fault.field, "status.containerStatuses[app]");
    assert_message(&fault, &["a second status of container app"]);

    let mut corrupted = trace.clone();
    corrupted.snapshots[index]
        .status
        .ephemeral_container_statuses
        .get_or_insert_with(Vec::new)
        .push(twin);
    let fault = fault_of(&prediction, &corrupted);
    assert_eq!(fault.field, "status.ephemeralContainerStatuses[app]");
    assert_message(&fault, &["(the first is in status.containerStatuses)"]);
}

#[test]
fn an_init_containers_status_in_the_regular_list_is_left_to_the_init_status_rule() {
    let (prediction, trace) = model_run();
    let mut moved = trace.clone();
    for snapshot in &mut moved.snapshots {
        let init = snapshot.status.init_container_statuses.take();
        snapshot
            .status
            .container_statuses
            .get_or_insert_with(Vec::new)
            .extend(init.into_iter().flatten());
    }
    assert_eq!(check_reported(&prediction, &moved), Ok(()));
    assert!(check(&prediction, &moved)
        .violated_rules()
        .contains(&crate::RuleId::InitStatus));
}

#[test]
fn a_state_with_two_members_is_the_targets_fault() {
    let (prediction, trace) = model_run();
    let mut corrupted = trace.clone();
    let (_, cs) = restarted_app(&mut corrupted);
    let state = cs.state.get_or_insert_with(ContainerState::default);
    state.running = Some(ContainerStateRunning {
        started_at: Some(time(&trace, 5_000)),
    });
    state.terminated = Some(ContainerStateTerminated {
        exit_code: 1,
        started_at: Some(time(&trace, 5_000)),
        finished_at: Some(time(&trace, 6_000)),
        ..ContainerStateTerminated::default()
    });
    let fault = fault_of(&prediction, &corrupted);
    assert_eq!(fault.field, "status.containerStatuses[app].state");
    assert!(fault.value.contains("running and terminated"), "{fault}");
}

#[test]
fn a_restart_count_that_drops_is_left_to_the_checker() {
    // The API allows a reset to 0 after a node restart; the checker's rule judges it.
    let (prediction, trace) = model_run();
    let mut dropped = trace.clone();
    let (index, _) = restarted_app(&mut dropped);
    for snapshot in &mut dropped.snapshots[index..] {
        for cs in snapshot.status.container_statuses.iter_mut().flatten() {
            cs.restart_count = 0;
        }
    }
    assert_eq!(check_reported(&prediction, &dropped), Ok(()));
    assert_eq!(check(&prediction, &dropped).outcome, crate::Outcome::Fail);
}

#[test]
fn extreme_times_and_counts_neither_panic_the_checker_nor_pass_the_sanity_check() {
    let (prediction, trace) = model_run();
    let far_past = Time(Timestamp::MIN);
    let far_future = Time(Timestamp::MAX);
    for (started, finished, impossible) in [
        (far_past.clone(), far_future.clone(), true),
        (far_future.clone(), far_past.clone(), true),
        // Odd, but only the future can tell.
        (far_future.clone(), far_future.clone(), false),
    ] {
        let mut corrupted = trace.clone();
        let (_, cs) = restarted_app(&mut corrupted);
        cs.restart_count = i32::MAX;
        cs.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: i32::MIN,
                started_at: Some(started),
                finished_at: Some(finished),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        });
        corrupted.timing.time_scale = 0.0;
        let _ = check(&prediction, &corrupted);
        assert_eq!(check_reported(&prediction, &corrupted).is_err(), impossible);
    }
    // A snapshot dated at the end of time, and one before the pod existed.
    for at in [far_future, far_past] {
        let mut corrupted = trace.clone();
        let mut late = corrupted.snapshots[0].clone();
        late.at = at;
        corrupted.snapshots.push(late);
        let _ = check(&prediction, &corrupted);
        let _ = check(&prediction, &corrupted.so_far(1_000));
    }
}
