//! Spec durations: the time of a scenario, before any target scales it to wall time.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::{Add, Mul, Sub};

/// A duration in spec time with millisecond resolution.
///
/// Written in scenarios as Go-style duration strings (`10s`, `1m30s`, `250ms`) or as a
/// plain number of seconds, like the `*Seconds` fields of a pod spec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpecDuration(u64);

impl SpecDuration {
    pub const ZERO: SpecDuration = SpecDuration(0);

    pub const fn from_millis(millis: u64) -> Self {
        SpecDuration(millis)
    }

    /// Saturates, as the rest of the arithmetic does: a bare number of seconds in a
    /// scenario (`after: 18446744073709551615`) is read through here before validation
    /// can refuse it, and must not overflow.
    pub const fn from_secs(secs: u64) -> Self {
        SpecDuration(secs.saturating_mul(1000))
    }

    pub fn from_secs_f64(secs: f64) -> Self {
        if secs.is_finite() && secs > 0.0 {
            SpecDuration((secs * 1000.0).round() as u64)
        } else {
            SpecDuration(0)
        }
    }

    pub const fn is_zero(&self) -> bool {
        self.0 == 0
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn saturating_sub(self, other: SpecDuration) -> SpecDuration {
        SpecDuration(self.0.saturating_sub(other.0))
    }

    pub fn min(self, other: SpecDuration) -> SpecDuration {
        SpecDuration(self.0.min(other.0))
    }

    pub fn max(self, other: SpecDuration) -> SpecDuration {
        SpecDuration(self.0.max(other.0))
    }

    /// Parses `1h2m3s`, `1.5s`, `250ms` or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty duration".to_owned());
        }
        if let Ok(secs) = text.parse::<f64>() {
            return if secs >= 0.0 && secs.is_finite() {
                Ok(Self::from_secs_f64(secs))
            } else {
                Err(format!(
                    "duration {text:?} must be a non-negative number of seconds"
                ))
            };
        }
        let mut total_ms = 0f64;
        let mut rest = text;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("duration {text:?} lacks a unit (h, m, s or ms)"))?;
            if number_len == 0 {
                return Err(format!("duration {text:?} is not of the form 1m30s"));
            }
            let value: f64 = rest[..number_len]
                .parse()
                .map_err(|_| format!("duration {text:?} has a malformed number"))?;
            rest = &rest[number_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let factor = match &rest[..unit_len] {
                "h" => 3_600_000.0,
                "m" => 60_000.0,
                "s" => 1000.0,
                "ms" => 1.0,
                other => {
                    return Err(format!(
                        "duration {text:?} has unknown unit {other:?} (use h, m, s or ms)"
                    ))
                }
            };
            total_ms += value * factor;
            rest = &rest[unit_len..];
        }
        Ok(SpecDuration(total_ms.round() as u64))
    }
}

impl fmt::Display for SpecDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms == 0 {
            return write!(f, "0s");
        }
        if ms % 1000 != 0 {
            if ms < 1000 {
                return write!(f, "{ms}ms");
            }
            return write!(f, "{}s", trim_float(ms as f64 / 1000.0));
        }
        let secs = ms / 1000;
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl Add for SpecDuration {
    type Output = SpecDuration;
    fn add(self, rhs: SpecDuration) -> SpecDuration {
        SpecDuration(self.0.saturating_add(rhs.0))
    }
}

impl Sub for SpecDuration {
    type Output = SpecDuration;
    fn sub(self, rhs: SpecDuration) -> SpecDuration {
        self.saturating_sub(rhs)
    }
}

impl Mul<u64> for SpecDuration {
    type Output = SpecDuration;
    fn mul(self, rhs: u64) -> SpecDuration {
        SpecDuration(self.0.saturating_mul(rhs))
    }
}

impl Serialize for SpecDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SpecDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = SpecDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 10s, 1m30s or 250ms, or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SpecDuration, E> {
                SpecDuration::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SpecDuration, E> {
                Ok(SpecDuration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SpecDuration, E> {
                u64::try_from(v)
                    .map(SpecDuration::from_secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<SpecDuration, E> {
                if v >= 0.0 && v.is_finite() {
                    Ok(SpecDuration::from_secs_f64(v))
                } else {
                    Err(E::custom(
                        "a duration must be a non-negative number of seconds",
                    ))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_and_plain_seconds() {
        assert_eq!(SpecDuration::parse("10s"), Ok(SpecDuration::from_secs(10)));
        assert_eq!(
            SpecDuration::parse("1m30s"),
            Ok(SpecDuration::from_secs(90))
        );
        assert_eq!(
            SpecDuration::parse("250ms"),
            Ok(SpecDuration::from_millis(250))
        );
        assert_eq!(
            SpecDuration::parse("1.5s"),
            Ok(SpecDuration::from_millis(1500))
        );
        assert_eq!(SpecDuration::parse("2"), Ok(SpecDuration::from_secs(2)));
        assert!(SpecDuration::parse("10 parsecs").is_err());
        assert!(SpecDuration::parse("-1").is_err());
        assert!(SpecDuration::parse("s").is_err());
    }

    #[test]
    fn a_bare_number_of_seconds_past_u64_milliseconds_saturates() {
        let read: Result<SpecDuration, _> = serde_saphyr::from_str("18446744073709551615");
        assert_eq!(read.ok(), Some(SpecDuration::from_millis(u64::MAX)));
        assert_eq!(
            SpecDuration::from_secs(u64::MAX / 999),
            SpecDuration::from_millis(u64::MAX)
        );
    }

    #[test]
    fn display_round_trips() {
        for ms in [0, 1, 250, 1000, 1500, 90_000, 3_723_000, 300_000] {
            let d = SpecDuration::from_millis(ms);
            assert_eq!(SpecDuration::parse(&d.to_string()), Ok(d), "{d}");
        }
    }
}
