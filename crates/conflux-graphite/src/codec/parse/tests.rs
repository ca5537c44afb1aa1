#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use conflux_core::{Batch, Metric};

use super::*;

const NOW: i64 = 1_700_000_000_123_456_789;
const S: i64 = 1_000_000_000;

fn opts() -> ParseOptions {
    ParseOptions::new(NOW)
}

fn run(p: &mut Parser, input: &str, o: &ParseOptions) -> (Vec<Metric>, Vec<LineError>) {
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    let n = p.parse(input.as_bytes(), o, &mut batch, &mut errors);
    assert_eq!(n, batch.len());
    (batch.iter().map(|m| m.to_metric()).collect(), errors)
}

fn m(name: &str, value: f64, ts: i64) -> Metric {
    Metric::new(name).field("value", value).at(ts)
}

#[track_caller]
fn ok(input: &str, expected: Vec<Metric>) {
    let (got, errors) = run(&mut Parser::default(), input, &opts());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(got, expected);
}

#[track_caller]
fn err(input: &str, kind: ErrorKind, message: &str) {
    let (got, errors) = run(&mut Parser::default(), input, &opts());
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind, kind, "{errors:?}");
    assert_eq!(errors[0].message, message);
    assert_eq!(errors[0].line, 1);
}

#[track_caller]
fn kind(input: &str, kind: ErrorKind) {
    let (got, errors) = run(&mut Parser::default(), input, &opts());
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind, kind, "{input:?}: {errors:?}");
}

#[test]
fn reads_path_value_timestamp() {
    ok(
        "servers.host1.cpu.load 0.5 1700000000\n",
        vec![m("servers.host1.cpu.load", 0.5, 1_700_000_000 * S)],
    );
}

#[test]
fn missing_timestamp_minus_one_and_n_mean_now() {
    ok(
        "a 1\nb 2 -1\nc 3 N\nd 4 -1.0\ne 5 -1.7\n",
        vec![
            m("a", 1.0, NOW),
            m("b", 2.0, NOW),
            m("c", 3.0, NOW),
            m("d", 4.0, NOW),
            // carbon: `int(ts) == -1`
            m("e", 5.0, NOW),
        ],
    );
}

#[test]
fn timestamps_repeated_on_later_lines_read_as_their_own_tokens() {
    // The last token read is reused only for the same bytes ending the line.
    let input = "a 1 1700000000\nb 2 1700000000\nc 3 1700000000 x\nd 4 1700000001\n\
                 e 5 1700000000\nf 6 1700000000.5\ng 7 1700000000.5\nh 8 -1\ni 9 -1\n\
                 j 10 N\nk 11\nl 12 170000000\nm 13 1700000000\n";
    let (got, errors) = run(&mut Parser::default(), input, &opts());
    let t = 1_700_000_000 * S;
    assert_eq!(
        got,
        vec![
            m("a", 1.0, t),
            m("b", 2.0, t),
            m("d", 4.0, t + S),
            m("e", 5.0, t),
            m("f", 6.0, t + S / 2),
            m("g", 7.0, t + S / 2),
            m("h", 8.0, NOW),
            m("i", 9.0, NOW),
            m("j", 10.0, NOW),
            m("k", 11.0, NOW),
            m("l", 12.0, 170_000_000 * S),
            m("m", 13.0, t),
        ]
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].line, errors[0].kind),
        (3, ErrorKind::TooManyFields)
    );
}

#[test]
fn zero_is_a_real_timestamp_unless_configured() {
    ok("a 1 0\n", vec![m("a", 1.0, 0)]);
    let o = ParseOptions {
        zero_is_now: true,
        ..opts()
    };
    let (got, _) = run(&mut Parser::default(), "a 1 0\nb 2 0.0\nc 3 0.5\n", &o);
    assert_eq!(
        got,
        vec![m("a", 1.0, NOW), m("b", 2.0, NOW), m("c", 3.0, S / 2)]
    );
}

