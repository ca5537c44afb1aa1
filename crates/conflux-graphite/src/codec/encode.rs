//! Telegraf graphite serializer (to be written).
