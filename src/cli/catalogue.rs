//! `podcheck rules` and `podcheck deviations`: what podcheck checks and which bugs the
//! model target can plant.

use super::terminal::outln;
use super::CONFORMANT;
use podcheck_oracle::rules;
use podcheck_oracle::simulate::Deviation;

pub fn print_rules() -> anyhow::Result<u8> {
    for rule in rules::CATALOGUE {
        outln!("{:<42} {}", rule.id, rule.statement)?;
        for source in rule.sources {
            outln!("{:<42}   - {source}", "")?;
        }
    }
    Ok(CONFORMANT)
}

pub fn print_deviations() -> anyhow::Result<u8> {
    for deviation in Deviation::ALL {
        outln!("model:{}", deviation.name())?;
    }
    Ok(CONFORMANT)
}