#[test]
fn fractional_seconds_are_exact_to_the_nanosecond() {
    ok(
        "a 1 1700000000.123456789\nb 1 1700000000.5\nc 1 1700000000.1234567891\nd 1 -0.5\n",
        vec![
            m("a", 1.0, 1_700_000_000_123_456_789),
            m("b", 1.0, 1_700_000_000_500_000_000),
            m("c", 1.0, 1_700_000_000_123_456_789),
            m("d", 1.0, -S / 2),
        ],
    );
}

#[test]
fn exponent_timestamps_go_through_a_float() {
    ok("a 1 1.7e9\n", vec![m("a", 1.0, 1_700_000_000 * S)]);
}

#[test]
fn blanks_tabs_and_crlf_separate() {
    ok(
        "  a\t\t1  \t 1700000000 \r\n\tb 2\r\n",
        vec![m("a", 1.0, 1_700_000_000 * S), m("b", 2.0, NOW)],
    );
}

#[test]
fn blank_lines_are_skipped_and_counted_for_line_numbers() {
    let (got, errors) = run(&mut Parser::default(), "\n\n \t\nbad\na 1 1\n", &opts());
    assert_eq!(got, vec![m("a", 1.0, S)]);
    assert_eq!(errors[0].line, 4);
}

#[test]
fn values_are_floats_in_every_spelling() {
    ok(
        "a 1e3 1\nb -0.25 1\nc .5 1\nd 5. 1\ne +7 1\nf inf 1\ng -Infinity 1\n",
        vec![
            m("a", 1000.0, S),
            m("b", -0.25, S),
            m("c", 0.5, S),
            m("d", 5.0, S),
            m("e", 7.0, S),
            m("f", f64::INFINITY, S),
            m("g", f64::NEG_INFINITY, S),
        ],
    );
}

#[test]
fn nan_is_dropped_and_counted() {
    err(
        "a nan 1",
        ErrorKind::NanValue,
        "unable to parse 'a nan 1': value is NaN",
    );
    kind("a NaN", ErrorKind::NanValue);
}

#[test]
fn rejects_missing_value() {
    err(
        "lonely.path",
        ErrorKind::MissingValue,
        "unable to parse 'lonely.path': missing value",
    );
}

#[test]
fn rejects_too_many_fields() {
    err(
        "a b 1 2",
        ErrorKind::TooManyFields,
        "unable to parse 'a b 1 2': too many fields: want `path value [timestamp]`",
    );
}

#[test]
fn rejects_bad_value_and_timestamp() {
    err(
        "a x 1",
        ErrorKind::InvalidValue,
        "unable to parse 'a x 1': value is not a number",
    );
    kind("a 0x10 1", ErrorKind::InvalidValue);
    kind("a 1_000 1", ErrorKind::InvalidValue);
    err(
        "a 1 soon",
        ErrorKind::InvalidTimestamp,
        "unable to parse 'a 1 soon': timestamp is not a number",
    );
    kind("a 1 -", ErrorKind::InvalidTimestamp);
    kind("a 1 .", ErrorKind::InvalidTimestamp);
    kind("a 1 nan", ErrorKind::InvalidTimestamp);
    kind("a 1 inf", ErrorKind::TimestampOutOfRange);
    kind("a 1 9300000000", ErrorKind::TimestampOutOfRange);
    kind("a 1 99999999999999999999", ErrorKind::TimestampOutOfRange);
    kind("a 1 1e30", ErrorKind::TimestampOutOfRange);
}

#[test]
fn timestamps_before_1970_and_up_to_2262_are_kept() {
    ok(
        "a 1 -86400\nb 1 9200000000\n",
        vec![m("a", 1.0, -86_400 * S), m("b", 1.0, 9_200_000_000 * S)],
    );
}

