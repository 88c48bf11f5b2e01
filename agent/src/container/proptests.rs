//! Property tests of what users name and set (run through `props::check`,
//! so `FUZZ_SECS` runs them for long): container names, aliases, channel
//! URLs, limits and upstreams. No input panics; every accepted value keeps
//! the documented rule, and its printed form parses back to itself.

use super::limits::{parse_cpu, parse_memory};
use super::names::MAX_NAME_LEN;
use super::*;
use proptest::prelude::*;
use std::fmt::Display;
use std::str::FromStr;

/// Arbitrary text, or text of the characters the rules are about.
fn text(alphabet: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![props::any_text(), alphabet]
}

/// An accepted value prints as text that parses back to it, and survives
/// JSON (where the type is serialized as a string).
fn round_trips<T>(v: &T) -> Result<(), TestCaseError>
where
    T: Display + FromStr + PartialEq + std::fmt::Debug + serde::Serialize,
    T: serde::de::DeserializeOwned,
    T::Err: std::fmt::Debug,
{
    let shown = v.to_string();
    prop_assert_eq!(&shown.parse::<T>().expect("printed value parses"), v);
    let json = serde_json::to_string(v).unwrap();
    prop_assert_eq!(json.clone(), serde_json::to_string(&shown).unwrap());
    prop_assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), v);
    Ok(())
}

#[test]
fn container_names_keep_their_rule() {
    let input = text("[a-zA-Z0-9_.\\-/ é]{0,14}");
    props::check("container_names_keep_their_rule", 1000, input, |s| {
        match s.parse::<ContainerName>() {
            Ok(n) => {
                prop_assert_eq!(n.as_str(), s.as_str());
                prop_assert!((1..=MAX_NAME_LEN).contains(&s.len()));
                prop_assert!(s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
                prop_assert!(!s.starts_with('-'));
                round_trips(&n)?;
                // New names are lower case and differ from others in more than case.
                let upper: ContainerName = s.to_ascii_uppercase().parse().unwrap();
                match n.check_new([&upper]) {
                    Ok(()) => {
                        prop_assert!(!s.bytes().any(|b| b.is_ascii_uppercase()));
                        prop_assert_eq!(upper.as_str(), s.as_str(), "no clash with itself only");
                    }
                    Err(_) => prop_assert!(
                        s.bytes().any(|b| b.is_ascii_uppercase()) || upper.as_str() != s
                    ),
                }
            }
            Err(e) => prop_assert!(e.to_string().contains(&format!("{s:?}")), "{e}"),
        }
        Ok(())
    });
}

#[test]
fn names_that_keep_the_rule_are_accepted() {
    let valid = format!("[a-zA-Z0-9_][a-zA-Z0-9_-]{{0,{}}}", MAX_NAME_LEN - 1);
    props::check(
        "names_that_keep_the_rule_are_accepted",
        300,
        valid.as_str(),
        |s| {
            prop_assert!(s.parse::<ContainerName>().is_ok(), "{s:?}");
            Ok(())
        },
    );
}

fn is_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[test]
fn aliases_are_dns_labels() {
    let input = text("[a-zA-Z0-9_.\\- ]{0,6}|[a-z0-9-]{60,66}");
    props::check("aliases_are_dns_labels", 1000, input, |s| {
        match s.parse::<Alias>() {
            Ok(a) => {
                prop_assert!(is_label(a.as_str()), "{a}");
                prop_assert_eq!(a.as_str(), s.to_ascii_lowercase());
                round_trips(&a)?;
            }
            Err(e) => prop_assert!(e.to_string().contains(&format!("{s:?}")), "{e}"),
        }
        Ok(())
    });
}

#[test]
fn alias_lists_hold_distinct_labels() {
    let input = text("[ 'a-zA-Z0-9\\-]{0,24}");
    props::check("alias_lists_hold_distinct_labels", 500, input, |s| {
        if let Ok(list) = Alias::parse_list(&s) {
            for (i, a) in list.iter().enumerate() {
                prop_assert!(is_label(a.as_str()), "{a}");
                prop_assert!(!list[..i].contains(a), "{a} twice");
            }
        }
        Ok(())
    });
}

#[test]
fn channel_urls_are_urls_or_absolute_paths() {
    let input = prop_oneof![
        props::any_text(),
        "(https?://|file://|/|)[a-z./=?#\\- ]{0,12}",
        Just("x".repeat(2049)),
    ];
    props::check(
        "channel_urls_are_urls_or_absolute_paths",
        1000,
        input,
        |s| {
            match s.parse::<ChannelUrl>() {
                Ok(u) => {
                    prop_assert_eq!(u.as_str(), s.as_str());
                    prop_assert!(!s.is_empty() && s.len() <= 2048);
                    prop_assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()));
                    let entry = u.search_path_entry();
                    match s.strip_prefix("https://").or(s.strip_prefix("http://")) {
                        Some(rest) => {
                            prop_assert!(!rest.is_empty() && !rest.starts_with(['/', '?', '#']));
                            prop_assert_eq!(entry, s.as_str());
                        }
                        None => {
                            prop_assert!(entry.starts_with('/'), "{entry}");
                            prop_assert!(!entry.split('/').any(|c| c == ".."), "{entry}");
                            prop_assert!(!entry.contains('='), "{entry}");
                        }
                    }
                    round_trips(&u)?;
                }
                Err(e) => prop_assert!(e.to_string().contains(&format!("{s:?}")), "{e}"),
            }
            Ok(())
        },
    );
}

