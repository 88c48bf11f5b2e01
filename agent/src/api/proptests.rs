//! Property tests of decoding request bodies (run through `props::check`,
//! so `FUZZ_SECS` runs them for long): any bytes and any JSON, made of the
//! bodies' own field names, decode or are refused without a panic; what
//! decodes encodes back to itself; valid bodies round-trip and refuse an
//! unknown field; and the agent's re-check of a provisioning body
//! (`Plan::from_body`) takes whatever decodes without a panic.

use super::types::{
    CleanupBody, EnsureBody, ExtendBody, ProvisionAction, ProvisionBody, ProvisionFile,
    ProvisionStep,
};
use crate::container::Limits;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Debug;

/// Every field and variant name of the bodies, so generated objects often
/// look like bodies.
const FIELDS: &[&str] = &[
    "channel",
    "hydra_eval",
    "aliases",
    "owner_uid",
    "limits",
    "upstreams",
    "disk_size",
    "image_url",
    "update_channel",
    "memory_max",
    "cpu_percent",
    "tasks_max",
    "io_weight",
    "steps",
    "files",
    "copy_as",
    "file",
    "line",
    "action",
    "copy",
    "run",
    "echo",
    "local",
    "remote",
    "command",
    "content",
    "path",
    "mode",
    "data",
    "dry_run",
    "now",
    "days",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(FIELDS).prop_map(String::from),
        1 => props::any_text(),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        key().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bytes as a body may arrive: anything, or JSON text (sometimes cut).
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (json(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
            let text = v.to_string().into_bytes();
            let keep = if cut.index(4) == 0 {
                cut.index(text.len() + 1)
            } else {
                text.len()
            };
            text[..keep].to_vec()
        }),
    ]
}

/// Decoding `bytes` as `T` ends in a value or an error, and a value
/// encodes to JSON that decodes to the same value.
fn decodes_and_round_trips<T>(bytes: &[u8]) -> Result<Option<T>, TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let Ok(v) = serde_json::from_slice::<T>(bytes) else {
        return Ok(None);
    };
    let again = serde_json::to_vec(&v).unwrap();
    prop_assert_eq!(&serde_json::from_slice::<T>(&again).unwrap(), &v);
    Ok(Some(v))
}

#[test]
fn any_bytes_decode_or_are_refused() {
    props::check("any_bytes_decode_or_are_refused", 1000, body_bytes(), |b| {
        decodes_and_round_trips::<EnsureBody>(&b)?;
        decodes_and_round_trips::<CleanupBody>(&b)?;
        decodes_and_round_trips::<ExtendBody>(&b)?;
        decodes_and_round_trips::<Limits>(&b)?;
        if let Some(p) = decodes_and_round_trips::<ProvisionBody>(&b)? {
            let steps = p.steps.len();
            if let Ok(plan) = crate::provision::Plan::from_body(p) {
                prop_assert_eq!(plan.steps.len(), steps);
            }
        }
        Ok(())
    });
}

fn opt_string() -> impl Strategy<Value = Option<String>> {
    prop::option::of(props::any_text())
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(memory_max, cpu_percent, tasks_max, io_weight)| Limits {
            memory_max,
            cpu_percent,
            tasks_max,
            io_weight,
        })
}

fn ensure() -> impl Strategy<Value = EnsureBody> {
    (
        (
            props::any_text(),
            opt_string(),
            prop::collection::vec(props::any_text(), 0..3),
            prop::option::of(any::<u32>()),
            opt_string(),
        ),
        (
            prop::option::of(limits()),
            prop::option::of(prop::collection::btree_map(
                props::any_text(),
                props::any_text(),
                0..3,
            )),
            prop::option::of(any::<u64>()),
            opt_string(),
            prop::option::of(any::<bool>()),
        ),
    )
        .prop_map(
            |(
                (channel, hydra_eval, aliases, owner_uid, sleep_after),
                (limits, upstreams, disk_size, image_url, update_channel),
            )| EnsureBody {
                channel,
                hydra_eval,
                aliases,
                owner_uid,
                limits,
                upstreams,
                disk_size,
                image_url,
                update_channel,
                sleep_after,
            },
        )
}

fn provision() -> impl Strategy<Value = ProvisionBody> {
    let action = prop_oneof![
        (props::any_text(), props::any_text())
            .prop_map(|(local, remote)| ProvisionAction::Copy { local, remote }),
        props::any_text().prop_map(|command| ProvisionAction::Run { command }),
        (props::any_text(), props::any_text())
            .prop_map(|(content, remote)| ProvisionAction::Echo { content, remote }),
    ];
    let step = (props::any_text(), any::<usize>(), action)
        .prop_map(|(file, line, action)| ProvisionStep { file, line, action });
    let file = (props::any_text(), any::<u32>(), opt_string())
        .prop_map(|(path, mode, data)| ProvisionFile { path, mode, data });
    (
        prop::collection::vec(step, 0..4),
        prop::collection::vec(file, 0..3),
        opt_string(),
    )
        .prop_map(|(steps, files, copy_as)| ProvisionBody {
            steps,
            files,
            copy_as,
        })
}

/// A valid body round-trips, and refuses a field it does not know.
fn round_trips_and_refuses_strangers<T>(body: &T) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let text = serde_json::to_string(body).unwrap();
    prop_assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), body);
    let mut v = serde_json::to_value(body).unwrap();
    v.as_object_mut()
        .unwrap()
        .insert("stranger".into(), Value::Null);
    let e = serde_json::from_value::<T>(v).unwrap_err().to_string();
    prop_assert!(e.contains("unknown field `stranger`"), "{e}");
    Ok(())
}

#[test]
fn valid_bodies_round_trip() {
    let bodies = (
        ensure(),
        provision(),
        (any::<bool>(), opt_string()).prop_map(|(dry_run, now)| CleanupBody { dry_run, now }),
        any::<u32>().prop_map(|days| ExtendBody { days }),
    );
    props::check(
        "valid_bodies_round_trip",
        300,
        bodies,
        |(ensure, provision, cleanup, extend)| {
            round_trips_and_refuses_strangers(&ensure)?;
            round_trips_and_refuses_strangers(&provision)?;
            round_trips_and_refuses_strangers(&cleanup)?;
            round_trips_and_refuses_strangers(&extend)?;
            if let Some(limits) = &ensure.limits {
                round_trips_and_refuses_strangers(limits)?;
            }
            Ok(())
        },
    );
}
