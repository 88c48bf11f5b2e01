//! Per-container resource limits (`devhost ensure … --memory 2G --cpu 2`):
//! parsed and validated here, recorded with the container, applied by the
//! systemd backend as unit properties (and live to a running unit).

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {why}")]
pub struct LimitError {
    pub what: &'static str,
    pub value: String,
    pub why: &'static str,
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
        let err = |what, value: String, why| Err(LimitError { what, value, why });
        if let Some(m) = self.memory_max {
            if m < 16 << 20 {
                return err("memory", m.to_string(), "must be at least 16M");
            }
        }
        if let Some(c) = self.cpu_percent {
            if c == 0 || c > 102_400 {
                return err("cpu", c.to_string(), "must be between 0.01 and 1024 CPUs");
            }
        }
        if self.tasks_max == Some(0) {
            return err("tasks", "0".into(), "must be at least 1");
        }
        if let Some(w) = self.io_weight {
            if !(1..=10_000).contains(&w) {
                return err("io-weight", w.to_string(), "must be between 1 and 10000");
            }
        }
        Ok(())
    }
}

/// `512M`, `2G`, `1.5G`, `1073741824` (binary units, as systemd reads them).
pub fn parse_memory(s: &str) -> Result<u64, LimitError> {
    let bad = |why| LimitError {
        what: "memory",
        value: s.to_string(),
        why,
    };
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        Some('T' | 't') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num.parse().map_err(|_| bad("use a size like 512M or 2G"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(bad("must be positive"));
    }
    // Checked after scaling: a fraction of a byte is none, and a size past
    // u64 would be cut to u64::MAX, which systemd reads as "infinity".
    let bytes = (v * mult as f64).floor();
    if bytes < 1.0 {
        return Err(bad("must be at least one byte"));
    }
    if bytes >= u64::MAX as f64 {
        return Err(bad("is larger than any memory"));
    }
    Ok(bytes as u64)
}

/// `2` or `1.5` CPUs as a percentage of one CPU.
pub fn parse_cpu(s: &str) -> Result<u32, LimitError> {
    let bad = |why| LimitError {
        what: "cpu",
        value: s.to_string(),
        why,
    };
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| bad("use a number of CPUs like 2 or 0.5"))?;
    // Checked after rounding too: 0.001 CPUs is 0 percent, no CPU at all.
    let percent = (v * 100.0).round();
    if !v.is_finite() || v <= 0.0 || v > 1024.0 || percent < 1.0 {
        return Err(bad("must be between 0.01 and 1024 CPUs"));
    }
    Ok(percent as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(parse_memory("2G").unwrap(), 2 << 30);
        assert_eq!(parse_memory("512M").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("1048576").unwrap(), 1 << 20);
        assert_eq!(
            parse_memory("lots").unwrap_err().to_string(),
            "invalid memory \"lots\": use a size like 512M or 2G"
        );
        assert!(parse_memory("-1G").is_err());
        assert_eq!(parse_cpu("2").unwrap(), 200);
        assert_eq!(parse_cpu("0.5").unwrap(), 50);
        assert!(parse_cpu("0").is_err());
        assert!(parse_cpu("two").is_err());
    }

    #[test]
    fn sizes_and_counts_that_round_to_nothing_or_overflow() {
        // Found by container::proptests: these were accepted as 0 bytes,
        // u64::MAX bytes (systemd's "infinity") and 0 % of a CPU.
        assert_eq!(
            parse_memory("0.1").unwrap_err().to_string(),
            "invalid memory \"0.1\": must be at least one byte"
        );
        assert_eq!(
            parse_memory("1e30G").unwrap_err().to_string(),
            "invalid memory \"1e30G\": is larger than any memory"
        );
        assert_eq!(
            parse_memory("17e6T").unwrap_err().why,
            "is larger than any memory"
        );
        assert_eq!(parse_memory("0.5K").unwrap(), 512);
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
