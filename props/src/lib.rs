//! The one runner every property test of the workspace goes through, so
//! that all of them honour the same knobs. proptest generates the cases and
//! shrinks a failure to a small one; this only decides how many cases, from
//! which seed, for how long:
//!
//! - normally a fixed number of cases per target, from a seed fixed per
//!   target (derived from its name): `cargo test` stays quick and runs the
//!   same cases every time, so a red run is never luck
//!   (`PROPTEST_CASES=N` changes the number);
//! - `FUZZ_SECS=N`: batches of that many cases, each from a new random
//!   seed, until N seconds have passed — a long search, per target;
//! - `FUZZ_SEED=S`: the batch of seed `S` again, as a failure reports it.
//!
//! A failure panics with the target, the seed, the minimal failing input
//! and the command that replays it. [`any_text`] is the "any input" of every
//! target (proptest's own `any::<String>()` has no control characters).

use proptest::prelude::{any, prop, prop_oneof};
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestRunner};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// A knob that is set but does not say a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error("{var}={value:?} is not a whole number")]
    NotANumber { var: &'static str, value: String },
}

/// How much of a target to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// One batch of `cases` from `seed` (the normal run, or a replay).
    Once { cases: u32, seed: u64 },
    /// Batches of `cases` from new random seeds until `time` has passed.
    For { cases: u32, time: Duration },
}

impl Budget {
    /// The budget the environment gives a target named `name` whose normal
    /// run is `cases` cases.
    pub fn from_env(name: &str, cases: u32) -> Result<Budget, BudgetError> {
        Budget::from_vars(name, cases, |v| std::env::var(v).ok())
    }

    /// As [`Budget::from_env`], reading the variables through `var`.
    pub fn from_vars(
        name: &str,
        cases: u32,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Budget, BudgetError> {
        let number = |name: &'static str| -> Result<Option<u64>, BudgetError> {
            var(name)
                .map(|value| {
                    value.trim().parse().map_err(|_| BudgetError::NotANumber {
                        var: name,
                        value: value.clone(),
                    })
                })
                .transpose()
        };
        let cases = match number("PROPTEST_CASES")? {
            Some(n) => n.clamp(1, u32::MAX.into()) as u32,
            None => cases,
        };
        if let Some(seed) = number("FUZZ_SEED")? {
            return Ok(Budget::Once { cases, seed });
        }
        Ok(match number("FUZZ_SECS")? {
            Some(secs) if secs > 0 => Budget::For {
                cases,
                time: Duration::from_secs(secs),
            },
            _ => Budget::Once {
                cases,
                seed: seed_of(name),
            },
        })
    }
}

/// Any text: printable, or of every character there is — control
/// characters, NUL, line breaks and stray combining marks included.
pub fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<char>(), 0..32).prop_map(String::from_iter),
    ]
}

/// The fixed seed of a target: FNV-1a of its name (stable across Rust
/// releases, unlike the standard library's hasher).
pub fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Run `test` on values of `strategy` within the budget the environment
/// gives the target `name` (`cases` cases normally); panic with the seed
/// and the minimal failing input when it fails.
pub fn check<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) {
    let budget = Budget::from_env(name, cases).unwrap_or_else(|e| panic!("{name}: {e}"));
    run(name, budget, strategy, test);
}

/// Run `test` on values of `strategy` within `budget`.
pub fn run<S: Strategy>(
    name: &str,
    budget: Budget,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) {
    let batch = |cases: u32, seed: u64| {
        let config = Config {
            cases,
            rng_seed: RngSeed::Fixed(seed),
            failure_persistence: None,
            ..Config::default()
        };
        if let Err(e) = TestRunner::new(config).run(&strategy, &test) {
            panic!(
                "property {name} failed (seed {seed}, {cases} cases)\n{e}\n\
                 replay: FUZZ_SEED={seed} cargo test {name}"
            );
        }
    };
    match budget {
        Budget::Once { cases, seed } => batch(cases, seed),
        Budget::For { cases, time } => {
            let start = Instant::now();
            let mut total: u64 = 0;
            while start.elapsed() < time {
                batch(cases, random_seed());
                total += u64::from(cases);
            }
            eprintln!("property {name}: {total} cases in {:.1?}", start.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn budget(vars: &[(&str, &str)]) -> Result<Budget, BudgetError> {
        Budget::from_vars("t", 64, |v| {
            vars.iter()
                .find(|(k, _)| *k == v)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn budgets_from_the_environment() {
        let fixed = seed_of("t");
        assert_eq!(
            budget(&[]),
            Ok(Budget::Once {
                cases: 64,
                seed: fixed
            })
        );
        assert_eq!(
            budget(&[("PROPTEST_CASES", "1000")]),
            Ok(Budget::Once {
                cases: 1000,
                seed: fixed
            })
        );
        assert_eq!(
            budget(&[("FUZZ_SECS", "600")]),
            Ok(Budget::For {
                cases: 64,
                time: Duration::from_secs(600)
            })
        );
        assert_eq!(budget(&[("FUZZ_SECS", "0")]), budget(&[]));
        assert_eq!(
            budget(&[("FUZZ_SECS", "600"), ("FUZZ_SEED", "7")]),
            Ok(Budget::Once { cases: 64, seed: 7 }),
            "a replay runs the one batch"
        );
        assert_eq!(
            budget(&[("FUZZ_SECS", "ten")]),
            Err(BudgetError::NotANumber {
                var: "FUZZ_SECS",
                value: "ten".into()
            })
        );
        assert_ne!(seed_of("a"), seed_of("b"));
    }

    #[test]
    fn a_failure_names_the_seed_and_the_smallest_input() {
        let got = std::panic::catch_unwind(|| {
            let seed = seed_of("props_demo");
            let budget = Budget::Once { cases: 256, seed };
            run("props_demo", budget, 0u32..1000, |n| {
                prop_assert!(n < 10);
                Ok(())
            })
        })
        .unwrap_err();
        let msg = got.downcast_ref::<String>().unwrap();
        let seed = seed_of("props_demo");
        assert!(
            msg.starts_with(&format!(
                "property props_demo failed (seed {seed}, 256 cases)"
            )),
            "{msg}"
        );
        assert!(msg.contains("minimal failing input: 10"), "{msg}");
        assert!(
            msg.ends_with(&format!("replay: FUZZ_SEED={seed} cargo test props_demo")),
            "{msg}"
        );
    }
}