#[test]
fn rejects_invalid_utf8_path() {
    let (got, errors) = run_bytes(b"a\xffb 1 1\n");
    assert!(got.is_empty());
    assert_eq!(errors[0].kind, ErrorKind::InvalidUtf8);
    assert_eq!(
        errors[0].message,
        "unable to parse 'a\u{fffd}b 1 1': invalid utf-8"
    );
}

fn run_bytes(input: &[u8]) -> (Vec<Metric>, Vec<LineError>) {
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    Parser::default().parse(input, &opts(), &mut batch, &mut errors);
    (batch.iter().map(|m| m.to_metric()).collect(), errors)
}

#[test]
fn one_bad_line_never_hides_the_others() {
    let (got, errors) = run(
        &mut Parser::default(),
        "a 1 1\nbad\nb 2 2\nc x 3\nd 4 4",
        &opts(),
    );
    assert_eq!(
        got,
        vec![m("a", 1.0, S), m("b", 2.0, 2 * S), m("d", 4.0, 4 * S)]
    );
    let lines: Vec<_> = errors.iter().map(|e| (e.line, e.kind)).collect();
    assert_eq!(
        lines,
        vec![(2, ErrorKind::MissingValue), (4, ErrorKind::InvalidValue)]
    );
}

#[test]
fn quotes_at_most_64_bytes() {
    let line = format!("{} x 1", "p".repeat(100));
    let (_, errors) = run(&mut Parser::default(), &line, &opts());
    assert_eq!(
        errors[0].message,
        format!(
            "unable to parse '{}': value is not a number",
            "p".repeat(64)
        )
    );
}

// ---- carbon tags ----

fn t(name: &str, tags: &[(&str, &str)], value: f64, ts: i64) -> Metric {
    let mut m = Metric::new(name);
    for (k, v) in tags {
        m = m.tag(*k, *v);
    }
    m.field("value", value).at(ts)
}

#[test]
fn carbon_tags_are_split_at_the_first_equals_and_sorted() {
    ok(
        "disk.used;rack=a1;datacenter=dc1;server=web01;q=a=b 42 1\n",
        vec![t(
            "disk.used",
            &[
                ("datacenter", "dc1"),
                ("q", "a=b"),
                ("rack", "a1"),
                ("server", "web01"),
            ],
            42.0,
            S,
        )],
    );
}

#[test]
fn a_later_tag_with_the_same_key_wins() {
    ok("m;k=1;k=2 1 1", vec![t("m", &[("k", "2")], 1.0, S)]);
}

#[test]
fn leading_tildes_leave_a_tagged_name_and_a_name_tag_is_dropped() {
    ok(
        "~~m;name=other;a=b 1 1",
        vec![t("m", &[("a", "b")], 1.0, S)],
    );
    // Without tags the path is kept as it is.
    ok("~m 1 1", vec![m("~m", 1.0, S)]);
    err(
        "~~~;a=b 1 1",
        ErrorKind::MissingName,
        "unable to parse '~~~;a=b 1 1': missing metric name",
    );
    kind(";a=b 1 1", ErrorKind::MissingName);
}

#[test]
fn rejects_carbon_tags_that_break_the_rules() {
    err(
        "m;novalue 1 1",
        ErrorKind::InvalidTag,
        "unable to parse 'm;novalue 1 1': invalid tag: want non-empty `key=value`",
    );
    kind("m;=v 1 1", ErrorKind::InvalidTag);
    kind("m;k= 1 1", ErrorKind::InvalidTag);
    kind("m;a=b; 1 1", ErrorKind::InvalidTag);
    kind("m;;a=b 1 1", ErrorKind::InvalidTag);
    err(
        "m;a!b=c 1 1",
        ErrorKind::InvalidTagKey,
        "unable to parse 'm;a!b=c 1 1': invalid tag key: must not contain `!` or `^`",
    );
    kind("m;a^b=c 1 1", ErrorKind::InvalidTagKey);
    err(
        "m;k=~v 1 1",
        ErrorKind::InvalidTagValue,
        "unable to parse 'm;k=~v 1 1': invalid tag value: must not start with `~`",
    );
    // A `~` later in the value is fine.
    ok("m;k=v~ 1 1", vec![t("m", &[("k", "v~")], 1.0, S)]);
}

