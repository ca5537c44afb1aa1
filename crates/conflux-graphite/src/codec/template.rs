//! The Telegraf/InfluxDB graphite template language, input side: turn a
//! dotted path into a measurement, tags and a field name.
//!
//! Reference: Telegraf `internal/templating/{engine,template,node,matcher}.go`
//! and `docs/TEMPLATE_PATTERN.md`; `shared/reference/ANCHORS.md` section 2.11.
//!
//! A spec is `[separator] [filter] template [k=v,k2=v2]`, blank-separated:
//! - 1 word: a template without filter (a default);
//! - 2 words: `filter template`, or `template tags` when the last word holds `=`;
//! - 3 words: `filter template tags`, or `separator filter template`;
//! - 4 words: all four.
//!
//! Template words, split on the template's separator (default `.`):
//! `measurement` (repeatable, joined by the parser separator), `measurement*`
//! (every node from here on), `field` and `field*` likewise for the field
//! name, an empty word skips its node, any other word is a tag key (a key
//! repeated joins its values with the parser separator). `measurement*` and
//! `field*` cannot be combined; every template names a `measurement…` part.
//!
//! Filters are split on the separator too and kept in a tree: at each level an
//! exact node beats a glob, which beats `*`, and the search backtracks, so the
//! most specific filter wins. A filter matches a path that has more nodes than
//! it (a prefix match). Specs are sorted as Telegraf sorts them (templates
//! without filter first, then by number of template words, stable), a later
//! spec with the same filter replaces an earlier one, and the last template
//! without filter becomes the default (built in: `measurement*`).
//!
//! Where we differ from Telegraf, on purpose:
//! - A filter node holding `?`, `[…]` or a `*` inside other text is a glob over
//!   that node (`cpu*`, `host-?`); Telegraf compares such nodes literally, so it
//!   could only match a path containing the `*` itself.
//! - Extra `k=v` tags are added only where the template gave no value for `k`
//!   (InfluxDB's rule, as ANCHORS states it); Telegraf's current code joins both.
//! - Bad specs are errors when the listener starts: an empty entry, more than
//!   four words, a tag without `=` (Telegraf ignores the first, mangles the
//!   second and panics on the third), and `measurement*` with `field*`
//!   (Telegraf fails every line instead).
//! - A tag `k=a=b` keeps `a=b` as the value (Telegraf keeps `a`).

use std::fmt;

/// The separator Telegraf uses by default, between template words and when
/// joining parts.
pub const DEFAULT_SEPARATOR: &str = ".";

/// Why a template spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// An entry of `templates` is empty or blank.
    #[error("template {position}: empty")]
    Empty {
        /// Index in `templates`, from 0.
        position: usize,
    },
    /// More than `[separator] [filter] template [tags]`.
    #[error(
        "template {position}: `{spec}` has more than four words: want `[separator] [filter] template [k=v,…]`"
    )]
    TooManyWords {
        /// Index in `templates`, from 0.
        position: usize,
        /// The entry, cut to 64 bytes.
        spec: String,
    },
    /// No part starting with `measurement`.
    #[error("template {position}: no `measurement` in `{template}`")]
    NoMeasurement {
        /// Index in `templates`, from 0.
        position: usize,
        /// The template word, cut to 64 bytes.
        template: String,
    },
    /// Both `measurement*` and `field*`.
    #[error(
        "template {position}: either `field*` or `measurement*` can be used, not both: `{template}`"
    )]
    GreedyBoth {
        /// Index in `templates`, from 0.
        position: usize,
        /// The template word, cut to 64 bytes.
        template: String,
    },
    /// An extra tag that is not `key=value` with a non-empty key and value.
    #[error("template {position}: invalid tag `{tag}`: want `key=value`")]
    InvalidTag {
        /// Index in `templates`, from 0.
        position: usize,
        /// The tag, cut to 64 bytes.
        tag: String,
    },
    /// A filter node that is not a valid glob.
    #[error("template {position}: invalid filter `{filter}`: {reason}")]
    InvalidFilter {
        /// Index in `templates`, from 0.
        position: usize,
        /// The filter, cut to 64 bytes.
        filter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The separator is empty.
    #[error("`separator` must not be empty")]
    EmptySeparator,
}

