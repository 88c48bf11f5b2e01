//! The `sleep after` setting as written and as used: `off`, `default` (the
//! host's `[sleep] after`, per container only) or an idle period such as
//! `90s`, `30m`, `2h`, `1d`, `1h30m` (1 second to 365 days). Parsed and
//! printed only here; records and the API carry it as that text.

use std::time::Duration;

/// How long a container may be idle before it is put to sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SleepAfter {
    /// What the host's `[sleep] after` says (a container's setting only).
    #[default]
    Default,
    /// Never put to sleep.
    Off,
    /// Put to sleep after this long without activity (whole seconds).
    After(Duration),
}

/// The longest idle period that may be set.
const MAX_SECS: u64 = 365 * 86_400;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sleep after {given:?}: {why} (use off, default or a period like 30m, 2h, 1d, 1h30m: 1 s to 365 days)")]
pub struct SleepAfterError {
    pub given: String,
    pub why: &'static str,
}

impl SleepAfter {
    /// Parse what a user wrote.
    pub fn parse(s: &str) -> Result<SleepAfter, SleepAfterError> {
        let bad = |why| SleepAfterError {
            given: s.to_string(),
            why,
        };
        match s {
            "off" => return Ok(SleepAfter::Off),
            "default" => return Ok(SleepAfter::Default),
            "" => return Err(bad("empty")),
            _ => {}
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                _ => return Err(bad("not a number followed by s, m, h or d")),
            };
            if digits.is_empty() {
                return Err(bad("a unit without a number before it"));
            }
            let n: u64 = digits.parse().map_err(|_| bad("too long"))?;
            digits.clear();
            total = n
                .checked_mul(unit)
                .and_then(|x| total.checked_add(x))
                .ok_or_else(|| bad("too long"))?;
        }
        if !digits.is_empty() {
            return Err(bad("a number without its unit (s, m, h or d)"));
        }
        match total {
            0 => Err(bad("zero (use off)")),
            t if t > MAX_SECS => Err(bad("longer than 365 days")),
            t => Ok(SleepAfter::After(Duration::from_secs(t))),
        }
    }

    /// The idle period that applies, the host's `default` filling in: `None`
    /// when the container never sleeps.
    pub fn period(self, host: SleepAfter) -> Option<Duration> {
        match self {
            SleepAfter::After(d) => Some(d),
            SleepAfter::Off => None,
            SleepAfter::Default => match host {
                SleepAfter::After(d) => Some(d),
                _ => None,
            },
        }
    }

    pub fn is_default(&self) -> bool {
        *self == SleepAfter::Default
    }
}

/// A period as the setting writes it: `1d2h`, `90m` is `1h30m`, `45s`.
pub fn period_text(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= secs {
            out.push_str(&format!("{}{unit}", s / secs));
            s %= secs;
        }
    }
    out
}

impl std::fmt::Display for SleepAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SleepAfter::Default => f.write_str("default"),
            SleepAfter::Off => f.write_str("off"),
            SleepAfter::After(d) => f.write_str(&period_text(*d)),
        }
    }
}

impl std::str::FromStr for SleepAfter {
    type Err = SleepAfterError;
    fn from_str(s: &str) -> Result<SleepAfter, SleepAfterError> {
        SleepAfter::parse(s)
    }
}

impl serde::Serialize for SleepAfter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SleepAfter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SleepAfter, D::Error> {
        let s = String::deserialize(d)?;
        SleepAfter::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(secs: u64) -> SleepAfter {
        SleepAfter::After(Duration::from_secs(secs))
    }

    #[test]
    fn periods_parse_and_print_canonically() {
        for (given, want, shown) in [
            ("off", SleepAfter::Off, "off"),
            ("default", SleepAfter::Default, "default"),
            ("45s", after(45), "45s"),
            ("30m", after(1_800), "30m"),
            ("90m", after(5_400), "1h30m"),
            ("2h", after(7_200), "2h"),
            ("1h30m", after(5_400), "1h30m"),
            ("1d", after(86_400), "1d"),
            ("365d", after(MAX_SECS), "365d"),
            ("1d1s", after(86_401), "1d1s"),
        ] {
            let got = SleepAfter::parse(given).unwrap();
            assert_eq!(got, want, "{given}");
            assert_eq!(got.to_string(), shown, "{given}");
            assert_eq!(SleepAfter::parse(shown), Ok(got), "round trip of {shown}");
        }
    }

    #[test]
    fn bad_periods_say_why() {
        for (given, why) in [
            ("", "empty"),
            ("0s", "zero (use off)"),
            ("2", "a number without its unit (s, m, h or d)"),
            ("h", "a unit without a number before it"),
            ("2 h", "not a number followed by s, m, h or d"),
            ("-1h", "not a number followed by s, m, h or d"),
            ("2w", "not a number followed by s, m, h or d"),
            ("Off", "not a number followed by s, m, h or d"),
            ("366d", "longer than 365 days"),
            ("99999999999999999999d", "too long"),
            ("999999999999999999d", "too long"),
        ] {
            assert_eq!(
                SleepAfter::parse(given),
                Err(SleepAfterError {
                    given: given.into(),
                    why
                }),
                "{given}"
            );
        }
        assert_eq!(
            SleepAfter::parse("2").unwrap_err().to_string(),
            "sleep after \"2\": a number without its unit (s, m, h or d) (use off, default or a period like 30m, 2h, 1d, 1h30m: 1 s to 365 days)"
        );
    }

    #[test]
    fn the_host_default_fills_in_only_for_default() {
        let host = after(7_200);
        assert_eq!(
            SleepAfter::Default.period(host),
            Some(Duration::from_secs(7_200))
        );
        assert_eq!(SleepAfter::Default.period(SleepAfter::Off), None);
        assert_eq!(SleepAfter::Off.period(host), None);
        assert_eq!(after(60).period(host), Some(Duration::from_secs(60)));
        assert_eq!(
            after(60).period(SleepAfter::Off),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn serde_carries_the_text() {
        assert_eq!(serde_json::to_string(&after(5_400)).unwrap(), "\"1h30m\"");
        assert_eq!(
            serde_json::from_str::<SleepAfter>("\"off\"").unwrap(),
            SleepAfter::Off
        );
        let e = serde_json::from_str::<SleepAfter>("\"soon\"").unwrap_err();
        assert!(e.to_string().contains("sleep after \"soon\""), "{e}");
    }
}
