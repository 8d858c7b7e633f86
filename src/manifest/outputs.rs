//! Stack-set outputs as other stack sets' parameters (`${stackSet:NAME.outputs.OUTPUT}`):
//! which environment and instance of the producer a reference names, and the order (waves)
//! and cycles references make between stack sets. Pure; shared by `validate` (accounts known
//! by manifest name) and the plan (targets resolved against live).

use super::refs::OutputRef;
use std::collections::{BTreeMap, BTreeSet};

/// One instance of the producer: its account's manifest name (`None`: a live account the
/// manifest does not name) and its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance<'a> {
    pub account: Option<&'a str>,
    pub region: &'a str,
}

/// Where a value is used: the consumer instance's account and region, when the value is
/// resolved per instance (overrides); none for a stack set's own parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Consumer<'a> {
    pub account: Option<&'a str>,
    pub region: Option<&'a str>,
}

/// The producer's environment: the one the reference names, else the consumer's when the
/// producer is deployed there, else the producer's only one.
pub fn environment<'a>(
    r: &'a OutputRef,
    producer_envs: &'a [String],
    consumer_env: &'a str,
) -> Result<&'a str, String> {
    let listed = || producer_envs.join(", ");
    if let Some(e) = &r.environment {
        return if producer_envs.contains(e) {
            Ok(e)
        } else {
            Err(format!(
                "stack set `{}` is not deployed in environment `{e}` (its environments: {})",
                r.stack_set,
                listed()
            ))
        };
    }
    if producer_envs.iter().any(|e| e == consumer_env) {
        return Ok(consumer_env);
    }
    match producer_envs {
        [only] => Ok(only),
        [] => Err(format!("stack set `{}` has no environment", r.stack_set)),
        _ => Err(format!(
            "stack set `{}` is deployed in several environments ({}), not in `{consumer_env}`: name one, as `${{stackSet:{}/ENVIRONMENT.outputs.{}}}`",
            r.stack_set,
            listed(),
            r.stack_set,
            r.output
        )),
    }
}

/// The producer's instance a reference names: in the account it names, else in the
/// consumer's own account when the producer has an instance there, else any; then in the
/// region it names, else the consumer's when there is one there, else any. Exactly one must
/// remain.
pub fn pick(r: &OutputRef, instances: &[Instance], consumer: Consumer) -> Result<usize, String> {
    let mut candidates: Vec<usize> = (0..instances.len()).collect();
    let account = r.account.as_deref().or_else(|| {
        consumer
            .account
            .filter(|a| instances.iter().any(|i| i.account == Some(a)))
    });
    if let Some(a) = account {
        candidates.retain(|&i| instances[i].account == Some(a));
        if candidates.is_empty() {
            return Err(format!(
                "stack set `{}` has no instance in account `{a}`",
                r.stack_set
            ));
        }
    }
    let region = r.region.as_deref().or_else(|| {
        consumer
            .region
            .filter(|reg| candidates.iter().any(|&i| instances[i].region == *reg))
    });
    if let Some(reg) = region {
        candidates.retain(|&i| instances[i].region == reg);
        if candidates.is_empty() {
            return Err(format!(
                "stack set `{}` has no instance in region `{reg}`{}",
                r.stack_set,
                account
                    .map(|a| format!(" of account `{a}`"))
                    .unwrap_or_default()
            ));
        }
    }
    match candidates.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "stack set `{}` has no instance to read `{}` from",
            r.stack_set, r.output
        )),
        many => {
            let shown: Vec<String> = many
                .iter()
                .map(|&i| {
                    let inst = instances[i];
                    format!("{}/{}", inst.account.unwrap_or("(unnamed)"), inst.region)
                })
                .collect();
            Err(format!(
                "stack set `{}` has {} instances here ({}): name one, as `…outputs.{}@ACCOUNT` or `@ACCOUNT/REGION`",
                r.stack_set,
                many.len(),
                shown.join(", "),
                r.output
            ))
        }
    }
}