/// At most 64 bytes of user input in an error message (STYLE.md).
fn quote(s: &str) -> String {
    conflux_core::quote::clip(s, conflux_core::quote::QUOTE_BYTES).to_owned()
}

/// One word of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Skip,
    Measurement,
    MeasurementRest,
    Field,
    FieldRest,
    /// Index into [`Template::tag_keys`].
    Tag(usize),
}

/// One compiled template.
#[derive(Debug, Clone)]
struct Template {
    separator: String,
    parts: Vec<Part>,
    /// Distinct tag keys, in order of first appearance.
    tag_keys: Vec<String>,
    /// Extra `k=v` tags of the spec.
    extra_tags: Vec<(String, String)>,
}

impl Template {
    fn parse(
        position: usize,
        separator: &str,
        word: &str,
        extra_tags: Vec<(String, String)>,
    ) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut tag_keys: Vec<String> = Vec::new();
        let (mut has_measurement, mut m_rest, mut f_rest) = (false, false, false);
        for w in word.split(separator) {
            // Telegraf's check is a prefix test, so `measurements` counts too.
            has_measurement |= w.starts_with("measurement");
            parts.push(match w {
                "" => Part::Skip,
                "measurement" => Part::Measurement,
                "measurement*" => {
                    m_rest = true;
                    Part::MeasurementRest
                }
                "field" => Part::Field,
                "field*" => {
                    f_rest = true;
                    Part::FieldRest
                }
                key => match tag_keys.iter().position(|k| k == key) {
                    Some(i) => Part::Tag(i),
                    None => {
                        tag_keys.push(key.to_owned());
                        Part::Tag(tag_keys.len() - 1)
                    }
                },
            });
        }
        if !has_measurement {
            return Err(TemplateError::NoMeasurement {
                position,
                template: quote(word),
            });
        }
        if m_rest && f_rest {
            return Err(TemplateError::GreedyBoth {
                position,
                template: quote(word),
            });
        }
        Ok(Template {
            separator: separator.to_owned(),
            parts,
            tag_keys,
            extra_tags,
        })
    }

    fn is_measurement_rest(&self) -> bool {
        self.parts == [Part::MeasurementRest] && self.extra_tags.is_empty()
    }
}

/// One node of a filter.
#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Glob(glob::Pattern),
    Any,
}

#[derive(Debug, Clone)]
struct Node {
    matcher: Matcher,
    /// Exact children sorted by value, then globs sorted by pattern, then `*`.
    children: Vec<Node>,
    template: Option<usize>,
}

impl Node {
    fn root() -> Node {
        Node {
            matcher: Matcher::Any,
            children: Vec::new(),
            template: None,
        }
    }

    fn insert(&mut self, filter: &[Matcher], template: usize) {
        let Some((first, rest)) = filter.split_first() else {
            self.template = Some(template);
            return;
        };
        let same = |c: &Node| match (&c.matcher, first) {
            (Matcher::Exact(a), Matcher::Exact(b)) => a == b,
            (Matcher::Glob(a), Matcher::Glob(b)) => a.as_str() == b.as_str(),
            (Matcher::Any, Matcher::Any) => true,
            _ => false,
        };
        if let Some(child) = self.children.iter_mut().find(|c| same(c)) {
            child.insert(rest, template);
            return;
        }
        let mut child = Node {
            matcher: first.clone(),
            children: Vec::new(),
            template: None,
        };
        child.insert(rest, template);
        self.children.push(child);
        self.children
            .sort_by(|a, b| rank(&a.matcher).cmp(&rank(&b.matcher)));
    }

