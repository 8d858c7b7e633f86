//! `${…}` references inside manifest strings: scanning (for validation) and substitution
//! (at plan time, once live ids are known).

use std::ops::Range;

/// A reference the manifest may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    /// `${account:NAME}`: the account's 12-digit id.
    Account(String),
    /// `${unit:/PATH}`: the unit's OU id, or the root id for `/`.
    Unit(String),
    /// `${environment}`
    Environment,
    /// `${estate}`
    Estate,
    /// `${region}` (only in stack-set overrides)
    Region,
    /// `${stackSet:NAME[/ENVIRONMENT].outputs.OUTPUT[@ACCOUNT[/REGION]]}`: an output of
    /// another stack set's instance (see [`OutputRef`]).
    Output(OutputRef),
}

/// A stack set's output, as a parameter value of another stack set. Which instance gives it
/// is decided by `crate::manifest::outputs::pick`; what is not written here is inferred.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutputRef {
    /// The producer: a StackSet's `metadata.name`.
    pub stack_set: String,
    /// The producer's environment; default: the consumer's, else the producer's only one.
    pub environment: Option<String>,
    /// An output key the producer's template declares under `Outputs`.
    pub output: String,
    /// The producer's instance account (manifest name); default: the consumer's own
    /// account (in overrides), else the producer's only account.
    pub account: Option<String>,
    /// The producer's instance region; default: the consumer's, else the producer's only one.
    pub region: Option<String>,
}

/// One `${…}` occurrence: what it says, and where it is in the string (bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub reference: Result<Ref, String>,
    pub range: Range<usize>,
}

pub const KINDS: [&str; 6] = [
    "account",
    "unit",
    "environment",
    "estate",
    "region",
    "stackSet",
];

/// Every reference in `s`; `$${` is a literal `${` and is skipped.
pub fn scan(s: &str) -> Vec<Occurrence> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'$' && bytes[i + 1] == b'$' && bytes.get(i + 2) == Some(&b'{') {
            i += 3;
            continue;
        }
        if bytes[i] == b'$' && bytes[i + 1] == b'{' {
            match s[i + 2..].find('}') {
                Some(len) => {
                    let inner = &s[i + 2..i + 2 + len];
                    out.push(Occurrence {
                        reference: parse(inner),
                        range: i..i + 3 + len,
                    });
                    i += 3 + len;
                }
                None => {
                    out.push(Occurrence {
                        reference: Err("unterminated reference: `${` without `}`".into()),
                        range: i..s.len(),
                    });
                    break;
                }
            }
            continue;
        }
        i += 1;
    }
    out
}

fn parse(inner: &str) -> Result<Ref, String> {
    let (kind, arg) = match inner.split_once(':') {
        Some((k, a)) => (k.trim(), Some(a.trim())),
        None => (inner.trim(), None),
    };
    match (kind, arg) {
        ("account", Some(name)) if !name.is_empty() => Ok(Ref::Account(name.to_string())),
        ("unit", Some(path)) if path.starts_with('/') => Ok(Ref::Unit(path.to_string())),
        ("unit", _) => Err("`${unit:…}` needs a path starting with `/`".into()),
        ("account", _) => Err("`${account:…}` needs an account name".into()),
        ("stackSet", Some(arg)) => parse_output(arg).map(Ref::Output),
        ("stackSet", None) => Err(OUTPUT_SYNTAX.into()),
        ("environment", None) => Ok(Ref::Environment),
        ("estate", None) => Ok(Ref::Estate),
        ("region", None) => Ok(Ref::Region),
        (k @ ("environment" | "estate" | "region"), Some(_)) => {
            Err(format!("`${{{k}}}` takes no argument"))
        }
        (other, _) => Err(format!(
            "unknown reference `${{{inner}}}`: `{other}` is not a reference kind"
        )),
    }
}

const OUTPUT_SYNTAX: &str = "`${stackSet:…}` is `${stackSet:NAME.outputs.OUTPUT}`, optionally `NAME/ENVIRONMENT` and `OUTPUT@ACCOUNT` or `OUTPUT@ACCOUNT/REGION`";

