use super::*;
use crate::codec::Characters;
use conflux_core::{FieldValue, Metric};

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
/// 2023-11-14T22:13:20Z in seconds.
const T: i64 = 1_700_000_000;

fn run_with(opts: &ParseOptions, input: &[u8]) -> (Vec<Metric>, Vec<Event>, Summary) {
    let mut batch = Batch::new();
    let mut events = Vec::new();
    let summary = parse(input, opts, &mut batch, &mut events);
    assert_eq!(summary.metrics, batch.len(), "returned count");
    (
        batch.iter().map(|m| m.to_metric()).collect(),
        events,
        summary,
    )
}

fn errors(events: &[Event]) -> Vec<&LineError> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Error(e) => Some(e),
            Event::Command { .. } => None,
        })
        .collect()
}

/// `input` parses without events into exactly `expected`.
#[track_caller]
fn ok_with(opts: &ParseOptions, input: &str, expected: Metric) {
    let (got, events, _) = run_with(opts, input.as_bytes());
    assert!(events.is_empty(), "{input:?}: unexpected events {events:?}");
    assert_eq!(got, vec![expected], "{input:?}");
}

#[track_caller]
fn ok(input: &str, expected: Metric) {
    ok_with(&ParseOptions::default(), input, expected);
}

/// `input` gives no metric and one error whose reply is `reply`.
#[track_caller]
fn err_with(opts: &ParseOptions, input: &str, reply: &str) -> ErrorKind {
    err_bytes(opts, input.as_bytes(), reply)
}

#[track_caller]
fn err(input: &str, reply: &str) -> ErrorKind {
    err_with(&ParseOptions::default(), input, reply)
}

#[track_caller]
fn err_bytes(opts: &ParseOptions, input: &[u8], reply: &str) -> ErrorKind {
    let (got, events, _) = run_with(opts, input);
    assert!(got.is_empty(), "{input:?}: unexpected metrics {got:?}");
    let errs = errors(&events);
    assert_eq!(errs.len(), 1, "{input:?}: {events:?}");
    assert_eq!(errs[0].message, reply, "{input:?}");
    errs[0].kind
}

/// The point `name value` at `ts_ns` with `tags` (given sorted by key).
fn p(name: &str, ts_ns: i64, value: impl Into<FieldValue>, tags: &[(&str, &str)]) -> Metric {
    let mut m = Metric::new(name).field("value", value).at(ts_ns);
    for (k, v) in tags {
        m = m.tag(*k, *v);
    }
    m
}

fn rule(r: SecondsOrMillis) -> ParseOptions {
    ParseOptions {
        timestamps: r,
        ..ParseOptions::default()
    }
}

// --- lines and words -------------------------------------------------------

#[test]
fn parses_a_tcollector_line() {
    ok(
        "put sys.cpu.user 1356998400 42.5 host=webserver01 cpu=0",
        p(
            "sys.cpu.user",
            1_356_998_400 * S,
            42.5,
            &[("cpu", "0"), ("host", "webserver01")],
        ),
    );
}

#[test]
fn reads_collectd_write_tsdb_lines_with_crlf_and_double_spaces() {
    ok(
        "put exec.x.gauge.y 1700000000 42 fqdn=testhost  \r\n",
        p("exec.x.gauge.y", T * S, 42i64, &[("fqdn", "testhost")]),
    );
}

#[test]
fn runs_of_spaces_separate_words() {
    ok(
        "  put   m  1700000000   7   a=1   b=2  ",
        p("m", T * S, 7i64, &[("a", "1"), ("b", "2")]),
    );
}

#[test]
fn skips_empty_lines_and_counts_them_in_line_numbers() {
    let (got, events, summary) = run_with(
        &ParseOptions::default(),
        b"\n   \r\nput m 1700000000 1\nput bad\n\nput n 1700000000 2",
    );
    assert_eq!(
        got,
        vec![p("m", T * S, 1i64, &[]), p("n", T * S, 2i64, &[])]
    );
    assert_eq!(summary.metrics, 2);
    let errs = errors(&events);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 4);
}