    /// Telegraf's `recursiveSearch`: exact first, then (ours) globs, then `*`;
    /// a `*` subtree's answer is final, even when it found nothing.
    fn search(&self, name: &str, nodes: &[(usize, usize)]) -> Option<usize> {
        let Some((&(s, e), rest)) = nodes.split_first() else {
            return self.template;
        };
        if self.children.is_empty() {
            return self.template;
        }
        let node = &name[s..e];
        let exact_end = self
            .children
            .partition_point(|c| matches!(c.matcher, Matcher::Exact(_)));
        let exact = &self.children[..exact_end];
        if let Ok(i) = exact.binary_search_by(|c| match &c.matcher {
            Matcher::Exact(v) => v.as_str().cmp(node),
            _ => std::cmp::Ordering::Less,
        }) && let Some(t) = exact[i].search(name, rest)
        {
            return Some(t);
        }
        for child in &self.children[exact_end..] {
            match &child.matcher {
                Matcher::Glob(p) if p.matches(node) => {
                    if let Some(t) = child.search(name, rest) {
                        return Some(t);
                    }
                }
                Matcher::Any => return child.search(name, rest),
                _ => {}
            }
        }
        self.template
    }
}

/// Sort key of a child: exact nodes by value, then globs by pattern, `*` last.
fn rank(m: &Matcher) -> (u8, &str) {
    match m {
        Matcher::Exact(v) => (0, v),
        Matcher::Glob(p) => (1, p.as_str()),
        Matcher::Any => (2, ""),
    }
}

fn compile_node(position: usize, node: &str) -> Result<Matcher, TemplateError> {
    if node == "*" {
        return Ok(Matcher::Any);
    }
    if !node.contains(['*', '?', '[']) {
        return Ok(Matcher::Exact(node.to_owned()));
    }
    glob::Pattern::new(node)
        .map(Matcher::Glob)
        .map_err(|e| TemplateError::InvalidFilter {
            position,
            filter: quote(node),
            reason: e.msg.to_owned(),
        })
}

/// A parsed spec before sorting.
struct Spec {
    position: usize,
    separator: String,
    filter: Option<String>,
    template: String,
    tags: Vec<(String, String)>,
}

fn parse_spec(position: usize, entry: &str) -> Result<Spec, TemplateError> {
    let words: Vec<&str> = entry.split_whitespace().collect();
    let mut spec = Spec {
        position,
        separator: DEFAULT_SEPARATOR.to_owned(),
        filter: None,
        template: String::new(),
        tags: Vec::new(),
    };
    let mut tagstring = None;
    match words.as_slice() {
        [] => return Err(TemplateError::Empty { position }),
        [t] => spec.template = (*t).to_owned(),
        [a, b] if b.contains('=') => {
            spec.template = (*a).to_owned();
            tagstring = Some(*b);
        }
        [f, t] => {
            spec.filter = Some((*f).to_owned());
            spec.template = (*t).to_owned();
        }
        [f, t, tags] if tags.contains('=') => {
            spec.filter = Some((*f).to_owned());
            spec.template = (*t).to_owned();
            tagstring = Some(*tags);
        }
        [s, f, t] => {
            spec.separator = (*s).to_owned();
            spec.filter = Some((*f).to_owned());
            spec.template = (*t).to_owned();
        }
        [s, f, t, tags] => {
            spec.separator = (*s).to_owned();
            spec.filter = Some((*f).to_owned());
            spec.template = (*t).to_owned();
            tagstring = Some(*tags);
        }
        _ => {
            return Err(TemplateError::TooManyWords {
                position,
                spec: quote(entry),
            });
        }
    }
    if let Some(tags) = tagstring {
        for kv in tags.split(',') {
            match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                    spec.tags.push((k.to_owned(), v.to_owned()));
                }
                _ => {
                    return Err(TemplateError::InvalidTag {
                        position,
                        tag: quote(kv),
                    });
                }
            }
        }
    }
    Ok(spec)
}

