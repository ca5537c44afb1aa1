//! Telegraf JSON serializer (to be written).
