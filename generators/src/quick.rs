//! `quickcheck::Arbitrary` for generated scenarios (cargo feature `quickcheck`).
//!
//! A [`QuickScenario`] is the [`ArbitraryScenario`] its bytes draw; it shrinks by
//! shrinking the bytes (shorter, lower), which the byte encoding turns into fewer
//! containers and faults, earlier fault times, default grace periods, no hooks and
//! processes that die of SIGTERM.

use crate::ArbitraryScenario;
use arbitrary::{Arbitrary as _, Unstructured};
use podcheck_oracle::Scenario;
use quickcheck::{Arbitrary, Gen};

/// A scenario for `quickcheck` properties, with the bytes it was drawn from.
#[derive(Clone, Debug)]
pub struct QuickScenario {
    pub scenario: Scenario,
    bytes: Vec<u8>,
}

/// The scenario `bytes` draw. Bytes that run out read as the simplest choices, so drawing
/// does not fail; were it to, the simplest scenario stands in.
fn draw(bytes: &[u8]) -> Scenario {
    match ArbitraryScenario::arbitrary(&mut Unstructured::new(bytes)) {
        Ok(ArbitraryScenario(scenario)) => scenario,
        Err(_) => crate::assemble(
            "arbitrary",
            None,
            Default::default(),
            vec![podcheck_oracle::Behaviour::forever()],
        ),
    }
}

impl QuickScenario {
    pub fn from_bytes(bytes: Vec<u8>) -> QuickScenario {
        QuickScenario {
            scenario: draw(&bytes),
            bytes,
        }
    }
}

impl Arbitrary for QuickScenario {
    fn arbitrary(g: &mut Gen) -> Self {
        // A scenario reads at most about 80 bytes; `size` only lengthens the input.
        let length = 32 + g.size();
        let bytes: Vec<u8> = (0..length)
            .map(|_| <u8 as Arbitrary>::arbitrary(g))
            .collect();
        QuickScenario {
            scenario: draw(&bytes),
            bytes,
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let current = self.scenario.clone();
        Box::new(
            self.bytes
                .shrink()
                .map(QuickScenario::from_bytes)
                .filter(move |smaller| smaller.scenario != current),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podcheck_oracle::scenario::FaultAction;
    use quickcheck::QuickCheck;

    #[test]
    fn quickcheck_scenarios_are_valid_and_round_trip_through_yaml() {
        fn valid(drawn: QuickScenario) -> bool {
            let yaml = drawn.scenario.to_yaml();
            drawn.scenario.validate().is_ok()
                && Scenario::from_yaml("quickcheck", &yaml).ok() == Some(drawn.scenario)
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(valid as fn(QuickScenario) -> bool);
    }

    /// Shrinking as quickcheck does it (the first smaller candidate that still fails, until
    /// none does) takes a scenario with a deletion to one container deleted once, plainly.
    #[test]
    fn shrinking_reaches_a_plain_delete_of_one_container() {
        let deletes = |s: &Scenario| {
            s.faults.iter().any(|f| {
                matches!(
                    f.action,
                    FaultAction::Delete { .. } | FaultAction::ForceDelete
                )
            })
        };
        let mut gen = Gen::from_size_and_seed(100, 7);
        let mut current = (0..1000)
            .map(|_| QuickScenario::arbitrary(&mut gen))
            .find(|q| {
                deletes(&q.scenario)
                    && q.scenario.faults.len() >= 2
                    && q.scenario.containers().len() >= 2
            })
            .expect("a scenario with a deletion and more");
        while let Some(smaller) = current.shrink().find(|q| deletes(&q.scenario)) {
            current = smaller;
        }
        let minimal = current.scenario;
        assert_eq!(minimal.containers().len(), 1, "{}", minimal.to_yaml());
        assert_eq!(
            minimal
                .faults
                .iter()
                .map(|f| f.action.clone())
                .collect::<Vec<_>>(),
            vec![FaultAction::Delete {
                grace_period_seconds: None
            }],
            "{}",
            minimal.to_yaml()
        );
        assert!(minimal.containers()[0].lifecycle.is_none());
        assert_eq!(minimal.pod.metadata.finalizers, None);
    }
}
