//! `podcheck rules` and `podcheck deviations`: what podcheck checks (its rules and the pod
//! fields it models) and which bugs the model target can plant.

use super::terminal::outln;
use super::CONFORMANT;
use podcheck_oracle::simulate::Deviation;
use podcheck_oracle::{fields, rules};

pub fn print_rules() -> anyhow::Result<u8> {
    for rule in rules::CATALOGUE {
        outln!("{:<42} {}", rule.id, rule.statement)?;
        for source in rule.sources {
            outln!("{:<42}   - {source}", "")?;
        }
    }
    outln!()?;
    outln!("Modelled pod fields ([] is any index); every other field is refused, named:")?;
    for field in fields::modelled_fields() {
        let rules: Vec<&str> = field.rules.iter().map(|rule| rule.as_str()).collect();
        let rules = if rules.is_empty() {
            "no rule: changes nothing a kubelet shows".to_owned()
        } else {
            rules.join(", ")
        };
        outln!("{}", field.path)?;
        outln!("    {rules}")?;
        outln!("    {}", field.why)?;
    }
    Ok(CONFORMANT)
}

pub fn print_deviations() -> anyhow::Result<u8> {
    for deviation in Deviation::ALL {
        outln!("model:{}", deviation.name())?;
    }
    Ok(CONFORMANT)
}
