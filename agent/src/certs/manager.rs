//! Which certificates to issue, renew and drop, decided purely from what
//! the route table wants (a container → its names) and what is held (names
//! and validity): missing or with other names → issue; past the renewal
//! point of its lifetime → renew; held for a container no longer routed →
//! drop. Certificates exist only for routed containers, never for whatever
//! name a client sends.

use super::Meta;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    New,
    NamesChanged,
    Renewal,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertPlan {
    pub issue: Vec<(String, Vec<String>, Why)>,
    pub drop: Vec<String>,
    /// When the next held certificate falls due (seconds since the epoch).
    pub next_due: Option<i64>,
}

/// The moment a certificate should be renewed.
pub fn due_at(meta: &Meta, fraction: f64) -> i64 {
    let life = (meta.not_after - meta.not_before).max(0) as f64;
    meta.not_before + (life * fraction) as i64
}

pub fn plan(
    wanted: &BTreeMap<String, Vec<String>>,
    held: &BTreeMap<String, Meta>,
    now: i64,
    fraction: f64,
) -> CertPlan {
    let mut p = CertPlan::default();
    for (container, names) in wanted {
        match held.get(container) {
            None => p.issue.push((container.clone(), names.clone(), Why::New)),
            Some(m) if &m.names != names => {
                p.issue
                    .push((container.clone(), names.clone(), Why::NamesChanged))
            }
            Some(m) if now >= due_at(m, fraction) => {
                p.issue
                    .push((container.clone(), names.clone(), Why::Renewal))
            }
            Some(m) => {
                let due = due_at(m, fraction);
                p.next_due = Some(p.next_due.map_or(due, |d| d.min(due)));
            }
        }
    }
    p.drop = held
        .keys()
        .filter(|c| !wanted.contains_key(*c))
        .cloned()
        .collect();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(names: &[&str], nb: i64, na: i64) -> Meta {
        Meta {
            names: names.iter().map(|s| s.to_string()).collect(),
            not_before: nb,
            not_after: na,
            issuer: "local-ca".into(),
        }
    }

    fn names(c: &str) -> Vec<String> {
        vec![format!("{c}.dev.test"), format!("*.{c}.dev.test")]
    }

    #[test]
    fn issue_renew_and_drop() {
        let wanted: BTreeMap<String, Vec<String>> = ["a", "b", "c", "d"]
            .iter()
            .map(|c| (c.to_string(), names(c)))
            .collect();
        let held: BTreeMap<String, Meta> = [
            (
                "b".to_string(),
                meta(&["b.dev.test", "*.b.dev.test"], 0, 900),
            ),
            (
                "c".to_string(),
                meta(&["c.old.test", "*.c.old.test"], 0, 900),
            ),
            (
                "d".to_string(),
                meta(&["d.dev.test", "*.d.dev.test"], 300, 1200),
            ),
            ("gone".to_string(), meta(&["gone.dev.test"], 0, 900)),
        ]
        .into_iter()
        .collect();
        // b is due at 600, d at 900.
        assert_eq!(
            plan(&wanted, &held, 600, 2.0 / 3.0),
            CertPlan {
                issue: vec![
                    ("a".into(), names("a"), Why::New),
                    ("b".into(), names("b"), Why::Renewal),
                    ("c".into(), names("c"), Why::NamesChanged),
                ],
                drop: vec!["gone".into()],
                next_due: Some(900),
            }
        );
        assert_eq!(
            plan(&wanted, &held, 599, 2.0 / 3.0).issue.len(),
            2,
            "b not yet"
        );
    }
}