#[test]
fn a_tab_is_not_a_separator() {
    err(
        "put m 1700000000 1 a=b\tc=d",
        "put: illegal argument: invalid tag: a=b\tc=d",
    );
}

// --- argument count and tags required --------------------------------------

#[test]
fn needs_metric_timestamp_and_value() {
    let k = err(
        "put",
        "put: illegal argument: not enough arguments (need least 3, got 0)",
    );
    assert_eq!(k, ErrorKind::NotEnoughArguments);
    err(
        "put m 1700000000",
        "put: illegal argument: not enough arguments (need least 3, got 2)",
    );
}

#[test]
fn accepts_a_put_without_tags_by_default() {
    ok("put m 1700000000 1", p("m", T * S, 1i64, &[]));
}

#[test]
fn refuses_a_put_without_tags_when_tags_are_required() {
    let opts = ParseOptions {
        require_tags: true,
        ..ParseOptions::default()
    };
    err_with(
        &opts,
        "put m 1700000000 1",
        "put: illegal argument: not enough arguments (need least 4, got 3)",
    );
    err_with(
        &opts,
        "put m 1700000000",
        "put: illegal argument: not enough arguments (need least 4, got 2)",
    );
    ok_with(
        &opts,
        "put m 1700000000 1 a=b",
        p("m", T * S, 1i64, &[("a", "b")]),
    );
}

// --- timestamps: every threshold, both sides -------------------------------

#[test]
fn opentsdb_mask_rule_boundaries() {
    let o = ParseOptions::default();
    ok_with(&o, "put m 1 1", p("m", S, 1i64, &[]));
    ok_with(
        &o,
        "put m 4294967295 1",
        p("m", 4_294_967_295 * S, 1i64, &[]),
    );
    ok_with(
        &o,
        "put m 4294967296 1",
        p("m", 4_294_967_296 * MS, 1i64, &[]),
    );
    // Nanoseconds in an i64 end at 2262-04-11T23:47:16.854775807Z, before
    // OpenTSDB's 13-digit limit (2286): both limits, both sides.
    ok_with(
        &o,
        "put m 9223372036854 1",
        p("m", 9_223_372_036_854 * MS, 1i64, &[]),
    );
    err_with(
        &o,
        "put m 9223372036855 1",
        "put: illegal argument: bad timestamp=9223372036855",
    );
    err_with(
        &o,
        "put m 9999999999999 1",
        "put: illegal argument: bad timestamp=9999999999999",
    );
    let k = err_with(
        &o,
        "put m 10000000000000 1",
        "put: illegal argument: bad timestamp=10000000000000",
    );
    assert_eq!(k, ErrorKind::InvalidTimestamp);
}

#[test]
fn zero_and_negative_timestamps_are_refused() {
    for (ts, shown) in [("0", "0"), ("-1", "-1"), ("-0", "0"), ("+0", "0")] {
        let k = err(
            &format!("put m {ts} 1"),
            &format!("put: illegal argument: invalid timestamp: {shown}"),
        );
        assert_eq!(k, ErrorKind::InvalidTimestamp);
    }
    err("putm m 0 1", "putm: illegal argument: invalid timestamp: 0");
}

#[test]
fn kairosdb_rule_boundaries() {
    let o = rule(SecondsOrMillis::Kairosdb);
    ok_with(
        &o,
        "put m 2999999999 1",
        p("m", 2_999_999_999 * S, 1i64, &[]),
    );
    ok_with(
        &o,
        "put m 3000000000 1",
        p("m", 3_000_000_000 * MS, 1i64, &[]),
    );
    ok_with(&o, "put m 1 1", p("m", S, 1i64, &[]));
    err_with(
        &o,
        "put m 0 1",
        "put: illegal argument: invalid timestamp: 0",
    );
}

#[test]
fn telegraf_rule_boundaries() {
    let o = rule(SecondsOrMillis::Telegraf);
    // Below 1e12 is seconds: this one is, and is past 2262.
    err_with(
        &o,
        "put m 999999999999 1",
        "put: illegal argument: bad timestamp=999999999999",
    );
    ok_with(
        &o,
        "put m 9223372036 1",
        p("m", 9_223_372_036 * S, 1i64, &[]),
    );
    ok_with(
        &o,
        "put m 1000000000000 1",
        p("m", 1_000_000_000_000 * MS, 1i64, &[]),
    );
}