/// Each node's wave (0 without producers; else one more than its latest producer), from the
/// edges consumer → producers. Err: a cycle, as the nodes along it, the first one repeated
/// at the end.
pub fn waves<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Result<BTreeMap<N, u8>, Vec<N>> {
    let mut wave: BTreeMap<N, u8> = BTreeMap::new();
    let mut path: Vec<N> = Vec::new();
    fn visit<N: Ord + Clone>(
        n: &N,
        edges: &BTreeMap<N, BTreeSet<N>>,
        wave: &mut BTreeMap<N, u8>,
        path: &mut Vec<N>,
    ) -> Result<u8, Vec<N>> {
        if let Some(w) = wave.get(n) {
            return Ok(*w);
        }
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.clone());
            return Err(cycle);
        }
        path.push(n.clone());
        let mut w = 0u8;
        for p in edges.get(n).into_iter().flatten() {
            w = w.max(visit(p, edges, wave, path)?.saturating_add(1));
        }
        path.pop();
        wave.insert(n.clone(), w);
        Ok(w)
    }
    for n in edges.keys() {
        visit(n, edges, &mut wave, &mut path)?;
    }
    Ok(wave)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(account: Option<&str>, region: Option<&str>) -> OutputRef {
        OutputRef {
            stack_set: "shared".into(),
            environment: None,
            output: "KeyArn".into(),
            account: account.map(str::to_string),
            region: region.map(str::to_string),
        }
    }

    const TWO: [Instance; 3] = [
        Instance {
            account: Some("tools"),
            region: "us-east-1",
        },
        Instance {
            account: Some("prod"),
            region: "us-east-1",
        },
        Instance {
            account: Some("prod"),
            region: "eu-west-1",
        },
    ];

    #[test]
    fn picks_the_named_then_the_consumers_own_then_the_only_instance() {
        let none = Consumer::default();
        assert_eq!(pick(&r(Some("tools"), None), &TWO, none), Ok(0));
        assert_eq!(pick(&r(Some("prod"), Some("eu-west-1")), &TWO, none), Ok(2));
        let own = Consumer {
            account: Some("prod"),
            region: Some("eu-west-1"),
        };
        assert_eq!(pick(&r(None, None), &TWO, own), Ok(2));
        // An account the producer does not reach: not "own", so every instance remains.
        let other = Consumer {
            account: Some("dev"),
            region: Some("us-east-1"),
        };
        let err = pick(&r(None, None), &TWO, other).unwrap_err();
        assert!(err.contains("2 instances"), "{err}");
        assert!(
            pick(&r(None, None), &TWO, none)
                .unwrap_err()
                .contains("3 instances")
        );
        assert!(
            pick(&r(Some("dev"), None), &TWO, none)
                .unwrap_err()
                .contains("no instance in account `dev`")
        );
        assert!(
            pick(&r(Some("tools"), Some("eu-west-1")), &TWO, none)
                .unwrap_err()
                .contains("no instance in region `eu-west-1` of account `tools`")
        );
        assert_eq!(pick(&r(None, None), &TWO[..1], none), Ok(0));
        assert!(pick(&r(None, None), &[], none).is_err());
    }

    #[test]
    fn the_environment_is_named_else_the_consumers_else_the_only_one() {
        let envs = ["tools".to_string(), "prod".to_string()];
        let mut x = r(None, None);
        assert_eq!(environment(&x, &envs, "prod"), Ok("prod"));
        assert!(environment(&x, &envs, "dev").is_err());
        assert_eq!(environment(&x, &envs[..1], "dev"), Ok("tools"));
        x.environment = Some("tools".into());
        assert_eq!(environment(&x, &envs, "prod"), Ok("tools"));
        x.environment = Some("dev".into());
        assert!(environment(&x, &envs, "prod").is_err());
    }

    #[test]
    fn waves_follow_producers_and_cycles_are_named() {
        let e = |pairs: &[(&'static str, &'static str)]| {
            let mut m: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for (c, p) in pairs {
                m.entry(c).or_default().insert(p);
                m.entry(p).or_default();
            }
            m
        };
        let w = waves(&e(&[
            ("train", "shared"),
            ("prod", "shared"),
            ("ep", "prod"),
        ]))
        .unwrap();
        assert_eq!(w["shared"], 0);
        assert_eq!(w["train"], 1);
        assert_eq!(w["ep"], 2);
        let cycle = waves(&e(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap_err();
        assert_eq!(cycle, ["a", "b", "c", "a"]);
        assert_eq!(waves(&e(&[("a", "a")])).unwrap_err(), ["a", "a"]);
    }
}