// ---- OpenMetrics form ----

#[test]
fn openmetrics_tags() {
    ok(
        r#"http_requests{method="GET",code="200"} 7 1"#,
        vec![t(
            "http_requests",
            &[("code", "200"), ("method", "GET")],
            7.0,
            S,
        )],
    );
}

#[test]
fn openmetrics_escapes_and_quoted_blanks() {
    ok(
        r#"m{path="/a b",q="say \"hi\"",bs="a\\b"} 1 1"#,
        vec![t(
            "m",
            &[("bs", "a\\b"), ("path", "/a b"), ("q", "say \"hi\"")],
            1.0,
            S,
        )],
    );
}

#[test]
fn openmetrics_allows_carbons_optional_colon_before_comma() {
    ok(
        r#"m{a="1":,b="2"} 1 1"#,
        vec![t("m", &[("a", "1"), ("b", "2")], 1.0, S)],
    );
}

#[test]
fn rejects_bad_openmetrics() {
    kind(r#"m{a=1,b="2"} 1 1"#, ErrorKind::InvalidOpenMetrics);
    kind(r#"m{a="",b="2"} 1 1"#, ErrorKind::InvalidOpenMetrics);
    kind(r#"m{{a="1"} 1 1"#, ErrorKind::InvalidOpenMetrics);
    kind(r#"m{a="1"b="2"} 1 1"#, ErrorKind::InvalidOpenMetrics);
    kind(r#"m{="1"} 1 1"#, ErrorKind::InvalidOpenMetrics);
    kind(r#"{a="1"} 1 1"#, ErrorKind::MissingName);
    kind(r#"m{a!="1"} 1 1"#, ErrorKind::InvalidTagKey);
    kind(r#"m{a="~1"} 1 1"#, ErrorKind::InvalidTagValue);
    kind(r#"m{a="x;y"} 1 1"#, ErrorKind::InvalidTagValue);
}

#[test]
fn a_path_with_braces_but_no_closing_quote_is_a_plain_path() {
    ok("m{} 1 1", vec![m("m{}", 1.0, S)]);
    ok("m{a=b} 1 1", vec![m("m{a=b}", 1.0, S)]);
}

// ---- templates ----

fn with_templates(sep: &str, specs: &[&str]) -> Parser {
    let specs: Vec<String> = specs.iter().map(|s| (*s).to_owned()).collect();
    Parser::new(Arc::new(Templates::new(sep, &specs).unwrap()))
}

#[test]
fn templates_give_measurement_tags_and_field() {
    let mut p = with_templates(".", &["host.measurement.field"]);
    let (got, errors) = run(&mut p, "web01.cpu.idle 98 1\n", &opts());
    assert!(errors.is_empty());
    assert_eq!(
        got,
        vec![
            Metric::new("cpu")
                .tag("host", "web01")
                .field("idle", 98.0)
                .at(S)
        ]
    );
}

#[test]
fn path_tags_are_merged_over_template_tags() {
    let mut p = with_templates(".", &["host.measurement* dc=x,env=prod"]);
    let (got, _) = run(&mut p, "web01.cpu.load;env=dev;host=h2 1 1\n", &opts());
    assert_eq!(
        got,
        vec![t(
            "cpu.load",
            &[("dc", "x"), ("env", "dev"), ("host", "h2")],
            1.0,
            S
        )]
    );
}

#[test]
fn templates_apply_to_openmetrics_names() {
    let mut p = with_templates("_", &["measurement.measurement.region"]);
    let (got, _) = run(&mut p, r#"cpu.load.eu{host="a"} 1 1"#, &opts());
    assert_eq!(
        got,
        vec![t("cpu_load", &[("host", "a"), ("region", "eu")], 1.0, S)]
    );
}

#[test]
fn a_template_without_measurement_nodes_keeps_the_path() {
    let mut p = with_templates(".", &["host.measurement"]);
    let (got, _) = run(&mut p, "web01 1 1\n", &opts());
    assert_eq!(got, vec![t("web01", &[("host", "web01")], 1.0, S)]);
}

#[test]
fn parser_reuses_its_buffers_across_payloads() {
    let mut p = with_templates(".", &["host.measurement.field"]);
    for _ in 0..3 {
        let (got, _) = run(&mut p, "h.cpu.idle 1 1\nh2.mem.free 2 2\n", &opts());
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].tags, vec![("host".to_owned(), "h2".to_owned())]);
    }
}

#[test]
fn free_function_matches_the_parser() {
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    assert_eq!(parse(b"a 1 1\nb\n", &opts(), &mut batch, &mut errors), 1);
    assert_eq!(errors.len(), 1);
}

proptest::proptest! {
    #[test]
    fn short_eq_is_slice_equality(
        a in proptest::collection::vec(0u8..3, 0..20),
        b in proptest::collection::vec(0u8..3, 0..20),
        flip in 0usize..20,
    ) {
        proptest::prop_assert_eq!(short_eq(&a, &b), a == b);
        let mut c = a.clone();
        if let Some(x) = c.get_mut(flip) {
            *x ^= 0x80;
        }
        proptest::prop_assert_eq!(short_eq(&a, &c), a == c);
        proptest::prop_assert!(short_eq(&a, &a.clone()));
    }

    #[test]
    fn the_fast_float_path_agrees_with_the_standard_parser(
        tok in "-?[0-9]{0,17}(\\.[0-9]{0,17})?",
    ) {
        let ours = parse_value(tok.as_bytes()).ok();
        let std = tok.parse::<f64>().ok();
        proptest::prop_assert_eq!(ours.map(f64::to_bits), std.map(f64::to_bits), "{}", tok);
    }

    /// A value read where it starts in the line (its end found by the
    /// reader) is the value of its whole token, and a token the reader
    /// stops inside is still read whole or refused whole.
    #[test]
    fn values_in_lines_are_read_as_their_tokens(
        tok in "-?[0-9]{0,21}(\\.[0-9]{0,21})?([eE.x:][0-9]{0,2})?",
        blank in "[ \t]{1,2}",
        ts in proptest::option::of("[0-9]{1,10}|-1|N|[0-9]{1,3}x"),
    ) {
        // An empty token would make the timestamp the value.
        proptest::prop_assume!(!tok.is_empty());
        let line = match &ts {
            Some(ts) => format!("a.b{blank}{tok}{blank}{ts}\n"),
            None => format!("a.b{blank}{tok}\n"),
        };
        let (got, errors) = run(&mut Parser::default(), &line, &opts());
        let value = match tok.parse::<f64>() {
            Ok(v) if !v.is_nan() => v,
            _ => {
                proptest::prop_assert!(got.is_empty(), "{}: {:?}", line, got);
                return Ok(());
            }
        };
        let want = parse_timestamp(ts.as_deref().unwrap_or("N").as_bytes(), &opts());
        match want {
            Ok(ts) => {
                proptest::prop_assert!(errors.is_empty(), "{}: {:?}", line, errors);
                proptest::prop_assert_eq!(got, vec![m("a.b", value, ts)]);
            }
            Err(fail) => {
                proptest::prop_assert!(got.is_empty());
                proptest::prop_assert_eq!(errors[0].kind, fail.kind);
            }
        }
    }

    #[test]
    fn decimal_timestamps_are_exact(secs in 0i64..9_000_000_000, nanos in 0i64..1_000_000_000) {
        let tok = format!("{secs}.{nanos:09}");
        let ts = parse_timestamp(tok.as_bytes(), &opts()).ok();
        proptest::prop_assert_eq!(ts, Some(secs * S + nanos));
    }
}

proptest::proptest! {
    #[test]
    fn the_tag_delimiter_scan_finds_the_first_special_byte(
        bytes in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::prelude::Just(b'='), proptest::prelude::Just(b';'),
                proptest::prelude::Just(b'!'), proptest::prelude::Just(b'^'),
                proptest::prelude::any::<u8>(),
            ],
            0..40,
        ),
        from in 0usize..40,
    ) {
        let from = from.min(bytes.len());
        let want = bytes[from..]
            .iter()
            .position(|b| matches!(b, b'=' | b';' | b'!' | b'^'))
            .map_or(bytes.len(), |p| from + p);
        proptest::prop_assert_eq!(next_tag_special(&bytes, from), want);
    }
}

/// Lines from pieces that make every shape the one-pass reader
/// ([`Parser::plain_line`]) takes or leaves: plain, tagged and OpenMetrics
/// paths, blanks and tabs in every place, `\r`, plain and other values,
/// timestamps repeated, changed, shortened, missing, extra fields.
fn line_piece() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    // Weighted toward the common shape, so that most payloads hold lines
    // the one-pass reader takes next to lines it leaves.
    let path = prop_oneof![
        4 => Just("a.b".to_owned()),
        4 => "[a-z.]{17,40}",
        1 => Just("a.b;k=v".to_owned()),
        1 => Just("m{k=\"a b\"}".to_owned()),
        1 => Just("a.b\"}".to_owned()),
        1 => Just("a\rb".to_owned()),
        1 => Just("a{b".to_owned()),
        1 => Just("=;x".to_owned()),
        1 => Just(String::new()),
    ];
    let between = prop_oneof![6 => Just(" "), 1 => Just("  "), 1 => Just("\t"), 1 => Just(" \r"), 1 => Just("")];
    let around = prop_oneof![6 => Just(""), 1 => Just(" "), 1 => Just("\t"), 1 => Just("\r")];
    let value = prop_oneof![
        4 => "-?[0-9]{1,17}(\\.[0-9]{1,17})?",
        1 => Just("nan".to_owned()),
        1 => Just("1e3".to_owned()),
        1 => Just("12345678901234567890.5".to_owned()),
        1 => Just("x".to_owned()),
        1 => Just(String::new()),
    ];
    let ts = prop_oneof![
        6 => Just("1700000000"),
        1 => Just("170000000"),
        1 => Just("1700000001.5"),
        1 => Just("-1"),
        1 => Just("N"),
        1 => Just("zz"),
        2 => Just("1700000000 7"),
        2 => Just(""),
    ];
    (
        around.clone(),
        path,
        between.clone(),
        value,
        between,
        ts,
        around,
    )
        .prop_map(|(b0, p, b1, v, b2, t, b3)| format!("{b0}{p}{b1}{v}{b2}{t}{b3}"))
}

proptest::proptest! {
    /// The one-pass reader of common lines reads every payload exactly as
    /// the line-by-line reader does: the same metrics, the same errors with
    /// the same line numbers and quotes.
    #[test]
    fn common_lines_read_in_one_pass_as_line_by_line(
        lines in proptest::collection::vec(line_piece(), 1..12),
        crlf in proptest::bool::ANY,
        last_newline in proptest::bool::ANY,
        templated in proptest::bool::ANY,
    ) {
        let mut payload = lines.join(if crlf { "\r\n" } else { "\n" });
        if last_newline {
            payload.push('\n');
        }
        let parser = || if templated {
            with_templates(".", &["host.measurement.field"])
        } else {
            Parser::default()
        };
        let (fast, fast_errors) = run(&mut parser(), &payload, &opts());
        let mut slow_parser = parser();
        slow_parser.plain_lines = false;
        let (slow, slow_errors) = run(&mut slow_parser, &payload, &opts());
        proptest::prop_assert_eq!(fast, slow, "{:?}", payload);
        let key = |e: &LineError| (e.line, e.kind, e.message.clone());
        proptest::prop_assert_eq!(
            fast_errors.iter().map(key).collect::<Vec<_>>(),
            slow_errors.iter().map(key).collect::<Vec<_>>(),
            "{:?}", payload
        );
    }

    /// Where a plain path stops is the first blank, newline, `;` or `{`,
    /// in any block of sixteen and past the last whole block.
    #[test]
    fn the_path_scan_stops_at_the_first_stop_byte(
        bytes in proptest::collection::vec(
            proptest::prop_oneof![
                8 => b'a'..=b'z',
                1 => proptest::sample::select(b" \t\n;{\r}".to_vec()),
                1 => proptest::prelude::any::<u8>(),
            ],
            0..70,
        ),
        from in 0usize..70,
    ) {
        let from = from.min(bytes.len());
        let want = bytes[from..]
            .iter()
            .position(|b| matches!(b, b' ' | b'\t' | b'\n' | b';' | b'{'))
            .map_or(bytes.len(), |p| from + p);
        proptest::prop_assert_eq!(path_stop(&bytes, from), want);
    }
}

// ---- per-metric limits ----

fn limited(max_tags: usize, max_series_key_bytes: usize) -> Batch {
    let mut b = Batch::new();
    b.set_limits(conflux_core::metric::Limits {
        max_tags,
        max_series_key_bytes,
    });
    b
}

fn run_limited(p: &mut Parser, input: &str, batch: &mut Batch) -> (Vec<Metric>, Vec<LineError>) {
    let mut errors = Vec::new();
    let n = p.parse(input.as_bytes(), &opts(), batch, &mut errors);
    assert_eq!(n, batch.len());
    (batch.iter().map(|m| m.to_metric()).collect(), errors)
}

#[test]
fn a_line_past_the_tag_limit_is_rejected_and_the_others_kept() {
    let mut batch = limited(2, 1000);
    let (got, errors) = run_limited(
        &mut Parser::default(),
        "a;x=1;y=2 1 1\nb;x=1;y=2;z=3 2 2\nc{x=\"1\",y=\"2\",z=\"3\"} 3 3\nd 4 4\n",
        &mut batch,
    );
    let names: Vec<_> = got.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["a", "d"]);
    let lines: Vec<_> = errors.iter().map(|e| (e.line, e.kind.reason())).collect();
    assert_eq!(lines, [(2, "too_many_tags"), (3, "too_many_tags")]);
    assert_eq!(
        errors[0].message,
        "unable to parse 'b;x=1;y=2;z=3 2 2': too many tags (max 2)"
    );
}

#[test]
fn the_tag_limit_counts_template_and_path_tags_once_merged() {
    // The template gives `host` and `region`; the path repeats `host`.
    let mut p = with_templates(".", &["host.measurement.field region=eu"]);
    let mut batch = limited(2, 1000);
    let (got, errors) = run_limited(
        &mut p,
        "web01.cpu.idle;host=web02 1 1\nweb01.cpu.idle;dc=x 2 2\n",
        &mut batch,
    );
    assert_eq!(got.len(), 1, "{errors:?}");
    assert_eq!(got[0].tags[0], ("host".to_owned(), "web02".to_owned()));
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].line, errors[0].kind),
        (2, ErrorKind::TooManyTags)
    );
}

#[test]
fn a_line_past_the_series_key_limit_is_rejected_and_the_others_kept() {
    // `a.b,k=v` is 7 bytes: at the limit.
    let mut batch = limited(256, 7);
    let (got, errors) = run_limited(
        &mut Parser::default(),
        "a.b;k=v 1 1\na.b;k=vv 2 2\na.bcdef 3 3\n",
        &mut batch,
    );
    assert_eq!(
        got,
        vec![
            Metric::new("a.b").tag("k", "v").field("value", 1.0).at(S),
            m("a.bcdef", 3.0, 3 * S),
        ]
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 2);
    assert_eq!(errors[0].kind.reason(), "series_key_too_long");
    assert_eq!(
        errors[0].message,
        "unable to parse 'a.b;k=vv 2 2': series key too long (max 7 bytes)"
    );
}

/// Parse `input` in one call, and each line in a call of its own into one
/// batch: the tags reused from line to line must change no metric, and
/// shared rather than copied they can only save bytes.
#[track_caller]
fn same_as_line_by_line(p: &mut Parser, limits: conflux_core::metric::Limits, input: &str) {
    let o = opts();
    let mut whole = Batch::new();
    whole.set_limits(limits);
    let mut whole_errors = Vec::new();
    let n = p.parse(input.as_bytes(), &o, &mut whole, &mut whole_errors);

    let mut single = Batch::new();
    single.set_limits(limits);
    let mut single_errors = Vec::new();
    let mut stored = 0;
    for (i, line) in input.split_inclusive('\n').enumerate() {
        let mut errors = Vec::new();
        stored += p.parse(line.as_bytes(), &o, &mut single, &mut errors);
        single_errors.extend(errors.into_iter().map(|mut e| {
            e.line = i + 1;
            e
        }));
    }
    assert_eq!(whole_errors, single_errors, "{input:?}");
    assert_eq!(n, stored, "{input:?}");
    assert_eq!(whole, single, "{input:?}");
    assert!(whole.arena_bytes() <= single.arena_bytes(), "{input:?}");
}

#[test]
fn repeated_tags_give_what_each_line_gives_alone() {
    let unlimited = conflux_core::metric::Limits::default();
    let templated = Arc::new(Templates::new(".", &["measurement.field".to_owned()]).unwrap());
    for input in [
        // The usual shape: one measurement's fields, then another's.
        "cpu.user;host=a;cpu=cpu0 1.5 1700000000\n\
         cpu.system;host=a;cpu=cpu0 2 1700000000\n\
         cpu.idle;host=a;cpu=cpu0 97.5 1700000000\n\
         mem.used;host=a 3 1700000000\n\
         mem.free;host=a 4 1700000000\n",
        // A refused line between, for its value, its name, its time.
        "a;x=1;y=2 1 1700000000\nb;x=1;y=2 nan 1700000000\nc;x=1;y=2 3 1700000000\n",
        "a;x=1;y=2 1 1700000000\n~;x=1;y=2 2 1700000000\nc;x=1;y=2 3 1700000000\n",
        "a;x=1;y=2 1 1700000000\nb;x=1;y=2 2 x\nc;x=1;y=2 3 1700000000\n",
        // Repeated keys (the last wins), `name` tags, `~` names, tags out of order.
        "a;x=1;x=2;y=2 1\nb;x=1;x=2;y=2 2\nc;x=1;x=2;y=2 3\n",
        "a;name=z;x=1 1\nb;name=z;x=1 2\n~c;name=z;x=1 3\n",
        "a;z=1;y=2;x=3 1\nb;z=1;y=2;x=3 2\n",
        // Invalid tags, repeated; a plain path and an OpenMetrics one between.
        "a;x 1\nb;x 2\nc;x=1 3\n",
        "a;x=1 1\nplain.path 2\nb;x=1 3\nc{x=\"1\"} 4\nd;x=1 5\n",
        // Another tag set between two with the same.
        "a;x=1 1\nb;y=1 2\nc;x=1 3\n",
    ] {
        same_as_line_by_line(&mut Parser::default(), unlimited, input);
        same_as_line_by_line(&mut Parser::new(templated.clone()), unlimited, input);
    }
    // The batch's limits: a longer name passes the series key limit where the
    // one before did not, and the other way round.
    let limits = conflux_core::metric::Limits {
        max_tags: 8,
        max_series_key_bytes: 14,
    };
    same_as_line_by_line(
        &mut Parser::default(),
        limits,
        "a;host=web01 1\nabcd;host=web01 2\nb;host=web01 3\n",
    );
}