/// Compiled templates: which template applies to a path, and what it yields.
/// Build once per listener; share it between connections.
#[derive(Clone)]
pub struct Templates {
    /// Joins repeated measurement, field and tag parts (Telegraf `separator`).
    joiner: String,
    templates: Vec<Template>,
    default: usize,
    root: Node,
    /// The separator the filter tree splits paths on (Telegraf: that of the
    /// last spec added).
    tree_separator: String,
    /// The default template is `measurement*` and joins with `.`, and no
    /// filter exists: the measurement is the whole path.
    identity: bool,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("joiner", &self.joiner)
            .field("templates", &self.templates.len())
            .field("identity", &self.identity)
            .finish()
    }
}

impl Default for Templates {
    /// No templates and separator `.`: the whole path is the measurement.
    fn default() -> Self {
        Templates::identity(DEFAULT_SEPARATOR)
    }
}

impl Templates {
    fn identity(joiner: &str) -> Templates {
        let default = Template {
            separator: DEFAULT_SEPARATOR.to_owned(),
            parts: vec![Part::MeasurementRest],
            tag_keys: Vec::new(),
            extra_tags: Vec::new(),
        };
        Templates {
            joiner: joiner.to_owned(),
            templates: vec![default],
            default: 0,
            root: Node::root(),
            tree_separator: DEFAULT_SEPARATOR.to_owned(),
            identity: joiner == DEFAULT_SEPARATOR,
        }
    }

