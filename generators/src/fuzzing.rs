//! Scenarios drawn from raw bytes, for coverage-guided fuzzers (cargo fuzz, AFL++).
//!
//! Every choice reads so that bytes of 0 (and bytes run out) choose the simplest
//! option: no fault schedule, a process that dies of SIGTERM, no hook, a call that takes
//! no time, the earliest fault time. A fuzzer's input minimizer, which shortens inputs and
//! lowers bytes, then minimizes the scenario too (and so does [`crate::QuickScenario`],
//! which shrinks the same bytes).

use crate::faults::{
    ContainerTermination, DeletionKind, DeletionPlan, HandlerKind, HookPlan, Schedule, Termination,
    LONGEST_HOOK_SECONDS,
};
use crate::{assemble, secs, EXIT_CODES};
use arbitrary::{Arbitrary, Unstructured};
use podcheck_oracle::behaviour::{Behaviour, OnSigterm, Run};
use podcheck_oracle::scenario::KubeletParams;
use podcheck_oracle::{Scenario, SpecDuration};

/// A scenario drawn from raw bytes, for coverage-guided fuzzers (cargo fuzz, AFL++).
#[derive(Clone, Debug)]
pub struct ArbitraryScenario(pub Scenario);

/// Whether a choice out of 100 falls in the last `percent`: bytes of 0 say no.
fn chance(u: &mut Unstructured<'_>, percent: u8) -> arbitrary::Result<bool> {
    Ok(u.int_in_range(0u8..=99)? >= 100 - percent)
}

fn arbitrary_run(u: &mut Unstructured<'_>) -> arbitrary::Result<Run> {
    Ok(if u.ratio(1, 4)? {
        Run::Forever
    } else {
        Run::Exit {
            after: SpecDuration::from_millis(u64::from(u.int_in_range(1u8..=40)?) * 500),
            code: *u.choose(EXIT_CODES)?,
        }
    })
}

fn arbitrary_on_sigterm(u: &mut Unstructured<'_>) -> arbitrary::Result<OnSigterm> {
    Ok(match u.int_in_range(0u8..=6)? {
        0..=2 => OnSigterm::Die,
        3 | 4 => OnSigterm::Ignore,
        _ => OnSigterm::Exit {
            after: secs(*u.choose(&[1u64, 3, 8, 15, 70])?),
            code: *u.choose(EXIT_CODES)?,
        },
    })
}

fn arbitrary_hook(u: &mut Unstructured<'_>) -> arbitrary::Result<HookPlan> {
    use HandlerKind::{Exec, Http, Sleep, TcpSocket};
    Ok(HookPlan {
        handler: *u.choose(&[Exec, Exec, Exec, Http, Http, Sleep, Sleep, TcpSocket])?,
        takes: secs(u.int_in_range(0..=LONGEST_HOOK_SECONDS)?),
        fails: chance(u, 25)?,
    })
}

fn arbitrary_fault_time(u: &mut Unstructured<'_>) -> arbitrary::Result<SpecDuration> {
    Ok(SpecDuration::from_millis(
        u64::from(u.int_in_range(12u8..=120)?) * 500,
    ))
}

/// A termination for `count` containers, as [`crate::faults::termination`] draws it.
pub fn arbitrary_termination(
    u: &mut Unstructured<'_>,
    count: usize,
) -> arbitrary::Result<Termination> {
    let mut containers = Vec::with_capacity(count);
    for _ in 0..count {
        let on_sigterm = arbitrary_on_sigterm(u)?;
        let pre_stop = if chance(u, 50)? {
            Some(arbitrary_hook(u)?)
        } else {
            None
        };
        containers.push(ContainerTermination {
            on_sigterm,
            pre_stop,
        });
    }
    let grace_seconds = if chance(u, 25)? {
        Some(u.int_in_range(1i64..=45)?)
    } else {
        None
    };
    let mut kills = Vec::new();
    for _ in 0..u.int_in_range(0u8..=2)? {
        kills.push((arbitrary_fault_time(u)?, u.choose_index(count.max(1))?));
    }
    let deletion = if chance(u, 80)? {
        let at = arbitrary_fault_time(u)?;
        let kind = match u.int_in_range(0u8..=6)? {
            0..=2 => DeletionKind::Delete {
                grace_period_seconds: None,
            },
            3..=5 => DeletionKind::Delete {
                grace_period_seconds: Some(u.int_in_range(0i64..=40)?),
            },
            _ => DeletionKind::Force,
        };
        let finalizer_removed_after = if chance(u, 30)? {
            Some(secs(u.int_in_range(5u64..=60)?))
        } else {
            None
        };
        Some(DeletionPlan {
            at,
            kind,
            finalizer_removed_after,
        })
    } else {
        None
    };
    Ok(Termination {
        containers,
        grace_seconds,
        schedule: Schedule { kills, deletion },
    })
}

impl<'a> Arbitrary<'a> for ArbitraryScenario {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let policy = *u.choose(&[None, Some("Always"), Some("OnFailure"), Some("Never")])?;
        let count = u.int_in_range(1u8..=3)?;
        let mut behaviours = Vec::new();
        for _ in 0..count {
            let starts_len = u.int_in_range(0u8..=3)?;
            let mut starts = Vec::new();
            for _ in 0..starts_len {
                starts.push(arbitrary_run(u)?);
            }
            behaviours.push(Behaviour {
                starts,
                then: arbitrary_run(u)?,
                ..Behaviour::forever()
            });
        }
        let scenario = assemble("arbitrary", policy, KubeletParams::default(), behaviours);
        let scenario = if chance(u, 35)? {
            let termination = arbitrary_termination(u, usize::from(count))?;
            crate::with_termination(scenario, &termination)
        } else {
            scenario
        };
        let scenario = if crate::GENERATE_POST_START {
            let mut hooks = Vec::new();
            for _ in 0..count {
                hooks.push(if chance(u, 20)? {
                    Some(arbitrary_hook(u)?)
                } else {
                    None
                });
            }
            crate::faults::with_post_starts(scenario, &hooks)
        } else {
            scenario
        };
        Ok(ArbitraryScenario(crate::faults::at_decidable_times(
            scenario,
        )))
    }
}
