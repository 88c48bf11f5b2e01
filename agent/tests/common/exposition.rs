//! A strict reader of the Prometheus text format (0.0.4), for the tests of
//! the agent's `/metrics` (the library's unit test includes it too). It
//! refuses what Prometheus would refuse and what the conventions forbid:
//! every line a `# HELP`, a `# TYPE` or a sample `name{labels} value`; HELP
//! then TYPE once per family, before its samples, which follow together;
//! counters named `…_total` with values ≥ 0; histograms with `_bucket`
//! (`le` ascending, counts not decreasing, ending in `+Inf` equal to
//! `_count`), `_sum` and `_count` for every label set; no series twice.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    pub help: String,
    /// counter, gauge, histogram, summary or untyped.
    pub kind: String,
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
    pub samples: Vec<Sample>,
}

fn valid_name(n: &str, colon: bool) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || (colon && c == b':'))
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || (colon && c == b':'))
}

fn value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|_| format!("{v:?} is not a number")),
    }
}

/// `{k="v",…}` at the start of `s`: the labels and what follows.
fn labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut out = BTreeMap::new();
    let mut rest = s.strip_prefix('{').expect("called at a brace");
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let (key, r) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("no label value in {s:?}"))?;
        if !valid_name(key, false) || key.starts_with("__") {
            return Err(format!("bad label name {key:?}"));
        }
        let mut val = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated label value in {s:?}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => val.push('\\'),
                    Some((_, '"')) => val.push('"'),
                    Some((_, 'n')) => val.push('\n'),
                    other => return Err(format!("bad escape {other:?} in {s:?}")),
                },
                Some((_, c)) => val.push(c),
            }
        };
        if out.insert(key.to_string(), val).is_some() {
            return Err(format!("label {key} twice in {s:?}"));
        }
        rest = &r[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} after a label in {s:?}"));
        }
    }
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    if !valid_name(name, true) {
        return Err(format!("bad metric name {name:?}"));
    }
    let (labels, rest) = if line[name_end..].starts_with('{') {
        labels(&line[name_end..])?
    } else {
        (BTreeMap::new(), &line[name_end..])
    };
    let v = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value in {line:?}"))?;
    if v.contains(' ') {
        return Err(format!("a timestamp or more after the value in {line:?}"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value: value(v)?,
    })
}

/// The family a sample of `kind` named `name` belongs to, if it may.
fn family_of(name: &str, family: &str, kind: &str) -> bool {
    match kind {
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| name.strip_suffix(s) == Some(family)),
        "summary" => {
            name == family
                || ["_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(family))
        }
        _ => name == family,
    }
}

pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    if !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    // The family whose samples may follow: a family's samples come together.
    let mut current: Option<(String, String)> = None;
    let mut pending_help: Option<(String, String)> = None;
    let mut series = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if !valid_name(name, true) {
                return Err(at(format!("bad name {name:?}")));
            }
            if pending_help.is_some() {
                return Err(at("HELP after a HELP without TYPE".into()));
            }
            pending_help = Some((name.to_string(), help.to_string()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind:?}")));
            }
            let help = match pending_help.take() {
                Some((h, help)) if h == name => help,
                _ => return Err(at(format!("TYPE of {name} without its HELP before it"))),
            };
            if e.families.contains_key(name) {
                return Err(at(format!("family {name} declared twice")));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(at(format!("counter {name} does not end in _total")));
            }
            e.families.insert(
                name.to_string(),
                Family {
                    help,
                    kind: kind.to_string(),
                },
            );
            current = Some((name.to_string(), kind.to_string()));
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at("neither HELP, TYPE nor a sample".into()));
        } else {
            if pending_help.is_some() {
                return Err(at("a sample between HELP and TYPE".into()));
            }
            let s = sample(line).map_err(at)?;
            let Some((family, kind)) = &current else {
                return Err(at("a sample before any TYPE".into()));
            };
            if !family_of(&s.name, family, kind) {
                let known = e
                    .families
                    .keys()
                    .any(|f| family_of(&s.name, f, "histogram") || *f == s.name);
                return Err(at(if known {
                    format!(
                        "a sample of {} away from its family's other samples",
                        s.name
                    )
                } else {
                    format!(
                        "{} is not of family {family} ({kind}) and has no HELP/TYPE",
                        s.name
                    )
                }));
            }
            if kind == "counter" && (s.value.is_nan() || s.value < 0.0) {
                return Err(at("a counter below zero".into()));
            }
            if kind == "histogram" && s.name.ends_with("_bucket") && !s.labels.contains_key("le") {
                return Err(at("a bucket without le".into()));
            }
            let key = format!("{}{:?}", s.name, s.labels);
            if !series.insert(key) {
                return Err(at("the same series twice".into()));
            }
            e.samples.push(s);
        }
    }
    if pending_help.is_some() {
        return Err("a HELP at the end without its TYPE".into());
    }
    check_histograms(&e)?;
    Ok(e)
}

/// One histogram series: its buckets (le, count) in order, sum, count.
type Series = (Vec<(f64, f64)>, Option<f64>, Option<f64>);

fn check_histograms(e: &Exposition) -> Result<(), String> {
    for (family, f) in &e.families {
        if f.kind != "histogram" {
            continue;
        }
        // By label set without `le`: the buckets in order, sum, count.
        let mut by: BTreeMap<BTreeMap<String, String>, Series> = BTreeMap::new();
        for s in &e.samples {
            let mut labels = s.labels.clone();
            let le = labels.remove("le");
            let entry = by.entry(labels).or_default();
            if s.name == format!("{family}_bucket") {
                let le = value(&le.unwrap())?;
                entry.0.push((le, s.value));
            } else if s.name == format!("{family}_sum") {
                entry.1 = Some(s.value);
            } else if s.name == format!("{family}_count") {
                entry.2 = Some(s.value);
            }
        }
        by.retain(|_, (b, s, c)| !b.is_empty() || s.is_some() || c.is_some());
        for (labels, (buckets, sum, count)) in by {
            let what = format!("histogram {family}{labels:?}");
            let count = count.ok_or_else(|| format!("{what}: no _count"))?;
            sum.ok_or_else(|| format!("{what}: no _sum"))?;
            if buckets
                .windows(2)
                .any(|w| w[0].0.is_nan() || w[0].0 >= w[1].0)
            {
                return Err(format!("{what}: le not ascending: {buckets:?}"));
            }
            if buckets.windows(2).any(|w| w[0].1 > w[1].1) {
                return Err(format!("{what}: bucket counts decrease: {buckets:?}"));
            }
            match buckets.last() {
                Some((le, n)) if *le == f64::INFINITY && *n == count => {}
                _ => {
                    return Err(format!(
                    "{what}: the last bucket is not le=\"+Inf\" = _count ({count}): {buckets:?}"
                ))
                }
            }
        }
    }
    Ok(())
}

impl Exposition {
    /// The value of the series `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Every series of `name` whose labels include `labels`.
    pub fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }
}