#[test]
fn digits_rule_boundaries() {
    let o = rule(SecondsOrMillis::Digits);
    let bad = |ts: &str| {
        err_with(
            &o,
            &format!("put m {ts} 1"),
            &format!("put: illegal argument: bad timestamp={ts}: must have 10 or 13 digits"),
        )
    };
    bad("999999999");
    ok_with(
        &o,
        "put m 1000000000 1",
        p("m", 1_000_000_000 * S, 1i64, &[]),
    );
    ok_with(
        &o,
        "put m 9223372036 1",
        p("m", 9_223_372_036 * S, 1i64, &[]),
    );
    // Ten digits, so seconds, but past 2262.
    err_with(
        &o,
        "put m 9999999999 1",
        "put: illegal argument: bad timestamp=9999999999",
    );
    bad("10000000000");
    bad("999999999999");
    ok_with(
        &o,
        "put m 1000000000000 1",
        p("m", 1_000_000_000_000 * MS, 1i64, &[]),
    );
    ok_with(
        &o,
        "put m 9223372036854 1",
        p("m", 9_223_372_036_854 * MS, 1i64, &[]),
    );
    err_with(
        &o,
        "put m 9999999999999 1",
        "put: illegal argument: bad timestamp=9999999999999",
    );
    bad("10000000000000");
}

#[test]
fn seconds_and_millis_rules() {
    ok_with(
        &rule(SecondsOrMillis::Seconds),
        "put m 5000000000 1",
        p("m", 5_000_000_000 * S, 1i64, &[]),
    );
    ok_with(
        &rule(SecondsOrMillis::Millis),
        "put m 1700000000 1",
        p("m", T * MS, 1i64, &[]),
    );
    // Seconds past what nanoseconds in an i64 can hold (year 2262).
    err_with(
        &rule(SecondsOrMillis::Seconds),
        "put m 9223372037 1",
        "put: illegal argument: bad timestamp=9223372037",
    );
    ok_with(
        &rule(SecondsOrMillis::Seconds),
        "put m 9223372036 1",
        p("m", 9_223_372_036 * S, 1i64, &[]),
    );
}

#[test]
fn putm_is_always_milliseconds() {
    for r in [SecondsOrMillis::OpentsdbMask, SecondsOrMillis::Seconds] {
        ok_with(
            &rule(r),
            "putm m 1000 1 a=b",
            p("m", S, 1i64, &[("a", "b")]),
        );
        ok_with(
            &rule(r),
            "putm m 1700000000123 1",
            p("m", 1_700_000_000_123 * MS, 1i64, &[]),
        );
    }
    err(
        "putm m 1700000000.5 1",
        "putm: illegal argument: bad timestamp=1700000000",
    );
}

#[test]
fn dotted_timestamps_are_seconds_with_a_fraction() {
    ok(
        "put m 1364410924.250 1",
        p("m", 1_364_410_924 * S + 250 * MS, 1i64, &[]),
    );
    ok(
        "put m 1364410924.25 1",
        p("m", 1_364_410_924 * S + 250 * MS, 1i64, &[]),
    );
    ok(
        "put m 1364410924.123456789 1",
        p("m", 1_364_410_924 * S + 123_456_789, 1i64, &[]),
    );
    ok("put m 1364410924. 1", p("m", 1_364_410_924 * S, 1i64, &[]));
    err(
        "put m 1364410924.1234567890 1",
        "put: invalid value: Invalid fraction of a second in 1364410924.1234567890",
    );
    err(
        "put m 1.2.3 1",
        "put: invalid value: Invalid fraction of a second in 1.2.3",
    );
    err("put m .5 1", "put: invalid value: Empty string");
    err("put m 0.5 1", "put: illegal argument: invalid timestamp: 0");
    err(
        "put m -1.5 1",
        "put: illegal argument: invalid timestamp: -1",
    );
    // The whole part must be seconds under the rule: both sides of the mask.
    ok(
        "put m 4294967295.5 1",
        p("m", 4_294_967_295 * S + 500 * MS, 1i64, &[]),
    );
    err(
        "put m 4294967296.5 1",
        "put: illegal argument: bad timestamp=4294967296",
    );
}

