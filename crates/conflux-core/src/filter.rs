//! Per-sink routing filters, in the spirit of Telegraf's `namepass`,
//! `namedrop`, `tagpass` and `tagdrop`, plus `inputs` (which listeners feed
//! the sink).
//!
//! Patterns are globs: `*` any run of characters, `?` one character,
//! `[abc]` / `[!abc]` a class.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::metric::MetricRef;

/// The filter settings of one sink, as written in its config table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Listener names (globs) whose metrics the sink takes; empty means all.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Only metrics whose name matches one of these globs pass.
    #[serde(default)]
    pub namepass: Vec<String>,
    /// Metrics whose name matches one of these globs are dropped.
    #[serde(default)]
    pub namedrop: Vec<String>,
    /// Only metrics with a tag whose key is listed and whose value matches one
    /// of its globs pass.
    #[serde(default)]
    pub tagpass: BTreeMap<String, Vec<String>>,
    /// Metrics with a tag whose key is listed and whose value matches one of
    /// its globs are dropped.
    #[serde(default)]
    pub tagdrop: BTreeMap<String, Vec<String>>,
}

impl FilterConfig {
    /// The config keys this struct reads, so that a component table can be
    /// split between the filter and the component's own settings.
    pub const KEYS: &'static [&'static str] =
        &["inputs", "namepass", "namedrop", "tagpass", "tagdrop"];
}