/// `NAME[/ENVIRONMENT].outputs.OUTPUT[@ACCOUNT[/REGION]]`.
fn parse_output(arg: &str) -> Result<OutputRef, String> {
    let (what, at) = match arg.split_once('@') {
        Some((w, a)) => (w, Some(a)),
        None => (arg, None),
    };
    let Some((set, output)) = what.split_once(".outputs.") else {
        return Err(OUTPUT_SYNTAX.into());
    };
    let (stack_set, environment) = match set.split_once('/') {
        Some((s, e)) => (s, Some(e)),
        None => (set, None),
    };
    let (account, region) = match at.map(|a| a.split_once('/').unwrap_or((a, ""))) {
        Some((a, r)) => (Some(a), Some(r).filter(|r| !r.is_empty())),
        None => (None, None),
    };
    let word = |w: &str| !w.is_empty() && !w.contains(['/', '@', '.', ' ']);
    // CloudFormation output keys are alphanumeric logical ids.
    let key = !output.is_empty() && output.chars().all(|c| c.is_ascii_alphanumeric());
    if !word(stack_set)
        || !key
        || environment.is_some_and(|e| !word(e))
        || account.is_some_and(|a| !word(a))
    {
        return Err(OUTPUT_SYNTAX.into());
    }
    Ok(OutputRef {
        stack_set: stack_set.to_string(),
        environment: environment.map(str::to_string),
        output: output.to_string(),
        account: account.map(str::to_string),
        region: region.map(str::to_string),
    })
}

/// Every stack-set output `s` refers to (malformed references are left to validation).
pub fn outputs(s: &str) -> Vec<OutputRef> {
    scan(s)
        .into_iter()
        .filter_map(|o| match o.reference {
            Ok(Ref::Output(r)) => Some(r),
            _ => None,
        })
        .collect()
}

/// Replaces every reference by what `resolve` gives, and `$${` by `${`.
/// Returns the first reference `resolve` could not answer, as an error.
pub fn substitute(
    s: &str,
    mut resolve: impl FnMut(&Ref) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for occ in scan(s) {
        out.push_str(&s[last..occ.range.start].replace("$${", "${"));
        let reference = occ.reference?;
        match resolve(&reference) {
            Some(v) => out.push_str(&v),
            None => return Err(s[occ.range.clone()].to_string()),
        }
        last = occ.range.end;
    }
    out.push_str(&s[last..].replace("$${", "${"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_references_and_literals() {
        let found = scan("arn:aws:iam::${account:tools}:role/x-${environment} $${literal}");
        let refs: Vec<_> = found.iter().map(|o| o.reference.clone().unwrap()).collect();
        assert_eq!(refs, [Ref::Account("tools".into()), Ref::Environment]);
        assert_eq!(found[0].range, 13..29);
    }

    #[test]
    fn reports_unknown_and_malformed() {
        assert!(scan("${acount:x}")[0].reference.is_err());
        assert!(scan("${unit:ml}")[0].reference.is_err());
        assert!(scan("${account:x")[0].reference.is_err());
        // CloudFormation dynamic references pass through untouched.
        assert!(scan("{{resolve:ssm-secure:/x:1}}").is_empty());
    }

    #[test]
    fn parses_output_references() {
        let r = |s: &str| scan(s).remove(0).reference;
        assert_eq!(
            r("${stackSet:shared.outputs.KeyArn}"),
            Ok(Ref::Output(OutputRef {
                stack_set: "shared".into(),
                environment: None,
                output: "KeyArn".into(),
                account: None,
                region: None,
            }))
        );
        assert_eq!(
            r("${stackSet:shared/tools.outputs.KeyArn@tools/eu-west-1}"),
            Ok(Ref::Output(OutputRef {
                stack_set: "shared".into(),
                environment: Some("tools".into()),
                output: "KeyArn".into(),
                account: Some("tools".into()),
                region: Some("eu-west-1".into()),
            }))
        );
        for bad in [
            "${stackSet:shared}",
            "${stackSet:shared.outputs.}",
            "${stackSet:shared.outputs.Key-Arn}",
            "${stackSet:.outputs.KeyArn}",
            "${stackSet:shared.outputs.KeyArn@}",
            "${stackSet}",
        ] {
            assert!(r(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn substitutes() {
        let s = substitute("${estate}-${region} $${keep}", |r| match r {
            Ref::Estate => Some("ml".into()),
            Ref::Region => Some("us-east-1".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s, "ml-us-east-1 ${keep}");
        assert_eq!(
            substitute("${account:x}", |_| None).unwrap_err(),
            "${account:x}"
        );
    }
}