/// Sizes and CPU counts as users write them, and odd ones.
fn quantity() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<f64>().prop_map(|f| f.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[0-9]{0,3}(\\.[0-9]{0,4})?(e-?[0-9]{1,3})?",
        Just("nan".to_string()),
        Just("inf".to_string()),
    ];
    prop_oneof![
        (number, "[kKmMgGtT]?", "[ ]?").prop_map(|(n, u, b)| format!("{b}{n}{u}")),
        props::any_text(),
    ]
}

#[test]
fn memory_sizes_are_positive_whole_bytes() {
    props::check(
        "memory_sizes_are_positive_whole_bytes",
        1000,
        quantity(),
        |s| {
            if let Ok(bytes) = parse_memory(&s) {
                // "must be between 16M and 1024T"
                prop_assert!(
                    ((16 << 20)..=(1 << 50)).contains(&bytes),
                    "{s:?} gave {bytes} bytes"
                );
            }
            Ok(())
        },
    );
}

#[test]
fn cpu_counts_are_within_the_documented_range() {
    props::check(
        "cpu_counts_are_within_the_documented_range",
        1000,
        quantity(),
        |s| {
            if let Ok(percent) = parse_cpu(&s) {
                // "must be between 0.01 and 1024 CPUs"
                prop_assert!((1..=102_400).contains(&percent), "{s:?} gave {percent}%");
            }
            Ok(())
        },
    );
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u64>()),
        prop::option::of(prop_oneof![0u64..=10_001, any::<u64>()]),
    )
        .prop_map(|(memory_max, cpu_percent, tasks_max, io_weight)| Limits {
            memory_max,
            cpu_percent,
            tasks_max,
            io_weight,
        })
}

#[test]
fn limits_merge_validate_and_round_trip() {
    props::check(
        "limits_merge_validate_and_round_trip",
        500,
        (limits(), limits()),
        |(a, b)| {
            let json = serde_json::to_string(&a).unwrap();
            prop_assert_eq!(&serde_json::from_str::<Limits>(&json).unwrap(), &a);
            if a.validate().is_ok() {
                prop_assert!(a.memory_max.is_none_or(|m| m >= 16 << 20));
                prop_assert!(a.cpu_percent.is_none_or(|c| (1..=102_400).contains(&c)));
                prop_assert!(a.tasks_max != Some(0));
                prop_assert!(a.io_weight.is_none_or(|w| (1..=10_000).contains(&w)));
            }
            let mut m = a.clone();
            m.merge(&b);
            prop_assert_eq!(m.memory_max, b.memory_max.or(a.memory_max));
            prop_assert_eq!(m.cpu_percent, b.cpu_percent.or(a.cpu_percent));
            prop_assert_eq!(m.tasks_max, b.tasks_max.or(a.tasks_max));
            prop_assert_eq!(m.io_weight, b.io_weight.or(a.io_weight));
            Ok(())
        },
    );
}

fn upstream() -> impl Strategy<Value = Upstream> {
    (prop_oneof![Just(Scheme::Http), Just(Scheme::Https)], 1u16..)
        .prop_map(|(scheme, port)| Upstream { scheme, port })
}

#[test]
fn upstreams_print_and_parse_back() {
    let input = prop_oneof![
        props::any_text(),
        "(https?|ftp|)(:|)[+\\-]?[0-9]{0,6}",
        upstream().prop_map(|u| u.to_string()),
    ];
    props::check(
        "upstreams_print_and_parse_back",
        1000,
        (input, upstream()),
        |(s, valid)| {
            if let Ok(u) = s.parse::<Upstream>() {
                prop_assert!(u.port > 0);
                prop_assert_eq!(u.to_string().parse::<Upstream>(), Ok(u));
            }
            prop_assert_eq!(valid.to_string().parse::<Upstream>(), Ok(valid));
            Ok(())
        },
    );
}

#[test]
fn upstream_maps_round_trip() {
    let aliases = prop::collection::btree_map("[a-z][a-z0-9]{0,5}", upstream(), 0..4);
    props::check(
        "upstream_maps_round_trip",
        300,
        (prop::option::of(upstream()), aliases),
        |(container, aliases)| {
            let u = Upstreams {
                container,
                aliases: aliases
                    .into_iter()
                    .map(|(a, up)| (a.parse().unwrap(), up))
                    .collect(),
            };
            let json = serde_json::to_string(&u).unwrap();
            prop_assert_eq!(&serde_json::from_str::<Upstreams>(&json).unwrap(), &u);
            let names: Vec<Alias> = u.aliases.keys().cloned().collect();
            prop_assert_eq!(&Upstreams::parse(&u.shown(), &names), &Ok(u.clone()));
            Ok(())
        },
    );
}