#[test]
fn timestamps_must_be_numbers() {
    err(
        "put m 17000x0000 1",
        "put: invalid value: Invalid character 'x' in 17000x0000",
    );
    err(
        "put m 12345678901234567890 1",
        "put: invalid value: Value too long: 12345678901234567890",
    );
    err(
        "put m 9223372036854775808 1",
        "put: invalid value: Overflow in 9223372036854775808",
    );
}

// --- values ----------------------------------------------------------------

#[test]
fn values_without_dot_or_exponent_are_integers() {
    ok("put m 1700000000 42", p("m", T * S, 42i64, &[]));
    ok("put m 1700000000 -42", p("m", T * S, -42i64, &[]));
    ok("put m 1700000000 +42", p("m", T * S, 42i64, &[]));
    ok(
        "put m 1700000000 9223372036854775807",
        p("m", T * S, i64::MAX, &[]),
    );
    ok(
        "put m 1700000000 -9223372036854775808",
        p("m", T * S, i64::MIN, &[]),
    );
    let k = err(
        "put m 1700000000 9223372036854775808",
        "put: invalid value: Overflow in 9223372036854775808",
    );
    assert_eq!(k, ErrorKind::InvalidValue);
}

#[test]
fn values_with_dot_or_exponent_are_floats() {
    ok("put m 1700000000 42.0", p("m", T * S, 42.0, &[]));
    ok("put m 1700000000 4.25e1", p("m", T * S, 42.5, &[]));
    ok("put m 1700000000 1E3", p("m", T * S, 1000.0, &[]));
    ok("put m 1700000000 1e-3", p("m", T * S, 0.001, &[]));
    ok("put m 1700000000 -.5", p("m", T * S, -0.5, &[]));
    ok(
        "put m 1700000000 8.520383420360478",
        p("m", T * S, 8.520_383_420_360_478, &[]),
    );
}

#[test]
fn nan_and_infinities_are_refused() {
    err(
        "put m 1700000000 NaN",
        "put: invalid value: Invalid character 'N' in NaN",
    );
    err(
        "put m 1700000000 -Infinity",
        "put: invalid value: Invalid character 'I' in -Infinity",
    );
    err(
        "put m 1700000000 inf.0",
        "put: invalid value: For input string: \"inf.0\"",
    );
    err(
        "put m 1700000000 nan.",
        "put: invalid value: For input string: \"nan.\"",
    );
    let k = err(
        "put m 1700000000 1e999",
        "put: illegal argument: value is NaN or Infinite: Infinity for metric=m timestamp=1700000000",
    );
    assert_eq!(k, ErrorKind::InvalidValue);
    err(
        "put m 1700000000 -1e999",
        "put: illegal argument: value is NaN or Infinite: -Infinity for metric=m timestamp=1700000000",
    );
}

#[test]
fn malformed_numbers_are_refused() {
    err(
        "put m 1700000000 1.2.3",
        "put: invalid value: For input string: \"1.2.3\"",
    );
    err(
        "put m 1700000000 0x10",
        "put: invalid value: Invalid character 'x' in 0x10",
    );
    err(
        "put m 1700000000 1.5f",
        "put: invalid value: For input string: \"1.5f\"",
    );
}

#[test]
fn puts_stores_the_value_as_a_string() {
    ok(
        "puts m 1700000000 hello t=v",
        p("m", T * S, "hello", &[("t", "v")]),
    );
    ok("puts m 1700000000 NaN", p("m", T * S, "NaN", &[]));
    err("puts m 0 x", "puts: illegal argument: invalid timestamp: 0");
}

// --- tags ------------------------------------------------------------------

#[test]
fn tags_need_exactly_one_equals_and_two_sides() {
    for tag in ["a", "a=", "=b", "=", "a=b=c", "a==b"] {
        let k = err(
            &format!("put m 1700000000 1 {tag}"),
            &format!("put: illegal argument: invalid tag: {tag}"),
        );
        assert_eq!(k, ErrorKind::InvalidTag);
    }
}

