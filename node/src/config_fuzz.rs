//! Fuzzes the reading of `node.json` ([`parse_file`] and the checks of
//! [`NodeConfig::merge`]): the agent writes it and an operator may edit it, so any
//! text must give a checked configuration or a `ConfigError` naming what is wrong,
//! never a panic, and a configuration that loads never shows the RPC password.

use std::path::Path;

use lnswarm_common::fuzzing;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::{parse_file, ConfigError, NodeArgs, NodeConfig};

const NODE_ID: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
const PASSWORD: &str = "fuzz-rpc-password";

/// A config as the agent writes it.
fn valid() -> Value {
    json!({
        "network": "regtest",
        "bitcoind-rpc-host": "127.0.0.1",
        "bitcoind-rpc-port": 18443,
        "bitcoind-rpc-user": "u",
        "bitcoind-rpc-password": PASSWORD,
        "listen": "127.0.0.1:9735",
        "api-listen": "127.0.0.1:10009",
        "storage-dir": "/tmp/x",
        "tls-cert": "c", "tls-key": "k", "ca-cert": "ca",
        "node-id": NODE_ID,
        "state-managers": "127.0.0.1:4242,127.0.0.1:4243",
        "lease-epoch": 3,
        "lease-file": "/tmp/lease",
        "sync-interval-secs": 30,
        "log-format": "json",
    })
}

/// Loads `text` as the config file of a node started without flags.
fn check(text: &str) {
    let loaded = parse_file(Path::new("node.json"), text)
        .and_then(|file| NodeConfig::merge(NodeArgs::default(), file));
    match loaded {
        Ok(config) => {
            assert!(config.sync_interval_secs >= 10, "{config:?}");
            if let super::StateConfig::Replicated {
                managers, epoch, ..
            } = &config.state
            {
                assert!(*epoch > 0 && !managers.is_empty(), "{config:?}");
                assert!(managers
                    .iter()
                    .all(|m| !m.trim().is_empty() && m.trim() == m));
            }
            let shown = format!("{config:?}");
            assert!(!shown.contains(PASSWORD), "the password in Debug: {shown}");
        }
        Err(
            ConfigError::Parse { .. }
            | ConfigError::Missing(_)
            | ConfigError::Invalid(..)
            | ConfigError::ChainSource,
        ) => {}
        Err(e @ ConfigError::Read { .. }) => panic!("no file is read here: {e}"),
    }
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        fuzzing::text(40).prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z-]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The valid config with some keys dropped and others given arbitrary values
/// (or strings near the right ones), so the checks past JSON parsing are reached.
fn structured() -> impl Strategy<Value = String> {
    let keys: Vec<String> = valid()
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    let n = keys.len();
    (
        prop::collection::vec(any::<bool>(), n),
        prop::collection::vec(
            (
                0..n,
                prop_oneof![json_value(), fuzzing::text(30).prop_map(Value::from)],
            ),
            0..4,
        ),
    )
        .prop_map(move |(keep, changes)| {
            let valid = valid();
            let mut m: Map<String, Value> = valid
                .as_object()
                .expect("object")
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|((key, v), _)| (key.clone(), v.clone()))
                .collect();
            for (i, v) in changes {
                m.insert(keys[i].clone(), v);
            }
            Value::Object(m).to_string()
        })
}

proptest! {
    #![proptest_config(fuzzing::config(1_000))]

    #[test]
    fn arbitrary_text(s in fuzzing::text(200)) {
        check(&s);
    }

    #[test]
    fn mutated_configs(s in fuzzing::mutated_text(valid().to_string())) {
        check(&s);
    }

    #[test]
    fn structured_configs(s in structured()) {
        check(&s);
    }

    #[test]
    fn arbitrary_json(v in json_value()) {
        check(&v.to_string());
    }
}

#[test]
fn the_valid_config_loads() {
    let file = parse_file(Path::new("node.json"), &valid().to_string()).unwrap();
    let config = NodeConfig::merge(NodeArgs::default(), file).unwrap();
    assert!(matches!(
        config.state,
        super::StateConfig::Replicated { epoch: 3, .. }
    ));
}