/// A glob that failed to compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern `{pattern}` in `{key}`: {reason}")]
pub struct FilterError {
    /// The config key it was under.
    pub key: String,
    /// The pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

#[derive(Debug, Clone)]
enum Glob {
    Any,
    Exact(String),
    /// `abc*`
    Prefix(String),
    /// `*abc`
    Suffix(String),
    /// `*abc*`
    Contains(String),
    Pattern(glob::Pattern),
}

fn is_literal(s: &str) -> bool {
    !s.contains(['*', '?', '['])
}

impl Glob {
    fn new(key: &str, pattern: &str) -> Result<Glob, FilterError> {
        if pattern == "*" {
            return Ok(Glob::Any);
        }
        if is_literal(pattern) {
            return Ok(Glob::Exact(pattern.to_owned()));
        }
        // The common shapes skip the general matcher, which is several times slower.
        let inner = pattern.strip_prefix('*').and_then(|p| p.strip_suffix('*'));
        if let Some(mid) = inner.filter(|m| is_literal(m)) {
            return Ok(Glob::Contains(mid.to_owned()));
        }
        if let Some(head) = pattern.strip_suffix('*').filter(|h| is_literal(h)) {
            return Ok(Glob::Prefix(head.to_owned()));
        }
        if let Some(tail) = pattern.strip_prefix('*').filter(|t| is_literal(t)) {
            return Ok(Glob::Suffix(tail.to_owned()));
        }
        glob::Pattern::new(pattern)
            .map(Glob::Pattern)
            .map_err(|e| FilterError {
                key: key.to_owned(),
                pattern: pattern.to_owned(),
                reason: e.msg.to_owned(),
            })
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(e) => e == s,
            Glob::Prefix(p) => s.starts_with(p.as_str()),
            Glob::Suffix(t) => s.ends_with(t.as_str()),
            Glob::Contains(m) => s.contains(m.as_str()),
            Glob::Pattern(p) => p.matches(s),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct GlobSet(Vec<Glob>);

impl GlobSet {
    fn new(key: &str, patterns: &[String], errors: &mut Vec<FilterError>) -> Option<GlobSet> {
        if patterns.is_empty() {
            return None;
        }
        let mut set = Vec::with_capacity(patterns.len());
        for p in patterns {
            match Glob::new(key, p) {
                Ok(g) => set.push(g),
                Err(e) => errors.push(e),
            }
        }
        Some(GlobSet(set))
    }

    fn matches(&self, s: &str) -> bool {
        self.0.iter().any(|g| g.matches(s))
    }
}

/// A compiled [`FilterConfig`].
#[derive(Debug, Clone, Default)]
pub struct Filter {
    inputs: Option<GlobSet>,
    namepass: Option<GlobSet>,
    namedrop: Option<GlobSet>,
    tagpass: Vec<(String, GlobSet)>,
    tagdrop: Vec<(String, GlobSet)>,
}

impl Filter {
    /// Compile every pattern.
    ///
    /// # Errors
    /// Every pattern that does not compile.
    pub fn new(cfg: &FilterConfig) -> Result<Filter, Vec<FilterError>> {
        let mut errors = Vec::new();
        let tags =
            |key: &str, map: &BTreeMap<String, Vec<String>>, errors: &mut Vec<FilterError>| {
                map.iter()
                    .filter_map(|(k, pats)| {
                        GlobSet::new(&format!("{key}.{k}"), pats, errors).map(|s| (k.clone(), s))
                    })
                    .collect::<Vec<_>>()
            };
        let filter = Filter {
            inputs: GlobSet::new("inputs", &cfg.inputs, &mut errors),
            namepass: GlobSet::new("namepass", &cfg.namepass, &mut errors),
            namedrop: GlobSet::new("namedrop", &cfg.namedrop, &mut errors),
            tagpass: tags("tagpass", &cfg.tagpass, &mut errors),
            tagdrop: tags("tagdrop", &cfg.tagdrop, &mut errors),
        };
        if errors.is_empty() {
            Ok(filter)
        } else {
            Err(errors)
        }
    }

    /// Whether metrics from listener `input` may reach the sink.
    pub fn accepts_input(&self, input: &str) -> bool {
        self.inputs.as_ref().is_none_or(|s| s.matches(input))
    }

    /// Whether the filter looks at single metrics at all; when not, a whole
    /// batch passes without a per-metric check.
    pub fn has_metric_rules(&self) -> bool {
        self.namepass.is_some()
            || self.namedrop.is_some()
            || !self.tagpass.is_empty()
            || !self.tagdrop.is_empty()
    }

    /// Whether metric `m` passes the name and tag rules.
    pub fn matches(&self, m: &MetricRef<'_>) -> bool {
        self.name_passes(m.name()) && self.tags_pass(m)
    }

    /// A matcher for one pass over a batch: it remembers the verdict on the
    /// last name, since batches come grouped by measurement.
    pub fn matcher<'b>(&self) -> Matcher<'_, 'b> {
        Matcher {
            filter: self,
            last: None,
        }
    }

    fn name_passes(&self, name: &str) -> bool {
        if let Some(pass) = &self.namepass
            && !pass.matches(name)
        {
            return false;
        }
        if let Some(drop) = &self.namedrop
            && drop.matches(name)
        {
            return false;
        }
        true
    }

    fn tags_pass(&self, m: &MetricRef<'_>) -> bool {
        let tag_hit = |rules: &[(String, GlobSet)]| {
            rules
                .iter()
                .any(|(k, set)| m.tag(k).is_some_and(|v| set.matches(v)))
        };
        if !self.tagpass.is_empty() && !tag_hit(&self.tagpass) {
            return false;
        }
        if !self.tagdrop.is_empty() && tag_hit(&self.tagdrop) {
            return false;
        }
        true
    }
}

/// [`Filter::matches`] over the metrics of one batch, remembering the verdict
/// on the last name seen.
pub struct Matcher<'f, 'b> {
    filter: &'f Filter,
    last: Option<(&'b str, bool)>,
}

impl<'b> Matcher<'_, 'b> {
    /// Whether metric `m` passes.
    pub fn matches(&mut self, m: &MetricRef<'b>) -> bool {
        let name = m.name();
        let name_ok = match self.last {
            Some((last, ok)) if last == name => ok,
            _ => {
                let ok = self.filter.name_passes(name);
                self.last = Some((name, ok));
                ok
            }
        };
        name_ok && self.filter.tags_pass(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::{Batch, Metric};

    fn filter(toml_src: &str) -> Filter {
        let cfg: FilterConfig = toml::from_str(toml_src).unwrap();
        Filter::new(&cfg).unwrap()
    }

    fn passes(f: &Filter, m: Metric) -> bool {
        let mut b = Batch::new();
        b.push(&m.field("v", 1.0)).unwrap();
        f.matches(&b.get(0))
    }

    #[test]
    fn empty_filter_passes_everything() {
        let f = filter("");
        assert!(!f.has_metric_rules());
        assert!(f.accepts_input("anything"));
        assert!(passes(&f, Metric::new("x")));
    }

    #[test]
    fn inputs_are_globs() {
        let f = filter(r#"inputs = ["edge", "graphite_*"]"#);
        assert!(f.accepts_input("edge"));
        assert!(f.accepts_input("graphite_udp"));
        assert!(!f.accepts_input("influx"));
        assert!(!f.has_metric_rules());
    }

    #[test]
    fn namepass_and_namedrop() {
        let f = filter(
            r#"namepass = ["cpu*", "mem"]
namedrop = ["cpu_guest*"]"#,
        );
        assert!(passes(&f, Metric::new("cpu")));
        assert!(passes(&f, Metric::new("mem")));
        assert!(!passes(&f, Metric::new("memory")));
        assert!(!passes(&f, Metric::new("cpu_guest_nice")));
    }

    #[test]
    fn common_glob_shapes_match_like_the_general_matcher() {
        let f = filter(r#"namepass = ["cpu*", "*_total", "*io*", "d?sk", "[mn]et"]"#);
        for (name, ok) in [
            ("cpu", true),
            ("cpu_guest", true),
            ("xcpu", false),
            ("requests_total", true),
            ("total", false),
            ("diskio", true),
            ("io", true),
            ("disk", true),
            ("desk", true),
            ("net", true),
            ("met", true),
            ("bet", false),
        ] {
            assert_eq!(passes(&f, Metric::new(name)), ok, "{name}");
        }
    }

    #[test]
    fn matcher_reuses_the_verdict_per_name_but_checks_tags_each_time() {
        let f = filter(
            r#"namepass = ["cpu"]
[tagdrop]
host = ["bad"]"#,
        );
        let b: Batch = [("cpu", "ok"), ("cpu", "bad"), ("mem", "ok"), ("cpu", "ok")]
            .iter()
            .map(|(n, h)| Metric::new(*n).tag("host", *h).field("v", 1.0))
            .collect();
        let mut m = f.matcher();
        let got: Vec<bool> = b.iter().map(|x| m.matches(&x)).collect();
        assert_eq!(got, [true, false, false, true]);
    }

    #[test]
    fn tagpass_needs_one_matching_tag() {
        let f = filter(
            r#"[tagpass]
host = ["web-?"]
dc = ["eu*"]"#,
        );
        assert!(passes(&f, Metric::new("x").tag("host", "web-1")));
        assert!(passes(
            &f,
            Metric::new("x").tag("dc", "eu-west").tag("host", "db")
        ));
        assert!(!passes(&f, Metric::new("x").tag("host", "web-10")));
        assert!(!passes(&f, Metric::new("x")));
    }

    #[test]
    fn tagdrop_drops_on_any_match() {
        let f = filter(
            r#"[tagdrop]
env = ["dev", "test"]"#,
        );
        assert!(passes(&f, Metric::new("x").tag("env", "prod")));
        assert!(passes(&f, Metric::new("x")));
        assert!(!passes(&f, Metric::new("x").tag("env", "test")));
    }

    #[test]
    fn reports_every_bad_pattern() {
        let cfg: FilterConfig = toml::from_str(
            r#"namepass = ["[a"]
[tagdrop]
k = ["b[", "ok"]"#,
        )
        .unwrap();
        let errs = Filter::new(&cfg).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].to_string().contains("`namepass`"), "{}", errs[0]);
        assert!(errs[1].to_string().contains("`tagdrop.k`"), "{}", errs[1]);
    }
}