#[test]
fn a_repeated_tag_is_fine_with_the_same_value_only() {
    ok(
        "put m 1700000000 1 a=1 b=2 a=1",
        p("m", T * S, 1i64, &[("a", "1"), ("b", "2")]),
    );
    let k = err(
        "put m 1700000000 1 a=1 b=2 a=3",
        "put: illegal argument: duplicate tag: a=3, tags={a=1}",
    );
    assert_eq!(k, ErrorKind::DuplicateTag);
}

#[test]
fn tag_count_limit_both_sides() {
    let opts = ParseOptions {
        max_tags: 8,
        ..ParseOptions::default()
    };
    let tags = |n: usize| {
        (0..n)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (got, events, _) = run_with(&opts, format!("put m 1700000000 1 {}", tags(8)).as_bytes());
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(got[0].tags.len(), 8);
    let k = err_with(
        &opts,
        &format!("put m 1700000000 1 {}", tags(9)),
        "put: illegal argument: Too many tags: 9 maximum allowed: 8",
    );
    assert_eq!(k, ErrorKind::TooManyTags);
    // The default is generous.
    let (got, events, _) = run_with(
        &ParseOptions::default(),
        format!(
            "put m 1700000000 1 {}",
            tags(crate::codec::DEFAULT_MAX_TAGS)
        )
        .as_bytes(),
    );
    assert!(events.is_empty() && got.len() == 1);
}

// --- characters ------------------------------------------------------------

#[test]
fn opentsdb_characters_are_checked() {
    ok(
        "put sys/cpu-0_x.y 1700000000 1 höst=wébserver 数据=值",
        p(
            "sys/cpu-0_x.y",
            T * S,
            1i64,
            &[("höst", "wébserver"), ("数据", "值")],
        ),
    );
    let k = err(
        "put a$b 1700000000 1 t=v",
        "put: illegal argument: Invalid metric name (\"a$b\"): illegal character: $",
    );
    assert_eq!(k, ErrorKind::InvalidCharacter);
    err(
        "put m 1700000000 1 k:1=v",
        "put: illegal argument: Invalid tag name with value [v] (\"k:1\"): illegal character: :",
    );
    err(
        "put m 1700000000 1 k=v@x",
        "put: illegal argument: Invalid tag value with key [k] (\"v@x\"): illegal character: @",
    );
    // Found by fuzzing: `=` is fine between a tag's key and value only.
    err(
        "put a=b 1700000000 1 k=v",
        "put: illegal argument: Invalid metric name (\"a=b\"): illegal character: =",
    );
}

#[test]
fn special_characters_can_be_allowed() {
    let opts = ParseOptions {
        special_chars: ":@".to_owned(),
        ..ParseOptions::default()
    };
    ok_with(
        &opts,
        "put a:b 1700000000 1 k@1=v:2",
        p("a:b", T * S, 1i64, &[("k@1", "v:2")]),
    );
    err_with(
        &opts,
        "put a$b 1700000000 1",
        "put: illegal argument: Invalid metric name (\"a$b\"): illegal character: $",
    );
}

#[test]
fn kairosdb_characters_allow_anything_but_spaces() {
    let opts = ParseOptions {
        characters: Characters::AnyButSpace,
        timestamps: SecondsOrMillis::Kairosdb,
        ..ParseOptions::default()
    };
    ok_with(
        &opts,
        "put a$b:c,d 1700000000 1 k:1=v\t@2",
        p("a$b:c,d", T * S, 1i64, &[("k:1", "v\t@2")]),
    );
    // Still exactly one `=` per tag.
    err_with(
        &opts,
        "put m 1700000000 1 a=b=c",
        "put: illegal argument: invalid tag: a=b=c",
    );
}

#[test]
fn quotes_at_most_a_few_dozen_bytes() {
    let long = "x".repeat(300);
    let (_, events, _) = run_with(
        &ParseOptions::default(),
        format!("put {long}$ 1700000000 1 {long}=1\nput m 1700000000 1 {long}\nbogus{long}")
            .as_bytes(),
    );
    let errs = errors(&events);
    assert_eq!(errs.len(), 3);
    for e in errs {
        assert!(e.message.len() < 150, "{}", e.message);
    }
}

// --- checks happen in OpenTSDB's order -------------------------------------

#[test]
fn the_first_error_is_the_one_opentsdb_reports() {
    // Timestamp before tags before value before characters.
    err(
        "put m$ x y a",
        "put: invalid value: Invalid character 'x' in x",
    );
    err("put m$ 1 y a", "put: illegal argument: invalid tag: a");
    err(
        "put m$ 1 y a=b",
        "put: invalid value: Invalid character 'y' in y",
    );
    err(
        "put m$ 10000000000000 1 a=b",
        "put: illegal argument: bad timestamp=10000000000000",
    );
    err(
        "put m$ 1 1 a=b",
        "put: illegal argument: Invalid metric name (\"m$\"): illegal character: $",
    );
}

// --- commands --------------------------------------------------------------

#[test]
fn answers_version_help_and_stops_at_exit() {
    let (got, events, summary) = run_with(
        &ParseOptions::default(),
        b"version\nhelp me\nput m 1700000000 1\nexit\nput n 1700000000 2\n",
    );
    assert_eq!(got, vec![p("m", T * S, 1i64, &[])]);
    assert_eq!(
        events,
        vec![
            Event::Command {
                line: 1,
                command: Command::Version
            },
            Event::Command {
                line: 2,
                command: Command::Help
            },
            Event::Command {
                line: 4,
                command: Command::Exit
            },
        ]
    );
    assert!(summary.exit);
}

#[test]
fn unknown_commands_get_opentsdbs_answer() {
    for cmd in ["stats", "dropcaches", "PUT", "Put", "#", "rollup"] {
        let k = err(
            &format!("{cmd} m 1700000000 1"),
            &format!("unknown command: {cmd}.  Try `help'."),
        );
        assert_eq!(k, ErrorKind::UnknownCommand);
    }
}

#[test]
fn invalid_utf8_is_refused_per_line() {
    let k = err_bytes(
        &ParseOptions::default(),
        b"put m\xff 1700000000 1",
        "put: illegal argument: invalid UTF-8 in line",
    );
    assert_eq!(k, ErrorKind::InvalidUtf8);
    err_bytes(
        &ParseOptions::default(),
        b"\xffx 1",
        "unknown command: \u{fffd}x.  Try `help'.",
    );
    let (got, events, _) = run_with(
        &ParseOptions::default(),
        b"put a\xff 1 1\nput b 1700000000 1\n",
    );
    assert_eq!(got.len(), 1);
    assert_eq!(errors(&events)[0].line, 1);
}

#[test]
fn an_unknown_command_of_invalid_utf8_is_quoted_short() {
    // Found by fuzzing: each bad byte renders as a three-byte U+FFFD.
    let mut line = b"puts".to_vec();
    line.extend_from_slice(&[0xb8; 80]);
    line.extend_from_slice(b" m 1700000000 1");
    let (_, events, _) = run_with(&ParseOptions::default(), &line);
    let errs = errors(&events);
    assert_eq!(errs[0].kind, ErrorKind::UnknownCommand);
    assert!(errs[0].message.len() < 100, "{}", errs[0].message);
}

#[test]
fn good_lines_around_bad_ones_are_kept() {
    let (got, events, summary) = run_with(
        &ParseOptions::default(),
        b"put a 1700000000 1 t=1\nput b 1700000000 x\nput c 1700000000 3 t=3\n",
    );
    assert_eq!(
        got,
        vec![
            p("a", T * S, 1i64, &[("t", "1")]),
            p("c", T * S, 3i64, &[("t", "3")])
        ]
    );
    assert_eq!(errors(&events)[0].line, 2);
    assert!(!summary.exit);
}

// ---- the batch's limits, behind OpenTSDB's own `max_tags` ----

fn run_limited(max_tags: usize, max_key: usize, input: &str) -> (Vec<Metric>, Vec<LineError>) {
    let opts = ParseOptions {
        max_tags: 1000,
        ..ParseOptions::default()
    };
    let mut batch = Batch::new();
    batch.set_limits(conflux_core::metric::Limits {
        max_tags,
        max_series_key_bytes: max_key,
    });
    let mut events = Vec::new();
    let summary = parse(input.as_bytes(), &opts, &mut batch, &mut events);
    assert_eq!(summary.metrics, batch.len());
    let errs = errors(&events).into_iter().cloned().collect();
    (batch.iter().map(|m| m.to_metric()).collect(), errs)
}

#[test]
fn a_line_past_the_batch_tag_limit_is_refused_and_the_others_kept() {
    let (got, errs) = run_limited(
        2,
        1000,
        "put a 1700000000 1 x=1 y=2\nput b 1700000000 2 x=1 y=2 z=3\nput c 1700000000 3\n",
    );
    assert_eq!(
        got,
        vec![
            p("a", T * S, 1i64, &[("x", "1"), ("y", "2")]),
            p("c", T * S, 3i64, &[])
        ]
    );
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 2);
    assert_eq!(errs[0].kind.reason(), "too_many_tags");
    assert_eq!(
        errs[0].message,
        "put: illegal argument: too many tags (max 2)"
    );
}

