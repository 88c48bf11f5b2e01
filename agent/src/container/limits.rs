//! Per-container resource limits (`devhost ensure … --memory 2G --cpu 2`):
//! parsed and validated here, recorded with the container, applied by the
//! systemd backend as unit properties (and live to a running unit).

use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// MemoryMax, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<u64>,
    /// CPU quota in percent of one CPU (200 = two CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_max: Option<u64>,
    /// IOWeight, 1–10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_weight: Option<u64>,
}

/// A memory limit: 16M to 1024T. Less does not boot; more is no limit a
/// host has, and `u64::MAX` would mean none at all to systemd.
pub const MEMORY_RANGE: RangeInclusive<u64> = (16 << 20)..=(1 << 50);
/// A disk size: 1M to 1024T.
pub const DISK_SIZE_RANGE: RangeInclusive<u64> = (1 << 20)..=(1 << 50);
/// CPU quota in percent of one CPU: 0.01 to 1024 CPUs.
pub const CPU_PERCENT_RANGE: RangeInclusive<u32> = 1..=102_400;
/// The most tasks a cgroup can be limited to (the kernel's `PID_MAX_LIMIT`).
pub const TASKS_MAX: u64 = 4_194_304;
/// The largest IOWeight.
pub const IO_WEIGHT_MAX: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {why}")]
pub struct LimitError {
    pub what: &'static str,
    pub value: String,
    pub why: String,
}

impl LimitError {
    fn new(what: &'static str, value: impl ToString, why: impl Into<String>) -> LimitError {
        LimitError {
            what,
            value: value.to_string(),
            why: why.into(),
        }
    }
}

/// `must be between 16M and 1024T`.
fn size_range_text(range: &RangeInclusive<u64>) -> String {
    format!(
        "must be between {} and {}",
        size_text(*range.start()),
        size_text(*range.end())
    )
}

/// Bytes in the largest binary unit that holds them whole: `16M`, `1024T`.
fn size_text(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// The fields set in `other` replace those here.
    pub fn merge(&mut self, other: &Limits) {
        if other.memory_max.is_some() {
            self.memory_max = other.memory_max;
        }
        if other.cpu_percent.is_some() {
            self.cpu_percent = other.cpu_percent;
        }
        if other.tasks_max.is_some() {
            self.tasks_max = other.tasks_max;
        }
        if other.io_weight.is_some() {
            self.io_weight = other.io_weight;
        }
    }

    pub fn validate(&self) -> Result<(), LimitError> {
        if let Some(m) = self.memory_max {
            if !MEMORY_RANGE.contains(&m) {
                return Err(LimitError::new("memory", m, size_range_text(&MEMORY_RANGE)));
            }
        }
        if let Some(c) = self.cpu_percent {
            if !CPU_PERCENT_RANGE.contains(&c) {
                return Err(LimitError::new("cpu", c, CPU_RANGE_TEXT));
            }
        }
        if let Some(t) = self.tasks_max {
            if !(1..=TASKS_MAX).contains(&t) {
                return Err(LimitError::new(
                    "tasks",
                    t,
                    format!("must be between 1 and {TASKS_MAX}"),
                ));
            }
        }
        if let Some(w) = self.io_weight {
            if !(1..=IO_WEIGHT_MAX).contains(&w) {
                return Err(LimitError::new(
                    "io-weight",
                    w,
                    format!("must be between 1 and {IO_WEIGHT_MAX}"),
                ));
            }
        }
        Ok(())
    }
}

const CPU_RANGE_TEXT: &str = "must be between 0.01 and 1024 CPUs";

/// A size: `512M`, `2G`, `1.5G`, `2GiB` (binary units, as systemd reads
/// them), or a plain number of `unit` bytes; refused outside `range`,
/// naming the value as given (never rounded or clamped into range).
pub fn parse_size(
    what: &'static str,
    s: &str,
    unit: u64,
    range: RangeInclusive<u64>,
) -> Result<u64, LimitError> {
    let t = s.trim();
    let t = t.strip_suffix("iB").unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        Some('T' | 't') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, unit),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| LimitError::new(what, s, "use a number or a size like 512M or 2G"))?;
    let bytes = v * mult as f64;
    // Compared as floats: the cast to u64 would saturate (or make 0 of NaN).
    if !bytes.is_finite() || bytes < *range.start() as f64 || bytes > *range.end() as f64 {
        return Err(LimitError::new(what, s, size_range_text(&range)));
    }
    Ok(bytes as u64)
}

/// A memory limit: `512M`, `2G`, `1.5G`, `1073741824` (bytes), in [`MEMORY_RANGE`].
pub fn parse_memory(s: &str) -> Result<u64, LimitError> {
    parse_size("memory", s, 1, MEMORY_RANGE)
}

/// A disk size the API was sent, checked against [`DISK_SIZE_RANGE`].
pub fn check_disk_size(bytes: u64) -> Result<(), LimitError> {
    if DISK_SIZE_RANGE.contains(&bytes) {
        return Ok(());
    }
    Err(LimitError::new(
        "disk size",
        bytes,
        size_range_text(&DISK_SIZE_RANGE),
    ))
}

