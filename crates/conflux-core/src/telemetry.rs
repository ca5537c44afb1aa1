//! Names of every self-metric Conflux exports, in one place.
//!
//! Labels: `listener` and `sink` are config names, `dialect` and `type` the
//! component kind, `reason` one of a fixed set per metric. Never metric names,
//! tags or peer addresses.

/// Counter: bytes read by a listener (after decompression), by `listener`, `dialect`.
pub const LISTENER_RECEIVED_BYTES: &str = "conflux_listener_received_bytes_total";
/// Counter: metrics accepted by a listener, by `listener`, `dialect`.
pub const LISTENER_RECEIVED_METRICS: &str = "conflux_listener_received_metrics_total";
/// Counter: points (field values) accepted by a listener, by `listener`, `dialect`.
pub const LISTENER_RECEIVED_POINTS: &str = "conflux_listener_received_points_total";
/// Counter: lines or objects rejected by a listener, by `listener`, `dialect`, `reason`.
pub const LISTENER_REJECTED: &str = "conflux_listener_rejected_total";
/// Counter: connections accepted, by `listener`, `dialect`.
pub const LISTENER_CONNECTIONS: &str = "conflux_listener_connections_total";
/// Gauge: connections open now, by `listener`, `dialect`.
pub const LISTENER_CONNECTIONS_OPEN: &str = "conflux_listener_connections_open";
/// Gauge: bytes of request-body buffers an HTTP listener holds now, taken
/// from its `max_inflight_body_bytes`, by `listener`, `dialect`.
pub const LISTENER_BODY_BYTES_IN_FLIGHT: &str = "conflux_listener_body_bytes_in_flight";
/// Counter: connections refused at the connection cap, by `listener`, `dialect`.
pub const LISTENER_CONNECTIONS_REFUSED: &str = "conflux_listener_connections_refused_total";
/// Counter: HTTP requests answered, by `listener`, `dialect`, `status` (the code).
pub const LISTENER_REQUESTS: &str = "conflux_listener_requests_total";
/// Counter: connections or datagrams turned away before any data was read,
/// by `listener`, `dialect`, `reason` (`not_allowed`: source address outside
/// `allowed_networks`; `tls_handshake`: the TLS handshake failed).
pub const LISTENER_DENIED: &str = "conflux_listener_denied_total";
/// Counter: connections closed by a timeout, by `listener`, `dialect`,
/// `reason` (`idle`, `header`: HTTP request head too slow, `line`: a TCP line
/// not finished in time, `handshake`: TLS handshake too slow, `first_byte`:
/// nothing sent on a port that sniffs the protocol).
pub const LISTENER_TIMEOUTS: &str = "conflux_listener_timeouts_total";

/// Counter: metrics a sink delivered, by `sink`, `type`.
pub const SINK_SENT_METRICS: &str = "conflux_sink_sent_metrics_total";
/// Counter: points (field values) a sink delivered, by `sink`, `type`.
pub const SINK_SENT_POINTS: &str = "conflux_sink_sent_points_total";
/// Counter: encoded bytes a sink delivered, by `sink`, `type`.
pub const SINK_SENT_BYTES: &str = "conflux_sink_sent_bytes_total";
/// Counter: metrics a sink dropped, by `sink`, `reason`
/// (`queue_full`, `closed`, `rejected`, `shutdown`, `series_limit`).
pub const SINK_DROPPED_METRICS: &str = "conflux_sink_dropped_metrics_total";
/// Counter: series a sink's cardinality limiter let in as new, by `sink`
/// (sinks with `max_new_series_per_hour` only).
pub const SINK_NEW_SERIES: &str = "conflux_sink_new_series_total";
/// Gauge: series a sink's cardinality limiter knows (seen this hour window or
/// the one before), by `sink`; updated per batch (sinks with
/// `max_new_series_per_hour` only).
pub const SINK_SERIES_TRACKED: &str = "conflux_sink_series_tracked";
/// Counter: points a sink's encoder skipped, by `sink`, `reason`
/// (`string_value`, `bool_value`, `non_finite_value`, `invalid_name`, `invalid_timestamp`).
pub const SINK_SKIPPED_POINTS: &str = "conflux_sink_skipped_points_total";
/// Counter: retried sends, by `sink`.
pub const SINK_RETRIES: &str = "conflux_sink_retries_total";
/// Histogram: seconds per send attempt, by `sink`, `outcome` (`ok`, `retry`, `rejected`).
pub const SINK_REQUEST_DURATION: &str = "conflux_sink_request_duration_seconds";
/// Gauge: metrics in a sink's queue, including those being sent, by `sink`.
pub const SINK_QUEUE_METRICS: &str = "conflux_sink_queue_metrics";
/// Gauge: a sink's queue capacity in metrics, by `sink`.
pub const SINK_QUEUE_CAPACITY_METRICS: &str = "conflux_sink_queue_capacity_metrics";

/// Gauge: bytes of a sink's spool segments on disk, by `sink`.
pub const SINK_SPOOL_BYTES: &str = "conflux_sink_spool_bytes";
/// Gauge: records in a sink's spool not yet delivered, by `sink`.
pub const SINK_SPOOL_RECORDS: &str = "conflux_sink_spool_records";
/// Gauge: age in seconds of the oldest undelivered spool record (0 when empty), by `sink`.
pub const SINK_SPOOL_OLDEST_AGE: &str = "conflux_sink_spool_oldest_record_age_seconds";
/// Counter: spool records deleted unsent under `spool_when_full = "drop_oldest"`, by `sink`.
/// A record is one accepted request or TCP read (its metrics are not counted one by one).
pub const SINK_SPOOL_DROPPED_RECORDS: &str = "conflux_sink_spool_dropped_records_total";
/// Counter: spool records found corrupt (torn tails, bad checksums) and skipped, by `sink`.
pub const SINK_SPOOL_CORRUPT_RECORDS: &str = "conflux_sink_spool_corrupt_records_total";

/// Gauge: 1 once every component runs, 0 before and during shutdown.
pub const READY: &str = "conflux_ready";
/// Gauge: build information (always 1), by `version`.
pub const BUILD_INFO: &str = "conflux_build_info";
/// Counter: configuration reloads (SIGHUP), by `outcome` (`ok`, `failed`:
/// the running configuration stayed).
pub const RELOADS: &str = "conflux_config_reloads_total";

/// Every counter and gauge a listener exports, for tests that check `/metrics`.
pub const LISTENER_SERIES: &[&str] = &[
    LISTENER_RECEIVED_BYTES,
    LISTENER_RECEIVED_METRICS,
    LISTENER_RECEIVED_POINTS,
    LISTENER_REJECTED,
    LISTENER_CONNECTIONS,
];

/// Every counter and gauge a sink exports, for tests that check `/metrics`.
pub const SINK_SERIES: &[&str] = &[
    SINK_SENT_METRICS,
    SINK_SENT_POINTS,
    SINK_SENT_BYTES,
    SINK_DROPPED_METRICS,
    SINK_RETRIES,
    SINK_REQUEST_DURATION,
    SINK_QUEUE_METRICS,
];