#[test]
fn a_repeated_tag_counts_once_against_the_batch_limit() {
    // OpenTSDB ignores `x=1` given twice; the batch counts it once.
    let (got, errs) = run_limited(2, 1000, "put a 1700000000 1 x=1 y=2 x=1\n");
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(got, vec![p("a", T * S, 1i64, &[("x", "1"), ("y", "2")])]);
}

#[test]
fn a_line_past_the_series_key_limit_is_refused_and_the_others_kept() {
    // `a,host=web01` is 12 bytes: at the limit.
    let (got, errs) = run_limited(
        256,
        12,
        "put a 1700000000 1 host=web01\nput a 1700000000 2 host=web012\nput abc 1700000000 3\n",
    );
    assert_eq!(got.len(), 2, "{errs:?}");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 2);
    assert_eq!(errs[0].kind, ErrorKind::SeriesKeyTooLong);
    assert_eq!(errs[0].kind.reason(), "series_key_too_long");
    assert_eq!(
        errs[0].message,
        "put: illegal argument: series key too long (max 12 bytes)"
    );
}

#[test]
fn opentsdbs_own_tag_limit_answers_first() {
    let opts = ParseOptions {
        max_tags: 2,
        ..ParseOptions::default()
    };
    let mut batch = Batch::new();
    batch.set_limits(conflux_core::metric::Limits {
        max_tags: 1,
        max_series_key_bytes: 1000,
    });
    let mut events = Vec::new();
    parse(
        b"put a 1700000000 1 x=1 y=2 z=3\n",
        &opts,
        &mut batch,
        &mut events,
    );
    let errs = errors(&events);
    assert_eq!(errs[0].kind, ErrorKind::TooManyTags);
    assert_eq!(
        errs[0].message,
        "put: illegal argument: Too many tags: 3 maximum allowed: 2"
    );
}