/// `2` or `1.5` CPUs as a percentage of one CPU (0.01 to 1024 CPUs).
pub fn parse_cpu(s: &str) -> Result<u32, LimitError> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| LimitError::new("cpu", s, "use a number of CPUs like 2 or 0.5"))?;
    let percent = (v * 100.0).round();
    if !percent.is_finite()
        || percent < *CPU_PERCENT_RANGE.start() as f64
        || percent > *CPU_PERCENT_RANGE.end() as f64
    {
        return Err(LimitError::new("cpu", s, CPU_RANGE_TEXT));
    }
    Ok(percent as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_binary_units() {
        assert_eq!(parse_memory("2G"), Ok(2 << 30));
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("1.5g"), Ok(3 << 29));
        assert_eq!(parse_memory("16777216"), Ok(16 << 20));
        assert_eq!(parse_memory("1024T"), Ok(1 << 50));
        let batou = |what, s, unit, range| parse_size(what, s, unit, range);
        assert_eq!(batou("memory", "2048", 1 << 20, MEMORY_RANGE), Ok(2 << 30));
        assert_eq!(
            batou("disk size", "2GiB", 1 << 30, DISK_SIZE_RANGE),
            Ok(2 << 30)
        );
        assert_eq!(
            batou("disk size", "20", 1 << 30, DISK_SIZE_RANGE),
            Ok(20 << 30)
        );
    }

    #[test]
    fn sizes_out_of_range_are_named_with_the_range() {
        let says = |r: Result<u64, LimitError>| r.unwrap_err().to_string();
        assert_eq!(
            says(parse_memory("99999999999999999999G")),
            "invalid memory \"99999999999999999999G\": must be between 16M and 1024T"
        );
        assert_eq!(
            says(parse_memory("1025T")),
            "invalid memory \"1025T\": must be between 16M and 1024T"
        );
        for bad in ["-1G", "0", "1048576", "15M", "inf", "NaN", "1e400"] {
            assert_eq!(
                says(parse_memory(bad)),
                format!("invalid memory {bad:?}: must be between 16M and 1024T")
            );
        }
        assert_eq!(
            says(parse_size(
                "disk size",
                "0.0000001",
                1 << 30,
                DISK_SIZE_RANGE
            )),
            "invalid disk size \"0.0000001\": must be between 1M and 1024T"
        );
        assert_eq!(
            check_disk_size(u64::MAX).unwrap_err().to_string(),
            "invalid disk size \"18446744073709551615\": must be between 1M and 1024T"
        );
        assert_eq!(check_disk_size(20 << 30), Ok(()));
    }

    #[test]
    fn a_size_that_is_no_number_says_what_to_give() {
        assert_eq!(
            parse_memory("lots").unwrap_err().to_string(),
            "invalid memory \"lots\": use a number or a size like 512M or 2G"
        );
    }

    #[test]
    fn cpus_in_range() {
        assert_eq!(parse_cpu("2"), Ok(200));
        assert_eq!(parse_cpu("0.5"), Ok(50));
        assert_eq!(parse_cpu("1024"), Ok(102_400));
        for bad in ["-1", "0", "0.001", "1025", "inf", "NaN"] {
            assert_eq!(
                parse_cpu(bad).unwrap_err().to_string(),
                format!("invalid cpu {bad:?}: must be between 0.01 and 1024 CPUs")
            );
        }
        assert_eq!(
            parse_cpu("two").unwrap_err().to_string(),
            "invalid cpu \"two\": use a number of CPUs like 2 or 0.5"
        );
    }

    #[test]
    fn limits_the_api_gets_are_checked_against_the_same_ranges() {
        let says = |l: Limits| l.validate().unwrap_err().to_string();
        assert_eq!(
            says(Limits {
                memory_max: Some(u64::MAX),
                ..Limits::default()
            }),
            "invalid memory \"18446744073709551615\": must be between 16M and 1024T"
        );
        assert_eq!(
            says(Limits {
                tasks_max: Some(u64::MAX),
                ..Limits::default()
            }),
            "invalid tasks \"18446744073709551615\": must be between 1 and 4194304"
        );
        assert_eq!(
            says(Limits {
                cpu_percent: Some(0),
                ..Limits::default()
            }),
            "invalid cpu \"0\": must be between 0.01 and 1024 CPUs"
        );
    }

    #[test]
    fn sizes_and_counts_that_round_to_nothing_or_overflow() {
        // Found by container::proptests: these were accepted as 0 bytes,
        // u64::MAX bytes (systemd's "infinity") and 0 % of a CPU.
        for bad in ["0.1", "1e30G", "17e6T", "0.5K"] {
            assert_eq!(
                parse_memory(bad).unwrap_err().to_string(),
                format!("invalid memory {bad:?}: must be between 16M and 1024T")
            );
        }
        assert_eq!(
            parse_cpu("0.001").unwrap_err().to_string(),
            "invalid cpu \"0.001\": must be between 0.01 and 1024 CPUs"
        );
        assert_eq!(parse_cpu("0.005").unwrap(), 1);
        assert_eq!(parse_cpu("1024").unwrap(), 102_400);
    }

    #[test]
    fn validation_and_merge() {
        let mut l = Limits {
            memory_max: Some(1 << 30),
            ..Limits::default()
        };
        l.merge(&Limits {
            cpu_percent: Some(200),
            ..Limits::default()
        });
        assert_eq!(
            l,
            Limits {
                memory_max: Some(1 << 30),
                cpu_percent: Some(200),
                ..Limits::default()
            }
        );
        assert!(l.validate().is_ok());
        assert!(Limits {
            memory_max: Some(1000),
            ..Limits::default()
        }
        .validate()
        .is_err());
        assert!(Limits {
            io_weight: Some(0),
            ..Limits::default()
        }
        .validate()
        .is_err());
        assert!(Limits {
            tasks_max: Some(0),
            ..Limits::default()
        }
        .validate()
        .is_err());
    }
}
