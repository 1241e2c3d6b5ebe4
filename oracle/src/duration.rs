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

    /// The longest duration a scenario may state. A case is observed for an hour at most
    /// (`predict::MAX_HORIZON`), so anything longer only ever means "after the
    /// observation"; refusing what lies beyond a day keeps every sum of durations exact
    /// instead of saturated.
    pub const MAX: SpecDuration = SpecDuration::from_secs(24 * 3600);

    pub const fn from_millis(millis: u64) -> Self {
        SpecDuration(millis)
    }

    /// Saturates, as the rest of the arithmetic does; scenario text never comes through
    /// here (it is held to [`SpecDuration::MAX`] as it is read).
    pub const fn from_secs(secs: u64) -> Self {
        SpecDuration(secs.saturating_mul(1000))
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

    /// A duration of `millis` milliseconds, as written in `text`: refused when it is
    /// negative, longer than [`SpecDuration::MAX`] or finer than a millisecond, the
    /// model's resolution.
    fn checked_millis(millis: f64, text: &str) -> Result<Self, String> {
        if !(millis.is_finite() && millis >= 0.0) {
            return Err(format!(
                "duration {text:?} must be a non-negative number of seconds"
            ));
        }
        if millis > Self::MAX.0 as f64 {
            return Err(format!(
                "duration {text:?} is longer than the maximum of {} (a case is observed for 1h at most)",
                Self::MAX
            ));
        }
        let rounded = millis.round();
        // Decimal fractions of a second are not exact in binary: allow their rounding error.
        if (millis - rounded).abs() > 1e-9 * millis.max(1.0) {
            return Err(format!(
                "duration {text:?} is finer than a millisecond, the resolution of scenario time"
            ));
        }
        Ok(SpecDuration(rounded as u64))
    }

    /// Parses `1h2m3s`, `1.5s`, `250ms` or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty duration".to_owned());
        }
        if let Ok(secs) = text.parse::<f64>() {
            return Self::checked_millis(secs * 1000.0, text);
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
        Self::checked_millis(total_ms, text)
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
                SpecDuration::checked_millis(v as f64 * 1000.0, &v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SpecDuration, E> {
                SpecDuration::checked_millis(v as f64 * 1000.0, &v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<SpecDuration, E> {
                SpecDuration::checked_millis(v * 1000.0, &v.to_string()).map_err(E::custom)
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
    fn durations_past_the_maximum_or_finer_than_a_millisecond_are_refused() {
        assert_eq!(SpecDuration::parse("24h"), Ok(SpecDuration::MAX));
        assert_eq!(SpecDuration::parse("86400"), Ok(SpecDuration::MAX));
        for text in [
            "24h1ms",
            "86400.001",
            "999999999999999999992s",
            "1e300",
            "25h",
        ] {
            let err = SpecDuration::parse(text).expect_err(text);
            assert!(
                err.contains("longer than the maximum of 24h"),
                "{text}: {err}"
            );
        }
        for text in ["0.0000001ms", "0.5ms", "1.0005s", "0.0001"] {
            let err = SpecDuration::parse(text).expect_err(text);
            assert!(err.contains("finer than a millisecond"), "{text}: {err}");
        }
        // Decimal fractions that binary floating point cannot hold exactly still parse.
        assert_eq!(
            SpecDuration::parse("0.3"),
            Ok(SpecDuration::from_millis(300))
        );
        assert_eq!(
            SpecDuration::parse("1.1s"),
            Ok(SpecDuration::from_millis(1100))
        );
        assert_eq!(
            SpecDuration::parse("0.001"),
            Ok(SpecDuration::from_millis(1))
        );
    }

    #[test]
    fn numbers_in_a_scenario_are_held_to_the_same_limits() {
        #[derive(Debug, serde::Deserialize)]
        struct Field {
            at: SpecDuration,
        }
        let read = |text: &str| serde_saphyr::from_str::<Field>(text).map(|f| f.at);
        assert_eq!(read("at: 90").ok(), Some(SpecDuration::from_secs(90)));
        assert_eq!(read("at: 0.25").ok(), Some(SpecDuration::from_millis(250)));
        for text in [
            "at: 18446744073709551615",
            "at: -3",
            "at: 1e30",
            "at: 0.0000001",
        ] {
            assert!(read(text).is_err(), "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for ms in [0, 1, 250, 1000, 1500, 90_000, 3_723_000, 300_000] {
            let d = SpecDuration::from_millis(ms);
            assert_eq!(SpecDuration::parse(&d.to_string()), Ok(d), "{d}");
        }
    }
}