// ---- lines that repeat the tags of the line before ----

/// Parse `input` in one call, and each line in a call of its own into one
/// batch: the tags reused from line to line must change no metric, and
/// shared rather than copied they can only save bytes.
#[track_caller]
fn same_as_line_by_line(opts: &ParseOptions, limits: conflux_core::metric::Limits, input: &str) {
    let mut whole = Batch::new();
    whole.set_limits(limits);
    let mut whole_events = Vec::new();
    let whole_summary = parse(input.as_bytes(), opts, &mut whole, &mut whole_events);

    let mut single = Batch::new();
    single.set_limits(limits);
    let mut single_events = Vec::new();
    let mut stored = 0;
    for (i, line) in input.split_inclusive('\n').enumerate() {
        let mut events = Vec::new();
        stored += parse(line.as_bytes(), opts, &mut single, &mut events).metrics;
        single_events.extend(events.into_iter().map(|e| match e {
            Event::Error(mut e) => {
                e.line = i + 1;
                Event::Error(e)
            }
            Event::Command { command, .. } => Event::Command {
                line: i + 1,
                command,
            },
        }));
    }
    assert_eq!(whole_events, single_events, "{input:?}");
    assert_eq!(whole_summary.metrics, stored, "{input:?}");
    assert_eq!(whole, single, "{input:?}");
    assert!(whole.arena_bytes() <= single.arena_bytes(), "{input:?}");
}