    /// Compile `specs` with parser separator `separator` (Telegraf's
    /// `separator`, default `.`).
    ///
    /// # Errors
    /// Every bad spec, in order.
    pub fn new(separator: &str, specs: &[String]) -> Result<Templates, Vec<TemplateError>> {
        let mut errors = Vec::new();
        if separator.is_empty() {
            errors.push(TemplateError::EmptySeparator);
        }
        let mut parsed = Vec::new();
        for (position, entry) in specs.iter().enumerate() {
            match parse_spec(position, entry) {
                Ok(s) => parsed.push(s),
                Err(e) => errors.push(e),
            }
        }
        // Telegraf's order: templates without filter first, then by word count.
        parsed.sort_by_key(|s| (s.filter.is_some(), s.template.split(&*s.separator).count()));
        let mut t = Templates::identity(separator);
        for spec in parsed {
            if spec.separator.is_empty() {
                errors.push(TemplateError::EmptySeparator);
                continue;
            }
            let template =
                match Template::parse(spec.position, &spec.separator, &spec.template, spec.tags) {
                    Ok(tpl) => tpl,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
            match &spec.filter {
                None => {
                    t.templates.push(template);
                    t.default = t.templates.len() - 1;
                }
                Some(filter) => {
                    let mut nodes = Vec::new();
                    for node in filter.split(&*spec.separator) {
                        match compile_node(spec.position, node) {
                            Ok(m) => nodes.push(m),
                            Err(e) => errors.push(e),
                        }
                    }
                    t.templates.push(template);
                    let idx = t.templates.len() - 1;
                    t.root.insert(&nodes, idx);
                }
            }
            t.tree_separator.clone_from(&spec.separator);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        t.identity = t.root.children.is_empty()
            && t.joiner == DEFAULT_SEPARATOR
            && t.templates[t.default].is_measurement_rest();
        Ok(t)
    }

    /// The parser separator, which joins repeated parts.
    pub fn separator(&self) -> &str {
        &self.joiner
    }

    /// True when every path maps to itself as the measurement, field `value`
    /// and no tags (no templates configured, separator `.`).
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    /// Apply the matching template to `name` (a path without `;` tags),
    /// leaving the result in `out`.
    pub fn apply(&self, name: &str, out: &mut Applied) {
        out.clear();
        let index = if self.root.children.is_empty() {
            self.default
        } else {
            split_nodes(name, &self.tree_separator, &mut out.nodes);
            self.root.search(name, &out.nodes).unwrap_or(self.default)
        };
        let t = &self.templates[index];
        split_nodes(name, &t.separator, &mut out.nodes);
        let n = out.nodes.len();
        out.tag_values
            .resize_with(t.tag_keys.len(), Default::default);
        out.tag_counts.clear();
        out.tag_counts.resize(t.tag_keys.len(), 0);
        let (mut m_count, mut f_count) = (0usize, 0usize);
        let joiner = &self.joiner;
        for (i, part) in t.parts.iter().enumerate() {
            if i >= n {
                break;
            }
            match *part {
                Part::Skip => {}
                Part::Measurement => {
                    push_joined(
                        &mut out.measurement,
                        &mut m_count,
                        joiner,
                        node(name, &out.nodes, i),
                    );
                }
                Part::MeasurementRest => {
                    // Go's `break` here leaves only the switch: later words still apply.
                    for j in i..n {
                        push_joined(
                            &mut out.measurement,
                            &mut m_count,
                            joiner,
                            node(name, &out.nodes, j),
                        );
                    }
                }
                Part::Field => {
                    push_joined(
                        &mut out.field,
                        &mut f_count,
                        joiner,
                        node(name, &out.nodes, i),
                    );
                }
                Part::FieldRest => {
                    for j in i..n {
                        push_joined(
                            &mut out.field,
                            &mut f_count,
                            joiner,
                            node(name, &out.nodes, j),
                        );
                    }
                }
                Part::Tag(k) => {
                    let v = node(name, &out.nodes, i);
                    push_joined(&mut out.tag_values[k], &mut out.tag_counts[k], joiner, v);
                }
            }
        }
        out.template = Some(TemplateRef { index });
        out.measured = m_count > 0;
    }

    /// The tags `out` (filled by [`Templates::apply`]) carries, as `(key,
    /// value)`: template tags first, then extra `k=v` tags the template did
    /// not set.
    pub fn tags<'a>(&'a self, out: &'a Applied) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let t = out.template.map(|r| &self.templates[r.index]);
        let from_parts = t.into_iter().flat_map(move |t| {
            t.tag_keys
                .iter()
                .enumerate()
                .filter(move |(i, _)| out.tag_counts.get(*i).is_some_and(|c| *c > 0))
                .map(move |(i, k)| (k.as_str(), out.tag_values[i].as_str()))
        });
        let extra = t.into_iter().flat_map(move |t| {
            t.extra_tags
                .iter()
                .filter(move |(k, _)| {
                    !t.tag_keys
                        .iter()
                        .enumerate()
                        .any(|(i, tk)| tk == k && out.tag_counts.get(i).is_some_and(|c| *c > 0))
                })
                .map(|(k, v)| (k.as_str(), v.as_str()))
        });
        from_parts.chain(extra)
    }
}

#[derive(Debug, Clone, Copy)]
struct TemplateRef {
    index: usize,
}

/// What a template made of a path; reused between lines so that applying a
/// template allocates nothing once warm.
#[derive(Debug, Default)]
pub struct Applied {
    /// The measurement; empty when no `measurement` part applied.
    pub measurement: String,
    /// The field name; empty when no `field` part applied (then `value`).
    pub field: String,
    measured: bool,
    tag_values: Vec<String>,
    tag_counts: Vec<usize>,
    nodes: Vec<(usize, usize)>,
    template: Option<TemplateRef>,
}

impl Applied {
    fn clear(&mut self) {
        self.measurement.clear();
        self.field.clear();
        self.measured = false;
        for v in &mut self.tag_values {
            v.clear();
        }
        self.template = None;
    }

    /// True when a `measurement` part matched a node (Telegraf otherwise
    /// uses the whole path as the measurement).
    pub fn has_measurement(&self) -> bool {
        self.measured && !self.measurement.is_empty()
    }
}

fn node<'a>(name: &'a str, nodes: &[(usize, usize)], i: usize) -> &'a str {
    let (s, e) = nodes[i];
    &name[s..e]
}

fn push_joined(out: &mut String, count: &mut usize, joiner: &str, part: &str) {
    if *count > 0 {
        out.push_str(joiner);
    }
    *count += 1;
    out.push_str(part);
}