#[test]
fn repeated_tags_give_what_each_line_gives_alone() {
    let unlimited = conflux_core::metric::Limits::default();
    let specials = ParseOptions {
        special_chars: ":".into(),
        ..ParseOptions::default()
    };
    for input in [
        // The usual shape: one measurement's fields, then another's.
        "put cpu.user 1700000000 1.5 host=a cpu=cpu0\n\
         put cpu.system 1700000000 2 host=a cpu=cpu0\n\
         put cpu.idle 1700000000 97.5 host=a cpu=cpu0\n\
         put mem.used 1700000000 3 host=a\n\
         put mem.free 1700000000 4 host=a\n",
        // A refused line in between, for its value, its metric, its time.
        "put a 1700000000 1 x=1 y=2\nput b 1700000000 NaN x=1 y=2\nput c 1700000000 3 x=1 y=2\n",
        "put a 1700000000 1 x=1 y=2\nput b:c 1700000000 2 x=1 y=2\nput c 1700000000 3 x=1 y=2\n",
        "put a 1700000000 1 x=1 y=2\nput b 0 2 x=1 y=2\nput c 1700000000 3 x=1 y=2\n",
        // Repeated keys: the same value (kept once), another value (refused).
        "put a 1700000000 1 x=1 x=1 y=2\nput b 1700000000 2 x=1 x=1 y=2\nput c 1700000000 3 x=1 x=1 y=2\n",
        "put a 1700000000 1 x=1 x=2\nput b 1700000000 2 x=1 x=2\n",
        // Tags out of order, odd spacing, no tags, an invalid tag.
        "put a 1700000000 1 z=1  y=2 x=3 \nput b 1700000000 2 z=1  y=2 x=3 \n",
        "put a 1700000000 1\nput b 1700000000 2\nput c 1700000000 3 x=1\n",
        "put a 1700000000 1 x=1 y\nput b 1700000000 2 x=1 y\nput c 1700000000 3 x=1\n",
        // Another command between, `puts`, `putm`, and a line of another
        // tag set between two with the same.
        "put a 1700000000 1 x=1\nversion\nput b 1700000000 2 x=1\n",
        "puts a 1700000000 s x=1\nputm b 1700000000000 2 x=1\nput c 1700000000 3 x=1\n",
        "put a 1700000000 1 x=1\nput b 1700000000 2 y=1\nput c 1700000000 3 x=1\n",
        // Special characters and non-ASCII letters in the tags.
        "put a 1700000000 1 url=http://h:80/ é=数\nput b 1700000000 2 url=http://h:80/ é=数\n",
    ] {
        same_as_line_by_line(&ParseOptions::default(), unlimited, input);
        same_as_line_by_line(&specials, unlimited, input);
    }
    // The batch's limits: a longer metric passes the series key limit where
    // the one before did not, and the other way round.
    let limits = conflux_core::metric::Limits {
        max_tags: 8,
        max_series_key_bytes: 14,
    };
    same_as_line_by_line(
        &ParseOptions::default(),
        limits,
        "put a 1700000000 1 host=web01\nput abcd 1700000000 2 host=web01\nput b 1700000000 3 host=web01\n",
    );
}

proptest::proptest! {
    /// The block check of a metric name, at every length around its block
    /// sizes, agrees with the byte-by-byte rule.
    #[test]
    fn name_allowed_agrees_with_the_byte_rule(
        name in proptest::collection::vec(
            proptest::sample::select(b"aZ09-_./=: @\xc3\xa9~".to_vec()),
            0..48,
        ),
        specials_text in proptest::sample::select(vec!["", ":", "@:", "~"]),
    ) {
        let sp = specials(specials_text);
        let want = name.iter().all(|&c| {
            c != b'=' && (opentsdb_byte(c) || c == b' ' || sp.contains(&c))
        });
        proptest::prop_assert_eq!(name_allowed(&name, &sp), want);
    }
}