/// Byte ranges of `name` split on `sep` (Go's `strings.Split`: empty parts kept).
fn split_nodes(name: &str, sep: &str, nodes: &mut Vec<(usize, usize)>) {
    nodes.clear();
    let mut start = 0;
    for (i, _) in name.match_indices(sep) {
        nodes.push((start, i));
        start = i + sep.len();
    }
    nodes.push((start, name.len()));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// (measurement, field, sorted tags) as Telegraf would produce them.
    fn apply(sep: &str, specs: &[&str], path: &str) -> (String, String, Vec<(String, String)>) {
        let specs: Vec<String> = specs.iter().map(|s| (*s).to_owned()).collect();
        let t = Templates::new(sep, &specs).unwrap();
        let mut out = Applied::default();
        t.apply(path, &mut out);
        let mut tags: Vec<(String, String)> = t
            .tags(&out)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        tags.sort();
        let m = if out.has_measurement() {
            out.measurement.clone()
        } else {
            path.to_owned()
        };
        let f = if out.field.is_empty() {
            "value".to_owned()
        } else {
            out.field.clone()
        };
        (m, f, tags)
    }

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn default_template_keeps_the_whole_path() {
        assert_eq!(
            apply(".", &[], "servers.localhost.cpu.load"),
            ("servers.localhost.cpu.load".into(), "value".into(), vec![])
        );
        assert!(Templates::default().is_identity());
    }

    #[test]
    fn default_template_joins_with_a_custom_separator() {
        // TestTemplateApplyDefault with separator "_".
        assert_eq!(
            apply("_", &[], "servers.localhost.cpu.load").0,
            "servers_localhost_cpu_load"
        );
        assert!(!Templates::new("_", &[]).unwrap().is_identity());
    }

    #[test]
    fn measurement_and_tags_from_nodes() {
        assert_eq!(
            apply(
                ".",
                &["region.host.measurement*"],
                "us-west.server01.cpu.load"
            ),
            (
                "cpu.load".into(),
                "value".into(),
                tags(&[("host", "server01"), ("region", "us-west")])
            )
        );
    }

    #[test]
    fn repeated_measurement_and_tag_words_are_joined() {
        assert_eq!(
            apply(
                "_",
                &["measurement.measurement.region.region"],
                "cpu.load.us.west"
            ),
            (
                "cpu_load".into(),
                "value".into(),
                tags(&[("region", "us_west")])
            )
        );
    }

    #[test]
    fn field_and_field_rest() {
        assert_eq!(
            apply(".", &["host.measurement.field"], "server01.cpu.idle"),
            ("cpu".into(), "idle".into(), tags(&[("host", "server01")]))
        );
        assert_eq!(
            apply(
                "_",
                &["host.measurement.field*"],
                "server01.cpu.idle.user.x"
            ),
            (
                "cpu".into(),
                "idle_user_x".into(),
                tags(&[("host", "server01")])
            )
        );
    }

    #[test]
    fn empty_words_skip_nodes() {
        assert_eq!(
            apply(".", &["..measurement.."], "a.b.cpu.d.e"),
            ("cpu".into(), "value".into(), vec![])
        );
    }

    #[test]
    fn greedy_measurement_lets_later_words_apply_too() {
        // Go's `break` only leaves the switch.
        assert_eq!(
            apply(".", &["measurement*.field"], "a.b.c"),
            ("a.b.c".into(), "b".into(), vec![])
        );
    }

    #[test]
    fn short_paths_fall_back_to_the_whole_path() {
        assert_eq!(
            apply(".", &["host.measurement"], "onlyhost"),
            (
                "onlyhost".into(),
                "value".into(),
                tags(&[("host", "onlyhost")])
            )
        );
    }

    #[test]
    fn most_specific_filter_wins() {
        let specs = [
            "*.* .wrong.measurement*",
            "servers.* .host.measurement*",
            "servers.localhost .localhost.measurement*",
            "*.localhost .localhost.measurement* region=us",
        ];
        assert_eq!(
            apply(".", &specs, "servers.localhost.cpu.load"),
            (
                "cpu.load".into(),
                "value".into(),
                tags(&[("localhost", "localhost")])
            )
        );
        assert_eq!(
            apply(".", &specs, "servers.remote.cpu.load"),
            (
                "cpu.load".into(),
                "value".into(),
                tags(&[("host", "remote")])
            )
        );
        assert_eq!(
            apply(".", &specs, "other.localhost.cpu.load"),
            (
                "cpu.load".into(),
                "value".into(),
                tags(&[("localhost", "localhost"), ("region", "us")])
            )
        );
        assert_eq!(
            apply(".", &specs, "other.host.cpu.load"),
            (
                "cpu.load".into(),
                "value".into(),
                tags(&[("wrong", "host")])
            )
        );
    }

    #[test]
    fn wildcard_subtree_answer_is_final() {
        // `a.*.c` is searched under `*` only; finding nothing there does not
        // fall back to the `a` node's own template (Telegraf's recursiveSearch).
        let specs = ["a measurement.x", "a.*.c measurement.y"];
        assert_eq!(apply(".", &specs, "a.b.d").2, tags(&[]));
        assert_eq!(apply(".", &specs, "a.b.c").2, tags(&[("y", "b")]));
        // Without a wildcard child the node's own template applies.
        assert_eq!(
            apply(".", &["a measurement.x"], "a.b.d").2,
            tags(&[("x", "b")])
        );
    }

    #[test]
    fn globs_inside_a_node_match_between_exact_and_star() {
        let specs = [
            "cpu* measurement.g",
            "cpu.* measurement.e",
            "* measurement.s",
        ];
        assert_eq!(apply(".", &specs, "cpu.x").2, tags(&[("e", "x")]));
        assert_eq!(apply(".", &specs, "cpu2.x").2, tags(&[("g", "x")]));
        assert_eq!(apply(".", &specs, "mem.x").2, tags(&[("s", "x")]));
    }

    #[test]
    fn extra_tags_do_not_override_template_tags() {
        assert_eq!(
            apply(".", &["measurement.host region=us,host=ignored"], "cpu.h1").2,
            tags(&[("host", "h1"), ("region", "us")])
        );
        // A short path leaves `host` unset: the extra tag then applies.
        assert_eq!(
            apply(".", &["measurement.host host=fallback"], "cpu").2,
            tags(&[("host", "fallback")])
        );
    }

    #[test]
    fn custom_template_separator_splits_filter_and_path() {
        assert_eq!(
            apply(".", &["_ cpu_* measurement_host"], "cpu_h1").2,
            tags(&[("host", "h1")])
        );
    }

    #[test]
    fn later_default_with_more_words_wins() {
        // Sorted by word count: the longest filterless template is the default.
        assert_eq!(
            apply(".", &["measurement.a.b", "measurement"], "x.y.z").2,
            tags(&[("a", "y"), ("b", "z")])
        );
    }

    #[test]
    fn two_words_with_equals_are_template_and_tags() {
        assert_eq!(
            apply(".", &["measurement.host dc=1"], "cpu.h").2,
            tags(&[("dc", "1"), ("host", "h")])
        );
    }

    #[test]
    fn rejects_bad_specs_naming_each() {
        let specs: Vec<String> = [
            "",
            "a b c d e",
            "host.cpu",
            "measurement*.field*",
            "measurement k",
            "f measurement k=",
            "[ measurement",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let errs = Templates::new(".", &specs).unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 7, "{text:#?}");
        assert!(text.contains(&"template 0: empty".to_owned()), "{text:#?}");
        assert!(
            text.iter()
                .any(|t| t.starts_with("template 1: `a b c d e` has more than four words"))
        );
        assert!(text.contains(&"template 2: no `measurement` in `host.cpu`".to_owned()));
        assert!(
            text.iter()
                .any(|t| t.starts_with("template 3: either `field*` or `measurement*`"))
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("template 4: no `measurement` in `k`")),
            "{text:#?}"
        );
        assert!(text.contains(&"template 5: invalid tag `k=`: want `key=value`".to_owned()));
        assert!(
            text.iter()
                .any(|t| t.starts_with("template 6: invalid filter `[`"))
        );
        assert_eq!(
            Templates::new("", &[]).unwrap_err(),
            vec![TemplateError::EmptySeparator]
        );
    }
}
